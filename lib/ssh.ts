/**
 * The ssh transport: the only module that imports ssh2. One connection per
 * host, many channels over it; host keys pinned from the inventory; exec with
 * streaming output, SFTP, and host-to-host streams through the controller.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, readFileSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform, type Duplex, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Client, type ClientChannel, type ConnectConfig, type SFTPWrapper } from 'ssh2';
import { BatonError, TransientError, errorMessage } from './errors.ts';
import {
  CommandError,
  delivery,
  type CommandResult,
  type ExecOptions,
  type Transport,
  reapScript,
  taggedCommand,
} from './exec.ts';
import type { Host } from './inventory.ts';
import { clipHead, type Redactor } from './redact.ts';
import { sh, type ShellValue } from './shell.ts';

export interface SshPoolOptions {
  /** Private key used when a host names none; otherwise the agent, then ~/.ssh/id_ed25519. */
  identityFile?: string;
  /** ssh-agent socket; defaults to SSH_AUTH_SOCK. */
  agent?: string;
  /** Time allowed for TCP connect, handshake and login. Default 10 s. */
  readyTimeoutMs?: number;
  /** Keepalive period; a connection is dead after `keepaliveCountMax` missed answers. Default 5 s. */
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  /** How to reach a host's ssh port; defaults to the registered `sshRoutes`, then plain TCP. */
  routes?: SshRoute[];
  /**
   * Bytes of stdout (and of stderr) kept in a result; beyond it the text is cut
   * and says so. `onStdout`/`onStderr` still see every byte. Default 64 MiB.
   */
  maxBufferBytes?: number;
}

const DEFAULT_MAX_BUFFER = 64 * 2 ** 20;

/** Output kept for a CommandResult, bounded so a chatty command cannot exhaust memory. */
class Captured {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private dropped = 0;
  constructor(private readonly limit: number) {}
  add(chunk: Buffer): void {
    const room = this.limit - this.kept;
    if (room >= chunk.length) {
      this.chunks.push(chunk);
      this.kept += chunk.length;
    } else {
      if (room > 0) this.chunks.push(chunk.subarray(0, room));
      this.kept += Math.max(0, room);
      this.dropped += chunk.length - Math.max(0, room);
    }
  }
  /** The kept text; with `secrets`, a secret cut at the limit leaves no beginning behind. */
  text(secrets?: Redactor): string {
    const body = Buffer.concat(this.chunks).toString('utf8');
    if (!this.dropped) return body;
    const kept = secrets ? secrets.redactCut(body) : body;
    return `${kept}\n[baton: ${this.dropped} more bytes of output not kept]\n`;
  }
}

/**
 * A way to reach a host's ssh port other than a TCP connection from the
 * controller, such as the local testnet's relay into its private network.
 */
export interface SshRoute {
  describe: string;
  /** A connected byte stream to the host's ssh server, or undefined if this route does not serve the host. */
  dial(host: Host): Promise<Duplex | undefined>;
}

/** Routes consulted by every pool, in order; the local testnet registers its own here. */
export const sshRoutes: SshRoute[] = [];

/**
 * A command that outlived its `timeoutMs`. Its channel was closed and SIGKILL
 * requested, but OpenSSH refuses signal requests for root sessions, so the
 * process may run on until it next writes output: its effect is unknown.
 */
export class CommandTimeoutError extends BatonError {
  readonly host: string;
  readonly command: string;
  readonly startedCommand = true;
  constructor(host: string, command: string, timeoutMs: number, reaped?: string) {
    super(
      'TIMEOUT',
      `on ${host}: \`${clip(command)}\` did not finish within ${timeoutMs} ms and was killed${reaped ? `; ${reaped}` : ''}`,
      'Its effect is unknown: check the host before retrying, or raise the timeout.',
    );
    this.name = 'CommandTimeoutError';
    this.host = host;
    this.command = command;
  }
}

/** `SHA256:<unpadded base64>` of a public key blob, exactly as `ssh-keygen -lf` prints it. */
export function fingerprint(keyBlob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '');
}

export interface TransferOptions {
  /** File mode for the uploaded file, e.g. 0o600. */
  mode?: number;
}

export interface TransferResult {
  host: string;
  remotePath: string;
  bytes: number;
  sha256: string;
  durationMs: number;
}

export interface StreamEnd {
  host: Host;
  command: string;
}

export interface StreamOptions {
  timeoutMs?: number;
  /** The run's secrets: see ExecOptions.secrets. */
  secrets?: Redactor;
  signal?: AbortSignal;
  onProgress?: (bytes: number) => void;
}

export interface StreamResult {
  /** The source command's result; its stdout went to the destination and is not kept. */
  from: CommandResult;
  to: CommandResult;
  /** Bytes that passed from source to destination. */
  bytes: number;
  /** sha256 (hex) of those bytes, computed in the controller as they passed. */
  sha256: string;
  durationMs: number;
}

interface Connection {
  client: Client;
  dead: boolean;
  label: string;
}

/** 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24: testnet addresses, never real hosts. */
const DOCUMENTATION_RANGE = /^(192\.0\.2|198\.51\.100|203\.0\.113)\.\d{1,3}$/;

const CONNECTION_ERRORS =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EHOSTDOWN|EPIPE|ENOTCONN|Timed out while waiting for handshake|Keepalive timeout|Connection lost|No response from server|socket hang up|closed|Not connected/i;

/** A pool of ssh connections, one per host, that implements the Transport contract. */
export class SshPool implements Transport {
  private readonly options: SshPoolOptions;
  private readonly connections = new Map<string, Promise<Connection>>();
  private readonly live = new Set<Connection>();
  private closed = false;

  constructor(options: SshPoolOptions = {}) {
    this.options = options;
  }

  /** Run `command` through the host's shell. A non-zero exit is a result; a lost connection throws TransientError (see its `startedCommand`). */
  async exec(host: Host, command: string, options: ExecOptions = {}): Promise<CommandResult> {
    const sent = delivery(command, options.secrets);
    const conn = await this.connection(host, sent.shown);
    // A command that may be cut short is tagged, so that all of it can be found and killed.
    const tag = options.timeoutMs || options.signal ? randomBytes(8).toString('hex') : undefined;
    const argv = tag ? taggedCommand(sent.argv, tag) : sent.argv;
    const channel = await this.openExec(conn, host, argv, sent.shown);
    return this.runChannel(conn, host, sent.shown, channel, {
      ...options,
      ...(sent.frame ? { frame: sent.frame } : {}),
      ...(tag ? { reap: () => this.reap(conn, host, tag) } : {}),
    });
  }

  /** Kill every process of a tagged command on the host; says whether they are gone. */
  private async reap(conn: Connection, host: Host, tag: string): Promise<string> {
    if (conn.dead) return 'the connection is gone, so whether it still runs on the host is unknown';
    try {
      const script = reapScript(tag);
      const channel = await this.openExec(conn, host, script, 'reap a timed-out command');
      const r = await this.runChannel(conn, host, 'reap a timed-out command', channel, {
        timeoutMs: 15_000,
      });
      return r.stdout.trim() === 'gone'
        ? 'every process it started is gone'
        : `some of its processes survived the kill: ${r.stdout.trim() || r.stderr.trim()}`;
    } catch (e) {
      return `whether it still runs on the host is unknown: ${errorMessage(e)}`;
    }
  }

  /** Upload a local file, a Buffer or a stream to `remotePath`, replacing it atomically. */
  async put(
    host: Host,
    source: string | Buffer | Readable,
    remotePath: string,
    options: TransferOptions = {},
  ): Promise<TransferResult> {
    const started = performance.now();
    const input =
      typeof source === 'string'
        ? createReadStream(source)
        : Buffer.isBuffer(source)
          ? Readable.from([source])
          : source;
    const temp = `${remotePath}.baton-${process.pid}-${Date.now().toString(36)}`;
    const hash = hashing();
    await this.withSftp(host, `upload ${remotePath}`, async (sftp) => {
      const out = sftp.createWriteStream(temp, {
        flags: 'w',
        ...(options.mode !== undefined ? { mode: options.mode } : {}),
      });
      const closed = closedPromise(out);
      // When the pipeline fails, the stream's own error must not go unhandled.
      closed.catch(() => undefined);
      try {
        await pipeline(input, hash.transform, out);
        await closed;
        if (options.mode !== undefined)
          await sftpCall<void>((cb) => sftp.chmod(temp, options.mode!, cb));
        await sftpCall<void>((cb) => sftp.ext_openssh_rename(temp, remotePath, cb));
      } catch (e) {
        await sftpCall<void>((cb) => sftp.unlink(temp, cb)).catch(() => undefined);
        throw e;
      }
    });
    return {
      host: host.name,
      remotePath,
      bytes: hash.bytes(),
      sha256: hash.digest(),
      durationMs: Math.round(performance.now() - started),
    };
  }

  /** Download `remotePath` into `localPath` (written beside it, then renamed into place). */
  async get(host: Host, remotePath: string, localPath: string): Promise<TransferResult> {
    const started = performance.now();
    const temp = `${localPath}.baton-${process.pid}-${Date.now().toString(36)}`;
    const hash = hashing();
    await this.withSftp(host, `download ${remotePath}`, async (sftp) => {
      try {
        await pipeline(sftp.createReadStream(remotePath), hash.transform, createWriteStream(temp));
        await rename(temp, localPath);
      } catch (e) {
        await rm(temp, { force: true });
        throw e;
      }
    });
    return {
      host: host.name,
      remotePath,
      bytes: hash.bytes(),
      sha256: hash.digest(),
      durationMs: Math.round(performance.now() - started),
    };
  }

  /**
   * Pipe the stdout of a command on one host into the stdin of a command on
   * another, through the controller, with backpressure: at most a few ssh
   * windows of data are in flight, never the whole stream.
   */
  async stream(from: StreamEnd, to: StreamEnd, options: StreamOptions = {}): Promise<StreamResult> {
    const started = performance.now();
    const source = delivery(from.command, options.secrets);
    const sink = delivery(to.command, options.secrets);
    const [fromConn, toConn] = await Promise.all([
      this.connection(from.host, source.shown),
      this.connection(to.host, sink.shown),
    ]);
    const toChannel = await this.openExec(toConn, to.host, sink.argv, sink.shown);
    let fromChannel: ClientChannel;
    try {
      fromChannel = await this.openExec(fromConn, from.host, source.argv, source.shown);
    } catch (e) {
      toChannel.close();
      // The destination already ran (with empty input, say a `cat >` that truncated
      // its file): the stream has started, whatever the source said.
      throw new TransientError(
        to.host.name,
        `${errorMessage(e)}; but \`${clip(to.command)}\` had already started on ${to.host.name}, so the stream may have had an effect`,
        true,
        { cause: e },
      );
    }
    if (sink.frame) toChannel.write(sink.frame);
    const hash = hashing(options.onProgress);
    let sourceAbandoned = false;
    const piped = pipeline(fromChannel, hash.transform, toChannel).catch((e: unknown) => e);
    const runOptions: ExecOptions = {
      ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.secrets ? { secrets: options.secrets } : {}),
    };
    const toRun = this.runChannel(toConn, to.host, sink.shown, toChannel, {
      ...runOptions,
      stdinManaged: true,
    });
    const fromRun = this.runChannel(fromConn, from.host, source.shown, fromChannel, {
      ...runOptions,
      ...(source.frame ? { frame: source.frame } : {}),
      stdoutManaged: true,
      abandoned: () => sourceAbandoned,
    });
    // A destination that stops reading ends the source, like a shell pipeline; a
    // failed source must not leave the destination waiting for more input.
    const stopSource = (): void => {
      if (fromChannel.readableEnded) return;
      sourceAbandoned = true;
      signalChannel(fromChannel, 'PIPE');
      fromChannel.close();
      // ssh2 reports the close only once the stdout still in flight has been read.
      fromChannel.unpipe();
      fromChannel.resume();
    };
    toRun.then(stopSource, stopSource);
    void piped.then(() => fromChannel.resume());
    fromRun.catch(() => toChannel.end());
    const [fromResult, toResult] = await Promise.all([fromRun, toRun]);
    await piped;
    return {
      from: fromResult,
      to: toResult,
      bytes: hash.bytes(),
      sha256: hash.digest(),
      durationMs: Math.round(performance.now() - started),
    };
  }

  /**
   * A TCP connection to 127.0.0.1:`port` on the host, opened by the host's own
   * sshd (a direct-tcpip channel over the pooled connection), so a client in
   * the controller reaches a service that listens only on the host's loopback.
   * Like a net.Socket, it ends its own side when the service closes the
   * connection. End or destroy the stream when done.
   */
  async forward(host: Host, port: number): Promise<Duplex> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new BatonError('INVALID_INPUT', `cannot forward to port ${port}: not a TCP port`);
    }
    const purpose = `forward to 127.0.0.1:${port}`;
    const conn = await this.connection(host, purpose);
    return new Promise<Duplex>((resolve, reject) => {
      try {
        conn.client.forwardOut('127.0.0.1', 0, '127.0.0.1', port, (err, channel) => {
          if (!err) {
            channel.once('end', () => channel.end());
            return resolve(channel);
          }
          reject(
            conn.dead
              ? beforeStart(host, conn.label, purpose, err)
              : new BatonError(
                  'PRECONDITION_FAILED',
                  `${conn.label} could not open a connection to 127.0.0.1:${port} on the host: ${err.message}`,
                  `Check that a service listens on 127.0.0.1:${port} there, and that its sshd allows TCP forwarding (AllowTcpForwarding).`,
                  { cause: err },
                ),
          );
        });
      } catch (e) {
        conn.dead = true;
        reject(beforeStart(host, conn.label, purpose, e));
      }
    });
  }

  /** Forget the host's connection (closing it) so the next call connects afresh. */
  async drop(host: Host): Promise<void> {
    const key = connectionKey(host);
    const pending = this.connections.get(key);
    this.connections.delete(key);
    const conn = await pending?.catch(() => undefined);
    if (conn) endConnection(conn);
  }

  async close(): Promise<void> {
    this.closed = true;
    const pending = [...this.connections.values()];
    this.connections.clear();
    await Promise.allSettled(pending);
    const ends = [...this.live].map(
      (conn) =>
        new Promise<void>((resolve) => {
          if (conn.dead) return resolve();
          conn.client.once('close', () => resolve());
          endConnection(conn);
          setTimeout(resolve, 2_000).unref();
        }),
    );
    await Promise.all(ends);
    this.live.clear();
  }

  private async connection(host: Host, purpose: string): Promise<Connection> {
    if (this.closed) throw new BatonError('INVALID_INPUT', 'this ssh pool is closed');
    if (host.connection !== 'ssh' || !host.ssh) {
      throw new BatonError(
        'INVALID_INPUT',
        `host ${host.name} is not reached over ssh (connection: ${host.connection})`,
        'Use the local transport for hosts with connection "local".',
      );
    }
    const key = connectionKey(host);
    let pending = this.connections.get(key);
    if (pending) {
      const conn = await pending.catch(() => undefined);
      if (conn && !conn.dead) return conn;
      if (this.connections.get(key) === pending) this.connections.delete(key);
    }
    pending = this.connect(host, purpose);
    this.connections.set(key, pending);
    try {
      return await pending;
    } catch (e) {
      if (this.connections.get(key) === pending) this.connections.delete(key);
      throw e;
    }
  }

  private async connect(host: Host, purpose: string): Promise<Connection> {
    const ssh = host.ssh!;
    const label = `${ssh.user}@${host.name} (${host.address}:${ssh.port})`;
    const auth = this.authentication(host, label);
    const pinned = ssh.hostKeys;
    let sock: Duplex | undefined;
    for (const route of this.options.routes ?? sshRoutes) {
      try {
        sock = await route.dial(host);
      } catch (e) {
        throw beforeStart(host, label, purpose, e);
      }
      if (sock) break;
    }
    if (!sock && DOCUMENTATION_RANGE.test(host.address)) {
      throw new BatonError(
        'PRECONDITION_FAILED',
        `${label} has a documentation address (RFC 5737) and no ssh route serves it; baton never dials such an address directly`,
        'For the local testnet, import lib/testnet/stack.ts (the baton CLI does) and run `baton testnet up`.',
      );
    }
    let presented: string | undefined;
    const config: ConnectConfig = {
      host: host.address,
      port: ssh.port,
      username: ssh.user,
      ...auth,
      ...(sock ? { sock } : {}),
      readyTimeout: this.options.readyTimeoutMs ?? 10_000,
      keepaliveInterval: this.options.keepaliveIntervalMs ?? 5_000,
      keepaliveCountMax: this.options.keepaliveCountMax ?? 3,
      hostVerifier: (key: Buffer): boolean => {
        presented = fingerprint(key);
        return pinned.includes(presented);
      },
    };
    const client = new Client();
    const conn: Connection = { client, dead: false, label };
    await new Promise<void>((resolve, reject) => {
      const cleanup = (): void => {
        client.off('ready', onReady);
        client.off('error', onError);
        client.off('close', onClose);
      };
      const onReady = (): void => {
        cleanup();
        resolve();
      };
      const onError = (err: Error): void => {
        cleanup();
        // ssh2 may report more errors while it tears down; they add nothing.
        client.on('error', () => undefined);
        client.end();
        reject(this.connectError(host, label, purpose, err, presented));
      };
      const onClose = (): void => {
        cleanup();
        client.on('error', () => undefined);
        reject(beforeStart(host, label, purpose, new Error('connection closed during login')));
      };
      client.on('ready', onReady).on('error', onError).on('close', onClose);
      try {
        client.connect(config);
      } catch (e) {
        cleanup();
        reject(beforeStart(host, label, purpose, e));
      }
    });
    // Pool-owned listeners for the connection's lifetime: a dead connection leaves the pool.
    // The error listener stays: ssh2 may still emit while it tears down.
    const onDead = (): void => {
      conn.dead = true;
      this.live.delete(conn);
      client.off('close', onDead);
    };
    const onLateError = (): void => {
      conn.dead = true;
    };
    client.on('error', onLateError).on('close', onDead);
    this.live.add(conn);
    return conn;
  }

  private authentication(host: Host, label: string): Pick<ConnectConfig, 'privateKey' | 'agent'> {
    const file = host.ssh?.identityFile ?? this.options.identityFile;
    if (file) return { privateKey: readIdentity(file, label) };
    const agent = this.options.agent ?? process.env.SSH_AUTH_SOCK;
    if (agent) return { agent };
    const fallback = join(homedir(), '.ssh', 'id_ed25519');
    if (existsSync(fallback)) return { privateKey: readIdentity(fallback, label) };
    throw new BatonError(
      'MISSING_PREREQUISITE',
      `no ssh identity to log in to ${label}: the inventory names no identityFile, SSH_AUTH_SOCK is unset and ${fallback} does not exist`,
      'Set ssh.identityFile in the inventory, start an ssh-agent with the key loaded, or create ~/.ssh/id_ed25519.',
    );
  }

  private connectError(
    host: Host,
    label: string,
    purpose: string,
    err: Error,
    presented: string | undefined,
  ): BatonError {
    const pinned = host.ssh?.hostKeys ?? [];
    if (presented && !pinned.includes(presented)) {
      if (pinned.length === 0) {
        return new BatonError(
          'HOSTKEY_UNKNOWN',
          `refusing ${label}: the inventory pins no host key for it, and it presented ${presented}`,
          `Verify ${presented} out of band (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on the host's console) and add it to ssh.hostKeys.`,
        );
      }
      return new BatonError(
        'HOSTKEY_MISMATCH',
        `refusing ${label}: it presented host key ${presented}, but the inventory pins ${pinned.join(', ')}`,
        'The host was rebuilt or something is intercepting the connection. Find out which before anything else; only then update ssh.hostKeys in the inventory.',
      );
    }
    if ((err as { level?: string }).level === 'client-authentication') {
      return new BatonError(
        'PRECONDITION_FAILED',
        `login to ${label} was refused: ${err.message}`,
        'Check that the identity in use is in the authorized_keys of that user on the host.',
        { cause: err },
      );
    }
    return beforeStart(host, label, purpose, err);
  }

  /** `shown` is how messages name the command; `command` goes to the host. */
  private openExec(
    conn: Connection,
    host: Host,
    command: string,
    shown: string,
  ): Promise<ClientChannel> {
    return new Promise<ClientChannel>((resolve, reject) => {
      try {
        conn.client.exec(command, (err, channel) => {
          if (!err) {
            watchExit(channel);
            return resolve(channel);
          }
          // The exec request may have reached the server before the connection died.
          reject(
            conn.dead
              ? dropped(host, conn.label, shown, err)
              : new TransientError(
                  host.name,
                  `${conn.label} refused a session for \`${clip(shown)}\`: ${err.message}; the command did not start`,
                  false,
                  { cause: err },
                ),
          );
        });
      } catch (e) {
        conn.dead = true;
        reject(beforeStart(host, conn.label, shown, e));
      }
    });
  }

  private runChannel(
    conn: Connection,
    host: Host,
    command: string,
    channel: ClientChannel,
    options: InternalExecOptions,
  ): Promise<CommandResult> {
    const started = performance.now();
    const limit = this.options.maxBufferBytes ?? DEFAULT_MAX_BUFFER;
    const stdout = new Captured(limit);
    const stderr = new Captured(limit);
    let exitCode: number | null | undefined;
    let signal: string | null = null;
    const input = options.stdinManaged ? undefined : options.input;
    const frame = options.stdinManaged ? undefined : options.frame;
    return new Promise<CommandResult>((resolve, reject) => {
      const onInputError = (e: unknown): void => {
        kill(
          new BatonError(
            'INVALID_INPUT',
            `reading stdin for \`${clip(command)}\` on ${host.name} failed: ${errorMessage(e)}`,
            'The command was killed; check the input source.',
          ),
        );
      };
      const onStdout = (chunk: Buffer): void => {
        stdout.add(chunk);
        options.onStdout?.(chunk);
      };
      const onStderr = (chunk: Buffer): void => {
        stderr.add(chunk);
        options.onStderr?.(chunk);
      };
      const onExit = (code: number | null, sig?: string): void => {
        exitCode = code;
        signal = sig ?? null;
      };
      // Do not wait for the server to close the channel: children of the
      // command may hold its output open long after the shell was killed. A
      // tagged command is reaped on the host first: nothing of it runs on
      // once this promise settles.
      let killing = false;
      const kill = (error: Error | ((reaped?: string) => Error)): void => {
        if (killing) return;
        killing = true;
        signalChannel(channel, 'KILL');
        channel.close();
        const make = typeof error === 'function' ? error : (): Error => error;
        if (!options.reap) return finish(make());
        options.reap().then(
          (reaped) => finish(make(reaped)),
          (e: unknown) => finish(make(`whether it still runs is unknown: ${errorMessage(e)}`)),
        );
      };
      const timer = options.timeoutMs
        ? setTimeout(
            () =>
              kill(
                (reaped) => new CommandTimeoutError(host.name, command, options.timeoutMs!, reaped),
              ),
            options.timeoutMs,
          )
        : undefined;
      const onAbort = (): void => {
        const reason: unknown = options.signal?.reason;
        kill(reason instanceof Error ? reason : new Error(`aborted: ${String(reason)}`));
      };
      const finish = (failure?: Error): void => {
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        if (!options.stdoutManaged) channel.off('data', onStdout);
        channel.stderr.off('data', onStderr);
        channel.off('exit', onExit);
        channel.off('close', onClose);
        if (input && typeof input !== 'string' && !Buffer.isBuffer(input)) {
          input.off('error', onInputError);
          input.unpipe(channel);
        }
        if (failure) return reject(failure);
        if (exitCode === undefined && earlyExits.has(channel)) {
          ({ code: exitCode, signal } = earlyExits.get(channel)!);
        }
        if (exitCode === undefined) {
          if (conn.dead || !options.abandoned?.())
            return reject(dropped(host, conn.label, command));
          exitCode = null;
        }
        resolve({
          host: host.name,
          command,
          exitCode,
          signal,
          stdout: stdout.text(options.secrets),
          stderr: stderr.text(options.secrets),
          durationMs: Math.round(performance.now() - started),
        });
      };
      const onClose = (): void => {
        if (!killing) finish();
      };
      if (!options.stdoutManaged) channel.on('data', onStdout);
      channel.stderr.on('data', onStderr);
      channel.on('exit', onExit);
      channel.on('close', onClose);
      if (options.signal?.aborted) onAbort();
      else options.signal?.addEventListener('abort', onAbort, { once: true });
      if (options.stdinManaged) return;
      if (frame) channel.write(frame);
      if (input === undefined) channel.end();
      else if (typeof input === 'string' || Buffer.isBuffer(input)) channel.end(input);
      else {
        input.once('error', onInputError);
        input.pipe(channel);
      }
    });
  }

  private async withSftp<T>(
    host: Host,
    purpose: string,
    use: (sftp: SFTPWrapper) => Promise<T>,
  ): Promise<T> {
    const conn = await this.connection(host, purpose);
    const sftp = await new Promise<SFTPWrapper>((resolve, reject) => {
      conn.client.sftp((err, s) => {
        if (!err) return resolve(s);
        reject(
          conn.dead
            ? dropped(host, conn.label, purpose, err)
            : new BatonError(
                'PRECONDITION_FAILED',
                `${conn.label} refused an SFTP session: ${err.message}`,
                'Enable the sftp subsystem in the host sshd_config (Subsystem sftp internal-sftp).',
              ),
        );
      });
    });
    try {
      return await use(sftp);
    } catch (e) {
      if (conn.dead) throw dropped(host, conn.label, purpose, e);
      if (e instanceof BatonError) throw e;
      throw new BatonError(
        'COMMAND_FAILED',
        `on ${host.name}: SFTP ${purpose} failed: ${errorMessage(e)}`,
        'Check the remote path and its permissions.',
        { cause: e },
      );
    } finally {
      sftp.end();
    }
  }
}

interface InternalExecOptions extends ExecOptions {
  /** The command itself, sent ahead of its input because it holds a secret (see `delivery`). */
  frame?: Buffer;
  /** stream(): stdin is fed by the pipeline. */
  stdinManaged?: boolean;
  /** stream(): stdout is consumed by the pipeline. */
  stdoutManaged?: boolean;
  /** stream(): true once the controller closed this channel on purpose, so a missing exit status is no drop. */
  abandoned?: () => boolean;
  /** Kill what is left of a command cut short; says what became of it. */
  reap?: () => Promise<string>;
}

export interface RemoteOptions extends ExecOptions {
  /** Throw CommandError when the command exits non-zero or is killed. Default false: results are values. */
  check?: boolean;
}

/** A `$` bound to one host: every interpolated value is quoted for POSIX sh by lib/shell.ts. */
export interface RemoteShell {
  (strings: TemplateStringsArray, ...values: ShellValue[]): Promise<CommandResult>;
  readonly host: Host;
  /** The same shell with other options, e.g. `$r.with({ check: true })`. */
  with(options: RemoteOptions): RemoteShell;
}

/** `const $r = remote(pool, host); await $r\`cat ${file}\`` */
export function remote(transport: Transport, host: Host, options: RemoteOptions = {}): RemoteShell {
  const run = async (
    strings: TemplateStringsArray,
    ...values: ShellValue[]
  ): Promise<CommandResult> => {
    const { check, ...execOptions } = options;
    const result = await transport.exec(host, sh(strings, ...values).text, execOptions);
    if (check && (result.exitCode !== 0 || result.signal)) {
      throw new CommandError(execOptions.secrets?.redactDeep(result) ?? result);
    }
    return result;
  };
  return Object.assign(run, {
    host,
    with: (more: RemoteOptions): RemoteShell => remote(transport, host, { ...options, ...more }),
  });
}

function connectionKey(host: Host): string {
  return `${host.name}\0${host.ssh?.user}\0${host.address}\0${host.ssh?.port}`;
}

function readIdentity(file: string, label: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new BatonError(
      'MISSING_PREREQUISITE',
      `cannot read the ssh identity ${file} for ${label}: ${(e as NodeJS.ErrnoException).code ?? errorMessage(e)}`,
      'Fix ssh.identityFile in the inventory or the file permissions.',
    );
  }
}

function beforeStart(host: Host, label: string, purpose: string, err: unknown): BatonError {
  if (err instanceof BatonError) return err;
  const message = errorMessage(err);
  const what = `could not reach ${label} to run \`${clip(purpose)}\`: ${message}`;
  if (
    CONNECTION_ERRORS.test(message) ||
    CONNECTION_ERRORS.test(String((err as { code?: string }).code))
  ) {
    return new TransientError(
      host.name,
      `${what}; the command did not start, so it is safe to retry`,
      false,
      { cause: err },
    );
  }
  return new BatonError(
    'PRECONDITION_FAILED',
    `${what}; the command did not start`,
    'Check the inventory entry (address, port, user) and the ssh server on the host.',
    { cause: err },
  );
}

/**
 * A command that exits at once can have its exit status arrive in the same
 * read as the exec reply, before runChannel listens: keep it from the start.
 */
const earlyExits = new WeakMap<ClientChannel, { code: number | null; signal: string | null }>();

function watchExit(channel: ClientChannel): void {
  channel.once('exit', (code: number | null, signal?: string) =>
    earlyExits.set(channel, { code, signal: signal ?? null }),
  );
}

function dropped(host: Host, label: string, command: string, cause?: unknown): TransientError {
  return new TransientError(
    host.name,
    `the connection to ${label} dropped mid-command while running \`${clip(command)}\`: whether it took effect is unknown`,
    true,
    cause === undefined ? undefined : { cause },
  );
}

/**
 * ssh2 only sends a signal request while the channel is writable, but a command
 * whose stdin we closed must still be killable.
 */
function signalChannel(channel: ClientChannel, name: string): void {
  const internal = channel as unknown as {
    outgoing?: { id: number; state: string };
    _client?: { _protocol?: { signal(id: number, signal: string): void } };
  };
  const state = internal.outgoing?.state;
  if (state !== 'open' && state !== 'eof') return;
  try {
    internal._client?._protocol?.signal(internal.outgoing!.id, name);
  } catch {
    // The connection is already going away; closing the channel is all that is left.
  }
}

function endConnection(conn: Connection): void {
  conn.dead = true;
  conn.client.end();
}

/** For messages: one line of at most 160 characters, of a text already redacted (see `delivery`). */
function clip(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 160 ? clipHead(line, 157, '...') : line;
}

function hashing(onProgress?: (bytes: number) => void): {
  transform: Transform;
  bytes: () => number;
  digest: () => string;
} {
  const hash = createHash('sha256');
  let bytes = 0;
  let hex: string | undefined;
  const transform = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      bytes += chunk.length;
      onProgress?.(bytes);
      done(null, chunk);
    },
  });
  return {
    transform,
    bytes: () => bytes,
    digest: () => (hex ??= hash.digest('hex')),
  };
}

function closedPromise(stream: Writable): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    stream.once('close', () => resolve());
    stream.once('error', reject);
  });
}

function sftpCall<T>(
  call: (cb: (err: Error | null | undefined, value?: T) => void) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    call((err, value) => (err ? reject(err) : resolve(value as T)));
  });
}
