/**
 * The local testnet: real hosts on one Linux machine, made of network, mount
 * and UTS namespaces with a real sshd each, wired to a private bridge in
 * 192.0.2.0/24. The controller reaches them only over ssh, through a relay in
 * the switch namespace. See lib/testnet/README.md.
 */
import type { Socket } from 'node:net';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { BatonError, InvalidInputError } from '../core/errors.ts';
import type { CommandResult, ExecOptions } from '../core/exec.ts';
import { findHost, parseInventory, type Inventory } from '../core/inventory.ts';
import { sh } from '../core/shell.ts';
import { SshPool } from '../transports/ssh.ts';
import { applyFault, healFaults, parseFaultKind, type FaultOptions } from './faults.ts';
import { ensureHostNamespaces, ensureSshd, prepareHostFiles, provisionHost } from './host.ts';
import { ensureHostLink, ensureNetns, ensureRelay, ensureSwitch, listNetns } from './network.ts';
import { provisionIrc } from './irc-provision.ts';
import { ensurePackages } from './packages.ts';
import { cmdline, isMountPoint, killNamespaces, mountsUnder, pidInNetns } from './procs.ts';
import { dialRelay } from './relay.ts';
import { generateKey } from './sshd.ts';
import { testnetRoute } from './stack.ts';
import {
  acquireLock,
  pidAlive,
  readState,
  testnetPaths,
  writeState,
  type FaultRecord,
  type TestnetPaths,
  type TestnetState,
} from './state.ts';
import { sys } from './system.ts';
import { findTopology, validateTopology, type Topology } from './topology.ts';

export { testnetRoute, testnetStackSource, LOCAL_STACK } from './stack.ts';
export { type FaultOptions } from './faults.ts';
export { FAULT_KINDS } from './names.ts';
export type { FaultKind, FaultRecord } from './state.ts';
export {
  topologies,
  findTopology,
  type Topology,
  type TopologyHost,
  type ServiceSpec,
} from './topology.ts';

export interface UpOptions {
  /** Topology name; default `irc`. */
  topology?: string;
  /** Where notices go (package installs); default stderr. */
  log?: (line: string) => void;
  /** Skip the Debian package check (tests that know the machine is ready). */
  skipPackages?: boolean;
}

export interface UpResult {
  topology: string;
  dir: string;
  inventory: Inventory;
  /** Whether anything had to be created or restarted (false: it was already up). */
  changed: boolean;
  durationMs: number;
}

export interface ServiceStatus {
  name: string;
  /** `active`, `inactive`, `failed`, `not-installed`, or `unknown` when the host is unreachable. */
  state: string;
}

export interface HostStatus {
  name: string;
  address: string;
  roles: string[];
  /** Namespaces exist and the sshd process runs. */
  sshd: 'running' | 'stopped';
  /** An ssh login (through the relay, with the pinned host key) succeeded. */
  reachable: boolean;
  error?: string;
  services: ServiceStatus[];
  faults: string[];
}

export interface TestnetStatus {
  up: boolean;
  dir: string;
  topology?: string;
  relay?: 'running' | 'stopped';
  hosts: HostStatus[];
  faults: FaultRecord[];
}

export interface DownResult {
  dir: string;
  /** Namespaces removed. */
  namespaces: string[];
  processesKilled: number;
}

export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) {
    throw new BatonError(
      'NOT_ROOT',
      `${what} needs root: it creates network and mount namespaces, veths and mounts`,
      'Run it as root, e.g. `sudo npx baton testnet up`.',
    );
  }
}

/** Bring the testnet up, or repair a running one; idempotent. */
export async function up(options: UpOptions = {}): Promise<UpResult> {
  const started = performance.now();
  requireRoot('testnet up');
  const topology = findTopology(options.topology ?? 'irc');
  validateTopology(topology);
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  if (!options.skipPackages) await ensurePackages(log);
  const paths = testnetPaths();
  if (/^\/(etc|var)(\/|$)/.test(paths.dir)) {
    throw new InvalidInputError(
      `the testnet state directory ${paths.dir} cannot live under /etc or /var: hosts overlay those`,
      'Set BATON_HOME elsewhere, or run from another directory.',
    );
  }
  const createdHome = !existsSync(paths.home);
  mkdirSync(paths.home, { recursive: true });
  const release = acquireLock(paths);
  try {
    let state = readState(paths);
    if (state && state.topology !== topology.name) {
      throw new InvalidInputError(
        `the testnet in ${paths.dir} runs topology ${state.topology}, not ${topology.name}`,
        'Run `baton testnet down` first.',
      );
    }
    let changed = !state;
    mkdirSync(paths.nsDir, { recursive: true });
    state ??= {
      version: 1,
      id: paths.id,
      topology: topology.name,
      createdAt: new Date().toISOString(),
      createdHome,
      hosts: {},
      faults: [],
    };
    writeState(paths, state);
    if (!existsSync(paths.keyFile)) await generateKey(paths.keyFile, 'baton-testnet-controller');
    const publicKey = readFileSync(`${paths.keyFile}.pub`, 'utf8');
    if (!isMountPoint(paths.nsDir)) {
      // Namespace files can only be bind-mounted onto a private mount.
      await sys(['mount', '--bind', paths.nsDir, paths.nsDir]);
      await sys(['mount', '--make-private', paths.nsDir]);
      changed = true;
    }
    await ensureSwitch(paths);
    const relay = ensureRelay(paths, state.relayPid);
    const downHosts = new Set(
      state.faults.filter((f) => f.kind === 'host-down').map((f) => f.hosts[0]),
    );
    const unplugged = new Set(
      state.faults
        .filter((f) => f.kind === 'host-down' || f.kind === 'link-down')
        .map((f) => f.hosts[0]),
    );
    const current = state;
    await Promise.all(
      topology.hosts.map(async (host) => {
        const hostKey = await prepareHostFiles(paths, topology, host, publicKey);
        await ensureNetns(paths.hostNs(host.name));
        const hadNamespaces = isMountPoint(paths.hostNsFiles(host.name).mnt);
        await ensureHostLink(paths, host.name, host.address, !unplugged.has(host.name));
        await ensureHostNamespaces(paths, host);
        await provisionHost(paths, host);
        const previous = current.hosts[host.name];
        let sshdPid = previous?.sshdPid;
        if (!downHosts.has(host.name)) sshdPid = await ensureSshd(paths, host, sshdPid);
        if (!hadNamespaces || sshdPid !== previous?.sshdPid) changed = true;
        current.hosts[host.name] = {
          address: host.address,
          hostKey,
          ...(sshdPid ? { sshdPid } : {}),
        };
      }),
    );
    const relayPid = await relay;
    if (relayPid !== state.relayPid) changed = true;
    state.relayPid = relayPid;
    writeState(paths, state);
    const inventory = buildInventory(paths, topology, state);
    writeFileSync(paths.inventoryFile, JSON.stringify(inventory, null, 2) + '\n');
    const cutOff = [...unplugged].filter((h): h is string => !!h);
    await waitReachable(inventory, cutOff);
    if (topology.name === 'irc') {
      const irc = await provisionIrc({ paths, inventory, unavailable: cutOff, log });
      if (irc.changed) changed = true;
    }
    return {
      topology: topology.name,
      dir: paths.dir,
      inventory,
      changed,
      durationMs: Math.round(performance.now() - started),
    };
  } finally {
    release();
  }
}

/** Remove everything the testnet made: processes, namespaces, mounts, veths, files. */
export async function down(): Promise<DownResult> {
  requireRoot('testnet down');
  const paths = testnetPaths();
  if (!existsSync(paths.home)) return { dir: paths.dir, namespaces: [], processesKilled: 0 };
  const release = acquireLock(paths);
  const state = readState(paths);
  try {
    for (const f of state?.faults ?? []) {
      if (f.pid && pidAlive(f.pid) && cmdline(f.pid).includes('delay-line'))
        process.kill(f.pid, 'SIGKILL');
    }
    const prefix = `baton-${paths.id}-`;
    const ours = (await listNetns()).filter((n) => n.startsWith(prefix));
    const hostNames = new Set([
      ...Object.keys(state?.hosts ?? {}),
      ...ours.filter((n) => n !== paths.switchNs).map((n) => n.slice(prefix.length)),
      ...(existsSync(paths.nsDir)
        ? readdirSync(paths.nsDir).map((f) => f.replace(/\.(mnt|uts)$/, ''))
        : []),
    ]);
    const nsFiles = [...hostNames].map((h) => {
      const f = paths.hostNsFiles(h);
      return { net: f.net, mnt: f.mnt };
    });
    nsFiles.push({ net: `/run/netns/${paths.switchNs}`, mnt: '' });
    const killed = await killNamespaces(nsFiles.map((f) => (f.mnt ? f : { net: f.net })));
    for (const h of hostNames) {
      const f = paths.hostNsFiles(h);
      for (const file of [f.mnt, f.uts]) if (isMountPoint(file)) await sys(['umount', file]);
    }
    for (const ns of ours) await sys(['ip', 'netns', 'del', ns]);
    if (isMountPoint(paths.nsDir)) await sys(['umount', paths.nsDir]);
    const left = mountsUnder(paths.dir);
    if (left.length > 0) {
      throw new BatonError(
        'PRECONDITION_FAILED',
        `testnet down: mounts remain under ${paths.dir}: ${left.join(', ')}; not deleting it`,
        'Unmount them by hand, then run `baton testnet down` again.',
      );
    }
    rmSync(paths.dir, { recursive: true, force: true });
    if (!paths.relaySocket.startsWith(paths.dir)) rmSync(paths.relaySocket, { force: true });
    return { dir: paths.dir, namespaces: ours, processesKilled: killed };
  } finally {
    release();
    if (state?.createdHome) {
      try {
        rmdirSync(paths.home);
      } catch {
        // Not empty: something else lives there now.
      }
    }
  }
}

/** Hosts, addresses, services and faults; reachability is checked over ssh. */
export async function status(options: { pool?: SshPool } = {}): Promise<TestnetStatus> {
  const paths = testnetPaths();
  const state = readState(paths);
  if (!state) return { up: false, dir: paths.dir, hosts: [], faults: [] };
  const topology = findTopology(state.topology);
  const inventory = readInventory(paths);
  const pool = options.pool ?? testnetPool({ readyTimeoutMs: 10_000 });
  try {
    const hosts = await Promise.all(
      topology.hosts.map(async (h): Promise<HostStatus> => {
        const ns = paths.hostNsFiles(h.name);
        const sshdPid = state.hosts[h.name]?.sshdPid;
        const running = pidInNetns(sshdPid, ns.net);
        const faults = state.faults.filter((f) => f.hosts.includes(h.name)).map((f) => f.kind);
        const base = {
          name: h.name,
          address: h.address,
          roles: h.roles,
          sshd: running ? ('running' as const) : ('stopped' as const),
          faults,
        };
        const script = h.services
          .map(
            (s) =>
              sh`if [ "$(systemctl show -p LoadState --value ${s.name})" = not-found ]; then echo ${s.name} not-installed; else echo ${s.name} "$(systemctl is-active ${s.name})"; fi`
                .text,
          )
          .join('; ');
        try {
          const out = await pool.exec(findHost(inventory, h.name), script || 'true', {
            timeoutMs: 10_000,
          });
          const states = new Map(
            out.stdout
              .trim()
              .split('\n')
              .filter(Boolean)
              .map((l) => l.split(' ') as [string, string]),
          );
          return {
            ...base,
            reachable: true,
            services: h.services.map((s) => ({
              name: s.name,
              state: states.get(s.name) ?? 'unknown',
            })),
          };
        } catch (e) {
          return {
            ...base,
            reachable: false,
            error: (e as Error).message,
            services: h.services.map((s) => ({ name: s.name, state: 'unknown' })),
          };
        }
      }),
    );
    const relayUp = pidInNetns(state.relayPid, `/run/netns/${paths.switchNs}`);
    return {
      up: true,
      dir: paths.dir,
      topology: state.topology,
      relay: relayUp ? 'running' : 'stopped',
      hosts,
      faults: state.faults,
    };
  } finally {
    if (!options.pool) await pool.close();
  }
}

/** The inventory of the running testnet. */
export function inventory(): Inventory {
  return readInventory(testnetPaths());
}

/**
 * A TCP connection to `address:port` inside the testnet, through the relay:
 * the controller has no route of its own into 192.0.2.0/24 (for IRC or DNS
 * probes from the controller; runbooks reach hosts over ssh).
 */
export function dial(address: string, port: number): Promise<Socket> {
  return dialRelay(testnetPaths().relaySocket, address, port);
}

/** An ssh pool that reaches testnet hosts through the relay. Close it when done. */
export function testnetPool(options: ConstructorParameters<typeof SshPool>[0] = {}): SshPool {
  return new SshPool({ routes: [testnetRoute], ...options });
}

/**
 * Run a command on a testnet host over ssh: a string is a shell command line;
 * an array is an argv, each word quoted.
 */
export async function exec(
  host: string,
  command: string | readonly string[],
  options: ExecOptions & { pool?: SshPool } = {},
): Promise<CommandResult> {
  const { pool: given, ...execOptions } = options;
  const target = findHost(inventory(), host);
  const line = typeof command === 'string' ? command : sh`${command}`.text;
  const pool = given ?? testnetPool();
  try {
    return await pool.exec(target, line, execOptions);
  } finally {
    if (!given) await pool.close();
  }
}

/** Inject a fault; see FaultOptions. Returns the fault as recorded. */
export async function fault(
  kind: string,
  hosts: string[],
  options: FaultOptions = {},
): Promise<FaultRecord> {
  requireRoot('testnet fault');
  return withRunningTestnet(async (ctx) => applyFault(ctx, parseFaultKind(kind), hosts, options));
}

/** Heal faults: all of them, those of one kind, or those of a kind on given hosts. */
export async function heal(kind?: string, hosts: string[] = []): Promise<FaultRecord[]> {
  requireRoot('testnet heal');
  const parsed = kind ? parseFaultKind(kind) : undefined;
  const healed = await withRunningTestnet(async (ctx) => healFaults(ctx, parsed, hosts));
  const downHosts = healed.filter((f) => f.kind === 'host-down').map((f) => f.hosts[0]!);
  if (downHosts.length > 0) await waitReachable(inventory(), [], downHosts);
  return healed;
}

async function withRunningTestnet<T>(
  body: (ctx: { paths: TestnetPaths; state: TestnetState; topology: Topology }) => Promise<T>,
): Promise<T> {
  const paths = testnetPaths();
  if (!existsSync(paths.stateFile)) {
    throw new BatonError(
      'PRECONDITION_FAILED',
      `no testnet is up in ${paths.dir}`,
      'Run `baton testnet up` first.',
    );
  }
  const release = acquireLock(paths);
  try {
    const state = readState(paths)!;
    const ctx = { paths, state, topology: findTopology(state.topology) };
    try {
      return await body(ctx);
    } finally {
      writeState(paths, ctx.state);
    }
  } finally {
    release();
  }
}

function buildInventory(paths: TestnetPaths, topology: Topology, state: TestnetState): Inventory {
  return parseInventory(
    {
      stack: 'local',
      hosts: topology.hosts.map((h) => ({
        name: h.name,
        roles: h.roles,
        address: h.address,
        connection: 'ssh',
        ssh: {
          user: 'root',
          port: 22,
          hostKeys: [state.hosts[h.name]!.hostKey],
          identityFile: paths.keyFile,
        },
        provider: 'testnet',
        region: 'local',
      })),
      ...(topology.dns ? { dns: topology.dns } : {}),
      testnet: { id: paths.id },
    },
    'the local testnet',
  );
}

function readInventory(paths: TestnetPaths): Inventory {
  if (!existsSync(paths.inventoryFile)) {
    throw new BatonError(
      'PRECONDITION_FAILED',
      `no testnet is up in ${paths.dir}`,
      'Run `baton testnet up` first.',
    );
  }
  return parseInventory(JSON.parse(readFileSync(paths.inventoryFile, 'utf8')), paths.inventoryFile);
}

/** Wait until every host (but `except`) accepts an ssh login; sshd is listening, so this is quick. */
async function waitReachable(inv: Inventory, except: string[], only?: string[]): Promise<void> {
  const pool = testnetPool({ readyTimeoutMs: 10_000 });
  try {
    const targets = inv.hosts.filter(
      (h) => !except.includes(h.name) && (!only || only.includes(h.name)),
    );
    await Promise.all(
      targets.map(async (h) => {
        const deadline = Date.now() + 30_000;
        for (;;) {
          try {
            await pool.exec(h, 'true', { timeoutMs: 10_000 });
            return;
          } catch (e) {
            if (Date.now() > deadline) {
              throw new BatonError(
                'PRECONDITION_FAILED',
                `testnet host ${h.name} is not reachable over ssh: ${(e as Error).message}`,
                'See its sshd log under the testnet directory, or run `baton testnet down` and `up`.',
              );
            }
            await pool.drop(h);
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      }),
    );
  } finally {
    await pool.close();
  }
}
