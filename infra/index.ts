/**
 * baton's infrastructure: the hosts runbooks act on and the DNS they cut.
 * `pulumi stack output inventory --json` is what `baton --stack NAME` loads.
 */
import * as pulumi from '@pulumi/pulumi';
import type { Inventory } from '../lib/inventory.ts';
import { readStackConfig } from './config.ts';
import { deploy } from './program.ts';

const deployment = deploy(pulumi.getStack(), readStackConfig());

export const inventory: pulumi.Output<Inventory> = deployment.inventory;
