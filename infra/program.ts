/** The whole stack: one ServiceHost per configured host, the DNS records, and the Inventory. */
import * as pulumi from '@pulumi/pulumi';
import type { Inventory } from '../lib/inventory.ts';
import type { StackConfig } from './config.ts';
import { createServiceHost, type ServiceHost } from './service-host.ts';
import { ServiceDns } from './service-dns.ts';

export interface Deployment {
  hosts: ServiceHost[];
  dns: ServiceDns | undefined;
  /** The plain, typed Inventory that `baton --stack NAME` loads. */
  inventory: pulumi.Output<Inventory>;
}

export function deploy(stack: string, config: StackConfig): Deployment {
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
  const dns = config.dns
    ? new ServiceDns('dns', {
        zone: config.dns.zone,
        provider: config.dns.provider,
        createZone: config.dns.createZone,
        ...(config.dns.soaEmail ? { soaEmail: config.dns.soaEmail } : {}),
        ...(config.dns.resourceGroup ? { resourceGroup: config.dns.resourceGroup } : {}),
        ...(config.dns.servers ? { servers: config.dns.servers } : {}),
        records: config.dns.records,
        hostAddresses: Object.fromEntries(hosts.map((h) => [h.hostName, h.address])),
        ...(config.activeHost ? { activeHost: config.activeHost } : {}),
      })
    : undefined;
  const inventory = pulumi
    .all([pulumi.all(hosts.map((h) => h.inventoryHost)), dns ? dns.inventoryDns : undefined])
    .apply(([inventoryHosts, inventoryDns]): Inventory => ({
      stack,
      hosts: inventoryHosts,
      ...(inventoryDns ? { dns: inventoryDns } : {}),
    }));
  return { hosts, dns, inventory };
}
