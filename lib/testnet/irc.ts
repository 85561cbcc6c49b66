/**
 * The `irc` testnet's contract: what `baton testnet up --topology irc`
 * provisions, as the handover runbooks (and an operator's production) see it.
 * Names, ports, paths, units, DNS records, seeded data and where the secrets
 * are kept. lib/testnet/README.md ("The irc testnet") says the same in words.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BatonError } from '../core/errors.ts';
import type { DnsInventory } from '../core/inventory.ts';
import { testnetPaths, type TestnetPaths } from './state.ts';

export const IRC_ZONE = 'irc.test';
export const IRC_NETWORK = 'BatonNet';

/** The ircds; the first is the hub the others autoconnect to. */
export const IRCD_HOSTS = ['paralysis', 'nebula', 'emergency1'] as const;
export type IrcdHost = (typeof IRCD_HOSTS)[number];
export const IRC_HUB: IrcdHost = 'paralysis';

/** Where Atheme runs after provisioning, and the standby that has it installed but stopped. */
export const SERVICES_PRIMARY: IrcdHost = 'nebula';
export const SERVICES_STANDBY: IrcdHost = 'emergency1';
export const SERVICES_HOSTS: readonly IrcdHost[] = [SERVICES_PRIMARY, SERVICES_STANDBY];
export const DNS_HOST = 'ns1';
export const BACKUP_HOST = 'vault';

/** The services' server name: the same on every host, so every peer's U-line stays valid. */
export const SERVICES_SERVER = `services.${IRC_ZONE}`;
/** The services' server id (SID), the same wherever they run. */
export const SERVICES_SID = '00A';

/** `nebula` -> `nebula.irc.test`. */
export function ircServerName(host: string): string {
  return `${host}.${IRC_ZONE}`;
}

/** InspIRCd server ids: a digit and two more characters, unique per server. */
export const IRCD_SIDS: Readonly<Record<IrcdHost, string>> = {
  paralysis: '011',
  nebula: '012',
  emergency1: '013',
};

export const IRC_CLIENT_PORT = 6667;
export const IRC_SERVER_PORT = 7000;

/** Modules every ircd loads, identical on all (Atheme's needs, TESTNET-NOTES). */
export const INSPIRCD_MODULES = [
  'spanningtree',
  'services_account',
  'svshold',
  'chghost',
  'cban',
  'topiclock',
  'globops',
  'deaf',
  'servprotect',
  'alias',
] as const;

export const INSPIRCD = {
  unit: 'inspircd',
  user: 'irc',
  config: '/etc/inspircd/inspircd.conf',
  /** Holds the services' <link> block on the services' uplink only; a comment elsewhere. */
  servicesLink: '/etc/inspircd/services-link.conf',
  log: '/var/log/inspircd/ircd.log',
} as const;

export const ATHEME = {
  unit: 'atheme',
  user: 'atheme',
  unitFile: '/etc/systemd/system/atheme.service',
  config: '/etc/atheme/atheme.conf',
  dataDir: '/var/lib/atheme',
  db: '/var/lib/atheme/services.db',
  /** ExecStartPre of the unit: refuses to start unless the DNS lease names this host. */
  leaseCheck: '/etc/atheme/lease-check',
  /** EnvironmentFile of the unit: ATHEME_FLAGS=-r starts services read-only (a handover does, until proven). */
  startFlags: '/etc/atheme/start.env',
  log: '/var/log/atheme/atheme.log',
  pidFile: '/run/atheme/atheme.pid',
} as const;

/** `atheme-services` in the foreground, as the unit runs it. */
export const ATHEME_COMMAND = `/usr/bin/atheme-services -n -c ${ATHEME.config} -D ${ATHEME.dataDir} -l ${ATHEME.log} -p ${ATHEME.pidFile}`;

export const KNOT = {
  unit: 'knot',
  user: 'knot',
  config: '/etc/knot/knot.conf',
  zoneFile: `/var/lib/knot/${IRC_ZONE}.zone`,
  address: '192.0.2.53',
  port: 53,
} as const;

export const TSIG_KEY_NAME = 'baton-update';
export const TSIG_ALGORITHM = 'hmac-sha256';

/** The services lease (lib/core/lease.ts): holder, generation and expiry of the one host allowed to run Atheme. */
export const LEASE_RECORD = '_lease.services';
export const LEASE_FQDN = `${LEASE_RECORD}.${IRC_ZONE}`;

/** The lease check and watchdog on every services host (contrib/lease, docs/lease.md). */
export const LEASE = {
  conf: '/etc/baton/lease.conf',
  /** `hmac-sha256:baton-lease:<secret>`: a TSIG key Knot lets update the lease TXT record and nothing else. */
  keyFile: '/etc/baton/lease.key',
  genFile: '/var/lib/baton/lease-gen',
  watchdog: '/usr/local/sbin/baton-lease-watchdog',
  watchdogUnit: 'baton-lease-watchdog',
  watchdogUnitFile: '/etc/systemd/system/baton-lease-watchdog.service',
  tsigKeyName: 'baton-lease',
  ttl: 60,
  intervalSeconds: 2,
  leaseSeconds: 16,
  graceSeconds: 6,
} as const;

/** The inventory's DNS section: exactly the records Knot serves besides SOA, NS and ns1. */
export const IRC_DNS: DnsInventory = {
  zone: IRC_ZONE,
  provider: 'rfc2136',
  servers: [{ name: DNS_HOST, address: KNOT.address, port: KNOT.port }],
  records: [
    { name: 'irc', type: 'A', ttl: 300, value: '192.0.2.11' },
    { name: 'services', type: 'A', ttl: 300, value: '192.0.2.12' },
  ],
};

export const BACKUP = {
  dir: '/srv/backup/atheme',
  /** Reads a services.db on stdin, stores it as services.db.<UTC timestamp> with a .sha256 beside it. */
  script: '/srv/backup/bin/backup-atheme',
} as const;

/** The services operator account runbooks identify as (operclass sra, a soper in atheme.conf). */
export const OPERATOR_ACCOUNT = 'batonops';

export interface SeedAccount {
  name: string;
  /** Nicks grouped to the account besides its own name. */
  extraNicks: string[];
}

export interface SeedChannel {
  name: string;
  founder: string;
  topic: string;
  /** Access entries besides the founder's: account -> flags. */
  access: Record<string, string>;
}

/** What provisioning registers through the real services, so a fingerprint means something. */
export const SEED: { accounts: SeedAccount[]; channels: SeedChannel[] } = {
  accounts: [
    { name: 'alice', extraNicks: ['alice_away'] },
    { name: 'bob', extraNicks: [] },
    { name: 'carol', extraNicks: [] },
  ],
  channels: [
    {
      name: '#ops',
      founder: 'alice',
      topic: 'BatonNet operators: handovers are announced here',
      access: { bob: '+o' },
    },
    {
      name: '#lobby',
      founder: 'alice',
      topic: 'Welcome to BatonNet',
      access: { carol: '+v' },
    },
  ],
};

export interface IrcSecretPaths {
  dir: string;
  /** `hmac-sha256:baton-update:<base64>`, as lib/integrations/dns/rfc2136.ts parseTsigKey reads it. */
  tsigKey: string;
  /** `hmac-sha256:baton-lease:<base64>`: the services hosts' key, allowed to update the lease only. */
  leaseTsigKey: string;
  /** Password of the batonops services account. */
  batonopsPassword: string;
  alicePassword: string;
  bobPassword: string;
  carolPassword: string;
  /** sendpass/recvpass of the links between the ircds. */
  serverLinkPassword: string;
  /** sendpass/recvpass of the services' link, and the uplink password in atheme.conf. */
  servicesLinkPassword: string;
}

/**
 * Where the testnet keeps the secrets runbooks need: one value per file
 * (followed by a newline, which `--param x=@file:PATH` drops), mode 0600, in
 * a 0700 directory under the testnet's state directory. Never print them.
 */
export function ircSecretPaths(paths: TestnetPaths = testnetPaths()): IrcSecretPaths {
  const dir = join(paths.dir, 'secrets');
  return {
    dir,
    tsigKey: join(dir, 'tsig-key'),
    leaseTsigKey: join(dir, 'lease-tsig-key'),
    batonopsPassword: join(dir, 'batonops-password'),
    alicePassword: join(dir, 'alice-password'),
    bobPassword: join(dir, 'bob-password'),
    carolPassword: join(dir, 'carol-password'),
    serverLinkPassword: join(dir, 'server-link-password'),
    servicesLinkPassword: join(dir, 'services-link-password'),
  };
}

export interface IrcSecrets {
  /** `hmac-sha256:baton-update:<base64>`. */
  tsigKey: string;
  /** The base64 secret alone, as knot.conf holds it. */
  tsigSecret: string;
  /** The services hosts' lease key, `hmac-sha256:baton-lease:<base64>`. */
  leaseTsigKey: string;
  /** Services account passwords: batonops and every seeded account. */
  passwords: Record<string, string>;
  serverLinkPassword: string;
  servicesLinkPassword: string;
}

/** The secrets' values, read from ircSecretPaths(). Keep them out of every output. */
export function readIrcSecrets(paths: TestnetPaths = testnetPaths()): IrcSecrets {
  const files = ircSecretPaths(paths);
  const read = (file: string): string => {
    try {
      const value = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
      if (value) return value;
    } catch {
      // reported below
    }
    throw new BatonError(
      'PRECONDITION_FAILED',
      `the irc testnet secret ${file} is missing or empty`,
      'Run `baton testnet up` (it creates the secrets), or `baton testnet down` and up again.',
    );
  };
  const tsigKey = read(files.tsigKey);
  return {
    tsigKey,
    tsigSecret: tsigKey.split(':')[2] ?? '',
    leaseTsigKey: read(files.leaseTsigKey),
    passwords: {
      [OPERATOR_ACCOUNT]: read(files.batonopsPassword),
      alice: read(files.alicePassword),
      bob: read(files.bobPassword),
      carol: read(files.carolPassword),
    },
    serverLinkPassword: read(files.serverLinkPassword),
    servicesLinkPassword: read(files.servicesLinkPassword),
  };
}
