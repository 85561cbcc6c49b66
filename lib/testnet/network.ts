/**
 * The testnet's wires: a switch namespace holding the bridge (192.0.2.1, the
 * relay's side) and one veth per host; nothing is added to the machine's own
 * network namespace, so testnet traffic has no way off the machine.
 */
import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { BatonError } from '../core/errors.ts';
import { daemonArgv } from './daemon.ts';
import { pidInNetns } from './procs.ts';
import type { TestnetPaths } from './state.ts';
import { sys } from './system.ts';
import { CONTROLLER_ADDRESS, PREFIX_LENGTH } from './topology.ts';

export const BRIDGE = 'br0';

/** Interface names in the switch namespace for a host's link. */
export function linkNames(host: string): {
  port: string;
  tapHost: string;
  tapSwitch: string;
  spare: string;
  spareBridge: string;
} {
  return {
    port: `v-${host}`,
    tapHost: `ta-${host}`,
    tapSwitch: `tb-${host}`,
    spare: `s-${host}`,
    spareBridge: `b-${host}`,
  };
}

export async function listNetns(): Promise<string[]> {
  const out = await sys(['ip', '-o', 'netns', 'list'], { nothrow: true });
  return out.stdout
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean);
}

export function inNs(ns: string, argv: readonly string[]): string[] {
  return ['ip', 'netns', 'exec', ns, ...argv];
}

/** A network namespace with loopback up and IPv6 off (the testnet is IPv4 only). */
export async function ensureNetns(name: string): Promise<void> {
  if (!existsSync(`/run/netns/${name}`)) await sys(['ip', 'netns', 'add', name]);
  await sys(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
  await sys([
    'nsenter',
    `--net=/run/netns/${name}`,
    'sysctl',
    '-q',
    '-w',
    'net.ipv6.conf.all.disable_ipv6=1',
    'net.ipv6.conf.default.disable_ipv6=1',
  ]);
}

export async function ensureSwitch(paths: TestnetPaths): Promise<void> {
  const ns = paths.switchNs;
  await ensureNetns(ns);
  const has = await sys(['ip', '-n', ns, 'link', 'show', BRIDGE], { nothrow: true });
  if (has.exitCode !== 0) {
    await sys([
      'ip',
      '-n',
      ns,
      'link',
      'add',
      BRIDGE,
      'type',
      'bridge',
      'stp_state',
      '0',
      'forward_delay',
      '0',
    ]);
    await sys([
      'ip',
      '-n',
      ns,
      'addr',
      'add',
      `${CONTROLLER_ADDRESS}/${PREFIX_LENGTH}`,
      'dev',
      BRIDGE,
    ]);
  }
  await sys(['ip', '-n', ns, 'link', 'set', BRIDGE, 'up']);
  // The switch namespace routes nothing: it is a dead end by construction.
  await sys(['nsenter', `--net=/run/netns/${ns}`, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=0']);
}

/** The host's eth0 (address, up) and its switch port `v-NAME` on the bridge. */
export async function ensureHostLink(
  paths: TestnetPaths,
  host: string,
  address: string,
  portUp: boolean,
): Promise<void> {
  const sw = paths.switchNs;
  const hostNs = paths.hostNs(host);
  const { port } = linkNames(host);
  const has = await sys(['ip', '-n', sw, 'link', 'show', port], { nothrow: true });
  if (has.exitCode !== 0) {
    await sys([
      'ip',
      'link',
      'add',
      port,
      'netns',
      sw,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      hostNs,
    ]);
    await sys(['ip', '-n', sw, 'link', 'set', port, 'master', BRIDGE]);
  }
  const addrs = await sys(['ip', '-n', hostNs, '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
  if (!addrs.stdout.includes(` ${address}/`)) {
    await sys(['ip', '-n', hostNs, 'addr', 'add', `${address}/${PREFIX_LENGTH}`, 'dev', 'eth0']);
  }
  await sys(['ip', '-n', hostNs, 'link', 'set', 'eth0', 'up']);
  if (portUp) await setPort(paths, host, true);
}

export async function setPort(paths: TestnetPaths, host: string, up: boolean): Promise<void> {
  await sys(['ip', '-n', paths.switchNs, 'link', 'set', linkNames(host).port, up ? 'up' : 'down']);
}

/** Start the relay inside the switch namespace unless it is running. Returns its pid. */
export async function ensureRelay(
  paths: TestnetPaths,
  current: number | undefined,
): Promise<number> {
  const netns = `/run/netns/${paths.switchNs}`;
  if (current && pidInNetns(current, netns) && existsSync(paths.relaySocket)) return current;
  const log = openSync(paths.relayLog, 'a');
  const argv = ['nsenter', `--net=${netns}`, '--', ...daemonArgv(['relay', paths.relaySocket])];
  const child = spawn(argv[0]!, argv.slice(1), {
    detached: true,
    stdio: ['ignore', log, log],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  closeSync(log);
  child.unref();
  const deadline = Date.now() + 15_000;
  while (!existsSync(paths.relaySocket)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new BatonError(
        'PRECONDITION_FAILED',
        `the testnet relay did not start (see ${paths.relayLog})`,
        'Run `baton testnet down`, then `baton testnet up` again.',
      );
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return child.pid!;
}

/** nftables in the switch: dropped pairs of addresses, for partitions. */
export async function ensurePartitionTable(paths: TestnetPaths): Promise<void> {
  const script = [
    'table bridge baton {',
    '  set cut { type ipv4_addr . ipv4_addr; }',
    '  chain forward {',
    '    type filter hook forward priority 0; policy accept;',
    '    ip saddr . ip daddr @cut drop',
    '  }',
    '}',
  ].join('\n');
  const has = await sys(
    ['nsenter', `--net=/run/netns/${paths.switchNs}`, 'nft', 'list', 'table', 'bridge', 'baton'],
    {
      nothrow: true,
    },
  );
  if (has.exitCode !== 0) {
    await sys(['nsenter', `--net=/run/netns/${paths.switchNs}`, 'nft', '-f', '-'], {
      input: script,
    });
  }
}

export async function setCut(
  paths: TestnetPaths,
  a: string,
  b: string,
  cut: boolean,
): Promise<void> {
  await ensurePartitionTable(paths);
  const verb = cut ? 'add' : 'delete';
  const elements = `{ ${a} . ${b}, ${b} . ${a} }`;
  const out = await sys(
    [
      'nsenter',
      `--net=/run/netns/${paths.switchNs}`,
      'nft',
      verb,
      'element',
      'bridge',
      'baton',
      'cut',
      elements,
    ],
    { nothrow: true },
  );
  if (out.exitCode !== 0 && cut) {
    throw new BatonError(
      'COMMAND_FAILED',
      `testnet: cutting ${a} from ${b} failed: ${out.stderr.trim()}`,
    );
  }
}
