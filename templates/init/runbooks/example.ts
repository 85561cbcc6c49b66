/**
 * An example runbook: write a message of the day on every web host, and put
 * the old one back if the run has to roll back. It runs on baton's built-in
 * `demo` stack, whose hosts (alpha, beta, gamma) are directories on this
 * machine:
 *
 *   npx baton plan example --stack demo
 *   npx baton run example --stack demo --yes
 *
 * Copy it for your own procedures; baton's README ("Writing a runbook") says
 * what each part does.
 */
import { join } from 'node:path';
import { z } from 'zod';
import { alreadyDone, batonHome, condition, defineRunbook } from 'baton-runbooks';

export default defineRunbook({
  name: 'example',
  summary: 'Write a message of the day on every web host.',
  defaultStack: 'demo',
  params: z.object({
    text: z.string().min(1).default('Maintenance tonight at 22:00 UTC.').describe('the message'),
    // The demo hosts are directories under the baton home; a real host has its own /etc/motd.
    root: z
      .string()
      .min(1)
      .default(() => join(batonHome(), 'demo'))
      .describe('the directory holding one directory per demo host'),
  }),

  // Facts are gathered before any step changes anything.
  async facts({ hosts, probe, params }) {
    const old: Record<string, string | null> = {};
    for (const host of hosts('web')) {
      old[host.name] = await probe(host)`cat ${join(params.root, host.name, 'motd')}`.then(
        (r) => r.stdout,
        () => null,
      );
    }
    return { old };
  },

  steps: [
    {
      id: 'write-motd',
      title: 'Write the message of the day',
      targets: { role: 'web' },
      idempotent: true,
      async check({ host, facts, params }) {
        // A host already as the step would leave it is left alone: a second run changes nothing.
        if (facts.old[host.name] === `${params.text}\n`)
          return alreadyDone('motd already says it', `the motd of ${host.name} is the message`);
      },
      async apply({ $, host, params }) {
        const dir = join(params.root, host.name);
        await $`mkdir -p ${dir} && printf '%s\n' ${params.text} > ${join(dir, 'motd')}`;
      },
      async verify({ probe, host, params }) {
        const r = await probe`cat ${join(params.root, host.name, 'motd')}`;
        return condition('motd written', r.stdout === `${params.text}\n`, {
          expected: params.text,
          found: r.stdout,
        });
      },
      async undo({ $, host, facts, params }) {
        const file = join(params.root, host.name, 'motd');
        const old = facts.old[host.name];
        if (typeof old !== 'string') await $`rm -f ${file}`;
        else await $`printf '%s' ${old} > ${file}`;
      },
    },
  ],
});
