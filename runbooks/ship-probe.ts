/**
 * Builds irc-health (tools/irc-health), a services health probe, statically;
 * ships it to every ircd and proves it runs there in an empty root.
 *
 * It is installed under /var/lib/baton/bin: a directory of baton's own on
 * every host, and on the testnet one each host has to itself (/var is a
 * per-host overlay there, while /usr, and so /usr/local/lib, is the machine's
 * and shared by every host).
 */
import { join } from 'node:path';
import { z } from 'zod';
import { batonFile, batonHome, defineRunbook, sh } from '../lib/index.ts';
import { staticArtifact, type ArtifactFacts, type ProofExpectation } from '../lib/steps/index.ts';

const params = z.object({
  toolchain: z
    .enum(['auto', 'musl-gcc', 'gcc'])
    .default('auto')
    .describe('static toolchain: musl-gcc, gcc, or the first that works (auto)'),
  installPath: z
    .string()
    .regex(/^\/[^\0]*[^/]$/, 'an absolute file path')
    .default('/var/lib/baton/bin/irc-health')
    .describe('where the probe is installed on each ircd'),
  port: z.number().int().min(1).max(65535).default(6667).describe('the ircds’ client port'),
  buildRoot: z
    .string()
    .min(1)
    .default(join(batonHome(), 'builds'))
    .describe('build directory on the controller'),
});

type Params = z.output<typeof params>;

interface Facts {
  artifact: ArtifactFacts;
  /** Per ircd: the address its client port listens on (as irc-health should dial it), or null when nothing listens. */
  listening: Record<string, string | null>;
}

/** The address to dial for a listener `ss` shows: wildcards become loopback. */
export function dialAddress(local: string): string {
  const m = /^\[?(.*?)\]?:\d+$/.exec(local);
  const address = (m?.[1] ?? local).replace(/%.*$/, '');
  if (address === '*' || address === '0.0.0.0') return '127.0.0.1';
  if (address === '::') return '::1';
  return address;
}

const probe = staticArtifact<Params, Facts>({
  name: 'irc-health',
  recipe: (p) => ({
    kind: 'compile',
    sources: [batonFile('tools', 'irc-health', 'irc-health.c')],
    toolchains: p.toolchain === 'auto' ? ['musl-gcc', 'gcc'] : [p.toolchain],
    cflags: ['-std=c99', '-O2', '-Wall', '-s'],
  }),
  buildRoot: (p) => p.buildRoot,
  targets: { role: 'ircd' },
  installPath: (_host, p) => p.installPath,
  prove: {
    args: ({ facts, host, params: p }) => [
      '-t',
      '10',
      facts.listening[host.name] ?? '127.0.0.1',
      String(p.port),
    ],
    // Listening: it must get an answer about NickServ (services there or not).
    // Nothing listening: it must say so itself. Either way the binary ran.
    expect: ({ facts, host }): ProofExpectation =>
      facts.listening[host.name]
        ? { exitCodes: [0, 2], output: '^(ok|no-services): ' }
        : { exitCodes: [3], output: '^(unreachable|timeout): ' },
  },
  facts: (f) => f.artifact,
});

export default defineRunbook({
  name: 'ship-probe',
  summary:
    'Build the irc-health probe statically, ship it to every ircd, and prove it runs there in an empty root.',
  params,
  safeState: 'unchanged: every ircd has the irc-health it had before',

  async facts(ctx) {
    const artifact = await probe.gather(ctx);
    const listening: Record<string, string | null> = {};
    for (const host of ctx.hosts('ircd')) {
      const ss = await ctx.probe(host)(sh`ss -Hltn ${`sport = :${ctx.params.port}`}`, {
        allowFail: true,
      });
      const local = ss.stdout
        .trim()
        .split('\n')
        .map((line) => line.trim().split(/\s+/)[3])
        .filter((a): a is string => Boolean(a));
      const chosen = local.find((a) => !a.startsWith('[')) ?? local[0];
      listening[host.name] = chosen ? dialAddress(chosen) : null;
    }
    return { artifact, listening };
  },

  steps: probe.steps,
});
