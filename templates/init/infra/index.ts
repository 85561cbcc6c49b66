/**
 * The hosts baton's runbooks act on. `baton --stack NAME` runs `pulumi stack
 * output --json --show-secrets=false --stack NAME` in this directory and reads
 * the `inventory` output: plain values in baton's Inventory shape, no secrets.
 *
 * This program creates nothing yet: it exports the hosts written in the
 * stack's config. Put them in Pulumi.<stack>.yaml, for example
 *
 *   config:
 *     baton:hosts:
 *       - name: web1
 *         roles: [web]
 *         address: 203.0.113.10
 *         ssh:
 *           user: root
 *           hostKeys: ['SHA256:…'] # ssh-keyscan -t ed25519 ADDRESS | ssh-keygen -lf -
 *
 * To fill in: declare the hosts as resources instead (@pulumi/linode,
 * @pulumi/azure-native), generate each host's ssh host key with @pulumi/tls
 * and pin its fingerprint, and build the list below from their outputs; add
 * `dns` (zone, provider, servers, records) for runbooks that cut DNS.
 */
import * as pulumi from '@pulumi/pulumi';
import type { Host, Inventory } from 'baton-runbooks';

const config = new pulumi.Config('baton');

export const inventory: Inventory = {
  stack: pulumi.getStack(),
  hosts: config.requireObject<Host[]>('hosts'),
};
