/**
 * The `host` pack: what any move between two hosts checks first — the
 * declared window, agreeing clocks, room for the data on the target — and
 * what "down" means for a host. Its steps reach the run's facts through an
 * accessor, so any runbook's facts can carry them.
 */
import { z } from 'zod';
import { BatonError, errorMessage, isBatonError, TransientError } from '../core/errors.ts';
import { condition, type Exec, type StepDef } from '../core/runbook.ts';
import { sh } from '../core/shell.ts';
import { hostName } from './params.ts';

export const hostParams = z.object({
  from: hostName
    .optional()
    .describe('the host services run on now (default: where the unit is active)'),
  to: hostName.optional().describe('the host to move services to (default: the standby)'),
  window: z.iso
    .datetime({ offset: true })
    .optional()
    .describe('start of the declared maintenance window'),
  maxLeadMinutes: z
    .number()
    .min(0)
    .default(120)
    .describe('refuse to start earlier than this before the window'),
  maxClockSkew: z.number().min(0).default(5).describe('seconds'),
});

export type HostParams = z.output<typeof hostParams>;

/** The two hosts of a move, as the facts decided them. */
export interface MoveFacts {
  from: string;
  to: string;
  /** Whether the source host answered at planning (a failover may start without it). */
  fromReachable: boolean;
}

/** How a pack finds the move in a runbook's facts. */
export type MoveOf<F> = (facts: F) => MoveFacts;

const NO_ANSWER =
  /ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EHOSTDOWN|Timed out while waiting for handshake|timed out|No response from server/i;

function isDown(e: unknown): boolean {
  return e instanceof TransientError && !e.startedCommand && NO_ANSWER.test(e.message);
}

/**
 * Whether a host answers. Down means no answer at the network level (a
 * timeout, no route); a changed host key, a refused login or a host that
 * answers but cannot run a command are errors that stop the run, never "down".
 */
export async function reachable(probe: Exec, name: string): Promise<boolean> {
  try {
    await probe(sh`true`, { timeoutMs: 10_000 });
    return true;
  } catch (e) {
    if (isDown(e)) return false;
    throw new BatonError(
      isBatonError(e) && e.code === 'HOSTKEY_MISMATCH' ? 'HOSTKEY_MISMATCH' : 'PRECONDITION_FAILED',
      `${name} answers but cannot be used, so it is not "down": ${errorMessage(e)}`,
      isBatonError(e) && e.hint
        ? e.hint
        : `Find out what is wrong with ${name} before anything else; a failover needs a primary that does not answer at all.`,
    );
  }
}

/** Whether a systemd unit is active on a host; an unreachable host has none active. */
export async function activeUnit(probe: Exec, unit: string): Promise<boolean> {
  try {
    return (
      (await probe(sh`systemctl is-active ${unit}`, { allowFail: true })).stdout.trim() === 'active'
    );
  } catch {
    return false;
  }
}

export function windowStep<P extends HostParams, F>(): StepDef<P, F> {
  return {
    id: 'window',
    title: 'The handover is inside its window',
    targets: 'controller',
    async check({ params, now }) {
      if (!params.window) {
        return condition('maintenance window declared', true, {
          expected: 'a window, or none for an unscheduled move',
          found: 'no window declared',
        });
      }
      const start = Date.parse(params.window);
      const lead = (start - now().getTime()) / 60_000;
      return condition('not too early for the window', lead <= params.maxLeadMinutes, {
        expected: `at most ${params.maxLeadMinutes} min before the window at ${params.window}`,
        found:
          lead >= 0
            ? `${Math.round(lead)} min before it`
            : `${Math.round(-lead)} min into or after it`,
        remedy: `Start the handover no earlier than ${new Date(start - params.maxLeadMinutes * 60_000).toISOString()}.`,
      });
    },
  };
}

export function clockStep<P extends HostParams, F>(move: MoveOf<F>): StepDef<P, F> {
  return {
    id: 'clocks',
    title: 'Clocks agree',
    targets: (ctx) => {
      const m = move(ctx.facts);
      return m.fromReachable ? [m.from, m.to] : [m.to];
    },
    async check({ probe, params, now, host: h }) {
      const r = await probe(sh`date +%s`);
      const skew = Math.abs(Number(r.stdout.trim()) - now().getTime() / 1000);
      return condition(`clock of ${h.name}`, skew <= params.maxClockSkew + 1, {
        expected: `within ${params.maxClockSkew} s of the controller`,
        found: `${skew.toFixed(1)} s apart`,
        remedy: `Fix time synchronisation on ${h.name} (journals and the lease compare times).`,
      });
    },
  };
}

export interface RoomSpec<P, F> {
  move: MoveOf<F>;
  /** The directory on the target that receives the data. */
  dir: (params: P) => string;
  /** Bytes of the data to move. */
  bytes: (facts: F) => number;
  /** What is moved, for the title: "the snapshot". */
  what?: string;
}

/** Room for twice the data on the target: the copy arriving, and what it replaces. */
export function roomStep<P, F>(spec: RoomSpec<P, F>): StepDef<P, F> {
  const what = spec.what ?? 'the snapshot';
  return {
    id: 'room',
    title: `The standby has room for twice ${what}`,
    targets: (ctx) => [spec.move(ctx.facts).to],
    async check({ probe, params, facts, host: h }) {
      const need = 2 * spec.bytes(facts);
      const dir = spec.dir(params);
      const df = await probe(sh`df -Pk ${dir}`);
      const kib = Number(df.stdout.trim().split('\n').at(-1)?.split(/\s+/)[3] ?? 0);
      return condition(`free space on ${h.name} under ${dir}`, kib * 1024 >= need, {
        expected: `at least ${need} bytes (twice ${what})`,
        found: `${kib * 1024} bytes`,
        remedy: `Free space on ${h.name} or grow its disk.`,
      });
    },
  };
}
