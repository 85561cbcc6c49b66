/**
 * The `service` pack: the systemd unit that serves the data, as a move
 * treats it. The old primary is fenced by disabling its unit, so a reboot
 * does not start a second instance (the lease check refuses any start too).
 */
import { z } from 'zod';
import { condition, type StepDef } from '../core/runbook.ts';
import { sh } from '../core/shell.ts';
import type { MoveOf } from './host.ts';
import { unitName } from './params.ts';

export const serviceParams = z.object({
  unit: unitName.default('atheme').describe('the services unit'),
});

export type ServiceParams = z.output<typeof serviceParams>;

export function fenceStep<P extends ServiceParams, F>(move: MoveOf<F>): StepDef<P, F> {
  return {
    id: 'fence',
    title:
      'Fence the old primary: it no longer starts services at boot, and the lease refuses any start',
    targets: (ctx) => [move(ctx.facts).from],
    when: ({ facts }) => {
      const m = move(facts);
      return (
        m.fromReachable ||
        `${m.from} is unreachable: the lease fences it (its watchdog stops its services once its lease is lost, and its lease check refuses to start them while the lease names ${m.to})`
      );
    },
    state: 'the source host fenced',
    idempotent: true,
    async apply({ $, params }) {
      await $`systemctl disable ${params.unit}`;
    },
    async verify({ probe, params, host: h }) {
      const state = (
        await probe(sh`systemctl is-enabled ${params.unit}`, { allowFail: true })
      ).stdout.trim();
      return condition(
        `${params.unit} on ${h.name} does not start at boot`,
        state === 'disabled' || state === 'masked',
        {
          expected: 'disabled',
          found: state,
        },
      );
    },
    async undo({ $, params }) {
      await $`systemctl enable ${params.unit}`;
    },
  };
}
