/**
 * One testnet host: a network namespace (its eth0), a mount namespace with
 * private /etc and /var (overlays over the machine's), /run, /tmp, /srv,
 * /root, /home and /var/log, a UTS namespace for its hostname, and a real
 * sshd with its own host key. The namespaces persist (bind-mounted under the
 * state directory) when every process of the host is gone, like a powered-off
 * machine keeps its disk.
 */
import { spawn } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { BatonError } from '../core/errors.ts';
import { batonFile } from '../core/package-root.ts';
import { sh } from '../core/shell.ts';
import { isMountPoint, pidInNetns } from './procs.ts';
import { generateKey, publicKeyFingerprint, sshdConfig } from './sshd.ts';
import type { TestnetPaths } from './state.ts';
import { inHostArgv, sys } from './system.ts';
import { CONTROLLER_ADDRESS, type Topology, type TopologyHost } from './topology.ts';

const SYSTEMCTL = batonFile('lib', 'testnet', 'systemctl.sh');

/** Paths that must exist on the machine, because host directories are mounted over them. */
const MOUNT_TARGETS = [
  '/etc',
  '/var',
  '/var/log',
  '/run',
  '/tmp',
  '/srv',
  '/root',
  '/home',
  '/usr/local/sbin',
  '/sys',
];

/** Private directories of a host on the controller's disk, under its state directory. */
function layout(dir: string): Record<string, string> {
  return {
    etc: join(dir, 'etc'),
    var: join(dir, 'var'),
    workEtc: join(dir, 'work', 'etc'),
    workVar: join(dir, 'work', 'var'),
    ssh: join(dir, 'ssh'),
    units: join(dir, 'units'),
    log: join(dir, 'log'),
    srv: join(dir, 'srv'),
    root: join(dir, 'root'),
    home: join(dir, 'home'),
    tmp: join(dir, 'tmp'),
    sbin: join(dir, 'sbin'),
  };
}

/**
 * Create the host's directories and first-boot files (host key, sshd_config,
 * hostname, hosts, authorized_keys) unless they exist. Returns the host key fingerprint.
 */
export async function prepareHostFiles(
  paths: TestnetPaths,
  topology: Topology,
  host: TopologyHost,
  controllerPublicKey: string,
): Promise<string> {
  for (const target of MOUNT_TARGETS) {
    if (!existsSync(target)) {
      throw new BatonError(
        'MISSING_PREREQUISITE',
        `testnet hosts mount over ${target}, which this machine lacks`,
      );
    }
  }
  const dir = paths.hostDir(host.name);
  const l = layout(dir);
  for (const d of Object.values(l)) mkdirSync(d, { recursive: true, mode: 0o755 });
  chmodSync(l.root!, 0o700);
  chmodSync(l.tmp!, 0o1777);
  const hostKey = join(l.ssh!, 'ssh_host_ed25519_key');
  const fingerprint = existsSync(hostKey)
    ? await publicKeyFingerprint(`${hostKey}.pub`)
    : await generateKey(hostKey, `root@${host.name}`);
  writeFileSync(
    join(l.ssh!, 'sshd_config'),
    sshdConfig({
      listenAddress: host.address,
      port: 22,
      hostKey: '/etc/ssh/ssh_host_ed25519_key',
      pidFile: '/run/sshd.pid',
      authorizedKeysFile: '.ssh/authorized_keys',
    }),
  );
  for (const f of ['ssh_config', 'moduli']) {
    if (existsSync(`/etc/ssh/${f}`) && !existsSync(join(l.ssh!, f)))
      copyFileSync(`/etc/ssh/${f}`, join(l.ssh!, f));
  }
  mkdirSync(join(l.root!, '.ssh'), { recursive: true, mode: 0o700 });
  writeFileSync(join(l.root!, '.ssh', 'authorized_keys'), controllerPublicKey, { mode: 0o600 });
  writeFileSync(join(l.etc!, 'hostname'), `${host.name}\n`);
  writeFileSync(
    join(l.etc!, 'hosts'),
    [
      '127.0.0.1\tlocalhost',
      `${host.address}\t${host.name}`,
      `${CONTROLLER_ADDRESS}\tcontroller`,
      ...topology.hosts.filter((h) => h.name !== host.name).map((h) => `${h.address}\t${h.name}`),
      '',
    ].join('\n'),
  );
  const dns = topology.hosts.find((h) => h.roles.includes('dns'));
  writeFileSync(
    join(l.etc!, 'resolv.conf'),
    `${dns ? `nameserver ${dns.address}` : 'nameserver 127.0.0.1'}\noptions timeout:1 attempts:1\n`,
  );
  copyFileSync(SYSTEMCTL, join(l.sbin!, 'systemctl'));
  chmodSync(join(l.sbin!, 'systemctl'), 0o755);
  return fingerprint;
}

/** The mount script, run once inside the new mount and UTS namespaces. */
const MOUNT_SCRIPT = `set -eu
H=$1 NAME=$2 STATE=$3
mount -t tmpfs -o mode=0755,size=64m tmpfs /run
mkdir -p /run/sshd /run/lock && chmod 1777 /run/lock
# The host's directories may live under a path mounted over below (/tmp ...).
mkdir /run/.baton-host && mount --bind "$H" /run/.baton-host && H=/run/.baton-host
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$H/etc,workdir=$H/work/etc" /etc
mount -t overlay overlay -o "lowerdir=/var,upperdir=$H/var,workdir=$H/work/var" /var
mkdir -p /etc/ssh /etc/systemd/system
mount --bind "$H/ssh" /etc/ssh
mount --bind "$H/units" /etc/systemd/system
mount --bind "$H/log" /var/log
mount --bind "$H/srv" /srv
mount --bind "$H/root" /root
mount --bind "$H/home" /home
mount --bind "$H/tmp" /tmp
mount --bind "$H/sbin" /usr/local/sbin
mount -t sysfs sysfs /sys
hostname "$NAME"
# Hide the testnet's own state (keys, other hosts) from the host.
if [ -d "$STATE" ]; then mount -t tmpfs -o size=4k,mode=0700 tmpfs "$STATE"; fi
umount /run/.baton-host && rmdir /run/.baton-host
`;

/** Create the host's persistent mount and UTS namespaces unless they exist. */
export async function ensureHostNamespaces(paths: TestnetPaths, host: TopologyHost): Promise<void> {
  const ns = paths.hostNsFiles(host.name);
  if (isMountPoint(ns.mnt) && isMountPoint(ns.uts)) return;
  for (const f of [ns.mnt, ns.uts]) {
    if (isMountPoint(f)) await sys(['umount', f]);
    writeFileSync(f, '');
  }
  await sys([
    'nsenter',
    `--net=${ns.net}`,
    '--',
    'unshare',
    `--mount=${ns.mnt}`,
    `--uts=${ns.uts}`,
    '--propagation',
    'private',
    '--',
    '/bin/sh',
    '-c',
    MOUNT_SCRIPT,
    'sh',
    paths.hostDir(host.name),
    host.name,
    paths.dir,
  ]);
}

/** Service users and directories, created inside the host (idempotent). */
export async function provisionHost(paths: TestnetPaths, host: TopologyHost): Promise<void> {
  const lines = ['set -eu'];
  for (const s of host.services) {
    lines.push(
      sh`getent passwd ${s.user} >/dev/null || useradd --system --user-group --no-create-home --home-dir ${s.dataDir} --shell /usr/sbin/nologin ${s.user}`
        .text,
    );
    for (const d of [...s.dirs, s.dataDir]) {
      lines.push(
        sh`[ -d ${d} ] || install -d -m 0750 -o ${s.user} -g "$(id -gn ${s.user})" ${d}`.text,
      );
    }
  }
  for (const d of host.dirs ?? []) lines.push(sh`install -d -m 0755 ${d}`.text);
  await sys(inHostArgv(paths.hostNsFiles(host.name), lines.join('\n')));
}

/** Start the host's sshd unless it runs; returns its pid once it listens. */
export async function ensureSshd(
  paths: TestnetPaths,
  host: TopologyHost,
  current: number | undefined,
): Promise<number> {
  const ns = paths.hostNsFiles(host.name);
  if (current && pidInNetns(current, ns.net)) return current;
  await sys(inHostArgv(ns, 'mkdir -p /run/sshd && chmod 0755 /run/sshd'));
  const logFile = join(paths.hostDir(host.name), 'log', 'sshd.log');
  const before = existsSync(logFile) ? readFileSync(logFile).length : 0;
  const log = openSync(logFile, 'a');
  const child = spawn(
    'nsenter',
    [`--net=${ns.net}`, `--mount=${ns.mnt}`, `--uts=${ns.uts}`, '--', '/usr/sbin/sshd', '-D', '-e'],
    { detached: true, stdio: ['ignore', log, log] },
  );
  closeSync(log);
  child.unref();
  const ready = `Server listening on ${host.address} port 22`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const text = readFileSync(logFile).subarray(before).toString();
    if (text.includes(ready)) return child.pid!;
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new BatonError(
        'PRECONDITION_FAILED',
        `sshd on testnet host ${host.name} did not start: ${text.trim().split('\n').slice(-2).join(' | ') || 'no output'}`,
        `See ${logFile}.`,
      );
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}
