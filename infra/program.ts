/** The whole stack: one ServiceHost per configured host, the DNS records, and the Inventory. */
import * as pulumi from '@pulumi/pulumi';
import type { Inventory } from '../lib/core/inventory.ts';
import {
  chooseActiveHost,
  pulumiLog,
  type ActiveHostLog,
  type ResolverFor,
} from './active-host.ts';
import type { StackConfig } from './config.ts';
import { policyFacts, type PolicyFacts } from './policy.ts';
import { createServiceHost, type ServiceHost } from './service-host.ts';
import { ServiceDns } from './service-dns.ts';

export interface Deployment {
  hosts: ServiceHost[];
  dns: ServiceDns | undefined;
  /** The plain, typed Inventory that `baton --stack NAME` loads. */
  inventory: pulumi.Output<Inventory>;
  /** What the policy pack needs of the config (policy-pack/), exported beside the Inventory. */
  policyFacts: PolicyFacts;
}

export interface DeployDeps {
  /**
   * Asks one authoritative server for the services lease. Required, with no
   * default here, so that no test can query real DNS by leaving it out;
   * index.ts passes `nodeResolverFor`.
   */
  resolverFor: ResolverFor;
  /** Where the lease decision is logged; default the engine's log. */
  log?: ActiveHostLog;
}

export function deploy(stack: string, config: StackConfig, deps: DeployDeps): Deployment {
  const hosts = config.hosts.map((h) =>
    createServiceHost(h.provider, h.name, {
      region: h.region,
      size: h.size,
      ...(h.image ? { image: h.image } : {}),
      roles: h.roles,
      sshUser: config.sshUser,
      sshPort: config.sshPort,
      authorizedKeys: config.sshAuthorizedKeys,
      sshSourceCidrs: config.operatorCidrs,
      servicePorts: h.servicePorts,
      backups: h.backups,
    }),
  );
  const dnsConfig = config.dns;
  const dns = dnsConfig
    ? new ServiceDns('dns', {
        zone: dnsConfig.zone,
        provider: dnsConfig.provider,
        createZone: dnsConfig.createZone,
        ...(dnsConfig.soaEmail ? { soaEmail: dnsConfig.soaEmail } : {}),
        ...(dnsConfig.resourceGroup ? { resourceGroup: dnsConfig.resourceGroup } : {}),
        ...(dnsConfig.servers ? { servers: dnsConfig.servers } : {}),
        records: dnsConfig.records,
        hostAddresses: Object.fromEntries(hosts.map((h) => [h.hostName, h.address])),
        activeHost: async (servers) => {
          const choice = await chooseActiveHost({
            zone: dnsConfig.zone,
            record: dnsConfig.lease,
            servers,
            hosts: config.hosts.map((h) => h.name),
            ...(config.activeHost ? { configured: config.activeHost } : {}),
            resolverFor: deps.resolverFor,
            log: deps.log ?? pulumiLog,
          });
          return choice.host;
        },
      })
    : undefined;
  const inventory = pulumi
    .all([pulumi.all(hosts.map((h) => h.inventoryHost)), dns ? dns.inventoryDns : undefined])
    .apply(([inventoryHosts, inventoryDns]): Inventory => ({
      stack,
      hosts: inventoryHosts,
      ...(inventoryDns ? { dns: inventoryDns } : {}),
    }));
  return { hosts, dns, inventory, policyFacts: policyFacts(config) };
}
