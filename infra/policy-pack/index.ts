/**
 * The CrossGuard entry point: `pulumi preview --policy-pack infra/policy-pack`
 * starts this, and constructing the PolicyPack serves the policies to the
 * engine. The policies themselves are in policies.ts, which the tests import
 * without starting a server.
 */
import { PolicyPack } from '@pulumi/policy';
import { packPolicies } from './policies.ts';

new PolicyPack('baton', {
  description: "baton's infra policies: ../policy.ts, checked by the engine",
  enforcementLevel: 'mandatory',
  policies: packPolicies,
});
