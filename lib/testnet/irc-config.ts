/**
 * The files the `irc` testnet puts on its hosts, as text: InspIRCd, Atheme
 * (config, unit, lease guard), Knot (config, zone) and the backup script.
 * Pure functions of the contract in irc.ts and the per-testnet secrets.
 */
import { readFileSync } from 'node:fs';
import { InvalidInputError } from '../core/errors.ts';
import { batonFile } from '../core/package-root.ts';
import {
  ATHEME,
  ATHEME_COMMAND,
  BACKUP,
  INSPIRCD,
  INSPIRCD_MODULES,
  IRC_CLIENT_PORT,
  IRC_DNS,
  IRC_HUB,
  IRC_NETWORK,
  IRC_SERVER_PORT,
  IRC_ZONE,
  IRCD_HOSTS,
  IRCD_SIDS,
  KNOT,
  LEASE,
  LEASE_FQDN,
  LEASE_RECORD,
  OPERATOR_ACCOUNT,
  SERVICES_SERVER,
  SERVICES_SID,
  TSIG_ALGORITHM,
  TSIG_KEY_NAME,
  ircServerName,
  type IrcdHost,
} from './irc.ts';

/** Attribute and string values in these files are generated hex or names; refuse anything else. */
function plain(value: string, what: string): string {
  if (!/^[A-Za-z0-9._@:/+=-]+$/.test(value)) {
    throw new InvalidInputError(
      `${what} has characters that cannot stand unquoted in a config file`,
      'Remove the secrets directory of the testnet and run `baton testnet up` again.',
    );
  }
  return value;
}

export interface IrcdConfigInput {
  host: IrcdHost;
  /** Every ircd's address, by host. */
  addresses: Readonly<Record<IrcdHost, string>>;
  serverLinkPassword: string;
}

/** /etc/inspircd/inspircd.conf of one ircd. */
export function inspircdConfig(input: IrcdConfigInput): string {
  const { host, addresses } = input;
  const me = addresses[host];
  const password = plain(input.serverLinkPassword, 'the server link password');
  const peers: IrcdHost[] = host === IRC_HUB ? IRCD_HOSTS.filter((h) => h !== IRC_HUB) : [IRC_HUB];
  const link = (peer: IrcdHost): string =>
    `<link name="${ircServerName(peer)}" ipaddr="${addresses[peer]}" port="${IRC_SERVER_PORT}" allowmask="${addresses[peer]}/32" timeout="5s" sendpass="${password}" recvpass="${password}">`;
  return [
    '<config format="xml">',
    '# BatonNet ircd, written by baton testnet up. Link passwords are per testnet.',
    `<server name="${ircServerName(host)}" description="${IRC_NETWORK} ${host}" id="${IRCD_SIDS[host]}" network="${IRC_NETWORK}">`,
    `<admin name="${IRC_NETWORK} operators" nick="${OPERATOR_ACCOUNT}" email="ops@${IRC_ZONE}">`,
    '<path configdir="/etc/inspircd" datadir="/var/lib/inspircd" logdir="/var/log/inspircd">',
    `<bind address="${me}" port="${IRC_CLIENT_PORT}" type="clients">`,
    `<bind address="127.0.0.1" port="${IRC_CLIENT_PORT}" type="clients">`,
    `<bind address="${me}" port="${IRC_SERVER_PORT}" type="servers">`,
    `<bind address="127.0.0.1" port="${IRC_SERVER_PORT}" type="servers">`,
    '<connect name="main" allow="*" timeout="20" pingfreq="120" hardsendq="1048576" softsendq="65536" recvq="65536" threshold="1000" commandrate="100000" fakelag="no" localmax="1000" globalmax="1000" limit="5000" maxchans="50" resolvehostnames="no" useident="no">',
    '<dns server="127.0.0.1" timeout="1">',
    // A dead server drops off the network within seconds, not minutes: a failover waits for that.
    '<options prefixquit="Quit: " syntaxhints="no" announcets="yes" hostintopic="yes" pingwarning="5" serverpingfreq="10s" splitwhois="no" exemptchanops="">',
    '<security hideserver="" userstats="Pu" customversion="" flatlinks="no" hidesplits="no" hideulines="no" hidebans="no" maxtargets="20">',
    '<performance quietbursts="yes" softlimit="1024" somaxconn="128" netbuffersize="10240" clonesonconnect="no">',
    `<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="${INSPIRCD.log}">`,
    ...INSPIRCD_MODULES.map((m) => `<module name="${m}">`),
    `<uline server="${SERVICES_SERVER}" silent="yes">`,
    ...peers.map(link),
    ...(host === IRC_HUB ? [] : [`<autoconnect period="3s" server="${ircServerName(IRC_HUB)}">`]),
    ...['NickServ', 'ChanServ', 'OperServ'].flatMap((service) => [
      `<alias text="${service.toUpperCase()}" replace="SQUERY $requirement :$2-" requires="${service}" uline="yes">`,
      `<alias text="${service.slice(0, 1)}S" replace="SQUERY $requirement :$2-" requires="${service}" uline="yes">`,
    ]),
    `<include file="${INSPIRCD.servicesLink}">`,
    '',
  ].join('\n');
}

/**
 * /etc/inspircd/services-link.conf: the services' link block on the ircd
 * services uplink to (nebula at first), only a comment on the others; a
 * handover writes the block on the new uplink and rehashes.
 */
export function servicesLinkConfig(password: string | undefined): string {
  const head = `# The link of ${SERVICES_SERVER} (Atheme on this host's loopback), when it uplinks here.`;
  if (password === undefined) return `${head}\n# Services do not uplink to this server.\n`;
  const p = plain(password, 'the services link password');
  return `${head}\n<link name="${SERVICES_SERVER}" ipaddr="127.0.0.1" allowmask="127.0.0.0/8" port="${IRC_SERVER_PORT}" timeout="5s" sendpass="${p}" recvpass="${p}">\n`;
}

const ATHEME_MODULES = [
  'protocol/inspircd',
  'backend/opensex',
  'crypto/pbkdf2v2',
  'nickserv/main',
  'nickserv/identify',
  'nickserv/register',
  'nickserv/group',
  'nickserv/info',
  'nickserv/ghost',
  'nickserv/set_core',
  'nickserv/set_email',
  'nickserv/set_password',
  'chanserv/main',
  'chanserv/register',
  'chanserv/info',
  'chanserv/topic',
  'chanserv/flags',
  'chanserv/set_core',
  'chanserv/set_keeptopic',
  'operserv/main',
  'operserv/help',
  'operserv/update',
  'operserv/readonly',
  'operserv/uptime',
  'operserv/info',
];

/**
 * /etc/atheme/atheme.conf, identical on every services host: the uplink is
 * always the local ircd on 127.0.0.1, and never a listener of its own (no
 * misc/httpd, no transport/xmlrpc).
 */
export function athemeConfig(servicesLinkPassword: string): string {
  const password = plain(servicesLinkPassword, 'the services link password');
  const service = (block: string, nick: string, real: string): string =>
    `${block} {\n  nick = "${nick}";\n  user = "${nick}";\n  host = "${SERVICES_SERVER}";\n  real = "${real}";\n};`;
  return [
    `/* ${IRC_NETWORK} services, written by baton testnet up; the same file on every services host. */`,
    ...ATHEME_MODULES.map((m) => `loadmodule "modules/${m}";`),
    `serverinfo {
  name = "${SERVICES_SERVER}";
  desc = "${IRC_NETWORK} services";
  numeric = "${SERVICES_SID}";
  recontime = 5;
  netname = "${IRC_NETWORK}";
  hidehostsuffix = "users.${IRC_ZONE}";
  adminname = "${IRC_NETWORK} operators";
  adminemail = "ops@${IRC_ZONE}";
  registeremail = "noreply@${IRC_ZONE}";
  mta = "/bin/false";
  loglevel = { error; info; admin; network; wallops; };
  maxlogins = 5;
  maxusers = 10;
  mdlimit = 30;
  emaillimit = 10;
  emailtime = 300;
  auth = none;
  casemapping = rfc1459;
};`,
    `uplink "localhost" {
  host = "127.0.0.1";
  password = "${password}";
  port = ${IRC_SERVER_PORT};
};`,
    service('nickserv', 'NickServ', 'Nickname Services'),
    service('chanserv', 'ChanServ', 'Channel Services'),
    service('operserv', 'OperServ', 'Operator Services'),
    `general {
  commit_interval = 5;
  flood_msgs = 0;
  ratelimit_uses = 0;
  ratelimit_period = 0;
};`,
    'operclass "user" { };',
    `operclass "ircop" {
  privs { special:ircop; };
  privs { user:auspex; user:admin; user:sendpass; user:vhost; user:mark; };
  privs { chan:auspex; chan:admin; chan:cmodes; chan:joinstaffonly; };
  privs { general:auspex; general:helper; general:viewprivs; general:flood; };
  privs { operserv:omode; operserv:akill; operserv:jupe; operserv:global; };
};`,
    `/* No needoper: a runbook identified to ${OPERATOR_ACCOUNT} need not be an IRC operator. */
operclass "sra" {
  extends "ircop";
  privs { user:hold; user:regnolimit; };
  privs { general:metadata; general:admin; };
  privs { operserv:noop; operserv:grant; };
};`,
    `operator "${OPERATOR_ACCOUNT}" { operclass = "sra"; };`,
    '',
  ].join('\n');
}

/** /etc/systemd/system/atheme.service. */
export function athemeUnit(): string {
  return `[Unit]
Description=Atheme IRC services for ${IRC_NETWORK} (${SERVICES_SERVER})
After=network-online.target inspircd.service
Wants=network-online.target

[Service]
Type=simple
User=${ATHEME.user}
Group=${ATHEME.user}
# Self-fencing: never start unless the DNS lease names this host (as root: it records the generation seen).
ExecStartPre=+${ATHEME.leaseCheck}
# A handover starts the new instance read-only (ATHEME_FLAGS=-r) until it is proven.
EnvironmentFile=-${ATHEME.startFlags}
ExecStart=${ATHEME_COMMAND} $ATHEME_FLAGS
ExecReload=/bin/kill -HUP $MAINPID
RuntimeDirectory=atheme
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
`;
}

const contrib = (file: string): string => readFileSync(batonFile('contrib', 'lease', file), 'utf8');

/**
 * /etc/atheme/lease-check, the unit's ExecStartPre (contrib/lease/lease-check,
 * the same file production hosts install): exit 0 only when the authoritative
 * server answers the lease naming this host, unexpired, with a generation no
 * lower than this host has seen.
 */
export function leaseCheckScript(): string {
  return contrib('lease-check');
}

/** /usr/local/sbin/baton-lease-watchdog (contrib/lease/lease-watchdog). */
export function leaseWatchdogScript(): string {
  return contrib('lease-watchdog');
}

/** The watchdog's unit (contrib/lease/baton-lease-watchdog.service). */
export function leaseWatchdogUnit(): string {
  return contrib('baton-lease-watchdog.service');
}

export interface LeaseSettings {
  server: string;
  port: number;
  zone: string;
  /** The lease record's fully qualified name. */
  name: string;
  unit: string;
  keyFile: string;
  genFile: string;
  ttl: number;
  intervalSeconds: number;
  leaseSeconds: number;
  graceSeconds: number;
}

/** The testnet's lease settings: Knot on ns1, atheme, every 2 s, a 16 s lease, 6 s of grace (short, so that a rehearsed failover waits little). */
export const TESTNET_LEASE: LeaseSettings = {
  server: KNOT.address,
  port: KNOT.port,
  zone: IRC_ZONE,
  name: LEASE_FQDN,
  unit: ATHEME.unit,
  keyFile: LEASE.keyFile,
  genFile: LEASE.genFile,
  ttl: LEASE.ttl,
  intervalSeconds: LEASE.intervalSeconds,
  leaseSeconds: LEASE.leaseSeconds,
  graceSeconds: LEASE.graceSeconds,
};

/** /etc/baton/lease.conf, read (sourced) by the lease check and the watchdog. */
export function leaseConfig(s: LeaseSettings = TESTNET_LEASE): string {
  return `# baton lease settings for the lease check and the watchdog (docs/lease.md).
LEASE_SERVER=${plain(s.server, 'the lease server')}
LEASE_PORT=${s.port}
LEASE_ZONE=${plain(s.zone, 'the lease zone')}
LEASE_NAME=${plain(s.name, 'the lease name')}
LEASE_UNIT=${plain(s.unit, 'the services unit')}
LEASE_KEY_FILE=${plain(s.keyFile, 'the lease key file')}
LEASE_GEN_FILE=${plain(s.genFile, 'the lease generation file')}
LEASE_TTL=${s.ttl}
LEASE_INTERVAL=${s.intervalSeconds}
LEASE_SECONDS=${s.leaseSeconds}
LEASE_GRACE=${s.graceSeconds}
`;
}

/**
 * /etc/knot/knot.conf on ns1: the zone, the runbooks' TSIG key and update ACL,
 * and the services hosts' lease key, allowed to update the lease TXT record only.
 */
export function knotConfig(tsigSecret: string, leaseSecret: string): string {
  return `# Knot for ${IRC_ZONE}, written by baton testnet up.
server:
    rundir: "/run/knot"
    listen: ${KNOT.address}@${KNOT.port}

log:
  - target: stderr
    any: info

database:
    storage: "/var/lib/knot"

key:
  - id: ${TSIG_KEY_NAME}
    algorithm: ${TSIG_ALGORITHM}
    secret: ${plain(tsigSecret, 'the TSIG secret')}
  - id: ${LEASE.tsigKeyName}
    algorithm: ${TSIG_ALGORITHM}
    secret: ${plain(leaseSecret, 'the lease TSIG secret')}

acl:
  - id: ${TSIG_KEY_NAME}
    key: ${TSIG_KEY_NAME}
    action: update
  - id: ${LEASE.tsigKeyName}
    key: ${LEASE.tsigKeyName}
    action: update
    update-type: TXT
    update-owner: name
    update-owner-match: equal
    update-owner-name: ${LEASE_RECORD}

zone:
  - domain: ${IRC_ZONE}
    storage: "/var/lib/knot"
    file: "${IRC_ZONE}.zone"
    acl: [${TSIG_KEY_NAME}, ${LEASE.tsigKeyName}]
    zonefile-sync: 0
`;
}

/** The zone file Knot starts from: SOA, NS, ns1, the inventory's records, then the lease (its TXT value). */
export function zoneFile(lease: string): string {
  const txt = (v: string): string => `"${v.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
  return [
    `$ORIGIN ${IRC_ZONE}.`,
    '$TTL 3600',
    `@ 3600 IN SOA ns1.${IRC_ZONE}. hostmaster.${IRC_ZONE}. 1 3600 900 604800 300`,
    `@ 3600 IN NS ns1.${IRC_ZONE}.`,
    `ns1 3600 IN A ${KNOT.address}`,
    ...IRC_DNS.records.map(
      (r) => `${r.name} ${r.ttl} IN ${r.type} ${r.type === 'TXT' ? txt(r.value) : r.value}`,
    ),
    `${LEASE_RECORD} ${LEASE.ttl} IN TXT ${txt(lease)}`,
    '',
  ].join('\n');
}

/**
 * /srv/backup/bin/backup-atheme on vault: a services.db arrives on stdin
 * (`ssh nebula cat /var/lib/atheme/services.db | ssh vault backup-atheme`)
 * and is kept as services.db.<UTC timestamp> with its sha256 beside it.
 * Prints the name and the sha256.
 */
export function backupScript(): string {
  return `#!/bin/sh
# Keep the services.db read from stdin as ${BACKUP.dir}/services.db.<UTC timestamp>,
# with a sha256sum file beside it. Prints: NAME SHA256.
set -eu
dir=${BACKUP.dir}
mkdir -p "$dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
name=services.db.$stamp
n=1
while [ -e "$dir/$name" ]; do name=services.db.$stamp.$n; n=$((n + 1)); done
tmp=$dir/.$name.part
trap 'rm -f "$tmp"' EXIT
umask 077
cat >"$tmp"
[ -s "$tmp" ] || { echo "backup-atheme: nothing arrived on stdin; no backup kept" >&2; exit 1; }
sum=$(sha256sum <"$tmp" | cut -d' ' -f1)
mv "$tmp" "$dir/$name"
printf '%s  %s\\n' "$sum" "$name" >"$dir/$name.sha256"
echo "$name $sum"
`;
}
