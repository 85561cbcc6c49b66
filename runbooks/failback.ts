/**
 * After maintenance: the same handover in the other direction, from the
 * standby back to the primary, carrying every change made meanwhile.
 */
import { defineRunbook } from '../lib/index.ts';
import handover, { healthProbe } from './handover.ts';
import { gatherServicesFacts } from '../lib/steps/index.ts';

export default defineRunbook({
  ...handover,
  name: 'failback',
  summary: 'Move IRC services back from the standby to the primary after maintenance.',
  safeState: 'unchanged: services run on the standby, writable, and DNS names it',
  facts: async (ctx) => ({
    ...(await gatherServicesFacts(ctx, { kind: 'handover', toRole: 'primary' })),
    probe: await healthProbe.gather(ctx),
  }),
});
