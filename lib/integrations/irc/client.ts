/**
 * A small IRC client for verification: registers, answers PING, sends
 * commands and waits for the replies that prove something (a numeric, a
 * service's notice, a TOPIC). Plain TCP through node:net, or any byte stream
 * given as `connect` (such as an ssh forward to the ircd's loopback).
 */
import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { BatonError } from '../../core/errors.ts';
import { Redactor } from '../../core/redact.ts';

/** A failed IRC conversation; its message never holds a password. */
export class IrcError extends BatonError {
  /** `host:port` of the server. */
  readonly server: string;
  constructor(code: 'IRC_FAILED' | 'TIMEOUT', server: string, message: string, hint?: string) {
    super(code, `IRC ${server}: ${message}`, hint);
    this.name = 'IrcError';
    this.server = server;
  }
}

/** One IRC line, parsed (IRCv3 tags kept as they are). */
export interface IrcMessage {
  raw: string;
  tags: Record<string, string>;
  /** `nick!user@host` or a server name; undefined for lines without one. */
  prefix: string | undefined;
  /** The nick part of the prefix. */
  source: string | undefined;
  /** Upper case; numerics stay three digits. */
  command: string;
  params: string[];
}

export function parseIrcLine(raw: string): IrcMessage {
  let rest = raw;
  const tags: Record<string, string> = {};
  if (rest.startsWith('@')) {
    const end = rest.indexOf(' ');
    for (const tag of rest.slice(1, end === -1 ? undefined : end).split(';')) {
      const eq = tag.indexOf('=');
      if (eq === -1) tags[tag] = '';
      else tags[tag.slice(0, eq)] = tag.slice(eq + 1);
    }
    rest = end === -1 ? '' : rest.slice(end + 1).trimStart();
  }
  let prefix: string | undefined;
  if (rest.startsWith(':')) {
    const end = rest.indexOf(' ');
    prefix = rest.slice(1, end === -1 ? undefined : end);
    rest = end === -1 ? '' : rest.slice(end + 1).trimStart();
  }
  const params: string[] = [];
  while (rest.length > 0) {
    if (rest.startsWith(':')) {
      params.push(rest.slice(1));
      break;
    }
    const end = rest.indexOf(' ');
    params.push(end === -1 ? rest : rest.slice(0, end));
    rest = end === -1 ? '' : rest.slice(end + 1).trimStart();
  }
  const command = (params.shift() ?? '').toUpperCase();
  const source = prefix?.split('!')[0];
  return { raw, tags, prefix, source, command, params };
}

/** Text without IRC formatting (bold, colours, reverse, italics, underline, reset). */
export function plainText(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x03(\d{1,2}(,\d{1,2})?)?|[\x02\x0f\x11\x16\x1d\x1e\x1f]/g, '');
}

export interface IrcClientOptions {
  host: string;
  port: number;
  nick: string;
  user?: string;
  realname?: string;
  /** Server password (PASS); never logged. */
  password?: string;
  /** For messages: the name of the ircd's host (`paralysis`); defaults to host:port. */
  label?: string;
  /** Milliseconds for TCP connect plus registration (001); default 15 000. */
  registerTimeoutMs?: number;
  /** Every line sent (`> `) and received (`< `), secrets redacted. */
  log?: (line: string) => void;
  /**
   * Opens the byte stream to the ircd instead of a TCP connection to
   * host:port, e.g. `() => pool.forward(host, 6667)`; host and port then only label it.
   */
  connect?: () => Promise<Duplex>;
}

export interface WaitOptions {
  timeoutMs?: number;
  /** What is awaited, for the timeout message. */
  what?: string;
}

/** Replies to a JOIN: the topic if any, and who is in the channel. */
export interface JoinResult {
  channel: string;
  topic: string | undefined;
  names: string[];
}

/** The channel's topic as the server answers `TOPIC #chan`: 332, or undefined for 331. */
export interface TopicResult {
  channel: string;
  topic: string | undefined;
  numeric: '331' | '332';
}

type Waiter = {
  match: (m: IrcMessage) => boolean;
  resolve: (m: IrcMessage) => void;
  reject: (e: Error) => void;
};

const DEFAULT_TIMEOUT = 10_000;
const JOIN_ERRORS = new Set(['403', '405', '471', '473', '474', '475', '476', '477', '479']);
const NICK_ERRORS = new Set(['431', '432', '433', '436']);

/**
 * One registered connection to an ircd. Use `IrcClient.connect`, or
 * `withIrcClient` to have it closed whatever happens.
 */
export class IrcClient {
  /** The nick the server registered. */
  nick: string;
  /** The server's name, from its 001. */
  serverName = '';
  private readonly socket: Duplex;
  private readonly decoder = new StringDecoder('utf8');
  private readonly redactor = new Redactor();
  private readonly waiters = new Set<Waiter>();
  private readonly log: ((line: string) => void) | undefined;
  private partial = '';
  private closedError: Error | undefined;
  readonly label: string;

  private constructor(socket: Duplex, options: IrcClientOptions) {
    this.socket = socket;
    this.nick = options.nick;
    this.log = options.log;
    this.label = options.label ?? `${options.host}:${options.port}`;
    if (options.password) this.redactor.add('irc-password', options.password);
    socket.on('data', this.onData);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  /** Connect, register with NICK/USER and wait for 001. */
  static async connect(options: IrcClientOptions): Promise<IrcClient> {
    const label = options.label ?? `${options.host}:${options.port}`;
    const timeoutMs = options.registerTimeoutMs ?? 15_000;
    const socket = options.connect
      ? await openStream(options.connect, label, timeoutMs)
      : await openTcp(options.host, options.port, label, timeoutMs);
    const client = new IrcClient(socket, options);
    try {
      const welcome = client.waitFor(
        (m) =>
          m.command === '001' ||
          NICK_ERRORS.has(m.command) ||
          ['464', '465', 'ERROR'].includes(m.command),
        { timeoutMs, what: 'registration (001)' },
      );
      if (options.password) client.send(`PASS :${options.password}`);
      client.send(`NICK ${options.nick}`);
      client.send(
        `USER ${options.user ?? options.nick} 0 * :${options.realname ?? 'baton verification'}`,
      );
      const reply = await welcome;
      if (reply.command !== '001') {
        throw new IrcError('IRC_FAILED', label, `registration refused: ${client.describe(reply)}`);
      }
      client.nick = reply.params[0] ?? options.nick;
      client.serverName = reply.prefix ?? '';
      return client;
    } catch (e) {
      client.close();
      throw e;
    }
  }

  /** Send one line. Values passed as `secrets` are added to the redaction list first. */
  send(line: string, secrets: string[] = []): void {
    for (const s of secrets) this.redactor.add('irc-secret', s);
    if (this.closedError) throw this.closedError;
    if (/[\r\n]/.test(line))
      throw new IrcError('IRC_FAILED', this.label, 'refusing to send a line with CR or LF in it');
    this.log?.(`> ${this.redactor.redact(line)}`);
    this.socket.write(`${line}\r\n`);
  }

  /**
   * The first message from now on for which `match` is true. Rejects on
   * timeout or when the connection closes.
   */
  waitFor(match: (m: IrcMessage) => boolean, options: WaitOptions = {}): Promise<IrcMessage> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT;
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        match,
        resolve: (m) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          reject(e);
        },
      };
      const timer = setTimeout(
        () =>
          waiter.reject(
            new IrcError(
              'TIMEOUT',
              this.label,
              `no ${options.what ?? 'reply'} within ${timeoutMs} ms`,
            ),
          ),
        timeoutMs,
      );
      this.waiters.add(waiter);
    });
  }

  /**
   * Send `line` and collect every message `keep` accepts until `done`
   * matches (the last message included).
   */
  async request(
    line: string,
    done: (m: IrcMessage) => boolean,
    options: WaitOptions & { keep?: (m: IrcMessage) => boolean; secrets?: string[] } = {},
  ): Promise<IrcMessage[]> {
    const kept: IrcMessage[] = [];
    const keep = options.keep ?? (() => true);
    const finished = this.waitFor((m) => {
      if (keep(m) || done(m)) kept.push(m);
      return done(m);
    }, options);
    try {
      this.send(line, options.secrets);
    } catch (e) {
      finished.catch(() => undefined);
      throw e;
    }
    await finished;
    return kept;
  }

  /** JOIN and wait for the end of NAMES (366); a join error numeric rejects. */
  async join(channel: string, options: WaitOptions = {}): Promise<JoinResult> {
    const lower = channel.toLowerCase();
    const mine = (m: IrcMessage): boolean =>
      m.params.some((p) => p.toLowerCase() === lower) ||
      (m.command === 'JOIN' && m.source === this.nick);
    const replies = await this.request(
      `JOIN ${channel}`,
      (m) => (m.command === '366' || JOIN_ERRORS.has(m.command)) && mine(m),
      { ...options, what: options.what ?? `JOIN ${channel} (366)`, keep: mine },
    );
    const last = replies[replies.length - 1]!;
    if (last.command !== '366') {
      throw new IrcError(
        'IRC_FAILED',
        this.label,
        `cannot join ${channel}: ${this.describe(last)}`,
      );
    }
    return {
      channel,
      topic: replies.find((m) => m.command === '332')?.params[2],
      names: replies
        .filter((m) => m.command === '353')
        .flatMap((m) => (m.params[m.params.length - 1] ?? '').split(' '))
        .filter(Boolean)
        .map((n) => n.replace(/^[~&@%+]+/, '')),
    };
  }

  /** Ask the server for a channel's topic: 332 (set) or 331 (none). */
  async topic(channel: string, options: WaitOptions = {}): Promise<TopicResult> {
    const lower = channel.toLowerCase();
    const replies = await this.request(
      `TOPIC ${channel}`,
      (m) =>
        ['331', '332', '403', '442'].includes(m.command) && m.params[1]?.toLowerCase() === lower,
      { ...options, what: options.what ?? `TOPIC ${channel} (331/332)`, keep: () => false },
    );
    const reply = replies[0]!;
    if (reply.command === '332') return { channel, topic: reply.params[2] ?? '', numeric: '332' };
    if (reply.command === '331') return { channel, topic: undefined, numeric: '331' };
    throw new IrcError(
      'IRC_FAILED',
      this.label,
      `cannot read the topic of ${channel}: ${this.describe(reply)}`,
    );
  }

  privmsg(target: string, text: string, secrets: string[] = []): void {
    this.send(`PRIVMSG ${target} :${text}`, secrets);
  }

  /** RFC 2812 SQUERY: a message only a network service (U-lined) may receive. */
  squery(service: string, text: string, secrets: string[] = []): void {
    this.send(`SQUERY ${service} :${text}`, secrets);
  }

  /** QUIT and wait (briefly) for the server to close the connection; then close it. */
  async quit(message = 'baton: done'): Promise<void> {
    if (this.closedError) return this.close();
    let onGone: (() => void) | undefined;
    try {
      const gone = new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 2_000);
        onGone = () => {
          clearTimeout(timer);
          resolve();
        };
        this.socket.once('close', onGone);
      });
      this.send(`QUIT :${message}`);
      await gone;
    } catch {
      // closing anyway
    } finally {
      if (onGone) this.socket.off('close', onGone);
      this.close();
    }
  }

  /** Close now and remove every listener; pending waits reject. */
  close(): void {
    this.fail(new IrcError('IRC_FAILED', this.label, 'connection closed by the client'));
    this.socket.off('data', this.onData);
    this.socket.off('error', this.onError);
    this.socket.off('close', this.onClose);
    this.socket.destroy();
  }

  /** A message as text for errors, secrets redacted. */
  describe(m: IrcMessage): string {
    const params = m.params.slice(1);
    if (params.length > 1) params[params.length - 1] = `:${params[params.length - 1]}`;
    return this.redactor.redact(`${m.command} ${params.join(' ')}`.trim());
  }

  private readonly onData = (chunk: Buffer): void => {
    this.partial += this.decoder.write(chunk);
    const lines = this.partial.split(/\r?\n/);
    this.partial = lines.pop() ?? '';
    for (const raw of lines) {
      if (raw === '') continue;
      const m = parseIrcLine(raw);
      this.log?.(`< ${this.redactor.redact(raw)}`);
      if (m.command === 'PING') this.send(`PONG :${m.params[0] ?? ''}`);
      for (const w of [...this.waiters]) if (w.match(m)) w.resolve(m);
    }
  };

  private readonly onError = (e: Error): void => {
    this.fail(new IrcError('IRC_FAILED', this.label, `connection error: ${e.message}`));
  };

  private readonly onClose = (): void => {
    this.fail(new IrcError('IRC_FAILED', this.label, 'the server closed the connection'));
  };

  private fail(e: Error): void {
    if (!this.closedError) this.closedError = e;
    for (const w of [...this.waiters]) w.reject(this.closedError);
  }
}

/** A TCP connection to host:port, within the registration timeout; its failure is an IrcError. */
function openTcp(host: string, port: number, label: string, timeoutMs: number): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const s = netConnect({ host, port });
    const timer = setTimeout(() => {
      cleanup();
      s.destroy();
      reject(new IrcError('TIMEOUT', label, `no TCP connection in ${timeoutMs} ms`));
    }, timeoutMs);
    const onConnect = (): void => {
      cleanup();
      resolve(s);
    };
    const onError = (e: Error): void => {
      cleanup();
      s.destroy();
      reject(
        new IrcError(
          'IRC_FAILED',
          label,
          `cannot connect: ${e.message}`,
          'Check that the ircd runs and listens on this address.',
        ),
      );
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      s.off('connect', onConnect);
      s.off('error', onError);
    };
    s.once('connect', onConnect);
    s.once('error', onError);
  });
}

/** A stream from `connect`, within the registration timeout; its failure is an IrcError. */
async function openStream(
  connect: () => Promise<Duplex>,
  label: string,
  timeoutMs: number,
): Promise<Duplex> {
  let timer: NodeJS.Timeout | undefined;
  const opening = connect();
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      opening.then((s) => s.destroy()).catch(() => undefined);
      reject(new IrcError('TIMEOUT', label, `no connection in ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([opening, timeout]);
  } catch (e) {
    if (e instanceof IrcError) throw e;
    throw new IrcError(
      'IRC_FAILED',
      label,
      `cannot connect: ${(e as Error).message}`,
      'Check that the ircd runs and listens there.',
    );
  } finally {
    clearTimeout(timer);
  }
}

/** Connect, run `fn`, and QUIT and close in every case. */
export async function withIrcClient<T>(
  options: IrcClientOptions,
  fn: (client: IrcClient) => Promise<T>,
): Promise<T> {
  const client = await IrcClient.connect(options);
  try {
    return await fn(client);
  } finally {
    await client.quit();
  }
}
