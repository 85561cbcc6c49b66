/**
 * An audit check as a typed unit: what it looks at (hosts), how it gathers
 * evidence (read-only probes over each host's transport) and what it found.
 * A check that cannot look is a failure, never a skip: an audit that stays
 * silent when a host is unreachable is how incident 004's month went by.
 */
import { BatonError, errorMessage, isBatonError } from '../core/errors.ts';
import { CommandError, type CommandResult, type Transport } from '../core/exec.ts';
import { findHost, type Host, type Inventory } from '../core/inventory.ts';
import type { Redactor } from '../core/redact.ts';
import type { Cmd } from '../core/shell.ts';
import type { DiskHistory } from './history.ts';

export type Verdict = 'pass' | 'warn' | 'fail';

export const VERDICTS: readonly Verdict[] = ['pass', 'warn', 'fail'];

export type CheckKind =
  | 'backup-freshness'
  | 'backup-content'
  | 'passphrase'
  | 'disk'
  | 'standby-copy'
  | 'standby-binary'
  | 'trust'
  | 'dns-ttl'
  | 'lease-guard'
  | 'countersignature';

/** What a check found: the verdict, and the evidence a person can act on. */
export interface Finding {
  verdict: Verdict;
  /** One line for the table. */
  summary: string;
  /** What was measured, with numbers and paths, one fact per line. */
  evidence: string[];
  /** What to do, when the verdict is not pass. */
  remedy?: string;
  /** The numbers behind the evidence, for machines (`--json`). */
  metrics?: Record<string, number | string | boolean | null>;
}

export interface CheckResult extends Finding {
  id: string;
  kind: CheckKind;
  title: string;
  targets: string[];
  /** The post-mortem this check exists for (docs/audit.md and incidents/README.md). */
  incident: string;
  /** UTC, ISO 8601: when the evidence was gathered. */
  measuredAt: string;
  durationMs: number;
}

export interface ProbeOptions {
  /** Bytes for the command's stdin: secrets go here, never into argv. */
  input?: string;
  timeoutMs?: number;
  /** Return a non-zero exit as a result instead of throwing CommandError. */
  allowFail?: boolean;
}

/** A read-only command on one host; the shape lib/integrations/elf.ts's HostCommand expects. */
export type HostProbe = (command: Cmd, options?: ProbeOptions) => Promise<CommandResult>;

export interface CheckContext {
  /** Read-only commands on a host of the inventory. */
  probe(host: string): HostProbe;
  host(name: string): Host;
  readonly inventory: Inventory;
  /** The transport of a host, for what is not a command (a TCP stream to an ircd). */
  transport(host: string): Transport;
  now(): Date;
  /** Past disk measurements (.baton/audit/history.jsonl). */
  readonly history: DiskHistory;
  readonly redactor: Redactor;
}

export interface AuditCheck {
  id: string;
  kind: CheckKind;
  title: string;
  targets: string[];
  incident: string;
  /** Longest the check may take before it is a failure; default 120 s. */
  timeoutMs?: number;
  run(ctx: CheckContext): Promise<Finding>;
}

/** The worst of several verdicts. */
export function worst(verdicts: Iterable<Verdict>): Verdict {
  let w: Verdict = 'pass';
  for (const v of verdicts) if (VERDICTS.indexOf(v) > VERDICTS.indexOf(w)) w = v;
  return w;
}

/** Why a host could not be probed, in words, or undefined when the error is something else. */
export function unreachable(e: unknown): string | undefined {
  if (!isBatonError(e)) return undefined;
  if (['TRANSIENT', 'HOSTKEY_MISMATCH', 'HOSTKEY_UNKNOWN'].includes(e.code)) return e.message;
  if (e.code === 'PRECONDITION_FAILED' && /testnet|unreachable|reach/i.test(e.message))
    return e.message;
  return undefined;
}

export function probeFor(
  transport: Transport,
  host: Host,
  redactor: Redactor,
  defaultTimeoutMs = 60_000,
): HostProbe {
  return async (command, options = {}) => {
    const result = await transport.exec(host, command.text, {
      timeoutMs: options.timeoutMs ?? defaultTimeoutMs,
      ...(options.input !== undefined ? { input: options.input } : {}),
    });
    const clean = redactor.redactDeep(result);
    if (!options.allowFail && (clean.exitCode !== 0 || clean.signal)) throw new CommandError(clean);
    return clean;
  };
}

export interface RunChecksOptions {
  /** Checks run at once; default 4. */
  concurrency?: number;
  onResult?: (result: CheckResult) => void;
}

/** Run every check, each bounded in time; a check that throws is a failure with the reason as evidence. */
export async function runChecks(
  checks: readonly AuditCheck[],
  ctx: CheckContext,
  options: RunChecksOptions = {},
): Promise<CheckResult[]> {
  const results: CheckResult[] = new Array(checks.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= checks.length) return;
      const check = checks[i]!;
      const result = ctx.redactor.redactDeep(await runOne(check, ctx));
      results[i] = result;
      options.onResult?.(result);
    }
  };
  const n = Math.max(1, Math.min(options.concurrency ?? 4, checks.length));
  await Promise.all(Array.from({ length: n }, worker));
  return results;
}

async function runOne(check: AuditCheck, ctx: CheckContext): Promise<CheckResult> {
  const measuredAt = ctx.now();
  const started = performance.now();
  const timeoutMs = check.timeoutMs ?? 120_000;
  let timer: NodeJS.Timeout | undefined;
  let finding: Finding;
  try {
    finding = await Promise.race([
      check.run(ctx),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new BatonError(
                'TIMEOUT',
                `the check did not finish within ${Math.round(timeoutMs / 1000)} s`,
              ),
            ),
          timeoutMs,
        );
      }),
    ]);
  } catch (e) {
    finding = cannotRun(check, e);
  } finally {
    clearTimeout(timer);
  }
  return {
    id: check.id,
    kind: check.kind,
    title: check.title,
    targets: check.targets,
    incident: check.incident,
    ...finding,
    measuredAt: measuredAt.toISOString(),
    durationMs: Math.round(performance.now() - started),
  };
}

function cannotRun(check: AuditCheck, e: unknown): Finding {
  const away = unreachable(e);
  const hint = isBatonError(e) && e.hint ? e.hint : undefined;
  return {
    verdict: 'fail',
    summary: away
      ? `could not reach ${check.targets.join(', ')}: the check could not look`
      : `the check could not run: ${firstLine(errorMessage(e))}`,
    // An audit only probes: "whether it took effect is unknown" (lib/transports/ssh.ts) does not apply.
    evidence: [
      away
        ? `unreachable: ${away.replace(/: whether it took effect is unknown$/, '')}`
        : `error: ${errorMessage(e)}`,
    ],
    remedy:
      (away
        ? `Make ${check.targets.join(', ')} reachable over ssh and audit again; what cannot be checked counts as failed.`
        : 'Fix what the error names and audit again; a check that cannot run counts as failed.') +
      (hint ? ` (${hint})` : ''),
  };
}

function firstLine(text: string): string {
  return text.split('\n')[0]!.slice(0, 200);
}

/** A context over an inventory and its transports. */
export function checkContext(options: {
  inventory: Inventory;
  transportFor(host: Host): Transport;
  now(): Date;
  history: DiskHistory;
  redactor: Redactor;
}): CheckContext {
  const probes = new Map<string, HostProbe>();
  return {
    inventory: options.inventory,
    history: options.history,
    redactor: options.redactor,
    now: options.now,
    host: (name) => findHost(options.inventory, name),
    transport: (name) => options.transportFor(findHost(options.inventory, name)),
    probe(name) {
      let p = probes.get(name);
      if (!p) {
        const host = findHost(options.inventory, name);
        p = probeFor(options.transportFor(host), host, options.redactor);
        probes.set(name, p);
      }
      return p;
    },
  };
}
