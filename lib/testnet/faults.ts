/**
 * Faults, made real in the kernel: a host powered off (every process killed,
 * its link down) and powered back on, a link unplugged, two hosts partitioned
 * (nftables in the switch drops their packets), a slow link (netem, or a
 * userspace delay line where the kernel lacks netem) and a full disk (a
 * small tmpfs over a service's data directory, holding a copy of its data).
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { BatonError, InvalidInputError } from '../core/errors.ts';
import { daemonArgv } from './daemon.ts';
import { ensureSshd } from './host.ts';
import { BRIDGE, linkNames, setCut, setPort } from './network.ts';
import { cmdline, killNamespaces, pidsInNamespaces } from './procs.ts';
import { pidAlive } from './state.ts';
import type { FaultKind, FaultRecord, TestnetPaths, TestnetState } from './state.ts';
import { FAULT_KINDS } from './names.ts';
import { inHostArgv, sys } from './system.ts';
import type { Topology, TopologyHost } from './topology.ts';

export interface FaultOptions {
  /** slow: added one-way delay per direction (round trips grow by twice this). Default 200. */
  delayMs?: number;
  /** slow: percentage of frames dropped per direction. Default 0. */
  lossPercent?: number;
  /** slow: bandwidth limit per direction in kbit/s; 0 for none. Default 0. */
  rateKbit?: number;
  /** disk-full: the directory to fill; default the host's first service's data directory. */
  path?: string;
  /** host-down: SIGTERM and 5 s of grace before SIGKILL, instead of pulling the plug. */
  graceful?: boolean;
}

interface Ctx {
  paths: TestnetPaths;
  state: TestnetState;
  topology: Topology;
}

export function parseFaultKind(kind: string): FaultKind {
  if ((FAULT_KINDS as readonly string[]).includes(kind)) return kind as FaultKind;
  throw new InvalidInputError(
    `unknown fault kind ${kind}`,
    `Fault kinds: ${FAULT_KINDS.join(', ')}.`,
  );
}

export async function applyFault(
  ctx: Ctx,
  kind: FaultKind,
  hostNames: string[],
  options: FaultOptions,
): Promise<FaultRecord> {
  const hosts = hostNames.map((n) => topologyHost(ctx.topology, n));
  const arity = kind === 'partition' ? hosts.length >= 2 : hosts.length === 1;
  if (!arity) {
    throw new InvalidInputError(
      kind === 'partition'
        ? 'a partition needs at least two hosts (every pair among them is cut)'
        : `fault ${kind} takes exactly one host`,
    );
  }
  if (new Set(hostNames).size !== hostNames.length)
    throw new InvalidInputError('a host is named twice');
  for (const f of ctx.state.faults) {
    const same =
      f.kind === kind &&
      (kind === 'partition' ? sameSet(f.hosts, hostNames) : f.hosts[0] === hostNames[0]);
    if (same)
      throw new InvalidInputError(
        `fault ${kind} on ${hostNames.join(', ')} is already in place`,
        'Heal it first.',
      );
  }
  const record: FaultRecord = {
    kind,
    hosts: hostNames,
    options: {},
    since: new Date().toISOString(),
  };
  const host = hosts[0]!;
  switch (kind) {
    case 'host-down':
      await setPort(ctx.paths, host.name, false);
      await stopHost(ctx.paths, host.name, options.graceful === true);
      ctx.state.hosts[host.name]!.sshdPid = undefined;
      record.options = { graceful: options.graceful === true };
      break;
    case 'link-down':
      await setPort(ctx.paths, host.name, false);
      break;
    case 'partition':
      for (const [a, b] of pairs(hosts)) await setCut(ctx.paths, a.address, b.address, true);
      break;
    case 'slow': {
      const o = {
        delayMs: options.delayMs ?? 200,
        lossPercent: options.lossPercent ?? 0,
        rateKbit: options.rateKbit ?? 0,
      };
      if (o.delayMs < 0 || o.lossPercent < 0 || o.lossPercent > 100 || o.rateKbit < 0) {
        throw new InvalidInputError('slow: delay, loss (0-100) and rate must not be negative');
      }
      record.options = o;
      Object.assign(record, await slowLink(ctx.paths, host.name, o));
      break;
    }
    case 'disk-full': {
      const path = options.path ?? host.services[0]?.dataDir ?? host.dirs?.[0];
      if (!path || !path.startsWith('/')) {
        throw new InvalidInputError(
          `disk-full on ${host.name}: no data directory to fill`,
          'Pass a path.',
        );
      }
      await sys(inHostArgv(ctx.paths.hostNsFiles(host.name), FILL_SCRIPT, [path]));
      record.path = path;
      break;
    }
  }
  ctx.state.faults.push(record);
  return record;
}

/** Heal faults matching `kind` and `hosts` (all when both are absent), newest first. */
export async function healFaults(
  ctx: Ctx,
  kind?: FaultKind,
  hostNames: string[] = [],
): Promise<FaultRecord[]> {
  const matching = ctx.state.faults.filter(
    (f) => (!kind || f.kind === kind) && hostNames.every((h) => f.hosts.includes(h)),
  );
  if (matching.length === 0 && (kind || hostNames.length > 0)) {
    throw new InvalidInputError(
      `no ${kind ?? ''} fault in place${hostNames.length ? ` on ${hostNames.join(', ')}` : ''}`.replace(
        '  ',
        ' ',
      ),
      ctx.state.faults.length
        ? `Faults in place: ${ctx.state.faults.map((f) => `${f.kind} ${f.hosts.join(' ')}`).join('; ')}.`
        : 'No fault is in place.',
    );
  }
  for (const f of [...matching].reverse()) {
    await healOne(ctx, f);
    ctx.state.faults = ctx.state.faults.filter((x) => x !== f);
  }
  return matching;
}

async function healOne(ctx: Ctx, f: FaultRecord): Promise<void> {
  const name = f.hosts[0]!;
  switch (f.kind) {
    case 'host-down':
      await bootHost(ctx, topologyHost(ctx.topology, name));
      break;
    case 'link-down':
      await setPort(ctx.paths, name, true);
      break;
    case 'partition': {
      const hosts = f.hosts.map((n) => topologyHost(ctx.topology, n));
      for (const [a, b] of pairs(hosts)) await setCut(ctx.paths, a.address, b.address, false);
      break;
    }
    case 'slow':
      await unslowLink(ctx.paths, name, f);
      break;
    case 'disk-full':
      await sys(inHostArgv(ctx.paths.hostNsFiles(name), EMPTY_SCRIPT, [f.path!]));
      break;
  }
}

/** Kill every process of the host: SIGKILL (power cut) or SIGTERM first (shutdown). */
export async function stopHost(
  paths: TestnetPaths,
  name: string,
  graceful: boolean,
): Promise<void> {
  const ns = paths.hostNsFiles(name);
  if (graceful) {
    for (const pid of pidsInNamespaces([{ net: ns.net, mnt: ns.mnt }])) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // Gone already.
      }
    }
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && pidsInNamespaces([{ net: ns.net, mnt: ns.mnt }]).length > 0) {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  await killNamespaces([{ net: ns.net, mnt: ns.mnt }]);
}

/** Power the host back on: fresh /run, link up, sshd, then every enabled unit (`systemctl boot`). */
async function bootHost(ctx: Ctx, host: TopologyHost): Promise<void> {
  const ns = ctx.paths.hostNsFiles(host.name);
  await sys(
    inHostArgv(
      ns,
      'umount -l /run && mount -t tmpfs -o mode=0755,size=64m tmpfs /run && mkdir -p /run/sshd /run/lock && chmod 1777 /run/lock',
    ),
  );
  await setPort(ctx.paths, host.name, true);
  ctx.state.hosts[host.name]!.sshdPid = await ensureSshd(ctx.paths, host, undefined);
  await sys(inHostArgv(ns, '/usr/local/sbin/systemctl boot'));
}

async function slowLink(
  paths: TestnetPaths,
  name: string,
  o: { delayMs: number; lossPercent: number; rateKbit: number },
): Promise<Partial<FaultRecord>> {
  const sw = paths.switchNs;
  const { port, tapHost, tapSwitch, spare, spareBridge } = linkNames(name);
  const netem = ['netem', 'delay', `${o.delayMs}ms`, 'loss', `${o.lossPercent}%`];
  if (o.rateKbit > 0) netem.push('rate', `${o.rateKbit}kbit`);
  const tried = await sys(
    ['ip', 'netns', 'exec', sw, 'tc', 'qdisc', 'add', 'dev', port, 'root', ...netem],
    {
      nothrow: true,
    },
  );
  if (tried.exitCode === 0) {
    await sys([
      'ip',
      'netns',
      'exec',
      paths.hostNs(name),
      'tc',
      'qdisc',
      'add',
      'dev',
      'eth0',
      'root',
      ...netem,
    ]);
    return { mechanism: 'netem' };
  }
  if (!/unknown|not supported|No such file/i.test(tried.stderr)) {
    throw new BatonError(
      'COMMAND_FAILED',
      `testnet: netem on ${name} failed: ${tried.stderr.trim()}`,
    );
  }
  // No netem in this kernel: route the host's frames through a userspace delay line.
  await sys(['ip', '-n', sw, 'link', 'set', port, 'nomaster']);
  await sys(['ip', '-n', sw, 'link', 'add', spare, 'type', 'veth', 'peer', 'name', spareBridge]);
  await sys(['ip', '-n', sw, 'link', 'set', spareBridge, 'master', BRIDGE]);
  for (const dev of [spare, spareBridge]) await sys(['ip', '-n', sw, 'link', 'set', dev, 'up']);
  const devA = await addMacvtap(paths, tapHost, port);
  const devB = await addMacvtap(paths, tapSwitch, spare);
  const log = openSync(join(paths.dir, `delay-line-${name}.log`), 'a');
  const argv = daemonArgv([
    'delay-line',
    devA,
    devB,
    String(o.delayMs),
    String(o.lossPercent),
    String(o.rateKbit),
  ]);
  const child = spawn(argv[0]!, argv.slice(1), {
    detached: true,
    stdio: ['ignore', log, log],
    env: { ...process.env, NODE_OPTIONS: '', UV_THREADPOOL_SIZE: '8' },
  });
  closeSync(log);
  child.unref();
  await new Promise((r) => setTimeout(r, 50));
  if (child.exitCode !== null) {
    throw new BatonError(
      'COMMAND_FAILED',
      `testnet: the delay line for ${name} exited at once (see ${paths.dir}/delay-line-${name}.log)`,
    );
  }
  return { mechanism: 'delay-line', pid: child.pid! };
}

async function unslowLink(paths: TestnetPaths, name: string, f: FaultRecord): Promise<void> {
  const sw = paths.switchNs;
  const { port, tapHost, tapSwitch, spare } = linkNames(name);
  if (f.mechanism === 'netem') {
    await sys(['ip', 'netns', 'exec', sw, 'tc', 'qdisc', 'del', 'dev', port, 'root'], {
      nothrow: true,
    });
    await sys(
      ['ip', 'netns', 'exec', paths.hostNs(name), 'tc', 'qdisc', 'del', 'dev', 'eth0', 'root'],
      {
        nothrow: true,
      },
    );
    return;
  }
  if (f.pid && pidAlive(f.pid) && cmdline(f.pid).includes('delay-line'))
    process.kill(f.pid, 'SIGKILL');
  for (const dev of [tapHost, tapSwitch, spare]) {
    await sys(['ip', '-n', sw, 'link', 'del', dev], { nothrow: true });
  }
  await sys(['ip', '-n', sw, 'link', 'set', port, 'master', BRIDGE]);
}

/** A passthru macvtap on `lower`; returns its character device, /dev/tapN. */
async function addMacvtap(paths: TestnetPaths, name: string, lower: string): Promise<string> {
  const sw = paths.switchNs;
  for (let attempt = 0; attempt < 5; attempt++) {
    // An explicit, random ifindex keeps /dev/tapN unique across namespaces.
    const index = 20_000 + Math.floor(Math.random() * 40_000);
    if (existsSync(`/dev/tap${index}`)) continue;
    const out = await sys(
      [
        'ip',
        '-n',
        sw,
        'link',
        'add',
        'link',
        lower,
        'name',
        name,
        'index',
        String(index),
        'type',
        'macvtap',
        'mode',
        'passthru',
      ],
      { nothrow: true },
    );
    if (out.exitCode !== 0) continue;
    await sys(['ip', '-n', sw, 'link', 'set', name, 'up']);
    const dev = `/dev/tap${index}`;
    for (let i = 0; i < 100 && !existsSync(dev); i++) await new Promise((r) => setTimeout(r, 10));
    if (existsSync(dev)) return dev;
    // No devtmpfs: make the node from the numbers sysfs gives.
    const nums = await sys([
      'ip',
      'netns',
      'exec',
      sw,
      'cat',
      `/sys/class/net/${name}/macvtap/tap${index}/dev`,
    ]);
    const [major, minor] = nums.stdout.trim().split(':');
    const own = join(paths.dir, 'dev');
    mkdirSync(own, { recursive: true });
    await sys(['mknod', join(own, `tap${index}`), 'c', major!, minor!]);
    return join(own, `tap${index}`);
  }
  throw new BatonError('COMMAND_FAILED', `testnet: could not add macvtap ${name} on ${lower}`);
}

const FILL_SCRIPT = `set -eu
P=$1
[ -d "$P" ] || { echo "no directory $P on this host" >&2; exit 1; }
used=$(du -sk "$P" | cut -f1)
S=$(mktemp -d /run/baton-disk-full.XXXXXX)
mount -t tmpfs -o "size=$((used + 1024))k,mode=$(stat -c %a "$P"),uid=$(stat -c %u "$P"),gid=$(stat -c %g "$P")" baton-disk-full "$S"
cp -a "$P/." "$S/"
dd if=/dev/zero of="$S/.baton-disk-full" bs=4k 2>/dev/null || true
mount --move "$S" "$P"
rmdir "$S"
`;

const EMPTY_SCRIPT = `set -eu
P=$1
[ "$(findmnt -n -o SOURCE --mountpoint "$P" || true)" = baton-disk-full ] || exit 0
T=$(mktemp -d /var/tmp/baton-disk-heal.XXXXXX)
cp -a "$P/." "$T/"
rm -f "$T/.baton-disk-full"
umount "$P" 2>/dev/null || umount -l "$P"
find "$P" -mindepth 1 -delete
cp -a "$T/." "$P/"
rm -rf "$T"
`;

function topologyHost(topology: Topology, name: string): TopologyHost {
  const host = topology.hosts.find((h) => h.name === name);
  if (!host) {
    throw new InvalidInputError(
      `the testnet has no host named ${name}`,
      `Hosts: ${topology.hosts.map((h) => h.name).join(', ')}.`,
    );
  }
  return host;
}

function pairs<T>(items: T[]): [T, T][] {
  const out: [T, T][] = [];
  for (let i = 0; i < items.length; i++)
    for (let j = i + 1; j < items.length; j++) out.push([items[i]!, items[j]!]);
  return out;
}

function sameSet(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}
