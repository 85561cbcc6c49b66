/**
 * The harness behind `idempotent: true`: a step so marked must survive being
 * applied again after its connection dropped, once right after its first
 * mutation (mid-apply) and once after its last (applied twice), and its
 * verify and its undo must still hold. Faults come in through the engine's
 * `afterMutation` hook; what holds is checked by the caller from outside.
 */
import type { EngineDeps } from '../../lib/engine/engine.ts';
import { BatonError, TransientError } from '../../lib/core/errors.ts';
import type { Plan } from '../../lib/core/plan.ts';
import type { AnyRunbook } from '../../lib/core/runbook.ts';

type Hook = NonNullable<EngineDeps['afterMutation']>;
type At = Parameters<Hook>[0];

/** Steps of the plan marked idempotent that will run and change something. */
export function idempotentSteps(runbook: AnyRunbook, plan: Plan): string[] {
  return plan.steps
    .filter((p) => !p.skipped && p.hosts.some((h) => h.mutations.length > 0))
    .filter((p) => runbook.steps.find((s) => s.id === p.id)?.idempotent)
    .map((p) => p.id);
}

export interface Drops {
  afterMutation: Hook;
  /** `step on host` for every connection dropped, in order. */
  dropped: string[];
}

/**
 * Drop the connection of each listed step's first attempt on each host, after
 * its first or its last planned mutation, as if the link died right then.
 */
export function dropConnections(plan: Plan, steps: string[], when: 'first' | 'last'): Drops {
  const done = new Set<string>();
  const dropped: string[] = [];
  const afterMutation = (at: At): void => {
    if (!steps.includes(at.step)) return;
    const key = `${at.step} on ${at.host}`;
    if (done.has(key)) return;
    const planned = plan.steps.find((s) => s.id === at.step)?.hosts.find((h) => h.host === at.host)
      ?.mutations.length;
    if (!planned) return;
    if (at.index !== (when === 'first' ? 1 : planned)) return;
    done.add(key);
    dropped.push(key);
    throw new TransientError(
      at.host,
      `the connection dropped after mutation ${at.index} (injected)`,
      true,
    );
  };
  return { afterMutation, dropped };
}

/** Fail a step for good at its first mutation (on one host), so the run rolls back through every step before it. */
export function failAt(step: string, host?: string): Hook {
  return (at) => {
    if (at.step === step && at.index === 1 && (!host || at.host === host))
      throw new BatonError('STEP_FAILED', `step ${step} refused on ${at.host} (injected)`);
  };
}

export function allOf(...hooks: Hook[]): Hook {
  return async (at) => {
    for (const h of hooks) await h(at);
  };
}
