/**
 * Planned handover of IRC services (Atheme) from the primary to the standby,
 * before maintenance: incident 003 done right. Everything is checked before the
 * first change; the snapshot must load while the primary can still carry on.
 */
import { defineRunbook } from '../lib/runbook.ts';
import {
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
  roomStep,
  saveStep,
  servicesParams,
  snapshotStep,
  startStandbyStep,
  stopPrimaryStep,
  transferStep,
  trustStep,
  ttlStep,
  unfreezeStep,
  windowStep,
} from '../lib/steps/services.ts';

export default defineRunbook({
  name: 'handover',
  summary:
    'Move IRC services from the primary to the standby before maintenance, checked, fenced and proven.',
  safeState: 'unchanged: services run on the primary, writable, and DNS names it',
  params: servicesParams,
  facts: (ctx) => gatherServicesFacts(ctx, { kind: 'handover', toRole: 'standby' }),
  steps: [
    windowStep(),
    databaseStep(),
    binaryStep(),
    trustStep('handover'),
    ttlStep(),
    roomStep(),
    clockStep(),
    lowerTtlStep(),
    freezeStep(),
    saveStep(),
    snapshotStep(),
    stopPrimaryStep(),
    transferStep('snapshot'),
    installStep(),
    leaseStep(),
    fenceStep(),
    linkStep(),
    startStandbyStep(),
    proveStep(),
    cutDnsStep(),
    unfreezeStep(),
  ],
});
