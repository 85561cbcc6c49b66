/**
 * Policies over what the program declares: the resources with their inputs
 * (as Pulumi registers them) and the Inventory it exports. They run in the
 * tests under Pulumi mocks, against both stacks' configs, and in the
 * CrossGuard pack (policy-pack/) under the engine; each returns the
 * violations it finds, so a failing check names the resource and the fix.
 */
import type { Inventory } from '../lib/core/inventory.ts';
import type { ServicePort, StackConfig } from './config.ts';
import { linodeValidTtls, recordFqdn } from './service-dns.ts';
import { worldCidrs } from './service-host.ts';

export interface PolicyResource {
  /** Pulumi type token, e.g. `linode:index/firewall:Firewall`. */
  type: string;
  name: string;
  /** The provider's id; empty where it is not known (the engine does not pass ids to a policy pack). */
  id: string;
  custom: boolean;
  inputs: Record<string, unknown>;
  urn?: string;
  /** Resource options; a policy pack sees `protect` but not `retainOnDelete`. */
  opts?: { protect: boolean; retainOnDelete?: boolean };
  /** URNs each input depends on: how the engine says which resource an input refers to. */
  propertyDependencies?: Record<string, string[]>;
}

/** What the policies need to know of the stack config; the program exports it as `policyFacts`. */
export interface PolicyFacts {
  /** Ports the services need open to the world (besides nothing else). */
  servicePorts: ServicePort[];
  sshPort: number;
  /** Fully qualified names of the records runbooks cut. */
  cutRecords: string[];
  maxCutTtl: number;
}

export interface PolicyContext extends PolicyFacts {
  inventory: Inventory;
  resources: PolicyResource[];
}

export interface Violation {
  policy: string;
  /** The host, resource or record at fault. */
  subject: string;
  message: string;
  /** The URN of the resource at fault, where one is and its URN is known. */
  urn?: string;
}

const urnOf = (r: PolicyResource | undefined): { urn?: string } => (r?.urn ? { urn: r.urn } : {});

export interface Policy {
  name: string;
  description: string;
  check(ctx: PolicyContext): Violation[];
}

/** A policy that judges each resource alone, so it can run before the resource is created. */
export interface ResourcePolicy extends Policy {
  checkResource(resource: PolicyResource): Violation[];
}

export const types = {
  linodeInstance: 'linode:index/instance:Instance',
  linodeFirewall: 'linode:index/firewall:Firewall',
  linodeRecord: 'linode:index/domainRecord:DomainRecord',
  linodeDomain: 'linode:index/domain:Domain',
  linodeVolume: 'linode:index/volume:Volume',
  azureNsg: 'azure-native:network:NetworkSecurityGroup',
  azureNic: 'azure-native:network:NetworkInterface',
  azureSubnet: 'azure-native:network:Subnet',
  azureVm: 'azure-native:compute:VirtualMachine',
  azureProtectedItem: 'azure-native:recoveryservices:ProtectedItem',
  azureVault: 'azure-native:recoveryservices:Vault',
  azureDisk: 'azure-native:compute:Disk',
  azureZone: 'azure-native:dns:Zone',
  azureResourceGroup: 'azure-native:resources:ResourceGroup',
  azureRecord: 'azure-native:dns:RecordSet',
} as const;

/**
 * Resources whose loss is data loss: machines and disks, the zone (its records
 * and the lease), backups. A host's resource group is here because deleting
 * it deletes the VM and disk inside, whatever Pulumi keeps.
 */
export const statefulTypes: ReadonlySet<string> = new Set([
  types.linodeInstance,
  types.linodeVolume,
  types.linodeDomain,
  types.azureVm,
  types.azureDisk,
  types.azureZone,
  types.azureVault,
  types.azureProtectedItem,
  types.azureResourceGroup,
]);

/**
 * Whether input `key` of `from` refers to `to`: by id where ids are known
 * (under mocks), otherwise by the dependency the engine recorded for it.
 */
function refersTo(from: PolicyResource, key: string, ids: unknown[], to: PolicyResource): boolean {
  if (to.id !== '' && ids.map(String).includes(to.id)) return true;
  return to.urn !== undefined && (from.propertyDependencies?.[key] ?? []).includes(to.urn);
}

/** A range of ports opened to the world by one rule. */
interface WorldOpening {
  subject: string;
  resource: PolicyResource;
  protocol: string;
  /** Inclusive ranges; `[1, 65535]` for "all ports". */
  ranges: [number, number][];
}

const worldSources = new Set([worldCidrs.ipv4, worldCidrs.ipv6, '*', 'internet', 'any']);

function isWorld(source: unknown): boolean {
  return typeof source === 'string' && worldSources.has(source.toLowerCase());
}

function parsePorts(spec: unknown): [number, number][] {
  if (spec === undefined || spec === null || spec === '' || spec === '*') return [[1, 65535]];
  const parts = Array.isArray(spec) ? spec.map(String) : String(spec).split(',');
  return parts.map((part): [number, number] => {
    const [a, b] = part.trim().split('-');
    const lo = Number(a);
    const hi = b === undefined ? lo : Number(b);
    return [lo, hi];
  });
}

function worldOpenings(resources: PolicyResource[]): WorldOpening[] {
  const out: WorldOpening[] = [];
  for (const r of resources) {
    if (r.type === types.linodeFirewall) {
      if (String(r.inputs['inboundPolicy']).toUpperCase() !== 'DROP') {
        out.push({
          subject: `${r.name} (inbound policy)`,
          resource: r,
          protocol: 'all',
          ranges: [[1, 65535]],
        });
      }
      const inbounds = (r.inputs['inbounds'] as Record<string, unknown>[] | undefined) ?? [];
      for (const rule of inbounds) {
        if (String(rule['action']).toUpperCase() !== 'ACCEPT') continue;
        const sources = [
          ...((rule['ipv4s'] as string[] | undefined) ?? []),
          ...((rule['ipv6s'] as string[] | undefined) ?? []),
        ];
        const protocol = String(rule['protocol']).toLowerCase();
        if (protocol === 'icmp' || !sources.some(isWorld)) continue;
        out.push({
          subject: `${r.name} rule ${String(rule['label'])}`,
          resource: r,
          protocol,
          ranges: parsePorts(rule['ports']),
        });
      }
    }
    if (r.type === types.azureNsg) {
      const rules = (r.inputs['securityRules'] as Record<string, unknown>[] | undefined) ?? [];
      for (const rule of rules) {
        if (String(rule['direction']).toLowerCase() !== 'inbound') continue;
        if (String(rule['access']).toLowerCase() !== 'allow') continue;
        const sources = [
          rule['sourceAddressPrefix'],
          ...((rule['sourceAddressPrefixes'] as string[] | undefined) ?? []),
        ];
        const protocol = String(rule['protocol']).toLowerCase();
        if (protocol === 'icmp' || !sources.some(isWorld)) continue;
        const ports = (rule['destinationPortRanges'] as string[] | undefined)?.length
          ? rule['destinationPortRanges']
          : rule['destinationPortRange'];
        out.push({
          subject: `${r.name} rule ${String(rule['name'])}`,
          resource: r,
          protocol: protocol === '*' ? 'all' : protocol,
          ranges: parsePorts(ports),
        });
      }
    }
  }
  return out;
}

function covers(ranges: [number, number][], port: number): boolean {
  return ranges.some(([lo, hi]) => lo <= port && port <= hi);
}

function describeRanges(ranges: [number, number][]): string {
  return ranges.map(([lo, hi]) => (lo === hi ? String(lo) : `${lo}-${hi}`)).join(',');
}

/** What a Linode record's TTL becomes: Linode rounds to the nearest value it supports. */
export function linodeEffectiveTtl(ttl: number): number {
  let best: number = linodeValidTtls[0];
  for (const v of linodeValidTtls) {
    if (Math.abs(v - ttl) <= Math.abs(best - ttl)) best = v;
  }
  return best;
}

export const standbyApart: Policy = {
  name: 'standby-apart',
  description: "The standby is on neither the primary's provider nor its region.",
  check({ inventory }) {
    const primaries = inventory.hosts.filter((h) => h.roles.includes('primary'));
    const standbys = inventory.hosts.filter((h) => h.roles.includes('standby'));
    const out: Violation[] = [];
    for (const s of standbys) {
      for (const p of primaries) {
        if (!s.provider || !s.region) {
          out.push({
            policy: this.name,
            subject: s.name,
            message: `standby ${s.name} does not say which provider and region it is in`,
          });
        } else if (s.provider === p.provider) {
          out.push({
            policy: this.name,
            subject: s.name,
            message: `standby ${s.name} is on ${s.provider} like primary ${p.name}: one provider outage takes both; put it on another provider`,
          });
        } else if (s.region === p.region) {
          out.push({
            policy: this.name,
            subject: s.name,
            message: `standby ${s.name} is in region ${s.region} like primary ${p.name}; choose another region`,
          });
        }
      }
    }
    return out;
  },
};

export const onlyServicePortsOpen: Policy = {
  name: 'only-service-ports-open',
  description:
    'Nothing but the service ports is open to the world, and every host is behind a firewall.',
  check({ resources, servicePorts, sshPort }) {
    const out: Violation[] = [];
    for (const opening of worldOpenings(resources)) {
      const allowed = servicePorts.filter(
        (p) => opening.protocol === p.protocol || opening.protocol === 'all',
      );
      const exact =
        opening.protocol !== 'all' &&
        opening.ranges.every(([lo, hi]) => {
          for (let port = lo; port <= hi; port++) {
            if (port === sshPort && !allowed.some((p) => p.port === port)) continue;
            if (!allowed.some((p) => p.port === port)) return false;
          }
          return true;
        });
      if (!exact) {
        out.push({
          policy: this.name,
          subject: opening.subject,
          message: `${opening.subject} opens ${opening.protocol} ${describeRanges(opening.ranges)} to the world; only the service ports ${servicePorts.map((p) => `${p.protocol}/${p.port}`).join(', ') || '(none)'} may be`,
          ...urnOf(opening.resource),
        });
      }
    }
    const firewalls = resources.filter((r) => r.type === types.linodeFirewall);
    for (const r of resources.filter((x) => x.type === types.linodeInstance)) {
      const firewalled = firewalls.some((fw) =>
        refersTo(fw, 'linodes', (fw.inputs['linodes'] as unknown[] | undefined) ?? [], r),
      );
      if (!firewalled) {
        out.push({
          policy: this.name,
          subject: r.name,
          message: `Linode ${r.name} is attached to no Cloud Firewall: every port is open`,
          ...urnOf(r),
        });
      }
    }
    const protectedSubnets = resources.filter(
      (r) => r.type === types.azureSubnet && r.inputs['networkSecurityGroup'],
    );
    for (const r of resources.filter((x) => x.type === types.azureNic)) {
      const configs = (r.inputs['ipConfigurations'] as Record<string, unknown>[] | undefined) ?? [];
      const subnetGuarded = configs.every((c) => {
        const subnetId = (c['subnet'] as { id?: string } | undefined)?.id;
        return protectedSubnets.some((s) => refersTo(r, 'ipConfigurations', [subnetId], s));
      });
      if (!r.inputs['networkSecurityGroup'] && !subnetGuarded) {
        out.push({
          policy: this.name,
          subject: r.name,
          message: `Azure NIC ${r.name} has no network security group, nor has its subnet`,
          ...urnOf(r),
        });
      }
    }
    return out;
  },
};

export const sshNeverWorld: Policy = {
  name: 'ssh-never-world',
  description: "ssh is open only to the operators' addresses, never to the world.",
  check({ resources, sshPort }) {
    return worldOpenings(resources)
      .filter(
        (o) =>
          (o.protocol === 'tcp' || o.protocol === 'all') &&
          (covers(o.ranges, sshPort) || covers(o.ranges, 22)),
      )
      .map((o) => ({
        policy: this.name,
        subject: o.subject,
        message: `${o.subject} opens ssh (tcp ${describeRanges(o.ranges)}) to the world; allow only the operators' CIDRs (baton:operatorCidrs)`,
        ...urnOf(o.resource),
      }));
  },
};

export const cutTtlMax: Policy = {
  name: 'cut-ttl-max',
  description: 'Records the runbooks cut have a TTL of at most the configured maximum.',
  check({ inventory, resources, cutRecords, maxCutTtl }) {
    const out: Violation[] = [];
    const zone = inventory.dns?.zone;
    const cut = new Set(cutRecords);
    for (const r of resources) {
      if (!zone) break;
      let fqdn: string;
      let ttl: number;
      let stored: number;
      if (r.type === types.linodeRecord) {
        fqdn = recordFqdn(String(r.inputs['name'] ?? ''), zone);
        ttl = Number(r.inputs['ttlSec'] ?? 0);
        stored = ttl === 0 ? Number.POSITIVE_INFINITY : linodeEffectiveTtl(ttl);
      } else if (r.type === types.azureRecord) {
        fqdn = recordFqdn(String(r.inputs['relativeRecordSetName']), zone);
        ttl = Number(r.inputs['ttl'] ?? 3600);
        stored = ttl;
      } else {
        continue;
      }
      if (!cut.has(fqdn)) continue;
      if (stored > maxCutTtl) {
        out.push({
          policy: this.name,
          subject: fqdn,
          message:
            stored === ttl
              ? `${fqdn} has TTL ${ttl}s, above the maximum ${maxCutTtl}s for a record runbooks cut`
              : `${fqdn} asks for TTL ${ttl}s, which Linode stores as ${stored === Number.POSITIVE_INFINITY ? 'the zone default' : `${stored}s`}, above the maximum ${maxCutTtl}s`,
          ...urnOf(r),
        });
      }
    }
    for (const rec of inventory.dns?.records ?? []) {
      if (cut.has(rec.name) && rec.ttl > maxCutTtl) {
        out.push({
          policy: this.name,
          subject: rec.name,
          message: `inventory record ${rec.name} has TTL ${rec.ttl}s, above the maximum ${maxCutTtl}s`,
        });
      }
    }
    return out;
  },
};

export const primaryBackups: Policy = {
  name: 'primary-backups',
  description: 'Every primary has provider backups enabled.',
  check({ inventory, resources }) {
    const out: Violation[] = [];
    for (const host of inventory.hosts.filter((h) => h.roles.includes('primary'))) {
      let backedUp = false;
      const linodeInstance = resources.find(
        (r) => r.type === types.linodeInstance && r.inputs['label'] === host.name,
      );
      const vm = resources.find(
        (r) => r.type === types.azureVm && r.inputs['vmName'] === host.name,
      );
      if (linodeInstance) backedUp = linodeInstance.inputs['backupsEnabled'] === true;
      if (vm) {
        backedUp = resources.some((r) => {
          if (r.type !== types.azureProtectedItem) return false;
          const props = r.inputs['properties'] as { sourceResourceId?: string } | undefined;
          return refersTo(r, 'properties', [props?.sourceResourceId], vm);
        });
      }
      if (!backedUp) {
        out.push({
          policy: this.name,
          subject: host.name,
          message:
            linodeInstance || vm
              ? `primary ${host.name} has no provider backups; set backups: true for it in baton:hosts`
              : `primary ${host.name} is declared by no instance or VM of this stack`,
          ...urnOf(linodeInstance ?? vm),
        });
      }
    }
    return out;
  },
};

export const statefulProtected: ResourcePolicy = {
  name: 'stateful-protected',
  description:
    'Machines, disks, zones and backups are protected, and kept in the cloud when removed from the stack.',
  checkResource(r) {
    if (!statefulTypes.has(r.type) || !r.opts) return [];
    if (!r.opts.protect) {
      return [
        {
          policy: this.name,
          subject: r.name,
          message: `${r.name} (${r.type}) holds data a replacement or \`pulumi destroy\` would delete, and is not protected; declare it with { protect: true, retainOnDelete: true }`,
          ...urnOf(r),
        },
      ];
    }
    if (r.opts.retainOnDelete === false) {
      return [
        {
          policy: this.name,
          subject: r.name,
          message: `${r.name} (${r.type}) is protected but not retainOnDelete: once unprotected, removing it from the stack deletes it in the cloud; declare it with retainOnDelete: true`,
          ...urnOf(r),
        },
      ];
    }
    return [];
  },
  check({ resources }) {
    return resources.flatMap((r) => this.checkResource(r));
  },
};

export const policies: readonly Policy[] = [
  standbyApart,
  onlyServicePortsOpen,
  sshNeverWorld,
  cutTtlMax,
  primaryBackups,
  statefulProtected,
];

export function checkPolicies(ctx: PolicyContext, only: readonly Policy[] = policies): Violation[] {
  return only.flatMap((p) => p.check(ctx));
}

/** What the policies need of a stack config, as plain values. */
export function policyFacts(config: StackConfig): PolicyFacts {
  const zone = config.dns?.zone ?? '';
  const servicePorts = new Map(
    config.hosts.flatMap((h) => h.servicePorts).map((p) => [`${p.protocol}/${p.port}`, p]),
  );
  return {
    servicePorts: [...servicePorts.values()],
    sshPort: config.sshPort,
    cutRecords: (config.dns?.records ?? [])
      .filter((r) => r.target === 'active')
      .map((r) => recordFqdn(r.name, zone)),
    maxCutTtl: config.dns?.maxCutTtl ?? 300,
  };
}

/** The policy context for a stack config and what its program declared. */
export function policyContext(
  config: StackConfig,
  inventory: Inventory,
  resources: PolicyResource[],
): PolicyContext {
  return { inventory, resources, ...policyFacts(config) };
}
