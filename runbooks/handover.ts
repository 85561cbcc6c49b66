/**
 * Planned handover of IRC services (Atheme) from the primary to the standby,
 * before maintenance: incident 003 done right. Everything is checked before the
 * first change; the snapshot must load while the primary can still carry on.
 */
import { join } from 'node:path';
import { batonFile, batonHome, defineRunbook } from '../lib/index.ts';
import {
  staticArtifact,
  type ArtifactFacts,
  athemeTransferStep,
  binaryStep,
  clockStep,
  cutDnsStep,
  databaseStep,
  fenceStep,
  freezeStep,
  gatherServicesFacts,
  installStep,
  leaseStep,
  linkStep,
  lowerTtlStep,
  proveStep,
  recordActiveHostStep,
  saveStep,
  servicesAccess,
  servicesParams,
  servicesRoomStep,
  snapshotStep,
  startStandbyStep,
  stopPrimaryStep,
  trustStep,
  ttlStep,
  unfreezeStep,
  writableStep,
  windowStep,
  type ServicesFacts,
  type ServicesParams,
} from '../lib/steps/index.ts';

type Facts = ServicesFacts & { probe: ArtifactFacts };

const s = servicesAccess;

/**
 * irc-health, built statically, shipped to every ircd and run there in an
 * empty root against the ircd's own port: services must answer on each.
 */
export const healthProbe = staticArtifact<ServicesParams, Facts>({
  name: 'irc-health',
  recipe: {
    kind: 'compile',
    sources: [batonFile('tools', 'irc-health', 'irc-health.c')],
    toolchains: ['musl-gcc', 'gcc'],
    cflags: ['-std=c99', '-O2', '-Wall', '-s'],
  },
  buildRoot: join(batonHome(), 'builds'),
  targets: { role: 'ircd' },
  installPath: '/var/lib/baton/bin/irc-health',
  prove: {
    args: ({ params }) => ['-t', '10', '127.0.0.1', String(params.ircPort)],
    expect: { exitCodes: [0], output: '^ok: ' },
  },
  facts: (f) => f.probe,
});

export default defineRunbook({
  name: 'handover',
  summary:
    'Move IRC services from the primary to the standby before maintenance, checked, fenced and proven.',
  safeState: 'unchanged: services run on the primary, writable, and DNS names it',
  params: servicesParams,
  facts: async (ctx): Promise<Facts> => ({
    ...(await gatherServicesFacts(ctx, { kind: 'handover', toRole: 'standby' })),
    probe: await healthProbe.gather(ctx),
  }),
  steps: [
    windowStep(),
    databaseStep(),
    binaryStep(),
    trustStep('handover'),
    ttlStep(s),
    servicesRoomStep(),
    clockStep(s.move),
    lowerTtlStep(s),
    freezeStep(),
    saveStep(),
    snapshotStep(),
    stopPrimaryStep(),
    athemeTransferStep('snapshot'),
    installStep(),
    leaseStep(s),
    fenceStep(s.move),
    startStandbyStep(),
    linkStep(),
    // Right after the link: Atheme takes writes even read-only and drops them when it stops.
    writableStep(),
    proveStep(),
    ...healthProbe.steps,
    cutDnsStep(s),
    recordActiveHostStep(),
    unfreezeStep(),
  ],
});
