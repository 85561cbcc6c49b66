/**
 * The runbook the fan-out benchmark runs: one step on every host of the
 * inventory, all at once: a read-only check (so a plan touches every host),
 * then one line written to a file, and verified.
 */
import { z } from 'zod';
import { condition, defineRunbook } from '../lib/core/runbook.ts';
import { sh } from '../lib/core/shell.ts';

const params = z.object({
  /** Directory on each host; created when missing. */
  dir: z.string().min(1),
  /** The line to write (the round's marker). */
  value: z.string().min(1),
});

export default defineRunbook({
  name: 'bench-fanout',
  summary: 'Write one line to a file on every host and verify it (benchmark).',
  params,
  steps: [
    {
      id: 'write',
      title: 'Write the marker on every host',
      targets: (ctx) => ctx.inventory.hosts,
      // Every host at once, like the parallel ssh it is compared with.
      concurrency: 32,
      idempotent: true,
      async check({ probe }) {
        const r = await probe(sh`test -d /srv && test -w /srv`, { allowFail: true });
        return condition('/srv is a writable directory', r.exitCode === 0, {
          expected: 'a writable /srv',
          found: r.exitCode === 0 ? 'it' : 'none, or read-only',
        });
      },
      async apply({ $, params }) {
        await $`mkdir -p ${params.dir} && echo ${params.value} > ${`${params.dir}/fanout`}`;
      },
      async verify({ probe, params }) {
        const r = await probe(sh`cat ${`${params.dir}/fanout`}`, { allowFail: true });
        const found = r.stdout.trim();
        return condition('marker written', found === params.value, {
          expected: params.value,
          found: found || 'nothing',
        });
      },
      async undo({ $, params }) {
        await $`rm -f ${`${params.dir}/fanout`}`;
      },
    },
  ],
});
