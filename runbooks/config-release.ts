/**
 * Ships a configuration file to every web host: stage it, switch the live
 * link atomically, then prune old releases. It runs on the built-in `demo`
 * stack (three hosts that are directories on this machine) and on any stack
 * whose hosts have the role `web`.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import {
  alreadyDone,
  batonFile,
  batonHome,
  condition,
  defineRunbook,
  secret,
  sh,
} from '../lib/index.ts';

const PLACEHOLDER = '@CREDENTIAL@';

function render(source: string, credential: string | undefined): string {
  const text = readFileSync(source, 'utf8');
  return credential === undefined ? text : text.replaceAll(PLACEHOLDER, credential);
}

export default defineRunbook({
  name: 'config-release',
  summary:
    'Stage a configuration file on every web host, switch it live atomically, prune old releases.',
  defaultStack: 'demo',
  safeState: 'unchanged: the previous release is live on every host',
  params: z.object({
    source: z
      .string()
      .min(1)
      .default(batonFile('runbooks', 'config-release', 'app.conf'))
      .describe('the file to ship'),
    root: z
      .string()
      .min(1)
      // Decided when the run starts, so that it follows BATON_HOME and the project root.
      .default(() => join(batonHome(), 'demo'))
      .describe('directory holding one directory per host'),
    keep: z.number().int().min(1).max(20).default(3).describe('releases to keep on each host'),
    credential: secret(z.string().min(8, 'at least 8 characters'))
      .optional()
      .describe(`replaces ${PLACEHOLDER} in the file`),
  }),

  async facts({ params, hosts, probe }) {
    const content = render(params.source, params.credential);
    const release = createHash('sha256').update(content).digest('hex').slice(0, 16);
    const perHost: Record<string, { dir: string; live: string | null; releases: string[] }> = {};
    for (const host of hosts('web')) {
      const dir = resolve(params.root, host.name);
      const live = await probe(host)`readlink ${join(dir, 'current.conf')}`.then(
        (r) => r.stdout.trim() || null,
        () => null,
      );
      const listing = await probe(host)`ls -1t ${join(dir, 'releases')}`.then(
        (r) => r.stdout.split('\n').filter((f) => f.endsWith('.conf')),
        () => [] as string[],
      );
      perHost[host.name] = { dir, live, releases: listing };
    }
    return { release, bytes: Buffer.byteLength(content), perHost };
  },

  steps: [
    {
      id: 'stage',
      title: 'Stage the new release beside the live one',
      targets: { role: 'web' },
      concurrency: 2,
      idempotent: true,
      state: 'new release staged, previous release still live',
      async check({ host, facts, params, probe }) {
        const { dir, live } = facts.perHost[host.name]!;
        if (live === `releases/${facts.release}.conf`)
          return alreadyDone('release already live', `${live} is live in ${dir}`);
        const free = await probe`df -Pk ${resolve(params.root)} 2>/dev/null || df -Pk .`;
        const kib = Number(free.stdout.trim().split('\n').at(-1)?.split(/\s+/)[3] ?? 0);
        return [
          condition('room for the release', kib * 1024 >= 2 * facts.bytes, {
            expected: `at least ${2 * facts.bytes} bytes free under ${params.root}`,
            found: `${kib * 1024} bytes free`,
            remedy: `Free space on ${host.name}.`,
          }),
          condition(
            'placeholder filled',
            params.credential !== undefined ||
              !readFileSync(params.source, 'utf8').includes(PLACEHOLDER),
            {
              expected: `a credential for ${PLACEHOLDER}`,
              found: 'no credential parameter',
              remedy: 'Pass --param credential=@env:VAR.',
            },
          ),
        ];
      },
      async apply({ $, host, facts, params }) {
        const { dir } = facts.perHost[host.name]!;
        const file = join(dir, 'releases', `${facts.release}.conf`);
        await $`mkdir -p ${join(dir, 'releases')}`;
        await $(sh`umask 077 && cat > ${file}.tmp && mv -f ${file}.tmp ${file}`, {
          input: render(params.source, params.credential),
        });
      },
      async verify({ probe, host, facts }) {
        const { dir } = facts.perHost[host.name]!;
        const sum = await probe`sha256sum ${join(dir, 'releases', `${facts.release}.conf`)}`;
        const found = sum.stdout.slice(0, 16);
        return condition('staged file is intact', found === facts.release, {
          expected: `sha256 ${facts.release}…`,
          found: `sha256 ${found}…`,
        });
      },
      async undo({ $, host, facts }) {
        const { dir } = facts.perHost[host.name]!;
        await $`rm -f ${join(dir, 'releases', `${facts.release}.conf`)}`;
      },
    },
    {
      id: 'switch',
      title: 'Point current.conf at the new release (atomic rename)',
      targets: { role: 'web' },
      concurrency: 2,
      idempotent: true,
      state: 'new release live on every host, old releases kept',
      async check({ host, facts }) {
        const { dir, live } = facts.perHost[host.name]!;
        if (live === `releases/${facts.release}.conf`)
          return alreadyDone('release already live', `${dir}/current.conf points at ${live}`);
      },
      async apply({ $, host, facts }) {
        const { dir } = facts.perHost[host.name]!;
        const link = join(dir, 'current.conf');
        await $`ln -sfn ${`releases/${facts.release}.conf`} ${`${link}.new`} && mv -Tf ${`${link}.new`} ${link}`;
      },
      async verify({ probe, host, facts }) {
        const { dir } = facts.perHost[host.name]!;
        const live = await probe`readlink ${join(dir, 'current.conf')}`;
        const sum = await probe`sha256sum ${join(dir, 'current.conf')}`;
        return [
          condition(
            'current.conf points at the release',
            live.stdout.trim() === `releases/${facts.release}.conf`,
            {
              expected: `releases/${facts.release}.conf`,
              found: live.stdout.trim(),
            },
          ),
          condition('live content is the release', sum.stdout.startsWith(facts.release), {
            expected: facts.release,
            found: sum.stdout.slice(0, 16),
          }),
        ];
      },
      async undo({ $, host, facts }) {
        const { dir, live } = facts.perHost[host.name]!;
        const link = join(dir, 'current.conf');
        if (live) await $`ln -sfn ${live} ${`${link}.new`} && mv -Tf ${`${link}.new`} ${link}`;
        else await $`rm -f ${link}`;
      },
    },
    {
      id: 'prune',
      title: 'Delete releases beyond the newest ones kept',
      targets: { role: 'web' },
      destructive: true,
      state: 'new release live; old releases pruned',
      recovery: 'restore the pruned release files from a backup if one is needed again',
      when: ({ facts, params }) =>
        Object.values(facts.perHost).some((h) => h.releases.length + 1 > params.keep) ||
        `no host has more than ${params.keep} releases`,
      async apply({ $, host, facts, params }) {
        const { dir, releases, live } = facts.perHost[host.name]!;
        const old = releases
          .filter((f) => f !== `${facts.release}.conf` && `releases/${f}` !== live)
          .slice(Math.max(0, params.keep - 2));
        for (const f of old) await $`rm -f ${join(dir, 'releases', f)}`;
      },
    },
  ],
});
