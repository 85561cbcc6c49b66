/**
 * A real OpenSSH server on 127.0.0.1 for tests: its own host key, its own
 * authorized_keys and client key, in a private mount namespace so its
 * privilege-separation directory (/run/sshd) never touches the machine.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Host } from '../../lib/core/inventory.ts';
import { generateKey, sshdConfig } from '../../lib/testnet/sshd.ts';

export interface TestSshd {
  dir: string;
  port: number;
  pid: number;
  hostKeyFingerprint: string;
  identityFile: string;
  /** A Host for this server; several names give several pooled connections to the same sshd. */
  host(name?: string, overrides?: Partial<NonNullable<Host['ssh']>>): Host;
  /** Pids of the per-connection sshd processes (children of the listener). */
  sessionPids(): number[];
  /** The per-connection sshd process (a child of the listener) above process `pid`. */
  sessionOf(pid: number): number | undefined;
  /** Replace the host key and restart, keeping the port: the host "was rebuilt". */
  rekey(): Promise<string>;
  stop(): Promise<void>;
}

/** Why real-sshd tests cannot run here, or undefined when they can. */
export function sshdUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (sshd runs in a private mount namespace)';
  if (!existsSync('/usr/sbin/sshd')) return 'needs /usr/sbin/sshd (Debian package openssh-server)';
  return undefined;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

export async function startSshd(
  options: { maxSessions?: number; extraConfig?: string[] } = {},
): Promise<TestSshd> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-sshd-'));
  const port = await freePort();
  let hostKeyFingerprint = await generateKey(join(dir, 'host_ed25519'), 'test-host');
  await generateKey(join(dir, 'client_ed25519'), 'test-client');
  await copyFile(join(dir, 'client_ed25519.pub'), join(dir, 'authorized_keys'));
  await writeFile(
    join(dir, 'sshd_config'),
    sshdConfig({
      listenAddress: '127.0.0.1',
      port,
      hostKey: join(dir, 'host_ed25519'),
      pidFile: join(dir, 'sshd.pid'),
      authorizedKeysFile: join(dir, 'authorized_keys'),
      strictModes: false,
      ...(options.maxSessions ? { maxSessions: options.maxSessions } : {}),
    }) + (options.extraConfig ?? []).map((line) => `${line}\n`).join(''),
  );
  let child = await launch(dir, port);

  const self: TestSshd = {
    dir,
    port,
    get pid() {
      return child.pid!;
    },
    get hostKeyFingerprint() {
      return hostKeyFingerprint;
    },
    identityFile: join(dir, 'client_ed25519'),
    host(name = 'local', overrides = {}) {
      return {
        name,
        roles: [],
        address: '127.0.0.1',
        connection: 'ssh',
        ssh: {
          user: 'root',
          port,
          hostKeys: [hostKeyFingerprint],
          identityFile: join(dir, 'client_ed25519'),
          ...overrides,
        },
      };
    },
    sessionPids() {
      try {
        return execFileSync('pgrep', ['-P', String(child.pid)])
          .toString()
          .trim()
          .split('\n')
          .filter(Boolean)
          .map(Number);
      } catch {
        return [];
      }
    },
    sessionOf(pid) {
      const sessions = new Set(self.sessionPids());
      for (let p = pid; p > 1; p = parentOf(p)) if (sessions.has(p)) return p;
      return undefined;
    },
    async rekey() {
      await stopChild(child);
      await rm(join(dir, 'host_ed25519'));
      await rm(join(dir, 'host_ed25519.pub'));
      hostKeyFingerprint = await generateKey(join(dir, 'host_ed25519'), 'test-host-rebuilt');
      child = await launch(dir, port);
      return hostKeyFingerprint;
    },
    async stop() {
      await stopChild(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return self;
}

function parentOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0;
  }
}

async function launch(dir: string, port: number): Promise<ChildProcess> {
  const script =
    'mount -t tmpfs -o mode=755 tmpfs /run && mkdir -m 755 /run/sshd && exec /usr/sbin/sshd -D -e -f "$1" ${BATON_SSHD_DEBUG:+-o LogLevel=DEBUG1}';
  const child = spawn(
    'unshare',
    ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sshd', join(dir, 'sshd_config')],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    log += chunk.toString();
    if (process.env.BATON_SSHD_LOG) process.stderr.write(chunk);
  });
  const deadline = Date.now() + 5_000;
  while (!log.includes(`Server listening on 127.0.0.1 port ${port}`)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`test sshd did not start: ${log || `exit ${child.exitCode}`}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return child;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  // Sessions outlive the listener; a stopped server drops its connections too.
  try {
    execFileSync('pkill', ['-KILL', '-P', String(child.pid)]);
  } catch {
    // No sessions.
  }
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

export async function readText(path: string): Promise<string> {
  return readFile(path, 'utf8');
}
