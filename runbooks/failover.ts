/**
 * Emergency failover: the primary is gone. Services come up on the standby
 * from the newest copy that verifies, whose age is shown before anyone says
 * yes; the lease fences the old primary so it cannot start a second instance
 * when it returns.
 */
import { defineRunbook } from '../lib/index.ts';
import {
  athemeTransferStep,
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
  servicesAccess,
  servicesParams,
  servicesRoomStep,
  startStandbyStep,
  trustStep,
  ttlNoticeStep,
  unfreezeStep,
  writableStep,
} from '../lib/steps/index.ts';

const s = servicesAccess;

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
    ttlNoticeStep(s),
    servicesRoomStep(),
    clockStep(s.move),
    leaseStep(s, 'failover'),
    fenceStep(s.move),
    athemeTransferStep('copy'),
    installStep(),
    networkDropsPrimaryStep(),
    startStandbyStep(),
    linkStep(),
    // Right after the link: Atheme takes writes even read-only and drops them when it stops.
    writableStep(),
    proveStep(),
    cutDnsStep(s),
    recordActiveHostStep(),
    unfreezeStep(),
  ],
});
