/**
 * The DNS records runbooks cut, with low TTLs. A record whose target is
 * `active` points at the active host: the holder of the services lease, read
 * from the zone's authoritative servers when the program runs
 * (`active-host.ts`), so the next `pulumi up` declares what DNS already says
 * instead of undoing a cutover (infra/README.md, "DNS cutover and pulumi up").
 */
import * as pulumi from '@pulumi/pulumi';
import * as linode from '@pulumi/linode';
import * as azureDns from '@pulumi/azure-native/dns/index.js';
import type { Inventory } from '../lib/core/inventory.ts';
import type { CloudProvider, RecordConfig } from './config.ts';
import { keepData } from './service-host.ts';

export type InventoryDns = NonNullable<Inventory['dns']>;
export type InventoryDnsRecord = InventoryDns['records'][number];

/** Linode's authoritative name servers for every zone it hosts. */
export const linodeNameServers = [1, 2, 3, 4, 5].map((n) => `ns${n}.linode.com`);

/** TTLs Linode's API stores as given; any other value is rounded to one of these. */
export const linodeValidTtls = [
  30, 120, 300, 3600, 7200, 14400, 28800, 57600, 86400, 172800, 345600, 604800, 1209600, 2419200,
] as const;

export type InventoryDnsServer = InventoryDns['servers'][number];

/** Finds the active host on the zone's authoritative servers; called only when a record follows it. */
export type ActiveHostLookup = (servers: InventoryDnsServer[]) => Promise<string>;

export interface ServiceDnsArgs {
  /** The zone, e.g. `example.net`. */
  zone: pulumi.Input<string>;
  /** `linode` (default) or `azure`. */
  provider: pulumi.Input<CloudProvider>;
  /** Create the zone here instead of looking up an existing one. */
  createZone: pulumi.Input<boolean>;
  /** SOA e-mail for a Linode zone this stack creates. */
  soaEmail?: pulumi.Input<string>;
  /** Resource group of the Azure DNS zone. */
  resourceGroup?: pulumi.Input<string>;
  /** Servers to verify answers on; default: the provider's name servers. */
  servers?: pulumi.Input<pulumi.Input<InventoryDnsServer>[]>;
  /** The records: name relative to the zone, TTL, and `active` or a host name as target. */
  records: pulumi.Input<pulumi.Input<RecordConfig>[]>;
  /** Every host's public address, by host name. */
  hostAddresses: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /**
   * The host `active` records point to, or how to find it given the zone's
   * authoritative servers (the services lease, `active-host.ts`).
   */
  activeHost?: pulumi.Input<string> | ActiveHostLookup;
}

export function recordFqdn(name: string, zone: string): string {
  return name === '@' || name === '' ? zone : `${name}.${zone}`;
}

/** Resolve a record's target host: `active` follows the active host. */
export function recordTargetHost(record: RecordConfig, activeHost: string | undefined): string {
  if (record.target !== 'active') return record.target;
  if (!activeHost) {
    throw new pulumi.RunError(
      `record ${record.name} follows the active host, but ServiceDns was given no activeHost`,
    );
  }
  return activeHost;
}

export class ServiceDns extends pulumi.ComponentResource {
  /** The zone, its servers and records as the Inventory lists them. */
  public readonly inventoryDns: pulumi.Output<InventoryDns>;

  constructor(name: string, args: ServiceDnsArgs, opts?: pulumi.ComponentResourceOptions) {
    super('baton:infra:ServiceDns', name, {}, opts);
    if (args.provider !== 'linode' && args.provider !== 'azure') {
      throw new pulumi.RunError('ServiceDns provider must be a plain `linode` or `azure`');
    }
    if (typeof args.createZone !== 'boolean') {
      throw new pulumi.RunError('ServiceDns createZone must be a plain boolean');
    }
    if (!Array.isArray(args.records) || args.records.some((r) => pulumi.Output.isInstance(r))) {
      throw new pulumi.RunError('ServiceDns records must be a plain list (one resource each)');
    }
    const records = args.records as RecordConfig[];
    const parent = { parent: this };
    const zone = pulumi.output(args.zone);

    // The zone first: its servers are where the active host is looked up,
    // and the records need the host.
    let defaultServers: pulumi.Output<string[]>;
    let declareRecord: (
      record: RecordConfig,
      resourceName: string,
      target: pulumi.Output<string>,
    ) => void;
    if (args.provider === 'linode') {
      const domainId: pulumi.Output<number> = args.createZone
        ? new linode.Domain(
            `${name}-zone`,
            { domain: zone, type: 'master', soaEmail: args.soaEmail, ttlSec: 300, tags: ['baton'] },
            { ...parent, ...keepData },
          ).id.apply(Number)
        : linode.getDomainOutput({ domain: zone }, parent).apply((d) => {
            if (d.id === undefined) throw new pulumi.RunError(`Linode has no zone ${d.domain}`);
            return d.id;
          });
      defaultServers = pulumi.output(linodeNameServers);
      declareRecord = (record, resourceName, target) =>
        new linode.DomainRecord(
          resourceName,
          {
            domainId,
            name: record.name === '@' ? '' : record.name,
            recordType: record.type,
            target,
            ttlSec: record.ttl,
          },
          parent,
        );
    } else {
      if (!args.resourceGroup) {
        throw new pulumi.RunError('ServiceDns on Azure needs the zone resourceGroup');
      }
      const resourceGroupName = args.resourceGroup;
      const nameServers = args.createZone
        ? new azureDns.Zone(
            `${name}-zone`,
            { resourceGroupName, zoneName: zone, location: 'global', zoneType: 'Public' },
            { ...parent, ...keepData },
          ).nameServers
        : azureDns
            .getZoneOutput({ resourceGroupName, zoneName: zone }, parent)
            .apply((z) => z.nameServers);
      defaultServers = nameServers.apply((ns) => ns.map((s) => s.replace(/\.$/, '')));
      declareRecord = (record, resourceName, target) =>
        new azureDns.RecordSet(
          resourceName,
          {
            resourceGroupName,
            zoneName: zone,
            relativeRecordSetName: record.name,
            recordType: record.type,
            ttl: record.ttl,
            aRecords: [{ ipv4Address: target }],
          },
          parent,
        );
    }
    const servers = pulumi
      .all([defaultServers, args.servers])
      .apply(
        ([nameServers, configured]) =>
          configured ?? nameServers.map((s) => ({ name: s, address: s, port: 53 })),
      );

    const { activeHost } = args;
    const followed: pulumi.Input<string | undefined> =
      typeof activeHost !== 'function'
        ? activeHost
        : records.some((r) => r.target === 'active')
          ? servers.apply((s) => activeHost(s))
          : undefined;
    const targets = records.map((record) =>
      pulumi.all([args.hostAddresses, followed]).apply(([addresses, active]) => {
        const host = recordTargetHost(record, active);
        const address = addresses[host];
        if (address === undefined) {
          throw new pulumi.RunError(`record ${record.name} targets unknown host ${host}`);
        }
        return address;
      }),
    );
    records.forEach((record, i) =>
      declareRecord(
        record,
        `${name}-${record.name === '@' ? 'apex' : record.name}-${record.type.toLowerCase()}`,
        targets[i]!,
      ),
    );

    this.inventoryDns = pulumi
      .all([zone, args.provider, pulumi.all(targets), servers])
      .apply(([z, provider, values, inventoryServers]) => ({
        zone: z,
        provider,
        servers: inventoryServers,
        records: records.map((r, i): InventoryDnsRecord => ({
          name: recordFqdn(r.name, z),
          type: r.type,
          ttl: r.ttl,
          value: values[i]!,
        })),
      }));
    this.registerOutputs({ inventoryDns: this.inventoryDns });
  }
}
