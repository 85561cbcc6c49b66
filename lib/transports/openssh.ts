/**
 * Hosts the built-in ssh client (ssh2) cannot log in to, reached through the
 * real OpenSSH client instead: a security-key identity (sk-ssh-ed25519,
 * sk-ecdsa-sha2-nistp256) or a ProxyCommand. One master connection per host
 * (ControlMaster), so a security key is touched once per host, not once per
 * command; every command is a session multiplexed over it.
 *
 * The host key is still the inventory's pin, not known_hosts: the master's
 * KnownHostsCommand vouches for the presented key only when its fingerprint
 * is pinned. Jump hosts are checked by OpenSSH against known_hosts with
 * StrictHostKeyChecking forced on.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Duplex, type Readable } from 'node:stream';

export interface OpenSshTarget {
  /** What `ssh` is given as destination: the inventory address. */
  alias: string;
  /** Inventory values, put on the command line so they win over the config file. */
  user?: string;
  port?: number;
  identityFile?: string;
  /** Host key fingerprints the inventory pins. */
  pinned: string[];
}

export interface OpenSshOptions {
  ssh: string;
  /** The operator's ssh config (`-F`); by default ~/.ssh/config, then /etc/ssh/ssh_config. */
  configFile?: string;
  /** Private directory (mode 700) for control sockets, logs, the pins and the KnownHostsCommand script. */
  dir: string;
  agent?: string;
  /** TCP connect to the host (or its first jump host). */
  connectTimeoutMs: number;
  /** Login, including the wait for a touch of the security key. */
  loginTimeoutMs: number;
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
}

/** Why the master connection could not log in; ssh.ts turns it into a BatonError. */
export class OpenSshLoginError extends Error {
  /** The fingerprint of the key the host presented, when it got that far. */
  readonly presented: string | undefined;
  readonly hostKeyRefused: boolean;
  readonly loginRefused: boolean;
  constructor(message: string, presented: string | undefined, said: string) {
    super(message);
    this.name = 'OpenSshLoginError';
    this.presented = presented;
    this.hostKeyRefused =
      /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/.test(said);
    this.loginRefused = /Permission denied \(/.test(said);
  }
}

/**
 * KnownHostsCommand: prints a known_hosts line for the presented key only when
 * its fingerprint is in the pins file, and notes every fingerprint presented.
 * OpenSSH also runs it before the key is known, with `NONE`.
 */
const PINNED_KEY_SCRIPT = `pins=$1 seen=$2 fp=$3
[ -n "$fp" ] && [ "$fp" != NONE ] || exit 0
printf '%s\\n' "$fp" >> "$seen"
grep -qxF -- "$fp" "$pins" && printf '%s %s %s\\n' "$4" "$5" "$6"
exit 0
`;

/** Masters still running when the process exits are ended with it. */
const running = new Set<ChildProcess>();
let exitHook = false;

let serial = 0;

/** One logged-in OpenSSH master connection to a host. Emits `dead` once it is gone. */
export class OpenSshMaster extends EventEmitter {
  private dead = false;
  private constructor(
    private readonly options: OpenSshOptions,
    private readonly child: ChildProcess,
    private readonly control: string,
  ) {
    super();
    if (child.exitCode !== null || child.signalCode !== null) setImmediate(() => this.markDead());
    else child.once('exit', () => this.markDead());
  }

  /** Log in; resolves once commands can be multiplexed over the connection. */
  static async start(target: OpenSshTarget, options: OpenSshOptions): Promise<OpenSshMaster> {
    const id = `m${++serial}`;
    const control = join(options.dir, id);
    const pins = `${control}.pins`;
    const seen = `${control}.seen`;
    const log = `${control}.log`;
    writeFileSync(pins, target.pinned.map((p) => `${p}\n`).join(''), { mode: 0o600 });
    const script = join(options.dir, 'pinned-key.sh');
    if (!existsSync(script)) writeFileSync(script, PINNED_KEY_SCRIPT, { mode: 0o600 });
    const config = strictConfig(options);
    const args = [
      '-F',
      config,
      '-N',
      '-T',
      '-E',
      log,
      '-o',
      'ControlMaster=yes',
      '-o',
      `ControlPath=${control}`,
      '-o',
      'ControlPersist=no',
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'UserKnownHostsFile=none',
      '-o',
      'GlobalKnownHostsFile=none',
      '-o',
      'CheckHostIP=no',
      '-o',
      `KnownHostsCommand=/bin/sh ${script} ${pins} ${seen} %f %H %t %K`,
      '-o',
      `ConnectTimeout=${Math.max(1, Math.ceil(options.connectTimeoutMs / 1000))}`,
      '-o',
      `ServerAliveInterval=${Math.max(1, Math.round(options.keepaliveIntervalMs / 1000))}`,
      '-o',
      `ServerAliveCountMax=${options.keepaliveCountMax}`,
      ...(options.agent ? ['-o', `IdentityAgent=${options.agent}`] : []),
      ...(target.user ? ['-l', target.user] : []),
      ...(target.port ? ['-p', String(target.port)] : []),
      ...(target.identityFile ? ['-i', target.identityFile] : []),
      '--',
      target.alias,
    ];
    const child = spawn(options.ssh, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    running.add(child);
    child.once('exit', () => running.delete(child));
    if (!exitHook) {
      exitHook = true;
      process.once('exit', () => running.forEach((c) => c.kill('SIGTERM')));
    }
    // Jump hosts' ssh (a ProxyCommand of the master) writes to the master's stderr.
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const said = (): string =>
      [readText(log), stderr]
        .join('\n')
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean)
        .join(' | ');
    const presented = (): string | undefined =>
      readText(seen).trim().split('\n').pop() || undefined;
    const deadline = Date.now() + options.loginTimeoutMs;
    try {
      for (;;) {
        if (child.exitCode !== null || child.signalCode !== null) {
          await new Promise((r) => setImmediate(r));
          const text = said();
          throw new OpenSshLoginError(
            text || `the OpenSSH client exited ${child.exitCode ?? child.signalCode}`,
            presented(),
            text,
          );
        }
        if (existsSync(control)) break;
        if (Date.now() > deadline) {
          child.kill('SIGTERM');
          throw new OpenSshLoginError(
            `Timed out while waiting for handshake: no login within ${options.loginTimeoutMs} ms${said() ? `: ${said()}` : ''}`,
            presented(),
            said(),
          );
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    } finally {
      rmSync(seen, { force: true });
    }
    child.stderr!.removeAllListeners('data');
    child.stderr!.resume();
    return new OpenSshMaster(options, child, control);
  }

  /** A session running `command` (already free of secrets: see `delivery`) on the host. */
  exec(command: string): SessionChannel {
    return this.client(['--', 'baton-mux', command]);
  }

  /** A byte stream to 127.0.0.1:`port` as the host sees it (`ssh -W`). */
  forward(port: number): SessionChannel {
    return this.client(['-W', `127.0.0.1:${port}`, '--', 'baton-mux']);
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.markDead();
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 2_000);
    await exited;
    clearTimeout(timer);
  }

  /**
   * A multiplexed client: no config file of the operator's, and a ProxyCommand
   * that fails, so a missing master is an error, never a second login.
   */
  private client(rest: string[]): SessionChannel {
    const log = `${this.control}.${++serial}.log`;
    const args = [
      '-F',
      '/dev/null',
      '-T',
      '-E',
      log,
      '-o',
      'BatchMode=yes',
      '-o',
      'ControlMaster=no',
      '-o',
      `ControlPath=${this.control}`,
      '-o',
      'ProxyCommand=/bin/false',
      ...rest,
    ];
    const child = spawn(this.options.ssh, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    return new SessionChannel(child, (code, signal) => this.outcome(code, signal, log));
  }

  /**
   * The mux client exits 255 both for a command that exited 255 and for a
   * connection that failed; its own log and whether the master still answers
   * tell them apart. A remote command killed by a signal also shows as 255:
   * the mux protocol carries no signal.
   */
  private async outcome(
    code: number | null,
    signal: NodeJS.Signals | null,
    log: string,
  ): Promise<{ exit?: number; failure?: Error }> {
    const said = readText(log).trim().split('\n').filter(Boolean).join(' | ');
    rmSync(log, { force: true });
    if (signal) return { failure: new Error(`the OpenSSH client was stopped (${signal})`) };
    if (code === null) return { failure: new Error('the OpenSSH client did not run') };
    if (code !== 255) return { exit: code };
    if (!(await this.check())) {
      this.markDead();
      return { failure: new Error(`Connection lost${said ? `: ${said}` : ''}`) };
    }
    if (said) return { failure: new Error(`the OpenSSH client failed: ${said}`) };
    return { exit: 255 };
  }

  private check(): Promise<boolean> {
    if (this.dead) return Promise.resolve(false);
    return new Promise((resolve) => {
      execFile(
        this.options.ssh,
        ['-F', '/dev/null', '-o', `ControlPath=${this.control}`, '-O', 'check', 'baton-mux'],
        { timeout: 5_000 },
        (error) => resolve(!error),
      );
    });
  }

  private markDead(): void {
    if (this.dead) return;
    this.dead = true;
    rmSync(`${this.control}.pins`, { force: true });
    rmSync(`${this.control}.log`, { force: true });
    this.emit('dead');
  }
}

/**
 * A session as a byte stream, shaped like an ssh2 channel (stdout as the
 * readable side, `stderr`, `exit` then `close`, `close()`), so the pool runs
 * it with the same code.
 */
export class SessionChannel extends Duplex {
  readonly stderr: Readable;
  /** Why the session ended without an exit status, when it did. */
  failure: Error | undefined;
  /** Set for a stream whose reader needs an `error` event when it fails (a forward): what to emit. */
  failureMessage: ((failure: Error) => Error) | undefined;
  private readonly child: ChildProcess;

  constructor(
    child: ChildProcess,
    outcome: (
      code: number | null,
      signal: NodeJS.Signals | null,
    ) => Promise<{ exit?: number; failure?: Error }>,
  ) {
    // The pool listens for `close` as the end of the session: only this class emits it.
    super({ autoDestroy: false, emitClose: false, allowHalfOpen: true });
    this.child = child;
    this.stderr = child.stderr!;
    child.stdout!.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) child.stdout!.pause();
    });
    child.stdout!.once('end', () => this.push(null));
    // Input the command did not read, after it ended, goes nowhere, as over ssh2.
    child.stdin!.on('error', () => undefined);
    let ended = false;
    const end = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (ended) return;
      ended = true;
      void outcome(code, signal).then(({ exit, failure }) => {
        if (failure) this.failure ??= failure;
        if (exit !== undefined) this.emit('exit', exit, null);
        const closed = (): void => {
          if (this.failure && this.failureMessage)
            this.emit('error', this.failureMessage(this.failure));
          this.emit('close');
        };
        if (this.readableEnded) closed();
        else {
          this.once('end', closed);
          // Nobody reads what is left: drop it so the session can close.
          if (this.readableFlowing === null) this.resume();
        }
      });
    };
    child.once('error', (e) => {
      this.failure = e;
      child.stdout!.destroy();
      end(null, null);
    });
    child.once('close', end);
  }

  override _read(): void {
    this.child.stdout!.resume();
  }

  override _write(
    chunk: Buffer,
    _encoding: BufferEncoding,
    done: (e?: Error | null) => void,
  ): void {
    const stdin = this.child.stdin!;
    if (stdin.destroyed) return done();
    if (stdin.write(chunk)) return done();
    let called = false;
    const once = (): void => {
      if (called) return;
      called = true;
      stdin.off('drain', once);
      stdin.off('close', once);
      done();
    };
    stdin.on('drain', once).on('close', once);
  }

  override _final(done: (e?: Error | null) => void): void {
    this.child.stdin!.end();
    done();
  }

  /** End the session from this side; the remote command is left to the reaper, as over ssh2. */
  close(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
  }
}

/**
 * The operator's configuration behind a few settings baton insists on, which
 * come first so they win (ssh_config takes the first value it sees). `-F` is
 * passed on to the ssh that reaches each jump host, so they apply there too.
 */
function strictConfig(options: OpenSshOptions): string {
  const file = join(options.dir, 'ssh_config');
  if (existsSync(file)) return file;
  const includes = options.configFile
    ? [options.configFile]
    : [join(homedir(), '.ssh', 'config'), '/etc/ssh/ssh_config'];
  writeFileSync(
    file,
    [
      '# Written by baton: never ask, never trust a host key on first use, never change',
      '# known_hosts, and leave port forwardings and agent forwarding to interactive use.',
      'BatchMode yes',
      'StrictHostKeyChecking yes',
      'UpdateHostKeys no',
      'ClearAllForwardings yes',
      'ForwardAgent no',
      'ForwardX11 no',
      'PermitLocalCommand no',
      'ControlMaster no',
      'ControlPath none',
      ...includes.map((f) => `Include "${f}"`),
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  return file;
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
