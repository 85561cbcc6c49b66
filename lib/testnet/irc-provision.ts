/**
 * Provisions the `irc` testnet from the controller over ssh, like
 * configuration management: files are put with SFTP, services are driven
 * with `systemctl` on each host. The first run installs and starts
 * everything, seeds services.db through the real services and takes a
 * backup; later runs repair what drifted (config files, stopped ircds or
 * DNS) but never move services, rewrite the zone or re-seed.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BatonError, TransientError } from '../core/errors.ts';
import { findHost, type Host, type Inventory } from '../core/inventory.ts';
import { raw, sh, type Cmd } from '../core/shell.ts';
import { SshPool } from '../transports/ssh.ts';
import { backupAtheme, type AthemeBackup } from './irc-backup.ts';
import {
  athemeConfig,
  athemeUnit,
  backupScript,
  inspircdConfig,
  knotConfig,
  leaseCheckScript,
  leaseConfig,
  leaseWatchdogScript,
  leaseWatchdogUnit,
  servicesLinkConfig,
  zoneFile,
} from './irc-config.ts';
import { seedServices, waitForLinks } from './irc-seed.ts';
import {
  ATHEME,
  BACKUP,
  BACKUP_HOST,
  DNS_HOST,
  INSPIRCD,
  IRC_ZONE,
  IRCD_HOSTS,
  KNOT,
  LEASE,
  SERVICES_HOSTS,
  SERVICES_PRIMARY,
  SERVICES_SERVER,
  TSIG_ALGORITHM,
  TSIG_KEY_NAME,
  ircSecretPaths,
  ircServerName,
  readIrcSecrets,
  type IrcSecrets,
  type IrcdHost,
} from './irc.ts';
import { testnetRoute } from './stack.ts';
import { formatLease } from '../core/lease.ts';
import type { TestnetPaths } from './state.ts';

export interface ProvisionIrcOptions {
  paths: TestnetPaths;
  inventory: Inventory;
  /** Hosts that are down or unplugged by a fault: skipped on a later run, refused on the first. */
  unavailable: readonly string[];
  log: (line: string) => void;
}

export interface ProvisionIrcResult {
  /** Whether anything was written, started or reloaded. */
  changed: boolean;
  /** Whether this was the first, full provisioning (install, start, seed, backup). */
  first: boolean;
  backup?: AthemeBackup;
}

/** What the first provisioning left, kept beside the testnet state (`irc.json`). */
interface IrcMarker {
  provisionedAt: string;
  backup: string;
}

interface FileSpec {
  path: string;
  content: string;
  mode: number;
  owner: string;
  /** Only create it: a runbook (or Knot, or a handover) owns it afterwards. */
  once?: boolean;
}

/** Bring the irc network to its contract; see the module comment for first vs later runs. */
export async function provisionIrc(options: ProvisionIrcOptions): Promise<ProvisionIrcResult> {
  const { paths, inventory, log } = options;
  const markerFile = join(paths.dir, 'irc.json');
  const first = !existsSync(markerFile);
  if (first && options.unavailable.length > 0) {
    throw new BatonError(
      'PRECONDITION_FAILED',
      `cannot provision the irc network: ${options.unavailable.join(', ')} ${options.unavailable.length === 1 ? 'is' : 'are'} down or cut off by a fault`,
      'Heal the faults (`baton testnet heal`), then run `baton testnet up` again.',
    );
  }
  const secrets = ensureIrcSecrets(paths);
  const available = (name: string): boolean => !options.unavailable.includes(name);
  const host = (name: string): Host => findHost(inventory, name);
  const addresses = Object.fromEntries(IRCD_HOSTS.map((h) => [h, host(h).address])) as Record<
    IrcdHost,
    string
  >;
  const pool = new SshPool({
    routes: [testnetRoute],
    readyTimeoutMs: 10_000,
    keepaliveIntervalMs: 2_000,
  });
  try {
    const files = desiredFiles(secrets, addresses);
    let changed = false;
    const written = new Map<string, string[]>();
    // Every step is idempotent, so a dropped connection is retried on a fresh one.
    const retrying = async <T>(name: string, step: () => Promise<T>): Promise<T> => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await step();
        } catch (e) {
          if (!(e instanceof TransientError) || attempt >= 3) throw e;
          await pool.drop(host(name));
        }
      }
    };
    const run = (name: string, command: Cmd, what: string): Promise<string> =>
      retrying(name, async () => {
        const out = await pool.exec(host(name), command.text, { timeoutMs: 60_000 });
        if (out.exitCode !== 0) {
          const detail = `${out.stdout}${out.stderr}`.trim().split('\n').slice(-4).join(' | ');
          throw new BatonError(
            'COMMAND_FAILED',
            `testnet irc: ${what} on ${name} failed (exit ${out.exitCode}): ${detail}`,
            `Look at /var/log/units/ on ${name} (\`baton testnet exec ${name} -- cat /var/log/units/*.log\`), then run \`baton testnet up\` again.`,
          );
        }
        if (out.stdout.includes('changed')) changed = true;
        return out.stdout;
      });
    const touched = (name: string, path: string): boolean =>
      written.get(name)?.includes(path) ?? false;

    await everywhere(Object.keys(files).filter(available), async (name) => {
      const put = await retrying(name, () => converge(pool, host(name), files[name]!));
      written.set(name, put);
      if (put.length > 0) changed = true;
    });
    // DNS first: the lease guard asks it before Atheme may start.
    if (available(DNS_HOST)) {
      await run(
        DNS_HOST,
        unitScript(KNOT.unit, first, touched(DNS_HOST, KNOT.config)),
        'starting knot',
      );
      await run(
        DNS_HOST,
        sh`i=0; until dig +short +norec +time=1 +tries=1 ${`@${KNOT.address}`} ${IRC_ZONE} SOA | grep -q .; do i=$((i+1)); [ $i -lt 100 ] || { tail -n 5 /var/log/units/knot.log; exit 1; }; sleep 0.1; done`,
        `waiting for knot to answer for ${IRC_ZONE}`,
      );
    }
    await everywhere(IRCD_HOSTS.filter(available), (name) =>
      run(
        name,
        unitScript(INSPIRCD.unit, first, touched(name, INSPIRCD.config)),
        'starting inspircd',
      ),
    );
    // The watchdog before services: it renews the lease they start under, and stops them when it is lost.
    await everywhere(SERVICES_HOSTS.filter(available), (name) =>
      run(
        name,
        first ||
          [LEASE.watchdog, LEASE.watchdogUnitFile, LEASE.conf, LEASE.keyFile].some((f) =>
            touched(name, f),
          )
          ? sh`systemctl enable ${LEASE.watchdogUnit} && systemctl restart ${LEASE.watchdogUnit} && echo changed`
          : unitScript(LEASE.watchdogUnit, false, false),
        'starting the lease watchdog',
      ),
    );
    await everywhere(SERVICES_HOSTS.filter(available), async (name) => {
      if (first && name === SERVICES_PRIMARY) {
        await run(
          name,
          sh`systemctl enable ${ATHEME.unit} && systemctl restart ${ATHEME.unit}`,
          'starting atheme',
        );
      } else if (first) {
        await run(
          name,
          sh`systemctl disable ${ATHEME.unit} && systemctl stop ${ATHEME.unit} && rm -f ${ATHEME.db}`,
          'keeping atheme stopped',
        );
      } else if (touched(name, ATHEME.config)) {
        await run(
          name,
          sh`if systemctl -q is-active ${ATHEME.unit}; then systemctl reload ${ATHEME.unit} && echo changed; fi`,
          'reloading atheme',
        );
      }
    });
    if (!first) return { changed, first };

    const names = IRCD_HOSTS.map(ircServerName);
    await waitForLinks(pool, inventory, [...names, SERVICES_SERVER]);
    await seedServices(pool, inventory, secrets);
    const backup = await backupAtheme(pool, inventory);
    const marker: IrcMarker = { provisionedAt: new Date().toISOString(), backup: backup.path };
    writeFileSync(markerFile, JSON.stringify(marker, null, 2) + '\n');
    log(
      `testnet: irc network up: ${names.join(', ')} linked, ${SERVICES_SERVER} on ${SERVICES_PRIMARY}, backup ${backup.path} on ${BACKUP_HOST}`,
    );
    return { changed: true, first, backup };
  } finally {
    await pool.close();
  }
}

/**
 * Enable and start a unit on the first run; later, start it if it is enabled
 * but stopped, and reload it where its config changed. Prints `changed` when it did anything.
 */
function unitScript(unit: string, first: boolean, configChanged: boolean): Cmd {
  if (first) return sh`systemctl enable ${unit} && systemctl restart ${unit} && echo changed`;
  return sh`if systemctl -q is-active ${unit}; then
  if [ ${configChanged ? 'yes' : 'no'} = yes ]; then systemctl reload ${unit} && echo changed; fi
elif systemctl -q is-enabled ${unit}; then
  systemctl start ${unit} && echo changed
fi`;
}

/** Run `step` for every name at once; wait for all of them, then throw the first failure. */
async function everywhere(
  names: readonly string[],
  step: (name: string) => Promise<unknown>,
): Promise<void> {
  const results = await Promise.allSettled(names.map(step));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

function desiredFiles(
  secrets: IrcSecrets,
  addresses: Record<IrcdHost, string>,
): Record<string, FileSpec[]> {
  const files: Record<string, FileSpec[]> = {};
  for (const h of IRCD_HOSTS) {
    files[h] = [
      {
        path: INSPIRCD.config,
        content: inspircdConfig({
          host: h,
          addresses,
          serverLinkPassword: secrets.serverLinkPassword,
        }),
        mode: 0o640,
        owner: `root:${INSPIRCD.user}`,
      },
      {
        path: INSPIRCD.servicesLink,
        content: servicesLinkConfig(
          h === SERVICES_PRIMARY ? secrets.servicesLinkPassword : undefined,
        ),
        mode: 0o640,
        owner: `root:${INSPIRCD.user}`,
        once: true,
      },
    ];
  }
  for (const h of SERVICES_HOSTS) {
    files[h]!.push(
      {
        path: ATHEME.config,
        content: athemeConfig(secrets.servicesLinkPassword),
        mode: 0o640,
        owner: `root:${ATHEME.user}`,
      },
      { path: ATHEME.leaseCheck, content: leaseCheckScript(), mode: 0o755, owner: 'root:root' },
      { path: ATHEME.unitFile, content: athemeUnit(), mode: 0o644, owner: 'root:root' },
      { path: LEASE.conf, content: leaseConfig(), mode: 0o644, owner: 'root:root' },
      {
        path: LEASE.keyFile,
        content: `${secrets.leaseTsigKey}\n`,
        mode: 0o600,
        owner: 'root:root',
      },
      { path: LEASE.watchdog, content: leaseWatchdogScript(), mode: 0o755, owner: 'root:root' },
      {
        path: LEASE.watchdogUnitFile,
        content: leaseWatchdogUnit(),
        mode: 0o644,
        owner: 'root:root',
      },
    );
  }
  files[DNS_HOST] = [
    {
      path: KNOT.config,
      content: knotConfig(secrets.tsigSecret, secrets.leaseTsigKey.split(':')[2] ?? ''),
      mode: 0o640,
      owner: `root:${KNOT.user}`,
    },
    {
      path: KNOT.zoneFile,
      // The first lease outlives provisioning; the watchdog on nebula renews it from then on.
      content: zoneFile(
        formatLease({
          holder: SERVICES_PRIMARY,
          gen: 1,
          expires: new Date(Date.now() + 300_000),
        }),
      ),
      mode: 0o640,
      owner: `${KNOT.user}:${KNOT.user}`,
      once: true,
    },
  ];
  files[BACKUP_HOST] = [
    { path: BACKUP.script, content: backupScript(), mode: 0o755, owner: 'root:root' },
  ];
  return files;
}

/** Directories the files go into, with the owners the services need. */
const DIRECTORIES: Record<string, Cmd> = {
  atheme: sh`install -d -m 0750 -o root -g ${ATHEME.user} /etc/atheme && install -d -m 0750 -o ${ATHEME.user} -g ${ATHEME.user} ${ATHEME.dataDir} /var/log/atheme && install -d -m 0755 /etc/baton /var/lib/baton`,
  inspircd: sh`install -d -m 0750 -o ${INSPIRCD.user} -g ${INSPIRCD.user} /var/lib/inspircd /var/log/inspircd`,
  backup: sh`install -d -m 0755 /srv/backup/bin && install -d -m 0700 ${BACKUP.dir}`,
};

/**
 * Put every file whose content, mode or owner differs (or, for `once`
 * files, that is missing). Returns the paths written.
 */
async function converge(pool: SshPool, host: Host, specs: FileSpec[]): Promise<string[]> {
  const prepare = [
    IRCD_HOSTS.includes(host.name as IrcdHost) ? DIRECTORIES.inspircd! : undefined,
    SERVICES_HOSTS.includes(host.name as IrcdHost) ? DIRECTORIES.atheme! : undefined,
    host.name === BACKUP_HOST ? DIRECTORIES.backup! : undefined,
  ].filter((c): c is Cmd => c !== undefined);
  const probe = sh`${raw(prepare.map((c) => `${c.text} && `).join(''))}for f in ${specs.map((s) => s.path)}; do
  if [ -f "$f" ]; then echo "$(sha256sum <"$f" | cut -d' ' -f1) $(stat -c '%a %U:%G' "$f") $f"; else echo "- - - $f"; fi
done`;
  const out = await pool.exec(host, probe.text, { timeoutMs: 30_000 });
  if (out.exitCode !== 0) {
    throw new BatonError(
      'COMMAND_FAILED',
      `testnet irc: preparing ${host.name} failed: ${out.stderr.trim().split('\n').slice(-2).join(' | ')}`,
      'Run `baton testnet down` and `baton testnet up` to rebuild the testnet.',
    );
  }
  const current = new Map(
    out.stdout
      .trim()
      .split('\n')
      .map((line) => {
        const [sum, mode, owner, path] = line.split(' ');
        return [path!, { sum: sum!, mode: mode!, owner: owner! }] as const;
      }),
  );
  const stale = specs.filter((s) => {
    const now = current.get(s.path);
    if (!now || now.sum === '-') return true;
    if (s.once) return false;
    return (
      now.sum !== sha256(s.content) || now.mode !== s.mode.toString(8) || now.owner !== s.owner
    );
  });
  for (const s of stale) {
    await pool.put(host, Buffer.from(s.content), s.path, { mode: s.mode });
  }
  if (stale.length > 0) {
    const chown = stale.map((s) => sh`chown ${s.owner} ${s.path}`.text).join(' && ');
    const done = await pool.exec(host, chown, { timeoutMs: 30_000 });
    if (done.exitCode !== 0) {
      throw new BatonError(
        'COMMAND_FAILED',
        `testnet irc: setting owners on ${host.name} failed: ${done.stderr.trim()}`,
        'Check that the service users exist there (`baton testnet up` creates them).',
      );
    }
  }
  return stale.map((s) => s.path);
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Generate the testnet's secrets once (0600 files in a 0700 directory); return their values. */
export function ensureIrcSecrets(paths: TestnetPaths): IrcSecrets {
  const files = ircSecretPaths(paths);
  mkdirSync(files.dir, { recursive: true, mode: 0o700 });
  chmodSync(files.dir, 0o700);
  const hex = (): string => randomBytes(16).toString('hex');
  const make: Array<[string, () => string]> = [
    [
      files.tsigKey,
      () => `${TSIG_ALGORITHM}:${TSIG_KEY_NAME}:${randomBytes(32).toString('base64')}`,
    ],
    [
      files.leaseTsigKey,
      () => `${TSIG_ALGORITHM}:${LEASE.tsigKeyName}:${randomBytes(32).toString('base64')}`,
    ],
    [files.batonopsPassword, hex],
    [files.alicePassword, hex],
    [files.bobPassword, hex],
    [files.carolPassword, hex],
    [files.serverLinkPassword, hex],
    [files.servicesLinkPassword, hex],
  ];
  for (const [file, value] of make) {
    if (!existsSync(file) || readFileSync(file, 'utf8').trim() === '') {
      writeFileSync(file, `${value()}\n`, { mode: 0o600 });
    }
    chmodSync(file, 0o600);
  }
  return readIrcSecrets(paths);
}
