/**
 * Emergency failover: the primary is gone. Services come up on the standby
 * from the newest copy that verifies, whose age is shown before anyone says
 * yes; the lease fences the old primary so it cannot start a second instance
 * when it returns.
 */
import { defineRunbook } from '../lib/index.ts';
import {
  binaryStep,
  clockStep,
  copyStep,
  cutDnsStep,
  fenceStep,
  gatherFailoverFacts,
  installStep,
  leaseStep,
  linkStep,
  networkDropsPrimaryStep,
  primaryDownStep,
  proveStep,
  recordActiveHostStep,
  roomStep,
  servicesParams,
  startStandbyStep,
  transferStep,
  trustStep,
  ttlNoticeStep,
  unfreezeStep,
  writableStep,
} from '../lib/steps/index.ts';

export default defineRunbook({
  name: 'failover',
  summary:
    'Bring IRC services up on the standby from the newest verified copy when the primary is gone.',
  safeState: 'unchanged: services down, the primary unreachable, DNS naming it',
  params: servicesParams,
  facts: gatherFailoverFacts,
  steps: [
    primaryDownStep(),
    copyStep(),
    binaryStep(),
    trustStep('failover'),
    ttlNoticeStep(),
    roomStep(),
    clockStep(),
    leaseStep('failover'),
    fenceStep(),
    transferStep('copy'),
    installStep(),
    networkDropsPrimaryStep(),
    startStandbyStep(),
    linkStep(),
    // Right after the link: Atheme takes writes even read-only and drops them when it stops.
    writableStep(),
    proveStep(),
    cutDnsStep(),
    recordActiveHostStep(),
    unfreezeStep(),
  ],
});
