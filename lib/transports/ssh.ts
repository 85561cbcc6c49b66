/**
 * The ssh transport: the only module that imports ssh2. One connection per
 * host, many channels over it; host keys pinned from the inventory; exec with
 * streaming output, SFTP, and host-to-host streams through the controller.
 * Hosts are reached as the operator's OpenSSH client would reach them (see
 * `route`), through ProxyJump hosts too; a host only the OpenSSH client can
 * log in to is reached through it (lib/transports/openssh.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform, type Duplex, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import ssh2, {
  Client,
  type AnyAuthMethod,
  type ConnectConfig,
  type IdentityCallback,
  type ParsedKey,
  type ServerHostKeyAlgorithm,
  type SFTPWrapper,
} from 'ssh2';
import { BatonError, TransientError, errorMessage } from '../core/errors.ts';

// ssh2 is CommonJS: Node's ESM loader finds Client among its named exports but
// not OpenSSHAgent or utils, so those are taken from the module object.
const { OpenSSHAgent, utils } = ssh2;
import {
  CommandError,
  delivery,
  type CommandResult,
  type ExecOptions,
  type Transport,
  reapScript,
  taggedCommand,
} from '../core/exec.ts';
import type { Host } from '../core/inventory.ts';
import {
  hostKeyAlgorithms,
  knownHostKeys,
  knownHostsName,
  verifyKnownHost,
  type KnownHostKey,
} from './known-hosts.ts';
import { OpenSshLoginError, OpenSshMaster, SessionChannel } from './openssh.ts';
import { clipHead, type Redactor } from '../core/redact.ts';
import { sh, type ShellValue } from '../core/shell.ts';
import { readSshConfig, type JumpSpec, type SshClientSettings } from './ssh-config.ts';
import { findExecutable } from './which.ts';

export interface SshPoolOptions {
  /** Private key used when a host names none; otherwise the ssh config's IdentityFile and agent. */
  identityFile?: string;
  /** ssh-agent socket; defaults to the ssh config's IdentityAgent, then SSH_AUTH_SOCK. */
  agent?: string;
  /**
   * The OpenSSH client configuration to read (`ssh -F FILE`); by default what
   * `ssh` reads by itself, ~/.ssh/config and then /etc/ssh/ssh_config.
   */
  sshConfigFile?: string;
  /** The OpenSSH client; default `ssh` on PATH. Without one, hosts are reached with the inventory alone. */
  sshClient?: string;
  /** Where a one-time notice goes, such as a host reached through the OpenSSH client. Default stderr. */
  notice?: (message: string) => void;
  /** Time allowed for TCP connect, handshake and login. Default 10 s. */
  readyTimeoutMs?: number;
  /** Keepalive period; a connection is dead after `keepaliveCountMax` missed answers. Default 5 s. */
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  /** How to reach a host's ssh port, tried in order before plain TCP (an app's routes: lib/app/app.ts). */
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

type Connection = Ssh2Connection | OpenSshConnection;

interface Ssh2Connection {
  kind: 'ssh2';
  client: Client;
  /** Logged-in jump hosts, first to last, whose forwarded channel carries `client`. */
  jumps: Client[];
  dead: boolean;
  label: string;
}

interface OpenSshConnection {
  kind: 'openssh';
  master: OpenSshMaster;
  dead: boolean;
  label: string;
}

/** What the pool needs of a session: an ssh2 channel, or a session of the OpenSSH client. */
type Channel = Duplex & { readonly stderr: Readable; close(): unknown };

/** One ssh server on the way to a host, or the host itself. */
interface Hop {
  /** How messages name it, e.g. `root@irc1 (10.0.0.5:22)` or `jump host admin@bastion (...) on the way to irc1`. */
  label: string;
  hostName: string;
  port: number;
  user: string;
  auth: Authentication;
  /** A jump host's key is checked against known_hosts; the host's own against the inventory's pins. */
  knownHosts?: { name: string; files: string[]; keys: KnownHostKey[] };
}

interface Authentication {
  methods: AnyAuthMethod[];
  /** What is offered, for the hint when a login is refused. */
  offered: string[];
  /** Identity files holding a security key, which ssh2 cannot sign with. */
  securityKeys: Identity[];
}

/** How to reach a host: its jump hosts, then the host itself. */
interface Route {
  jumps: Hop[];
  target: Hop;
  /** A stream from an SshRoute, which replaces the ssh config's way there. */
  sock?: Duplex;
  /** Why only the OpenSSH client can log in, when that is so. */
  openssh?: string;
}

interface Identity {
  file: string;
  /** `ssh-ed25519`, `sk-ssh-ed25519@openssh.com`, ...: from the key or its public half. */
  type?: string;
  publicKey?: Buffer;
  /** The file's contents, when ssh2 can sign with it (not encrypted, a type it knows). */
  privateKey?: Buffer;
}

/** 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24: testnet addresses, never real hosts. */
const DOCUMENTATION_RANGE = /^(192\.0\.2|198\.51\.100|203\.0\.113)\.\d{1,3}$/;

const CONNECTION_ERRORS =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EHOSTDOWN|EPIPE|ENOTCONN|Timed out while waiting for handshake|Keepalive timeout|Connection lost|No response from server|socket hang up|closed|Not connected|Connection refused|Connection timed out|Connection reset|No route to host|Network is unreachable/i;

const SSH2_HOST_KEY_ALGORITHMS: readonly ServerHostKeyAlgorithm[] = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
  'ssh-dss',
];

/** Key types only a FIDO authenticator can sign with, through the OpenSSH client. */
const SECURITY_KEY_TYPE = /^sk-/;

/** How deep a ProxyJump host's own ProxyJump may go before baton calls it a loop. */
const MAX_JUMP_DEPTH = 8;

/** A pool of ssh connections, one per host, that implements the Transport contract. */
export class SshPool implements Transport {
  private readonly options: SshPoolOptions;
  private readonly connections = new Map<string, Promise<Connection>>();
  private readonly live = new Set<Connection>();
  /** `ssh -G` answers, per name and command-line user and port, for the pool's life. */
  private readonly settings = new Map<string, Promise<SshClientSettings | undefined>>();
  private readonly noticed = new Set<string>();
  private sshBinary: string | undefined | null = null;
  /** Control sockets and logs of OpenSSH client connections, made on first use. */
  private dir: string | undefined;
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
    const conn = await this.connection(host, `upload ${remotePath}`);
    if (conn.kind === 'openssh') {
      await this.putThroughShell(conn, host, input, hash.transform, temp, remotePath, options.mode);
    } else
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
    const conn = await this.connection(host, `download ${remotePath}`);
    if (conn.kind === 'openssh') {
      await this.getThroughShell(conn, host, remotePath, hash.transform, temp, localPath);
    } else
      await this.withSftp(host, `download ${remotePath}`, async (sftp) => {
        try {
          await pipeline(
            sftp.createReadStream(remotePath),
            hash.transform,
            createWriteStream(temp),
          );
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
   * put() through the OpenSSH client, which gives baton no SFTP session:
   * `cat` into a file beside the target (created private when a mode is
   * asked for, so a secret is never readable in between), then `mv` over it.
   */
  private async putThroughShell(
    conn: OpenSshConnection,
    host: Host,
    input: Readable,
    hashed: Transform,
    temp: string,
    remotePath: string,
    mode: number | undefined,
  ): Promise<void> {
    const write =
      mode === undefined
        ? sh`cat > ${temp}`
        : sh`(umask 077 && cat > ${temp}) && chmod ${mode.toString(8)} ${temp}`;
    const command = sh`${write} && mv -f ${temp} ${remotePath} || { rm -f ${temp}; exit 1; }`;
    const purpose = `upload ${remotePath}`;
    // A failing source destroys `hashed`, which kills the command: see runChannel's onInputError.
    pipeline(input, hashed).catch(() => undefined);
    const channel = await this.openExec(conn, host, command.text, purpose);
    const result = await this.runChannel(conn, host, purpose, channel, { input: hashed });
    if (result.exitCode !== 0) {
      throw new BatonError(
        'COMMAND_FAILED',
        `on ${host.name}: ${purpose} failed: ${result.stderr.trim() || `exit ${result.exitCode ?? result.signal}`}`,
        'Check the remote path and its permissions.',
      );
    }
  }

  /** get() through the OpenSSH client: `cat` the file into one beside `localPath`. */
  private async getThroughShell(
    conn: OpenSshConnection,
    host: Host,
    remotePath: string,
    hashed: Transform,
    temp: string,
    localPath: string,
  ): Promise<void> {
    const purpose = `download ${remotePath}`;
    const channel = await this.openExec(conn, host, sh`cat -- ${remotePath}`.text, purpose);
    const writing = pipeline(channel, hashed, createWriteStream(temp)).then(
      () => undefined,
      (e: unknown) => e,
    );
    let result: CommandResult;
    try {
      result = await this.runChannel(conn, host, purpose, channel, { stdoutManaged: true });
    } catch (e) {
      await writing;
      await rm(temp, { force: true });
      throw e;
    }
    const failed = await writing;
    if (result.exitCode !== 0 || failed) {
      await rm(temp, { force: true });
      throw new BatonError(
        'COMMAND_FAILED',
        `on ${host.name}: ${purpose} failed: ${result.stderr.trim() || (failed ? errorMessage(failed) : `exit ${result.exitCode ?? result.signal}`)}`,
        'Check the remote path and its permissions.',
      );
    }
    await rename(temp, localPath);
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
    let fromChannel: Channel;
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
    if (conn.kind === 'openssh') {
      // `ssh -W` says whether the service took the connection only by ending it: a
      // refusal arrives as an error on the stream, not as a rejection here.
      const channel = conn.master.forward(port);
      channel.failureMessage = (e) =>
        new BatonError(
          'PRECONDITION_FAILED',
          `${conn.label} could not open a connection to 127.0.0.1:${port} on the host: ${e.message}`,
          `Check that a service listens on 127.0.0.1:${port} there, and that its sshd allows TCP forwarding (AllowTcpForwarding).`,
          { cause: e },
        );
      channel.once('end', () => channel.end());
      return channel;
    }
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
          if (conn.kind === 'openssh') return void conn.master.close().then(resolve);
          conn.client.once('close', () => resolve());
          endConnection(conn);
          setTimeout(resolve, 2_000).unref();
        }),
    );
    await Promise.all(ends);
    this.live.clear();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
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
    const route = await this.route(host, purpose);
    if (route.openssh) return this.connectOpenSsh(host, route, purpose);
    const jumps: Client[] = [];
    let client: Client;
    try {
      let sock = route.sock;
      for (const [i, hop] of route.jumps.entries()) {
        jumps.push(await this.login(host, hop, sock, purpose));
        sock = await this.forwardThrough(host, hop, jumps[i]!, route.jumps[i + 1] ?? route.target);
      }
      client = await this.login(host, route.target, sock, purpose);
    } catch (e) {
      for (const jump of jumps) jump.end();
      throw e;
    }
    const conn: Ssh2Connection = {
      kind: 'ssh2',
      client,
      jumps,
      dead: false,
      label: route.target.label,
    };
    // Pool-owned listeners for the connection's lifetime: a dead connection leaves the pool.
    // The error listeners stay: ssh2 may still emit while it tears down.
    const onDead = (): void => {
      conn.dead = true;
      this.live.delete(conn);
      client.off('close', onDead);
      for (const jump of jumps) jump.end();
    };
    const onLateError = (): void => {
      conn.dead = true;
    };
    client.on('error', onLateError).on('close', onDead);
    // A jump host that goes away takes the forwarded connection with it.
    for (const jump of jumps) jump.on('error', onLateError).once('close', () => client.end());
    this.live.add(conn);
    return conn;
  }

  /**
   * Where and as whom to log in, like `ssh -l USER -p PORT ADDRESS` with the
   * inventory's user and port, when it sets them:
   *
   * - address: the name `ssh -G` resolves; its HostName is where baton dials.
   * - user, port: the inventory's; else the ssh config's (User, Port); else
   *   what ssh itself defaults to. Without an OpenSSH client: root and 22.
   * - identity: the inventory's ssh.identityFile, else the pool's identityFile,
   *   each used alone; else the ssh config's IdentityFile files that exist,
   *   after the agent's keys (only those of these files with IdentitiesOnly).
   * - agent: the pool's `agent`, else IdentityAgent, else SSH_AUTH_SOCK.
   * - ProxyJump hops come from the ssh config; their keys from known_hosts.
   * - The host key is always the inventory's pin, never known_hosts.
   *
   * A host served by an SshRoute (the local testnet) is reached by the
   * inventory alone: the route, not the ssh config, says how to get there.
   */
  private async route(host: Host, purpose: string): Promise<Route> {
    const ssh = host.ssh!;
    const shortLabel = `${ssh.user ?? 'root'}@${host.name} (${host.address}:${ssh.port ?? 22})`;
    let sock: Duplex | undefined;
    for (const r of this.options.routes ?? []) {
      try {
        sock = await r.dial(host);
      } catch (e) {
        throw beforeStart(host, shortLabel, purpose, e);
      }
      if (sock) break;
    }
    try {
      if (!sock) refuseDocumentationAddress(shortLabel, host.address);
      return await this.plan(host, sock);
    } catch (e) {
      sock?.destroy();
      throw e;
    }
  }

  private async plan(host: Host, sock: Duplex | undefined): Promise<Route> {
    const ssh = host.ssh!;
    const settings = sock ? undefined : await this.clientSettings(host.address, ssh.user, ssh.port);
    const user = settings?.user ?? ssh.user ?? 'root';
    const port = settings?.port ?? ssh.port ?? 22;
    const hostName = settings?.hostName ?? host.address;
    const jumps = settings ? await this.jumpChain(host, settings.proxyJump, 0) : [];
    const via = jumps.length ? ` via ${jumps.map((j) => j.spec.host).join(', ')}` : '';
    const label = `${user}@${host.name} (${hostName}:${port}${via})`;
    if (!sock) refuseDocumentationAddress(label, hostName);
    const target: Hop = {
      label,
      hostName,
      port,
      user,
      auth: this.authentication(
        ssh.identityFile ?? this.options.identityFile,
        settings,
        user,
        label,
      ),
    };
    const hops = jumps.map(({ spec, settings: s }) => {
      const hopLabel = `jump host ${s.user}@${spec.host} (${s.hostName}:${s.port}) on the way to ${host.name}`;
      if (!sock) refuseDocumentationAddress(hopLabel, s.hostName);
      const name = s.hostKeyAlias ?? knownHostsName(s.hostName, s.port);
      return {
        label: hopLabel,
        hostName: s.hostName,
        port: s.port,
        user: s.user,
        auth: this.hopAuthentication(s, hopLabel),
        knownHosts: {
          name,
          files: s.knownHostsFiles,
          keys: knownHostKeys(s.knownHostsFiles, name),
        },
      } satisfies Hop;
    });
    const route: Route = { jumps: hops, target, ...(sock ? { sock } : {}) };
    const proxied = [settings, ...jumps.map((j) => j.settings)].find((s) => s?.proxyCommand);
    const securityKey = [target, ...hops].flatMap((h) => h.auth.securityKeys)[0];
    if (proxied) {
      route.openssh = `the ssh config reaches ${proxied.alias} through ProxyCommand, which only the OpenSSH client runs`;
    } else if (securityKey) {
      route.openssh = `the identity ${securityKey.file} is a security key (${securityKey.type}), which baton's built-in ssh client cannot sign with`;
    }
    if (route.openssh && sock) {
      throw new BatonError(
        'PRECONDITION_FAILED',
        `cannot reach ${label}: ${route.openssh}, and the OpenSSH client cannot use the ssh route that serves this host`,
        'Give the host an identity that is not a security key (ssh.identityFile).',
      );
    }
    if (route.openssh && !this.ssh()) {
      throw new BatonError(
        'MISSING_PREREQUISITE',
        `cannot reach ${label}: ${route.openssh}, and no OpenSSH client (ssh) is installed`,
        'Install the OpenSSH client (Debian package openssh-client), or name an identity that is not a security key in ssh.identityFile.',
      );
    }
    if (!route.openssh) {
      for (const hop of [...hops, target]) {
        if (hop.auth.methods.length) continue;
        throw new BatonError(
          'MISSING_PREREQUISITE',
          `no ssh identity to log in to ${hop.label}: ${
            hop.auth.offered.length
              ? `none of ${hop.auth.offered.join(', ')} can be used`
              : settings
                ? 'the inventory names no identityFile, the ssh config no IdentityFile that exists, and no ssh-agent is running'
                : `the inventory names no identityFile, no ssh-agent is running and ${join(homedir(), '.ssh', 'id_ed25519')} does not exist`
          }`,
          'Set ssh.identityFile in the inventory or IdentityFile in the ssh config, or start an ssh-agent with the key loaded.',
        );
      }
    }
    return route;
  }

  /**
   * ProxyJump hops in connection order. OpenSSH reaches the first hop with its
   * own configuration, so its own ProxyJump comes before it; later hops are
   * reached through the ones before them.
   */
  private async jumpChain(
    host: Host,
    specs: JumpSpec[],
    depth: number,
  ): Promise<{ spec: JumpSpec; settings: SshClientSettings }[]> {
    if (!specs.length) return [];
    if (depth >= MAX_JUMP_DEPTH) {
      throw new BatonError(
        'INVALID_INPUT',
        `the ssh config's ProxyJump for ${host.name} goes ${MAX_JUMP_DEPTH} hosts deep through ${specs[0]!.host}: a loop`,
        `Check the ProxyJump lines that apply to ${specs[0]!.host} (\`ssh -G ${specs[0]!.host}\`); a jump host itself usually needs \`ProxyJump none\`.`,
      );
    }
    const hops = await Promise.all(
      specs.map(async (spec) => ({
        spec,
        settings: (await this.clientSettings(spec.host, spec.user, spec.port))!,
      })),
    );
    const before = await this.jumpChain(host, hops[0]!.settings.proxyJump, depth + 1);
    return [...before, ...hops];
  }

  private clientSettings(
    alias: string,
    user: string | undefined,
    port: number | undefined,
  ): Promise<SshClientSettings | undefined> {
    const key = `${alias}\0${user ?? ''}\0${port ?? ''}`;
    let pending = this.settings.get(key);
    if (!pending) {
      pending = readSshConfig(alias, {
        ssh: this.ssh(),
        ...(this.options.sshConfigFile ? { configFile: this.options.sshConfigFile } : {}),
        ...(user ? { user } : {}),
        ...(port ? { port } : {}),
      });
      this.settings.set(key, pending);
      // A configuration fixed after a failure is read afresh.
      pending.catch(() => this.settings.delete(key));
    }
    return pending;
  }

  private ssh(): string | undefined {
    if (this.sshBinary === null) {
      const given = this.options.sshClient;
      this.sshBinary = given ? (existsSync(given) ? given : undefined) : findExecutable('ssh');
    }
    return this.sshBinary;
  }

  /** Log in to one hop, over `sock` when the hop before it forwarded one. */
  private login(host: Host, hop: Hop, sock: Duplex | undefined, purpose: string): Promise<Client> {
    let presented: Buffer | undefined;
    const algorithms = hop.knownHosts
      ? hostKeyAlgorithms(hop.knownHosts.keys).filter((a): a is ServerHostKeyAlgorithm =>
          (SSH2_HOST_KEY_ALGORITHMS as readonly string[]).includes(a),
        )
      : [];
    const config: ConnectConfig = {
      host: hop.hostName,
      port: hop.port,
      username: hop.user,
      authHandler: hop.auth.methods,
      ...(sock ? { sock } : {}),
      readyTimeout: this.options.readyTimeoutMs ?? 10_000,
      keepaliveInterval: this.options.keepaliveIntervalMs ?? 5_000,
      keepaliveCountMax: this.options.keepaliveCountMax ?? 3,
      // Offer only the key types known_hosts holds for a jump host, as OpenSSH does,
      // so a host with several keys is not refused for showing another one.
      ...(algorithms.length ? { algorithms: { serverHostKey: algorithms } } : {}),
      hostVerifier: (key: Buffer): boolean => {
        presented = key;
        return hop.knownHosts
          ? verifyKnownHost(hop.knownHosts.keys, key).kind === 'known'
          : host.ssh!.hostKeys.includes(fingerprint(key));
      },
    };
    const client = new Client();
    return new Promise<Client>((resolve, reject) => {
      const cleanup = (): void => {
        client.off('ready', onReady);
        client.off('error', onError);
        client.off('close', onClose);
      };
      const onReady = (): void => {
        cleanup();
        resolve(client);
      };
      const onError = (err: Error): void => {
        cleanup();
        // ssh2 may report more errors while it tears down; they add nothing.
        client.on('error', () => undefined);
        client.end();
        reject(this.connectError(host, hop, purpose, err, presented));
      };
      const onClose = (): void => {
        cleanup();
        client.on('error', () => undefined);
        reject(beforeStart(host, hop.label, purpose, new Error('connection closed during login')));
      };
      client.on('ready', onReady).on('error', onError).on('close', onClose);
      try {
        client.connect(config);
      } catch (e) {
        cleanup();
        reject(beforeStart(host, hop.label, purpose, e));
      }
    });
  }

  /** A connection from `hop` to the next hop's ssh port, for the next login. */
  private forwardThrough(host: Host, hop: Hop, client: Client, next: Hop): Promise<Duplex> {
    return new Promise<Duplex>((resolve, reject) => {
      client.forwardOut('127.0.0.1', 0, next.hostName, next.port, (err, channel) => {
        if (!err) return resolve(channel);
        client.end();
        const what = `${hop.label} would not open a connection to ${next.hostName}:${next.port}: ${err.message}`;
        // RFC 4254 reason 1: administratively prohibited, the jump host's sshd forbids it.
        if ((err as { reason?: unknown }).reason === 1) {
          return reject(
            new BatonError(
              'PRECONDITION_FAILED',
              `${what} (its sshd does not allow it)`,
              'Allow TCP forwarding on that jump host (AllowTcpForwarding in its sshd_config), or take it out of ProxyJump.',
              { cause: err },
            ),
          );
        }
        reject(
          new TransientError(
            host.name,
            `${what}; the command did not start, so it is safe to retry`,
            false,
            { cause: err },
          ),
        );
      });
    });
  }

  /** The host through the OpenSSH client, which does the jumps itself. */
  private async connectOpenSsh(host: Host, route: Route, purpose: string): Promise<Connection> {
    const ssh = host.ssh!;
    const client = this.ssh()!;
    const label = route.target.label;
    if (!this.noticed.has(host.name)) {
      this.noticed.add(host.name);
      const touch = route.openssh!.includes('security key')
        ? '; touch the security key when it blinks'
        : '';
      (this.options.notice ?? ((m) => process.stderr.write(`baton: ${m}\n`)))(
        `${host.name}: ${route.openssh}; reaching it through the OpenSSH client (${client}) instead${touch}`,
      );
    }
    let master: OpenSshMaster;
    try {
      master = await OpenSshMaster.start(
        {
          alias: host.address,
          ...(ssh.user ? { user: ssh.user } : {}),
          ...(ssh.port ? { port: ssh.port } : {}),
          ...((ssh.identityFile ?? this.options.identityFile)
            ? { identityFile: ssh.identityFile ?? this.options.identityFile! }
            : {}),
          pinned: ssh.hostKeys,
        },
        {
          ssh: client,
          ...(this.options.sshConfigFile ? { configFile: this.options.sshConfigFile } : {}),
          dir: this.privateDir(),
          ...(this.options.agent ? { agent: this.options.agent } : {}),
          connectTimeoutMs: this.options.readyTimeoutMs ?? 10_000,
          // A security key may wait for a touch: more time than a plain login.
          loginTimeoutMs: Math.max(this.options.readyTimeoutMs ?? 10_000, 60_000),
          keepaliveIntervalMs: this.options.keepaliveIntervalMs ?? 5_000,
          keepaliveCountMax: this.options.keepaliveCountMax ?? 3,
        },
      );
    } catch (e) {
      if (!(e instanceof OpenSshLoginError)) throw beforeStart(host, label, purpose, e);
      throw this.openSshLoginError(host, label, purpose, e);
    }
    const conn: OpenSshConnection = { kind: 'openssh', master, dead: false, label };
    master.once('dead', () => {
      conn.dead = true;
      this.live.delete(conn);
    });
    this.live.add(conn);
    return conn;
  }

  private openSshLoginError(
    host: Host,
    label: string,
    purpose: string,
    e: OpenSshLoginError,
  ): BatonError {
    const pinned = host.ssh!.hostKeys;
    if (e.hostKeyRefused && e.presented && !pinned.includes(e.presented)) {
      return pinnedKeyError(label, pinned, e.presented);
    }
    if (e.hostKeyRefused) {
      return new BatonError(
        'HOSTKEY_UNKNOWN',
        `refusing a jump host on the way to ${label}: the OpenSSH client could not verify its host key: ${e.message}`,
        "Verify the jump host's key out of band (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on its console) and add it to known_hosts; baton never trusts a key on first use.",
      );
    }
    if (e.loginRefused) {
      return new BatonError(
        'PRECONDITION_FAILED',
        `login to ${label} through the OpenSSH client was refused: ${e.message}`,
        'Check that the identity in use is in the authorized_keys of that user on the host; a security key must be plugged in, and touched when it blinks.',
        { cause: e },
      );
    }
    return beforeStart(host, label, purpose, e);
  }

  private privateDir(): string {
    if (!this.dir) {
      // Control sockets need a short path without spaces (sun_path, and OpenSSH splits KnownHostsCommand on blanks).
      const base = /^[\w./-]{1,60}$/.test(tmpdir()) ? tmpdir() : '/tmp';
      this.dir = mkdtempSync(join(base, 'baton-ssh-'));
    }
    return this.dir;
  }

  /**
   * The ways to log in as `user`: an identity named by the inventory or the
   * pool alone (through the agent when the file is encrypted); otherwise, as
   * OpenSSH does, the agent's keys and then the ssh config's identity files.
   */
  private authentication(
    named: string | undefined,
    settings: SshClientSettings | undefined,
    user: string,
    label: string,
  ): Authentication {
    const configured =
      settings?.identityAgent === undefined ? process.env.SSH_AUTH_SOCK : settings.identityAgent;
    const agent = this.options.agent ?? configured ?? undefined;
    const agentUp = agent !== undefined && isSocket(agent);
    const fallback = join(homedir(), '.ssh', 'id_ed25519');
    let files = named ? [named] : (settings?.identityFiles ?? []);
    // Without an OpenSSH client there is no config to read: the agent, then the usual key.
    if (!named && !settings && !agentUp && existsSync(fallback)) files = [fallback];
    const identities = files.map((file) => {
      if (named) return inspectIdentity(file, readIdentity(file, label));
      try {
        return inspectIdentity(file, readFileSync(file));
      } catch {
        return { file } satisfies Identity;
      }
    });
    const securityKeys = identities.filter((i) => i.type && SECURITY_KEY_TYPE.test(i.type));
    const methods: AnyAuthMethod[] = [];
    const offered: string[] = [];
    const restricted = named !== undefined || settings?.identitiesOnly === true;
    if (agentUp && !restricted) {
      methods.push({ type: 'agent', username: user, agent });
      offered.push(`the ssh-agent at ${agent}`);
    }
    for (const id of identities) {
      if (!id.privateKey) continue;
      methods.push({ type: 'publickey', username: user, key: id.privateKey });
      offered.push(id.file);
    }
    // An encrypted identity (no passphrase to give) can still sign through the agent.
    const throughAgent = identities.filter(
      (i) => i.publicKey && !(i.type && SECURITY_KEY_TYPE.test(i.type)),
    );
    if (agentUp && restricted && throughAgent.length) {
      const only = throughAgent.map((i) => i.publicKey!);
      methods.push({ type: 'agent', username: user, agent: new OnlyTheseKeys(agent, only) });
      offered.push(
        `the ssh-agent at ${agent}, for ${throughAgent.map((i) => i.file).join(', ')} only`,
      );
    }
    for (const id of identities) {
      if (!id.privateKey && !securityKeys.includes(id) && !throughAgent.includes(id)) {
        offered.push(`${id.file} (not a key baton can read without a passphrase)`);
      } else if (!id.privateKey && throughAgent.includes(id) && !agentUp) {
        offered.push(`${id.file} (encrypted, and no ssh-agent to sign with it)`);
      }
    }
    return { methods, offered, securityKeys };
  }

  /** A jump host names no identity in the inventory: its ssh config's, else the pool's identityFile. */
  private hopAuthentication(settings: SshClientSettings, label: string): Authentication {
    const configured = this.authentication(undefined, settings, settings.user, label);
    if (configured.methods.length || configured.securityKeys.length || !this.options.identityFile)
      return configured;
    return this.authentication(this.options.identityFile, settings, settings.user, label);
  }

  private connectError(
    host: Host,
    hop: Hop,
    purpose: string,
    err: Error,
    presented: Buffer | undefined,
  ): BatonError {
    if (presented && hop.knownHosts) {
      const verdict = verifyKnownHost(hop.knownHosts.keys, presented);
      if (verdict.kind !== 'known') return knownHostsError(hop, verdict, fingerprint(presented));
    } else if (presented && !host.ssh!.hostKeys.includes(fingerprint(presented))) {
      return pinnedKeyError(hop.label, host.ssh!.hostKeys, fingerprint(presented));
    }
    if ((err as { level?: string }).level === 'client-authentication') {
      return new BatonError(
        'PRECONDITION_FAILED',
        `login to ${hop.label} was refused: ${err.message}`,
        `Check that one of the identities offered (${hop.auth.offered.join('; ')}) is in the authorized_keys of ${hop.user} there.`,
        { cause: err },
      );
    }
    return beforeStart(host, hop.label, purpose, err);
  }

  /** `shown` is how messages name the command; `command` goes to the host. */
  private openExec(conn: Connection, host: Host, command: string, shown: string): Promise<Channel> {
    if (conn.kind === 'openssh') {
      if (conn.dead) return Promise.reject(dropped(host, conn.label, shown));
      const channel = conn.master.exec(command);
      watchExit(channel);
      return Promise.resolve(channel);
    }
    const client = conn.client;
    return new Promise<Channel>((resolve, reject) => {
      try {
        client.exec(command, (err, channel) => {
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
    channel: Channel,
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
            return reject(dropped(host, conn.label, command, sessionFailure(channel)));
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
    if (conn.kind === 'openssh') throw new Error('SFTP is only there over ssh2 connections');
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

/** A `$` bound to one host: every interpolated value is quoted for POSIX sh by lib/core/shell.ts. */
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
const earlyExits = new WeakMap<Channel, { code: number | null; signal: string | null }>();

function watchExit(channel: Channel): void {
  channel.once('exit', (code: number | null, signal?: string) =>
    earlyExits.set(channel, { code, signal: signal ?? null }),
  );
}

function dropped(host: Host, label: string, command: string, cause?: unknown): TransientError {
  // The OpenSSH client's own account, when it gave one.
  const said =
    cause instanceof Error && !(cause instanceof BatonError) ? ` (${cause.message})` : '';
  return new TransientError(
    host.name,
    `the connection to ${label} dropped mid-command while running \`${clip(command)}\`${said}: whether it took effect is unknown`,
    true,
    cause === undefined ? undefined : { cause },
  );
}

/**
 * ssh2 only sends a signal request while the channel is writable, but a command
 * whose stdin we closed must still be killable.
 */
function signalChannel(channel: Channel, name: string): void {
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
  if (conn.kind === 'openssh') return void conn.master.close();
  conn.client.end();
  for (const jump of conn.jumps) jump.end();
}

function sessionFailure(channel: Channel): Error | undefined {
  return channel instanceof SessionChannel ? channel.failure : undefined;
}

function refuseDocumentationAddress(label: string, address: string): void {
  if (!DOCUMENTATION_RANGE.test(address)) return;
  throw new BatonError(
    'PRECONDITION_FAILED',
    `${label} has a documentation address (RFC 5737) and no ssh route serves it; baton never dials such an address directly`,
    'For the local testnet, import lib/testnet/stack.ts (the baton CLI does) and run `baton testnet up`.',
  );
}

function pinnedKeyError(label: string, pinned: string[], presented: string): BatonError {
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

function knownHostsError(
  hop: Hop,
  verdict: Exclude<ReturnType<typeof verifyKnownHost>, { kind: 'known' }>,
  presented: string,
): BatonError {
  const { name, files } = hop.knownHosts!;
  if (verdict.kind === 'unknown') {
    return new BatonError(
      'HOSTKEY_UNKNOWN',
      `refusing ${hop.label}: it presented host key ${presented}, and no known_hosts entry for ${name} vouches for it (read ${files.join(', ') || 'no known_hosts file'})`,
      `Verify ${presented} out of band (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on its console), then add its key to known_hosts (\`ssh-keyscan -p ${hop.port} ${hop.hostName}\` prints the line); baton never trusts a key on first use.`,
    );
  }
  if (verdict.kind === 'revoked') {
    return new BatonError(
      'HOSTKEY_MISMATCH',
      `refusing ${hop.label}: it presented host key ${presented}, which ${verdict.source} marks @revoked`,
      'Do not use this jump host until its key is replaced; ask whoever revoked the key.',
    );
  }
  const known = verdict.known.map((k) => `${fingerprint(k.blob)} (${k.source})`).join(', ');
  return new BatonError(
    'HOSTKEY_MISMATCH',
    `refusing ${hop.label}: it presented host key ${presented}, but known_hosts holds ${known} for ${name}`,
    `The jump host was rebuilt or something is intercepting the connection. Find out which before anything else; only then replace its entry (ssh-keygen -R '${name}').`,
  );
}

function isSocket(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}

/** What baton can tell of an identity file without a passphrase. */
function inspectIdentity(file: string, data: Buffer): Identity {
  const parsed = utils.parseKey(data);
  const key = (Array.isArray(parsed) ? parsed[0] : parsed) as ParsedKey | Error | undefined;
  if (key && !(key instanceof Error) && key.isPrivateKey()) {
    return { file, type: key.type, publicKey: key.getPublicSSH(), privateKey: data };
  }
  // Encrypted, or a type ssh2 does not know: the public half is beside it, or
  // unencrypted at the start of an OpenSSH-format private key.
  const publicKey = publicHalf(file, data);
  const type = publicKey ? sshString(publicKey, 0)?.toString('latin1') : undefined;
  return { file, ...(type ? { type } : {}), ...(publicKey ? { publicKey } : {}) };
}

function publicHalf(file: string, data: Buffer): Buffer | undefined {
  try {
    const blob = readFileSync(`${file}.pub`, 'utf8').trim().split(/\s+/)[1];
    if (blob) return Buffer.from(blob, 'base64');
  } catch {
    // No .pub beside it.
  }
  const body =
    /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(
      data.toString('latin1'),
    )?.[1];
  if (!body) return undefined;
  const bytes = Buffer.from(body.replace(/\s+/g, ''), 'base64');
  const magic = Buffer.from('openssh-key-v1\0', 'latin1');
  if (!bytes.subarray(0, magic.length).equals(magic)) return undefined;
  // ciphername, kdfname, kdfoptions, then the number of keys and the first public key.
  let at = magic.length;
  for (let i = 0; i < 3; i++) {
    const field = sshString(bytes, at);
    if (!field) return undefined;
    at += 4 + field.length;
  }
  if (at + 4 > bytes.length || bytes.readUInt32BE(at) < 1) return undefined;
  return sshString(bytes, at + 4);
}

/** An SSH wire-format string (uint32 length, bytes) at `at`, or undefined past the end. */
function sshString(buf: Buffer, at: number): Buffer | undefined {
  if (at + 4 > buf.length) return undefined;
  const length = buf.readUInt32BE(at);
  if (at + 4 + length > buf.length) return undefined;
  return buf.subarray(at + 4, at + 4 + length);
}

/** The agent, offering only the keys of the identity files (IdentitiesOnly, or an inventory identity). */
class OnlyTheseKeys extends OpenSSHAgent {
  constructor(
    socket: string,
    private readonly allowed: Buffer[],
  ) {
    super(socket);
  }
  override getIdentities(cb: IdentityCallback<ParsedKey>): void {
    super.getIdentities((err, keys) => {
      if (err || !keys) return cb(err, keys);
      // The OpenSSH agent answers with parsed keys; anything else cannot be matched, so is left out.
      const blob = (k: (typeof keys)[number]): Buffer | undefined =>
        'getPublicSSH' in k ? k.getPublicSSH() : undefined;
      cb(
        undefined,
        keys.filter((k) => this.allowed.some((a) => blob(k)?.equals(a))),
      );
    });
  }
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
