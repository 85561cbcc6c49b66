/** Where a testnet keeps its state, and the state itself: `.baton/testnet/` (or $BATON_HOME/testnet/). */
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { BatonError } from '../core/errors.ts';
import { projectOf, type ProjectRef } from '../core/project.ts';

export type FaultKind = 'host-down' | 'link-down' | 'partition' | 'slow' | 'disk-full';

export interface FaultRecord {
  kind: FaultKind;
  hosts: string[];
  options: Record<string, number | string | boolean>;
  since: string;
  /** slow: `netem` or `delay-line`; the delay line's pid. */
  mechanism?: string;
  pid?: number;
  /** disk-full: the directory that was filled. */
  path?: string;
}

export interface HostState {
  address: string;
  /** `SHA256:` fingerprint of the host's ed25519 host key. */
  hostKey: string;
  sshdPid?: number;
}

export interface TestnetState {
  version: 1;
  id: string;
  topology: string;
  createdAt: string;
  /** Whether `up` created the baton home directory (so `down` may remove it when empty). */
  createdHome: boolean;
  relayPid?: number;
  hosts: Record<string, HostState>;
  faults: FaultRecord[];
}

export interface TestnetPaths {
  /** The baton home: $BATON_HOME, else `.baton/` in the project root (core/project.ts). */
  home: string;
  dir: string;
  id: string;
  stateFile: string;
  inventoryFile: string;
  /** The controller's private key for logging in to testnet hosts. */
  keyFile: string;
  relaySocket: string;
  relayLog: string;
  /** Bind mounts that keep each host's mount and UTS namespaces alive. */
  nsDir: string;
  lockFile: string;
  switchNs: string;
  hostNs(name: string): string;
  hostDir(name: string): string;
  hostNsFiles(name: string): { net: string; mnt: string; uts: string };
}

/** `at`: the project, or a directory to find it from. */
export function testnetPaths(at: ProjectRef = process.cwd(), env = process.env): TestnetPaths {
  const project = projectOf(at, env);
  const home = project.home;
  // BATON_TESTNET: a second controller (another checkout, another BATON_HOME) on the same testnet.
  const dir = env['BATON_TESTNET']
    ? resolve(project.cwd, env['BATON_TESTNET'])
    : join(home, 'testnet');
  // Namespace names are global: derive them from the state directory so two
  // testnets (say, two checkouts, or parallel test files) never collide.
  const id = createHash('sha256').update(dir).digest('hex').slice(0, 6);
  const socket = join(dir, 'relay.sock');
  return {
    home,
    dir,
    id,
    stateFile: join(dir, 'state.json'),
    inventoryFile: join(dir, 'inventory.json'),
    keyFile: join(dir, 'id_ed25519'),
    // A unix socket path must fit in 108 bytes.
    relaySocket: socket.length < 100 ? socket : `/run/baton-testnet-${id}.sock`,
    relayLog: join(dir, 'relay.log'),
    nsDir: join(dir, 'ns'),
    lockFile: join(home, 'testnet.lock'),
    switchNs: `baton-${id}-sw`,
    hostNs: (name) => `baton-${id}-${name}`,
    hostDir: (name) => join(dir, 'hosts', name),
    hostNsFiles: (name) => ({
      net: `/run/netns/baton-${id}-${name}`,
      mnt: join(dir, 'ns', `${name}.mnt`),
      uts: join(dir, 'ns', `${name}.uts`),
    }),
  };
}

export function readState(paths: TestnetPaths): TestnetState | undefined {
  if (!existsSync(paths.stateFile)) return undefined;
  try {
    return JSON.parse(readFileSync(paths.stateFile, 'utf8')) as TestnetState;
  } catch (e) {
    throw new BatonError(
      'PRECONDITION_FAILED',
      `testnet state ${paths.stateFile} is unreadable: ${(e as Error).message}`,
      'Run `baton testnet down` to remove what it can find, then `baton testnet up`.',
    );
  }
}

export function writeState(paths: TestnetPaths, state: TestnetState): void {
  const temp = `${paths.stateFile}.tmp`;
  writeFileSync(temp, JSON.stringify(state, null, 2) + '\n');
  renameSync(temp, paths.stateFile);
}

export function pidAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** One testnet command at a time per state directory. */
export function acquireLock(paths: TestnetPaths): () => void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(paths.lockFile, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => {
        try {
          unlinkSync(paths.lockFile);
        } catch {
          // Already gone.
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = Number(readFileSync(paths.lockFile, 'utf8').trim());
      if (pidAlive(holder) && holder !== process.pid) {
        throw new BatonError(
          'RUN_LOCKED',
          `another testnet command (pid ${holder}) is changing the testnet in ${paths.dir}`,
          'Wait for it to finish; if that process is gone, remove ' + paths.lockFile + '.',
        );
      }
      unlinkSync(paths.lockFile);
    }
  }
  throw new BatonError('RUN_LOCKED', `could not take the testnet lock ${paths.lockFile}`);
}
