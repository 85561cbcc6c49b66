/**
 * Testnet topologies as data: which hosts exist, their roles, addresses and
 * the services (with the users they run as and the directories they own).
 */
import type { TopologyName } from './names.ts';
import { InvalidInputError } from '../core/errors.ts';
import type { DnsInventory } from '../core/inventory.ts';
import { IRC_DNS } from './irc.ts';

export interface ServiceSpec {
  /** Unit name: `systemctl start NAME` on the host. */
  name: string;
  /** The user the service runs as; created on the host when missing. Never root. */
  user: string;
  /** Directories owned by the service user (config, data, logs, runtime). */
  dirs: string[];
  /** Where the service keeps its data: the default target of the disk-full fault. */
  dataDir: string;
}

export interface TopologyHost {
  name: string;
  /** An address in 192.0.2.0/24, not .0, .1 (the testnet's own) or .255. */
  address: string;
  roles: string[];
  services: ServiceSpec[];
  /** Extra directories to create, e.g. a backup target's /srv/backup. */
  dirs?: string[];
}

export interface Topology {
  name: string;
  description: string;
  hosts: TopologyHost[];
  /** The DNS section of the inventory the testnet writes, if the topology serves a zone. */
  dns?: DnsInventory;
}

const inspircd: ServiceSpec = {
  name: 'inspircd',
  user: 'irc',
  dirs: ['/etc/inspircd', '/var/lib/inspircd', '/var/log/inspircd'],
  dataDir: '/var/lib/inspircd',
};

// Debian's packages run InspIRCd as `irc` and Knot as `knot`; Atheme gets its own user.
const atheme: ServiceSpec = {
  name: 'atheme',
  user: 'atheme',
  dirs: ['/etc/atheme', '/var/lib/atheme', '/var/log/atheme'],
  dataDir: '/var/lib/atheme',
};

const knot: ServiceSpec = {
  name: 'knot',
  user: 'knot',
  dirs: ['/etc/knot', '/var/lib/knot', '/var/log/knot'],
  dataDir: '/var/lib/knot',
};

/** Incident 003's network: three ircds, services on nebula, a standby, DNS and a backup target. */
export const ircTopology: Topology = {
  name: 'irc',
  description:
    'ircds paralysis, nebula and emergency1; Atheme services on nebula (primary) with emergency1 as standby; Knot DNS on ns1; backups on vault',
  hosts: [
    { name: 'paralysis', address: '192.0.2.11', roles: ['ircd'], services: [inspircd] },
    {
      name: 'nebula',
      address: '192.0.2.12',
      roles: ['ircd', 'services', 'primary'],
      services: [inspircd, atheme],
    },
    {
      name: 'emergency1',
      address: '192.0.2.13',
      roles: ['ircd', 'standby'],
      services: [inspircd, atheme],
    },
    { name: 'ns1', address: '192.0.2.53', roles: ['dns'], services: [knot] },
    {
      name: 'vault',
      address: '192.0.2.20',
      roles: ['backup'],
      services: [],
      dirs: ['/srv/backup'],
    },
  ],
  dns: IRC_DNS,
};

/** A single host, for quick experiments. */
export const soloTopology: Topology = {
  name: 'solo',
  description: 'one host, solo, with no services',
  hosts: [{ name: 'solo', address: '192.0.2.10', roles: ['test'], services: [] }],
};

export const topologies: Record<TopologyName, Topology> = {
  irc: ircTopology,
  solo: soloTopology,
};

export const CONTROLLER_ADDRESS = '192.0.2.1';
export const PREFIX_LENGTH = 24;

/** Whether `address` is inside the testnet's 192.0.2.0/24. */
export function inTestnetRange(address: string): boolean {
  const m = /^192\.0\.2\.(\d{1,3})$/.exec(address);
  return m !== null && Number(m[1]) <= 255;
}

export function findTopology(name: string): Topology {
  const topology = (topologies as Record<string, Topology | undefined>)[name];
  if (!topology) {
    throw new InvalidInputError(
      `unknown testnet topology ${name}`,
      `Known topologies: ${Object.keys(topologies).join(', ')}.`,
    );
  }
  return topology;
}

/** Check a topology before anything is created, naming the first problem. */
export function validateTopology(t: Topology): void {
  const fail = (what: string): never => {
    throw new InvalidInputError(`topology ${t.name}: ${what}`);
  };
  if (t.hosts.length === 0) fail('has no hosts');
  const names = new Set<string>();
  const addresses = new Set<string>();
  for (const h of t.hosts) {
    // Interface names (`v-NAME`, `s-NAME`) must fit in 15 bytes.
    if (!/^[a-z][a-z0-9-]{0,11}$/.test(h.name)) {
      fail(`host name ${h.name} must be 1-12 lowercase letters, digits or dashes`);
    }
    if (names.has(h.name)) fail(`host ${h.name} appears twice`);
    names.add(h.name);
    const last = Number(h.address.split('.')[3]);
    if (!inTestnetRange(h.address) || last < 2 || last > 254) {
      fail(`host ${h.name} address ${h.address} is not in 192.0.2.2-192.0.2.254`);
    }
    if (addresses.has(h.address)) fail(`address ${h.address} is used twice`);
    addresses.add(h.address);
    for (const s of h.services) {
      if (!/^[a-z][a-z0-9_-]*$/.test(s.name)) fail(`service name ${s.name} is not a unit name`);
      if (!/^[a-z_][a-z0-9_-]*$/.test(s.user) || s.user === 'root') {
        fail(`service ${s.name} on ${h.name} must run as its own user, not ${s.user}`);
      }
      for (const d of [...s.dirs, s.dataDir]) {
        if (!d.startsWith('/') || d.includes('..')) fail(`${d} is not an absolute path`);
      }
    }
  }
}
