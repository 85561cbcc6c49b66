/**
 * baton's infrastructure: the hosts runbooks act on and the DNS they cut.
 * `pulumi stack output inventory --json` is what `baton --stack NAME` loads.
 */
import * as pulumi from '@pulumi/pulumi';
import type { Inventory } from '../lib/core/inventory.ts';
import { nodeResolverFor } from './active-host.ts';
import { readStackConfig } from './config.ts';
import type { PolicyFacts } from './policy.ts';
import { deploy } from './program.ts';

const deployment = deploy(pulumi.getStack(), readStackConfig(), { resolverFor: nodeResolverFor });

export const inventory: pulumi.Output<Inventory> = deployment.inventory;
/** Read by the policy pack's stack policies (policy-pack/), with the Inventory. */
export const policyFacts: PolicyFacts = deployment.policyFacts;
