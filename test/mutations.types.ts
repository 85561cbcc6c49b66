/**
 * Checked by `tsc --noEmit`, which `npm test` runs first: in `apply` and
 * `undo`, a mutation yields nothing a step could branch on, because in a plan
 * it is recorded, not run. Each expected error fails the type check the day
 * `$` or `pipe` hands a result back.
 */
import { z } from 'zod';
import { defineRunbook } from '../lib/core/runbook.ts';
import { sh } from '../lib/core/shell.ts';

export default defineRunbook({
  name: 'branch-on-a-mutation',
  summary: 'Tries to read what its mutations did.',
  params: z.object({}),
  steps: [
    {
      id: 'read-back',
      title: 'Read back what a mutation printed',
      targets: 'controller',
      async apply({ $, pipe, act }) {
        const written = await $`date > /tmp/stamp && cat /tmp/stamp`;
        // @ts-expect-error a mutation has no stdout
        if (written.stdout) await $`echo there was output`;
        // @ts-expect-error nor an exit code, even when it may fail
        if ((await $(sh`false`, { allowFail: true })).exitCode !== 0) await $`echo failed`;
        // @ts-expect-error nor does a pipe say what it moved
        if ((await pipe({ host: 'a', command: sh`cat x` }, sh`cat > y`)).bytes > 0) return;
        // @ts-expect-error nor does its output reach the step through a callback
        await $(sh`date`, { onStdout: (chunk: Buffer) => void chunk });
        // @ts-expect-error an action's data is plain JSON, compared as recorded
        await act('stamp', { at: new Date() }, async () => undefined);
      },
    },
  ],
});
