/**
 * RFC 2136 dynamic updates signed with TSIG, through `knsupdate` (Knot) or
 * `nsupdate` (BIND). The update script, key included, goes to the tool on
 * stdin: the key is never in argv, a file, or any message.
 */
import { sh } from '../../core/shell.ts';
import { findExecutable } from '../../transports/which.ts';
import { localRunner, type CommandRunner } from './command.ts';
import {
  checkTtl,
  checkValue,
  conflictMessage,
  DnsConflictError,
  DnsError,
  fqdn,
  normalizeZone,
  redactSecrets,
  type DnsProvider,
  type RecordSet,
  type RecordType,
} from './provider.ts';
import { parseDig } from './verify.ts';

export interface TsigKey {
  /** Key name, e.g. `baton-cut`. */
  name: string;
  /** `hmac-sha256` (default), `hmac-sha512` ... */
  algorithm: string;
  /** The base64 secret. */
  secret: string;
}

export interface Rfc2136Options {
  zone: string;
  /** The primary server that accepts updates. */
  server: { address: string; port: number };
  tsig: TsigKey;
  /** `knsupdate` or `nsupdate`; by default whichever is installed, knsupdate first. */
  tool?: 'knsupdate' | 'nsupdate';
  run?: CommandRunner;
  timeoutMs?: number;
}

/** Parse `hmac-sha256:name:secret` (dig -y's format), as BATON_TSIG_KEY holds it. */
export function parseTsigKey(text: string): TsigKey {
  const parts = text.trim().split(':');
  const [algorithm, name, secret] =
    parts.length === 3 ? parts : parts.length === 2 ? ['hmac-sha256', ...parts] : [];
  if (!algorithm || !name || !secret || !/^[A-Za-z0-9+/]+=*$/.test(secret)) {
    throw new DnsError(
      'INVALID_INPUT',
      'rfc2136',
      'the TSIG key is not in the form algorithm:name:base64-secret',
      'Set BATON_TSIG_KEY like hmac-sha256:baton-cut:<secret from `keymgr -t baton-cut`>.',
    );
  }
  return { algorithm: algorithm.toLowerCase(), name, secret };
}

function rdata(type: RecordType, value: string): string {
  const v = checkValue(type, value);
  if (type === 'CNAME') return `${v}.`;
  if (type === 'TXT') return `"${v.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
  return v;
}

export class Rfc2136Provider implements DnsProvider {
  readonly kind = 'rfc2136';
  readonly cas = 'atomic';
  readonly zone: string;
  readonly #key: TsigKey;
  readonly #server: { address: string; port: number };
  readonly #tool: 'knsupdate' | 'nsupdate' | undefined;
  readonly #run: CommandRunner;
  readonly #timeoutMs: number;

  constructor(options: Rfc2136Options) {
    this.zone = normalizeZone(options.zone);
    this.#key = options.tsig;
    if (
      !/^[A-Za-z0-9._-]+$/.test(options.tsig.name) ||
      !/^[a-z0-9-]+$/.test(options.tsig.algorithm)
    ) {
      throw new DnsError(
        'INVALID_INPUT',
        'rfc2136',
        'the TSIG key name or algorithm has odd characters',
      );
    }
    if (!/^[A-Za-z0-9.:-]+$/.test(options.server.address)) {
      throw new DnsError(
        'INVALID_INPUT',
        'rfc2136',
        `server address ${options.server.address} is not a host`,
      );
    }
    this.#server = options.server;
    this.#tool = options.tool;
    this.#run = options.run ?? localRunner;
    this.#timeoutMs = options.timeoutMs ?? 15_000;
  }

  get server(): string {
    return `${this.#server.address}:${this.#server.port}`;
  }

  async readRecord(name: string, type: RecordType): Promise<RecordSet> {
    const owner = fqdn(name, this.zone);
    const cmd = sh`dig +norec +noall +comments +answer +time=3 +tries=2 -p ${this.#server.port} ${`@${this.#server.address}`} ${owner} ${type}`;
    const out = await this.#run(cmd, { timeoutMs: this.#timeoutMs });
    if (out.exitCode !== 0) {
      throw new DnsError(
        'TRANSIENT',
        this.kind,
        `reading ${owner} ${type} from ${this.server} failed: dig exited ${out.exitCode}: ${(out.stdout + out.stderr).trim().split('\n').slice(-1)[0] ?? ''}`,
        'Check that the DNS server is up and reachable from where baton runs.',
      );
    }
    const parsed = parseDig(out.stdout, owner, type);
    if (parsed.status !== 'NOERROR' && parsed.status !== 'NXDOMAIN') {
      throw new DnsError(
        'PRECONDITION_FAILED',
        this.kind,
        `${this.server} answered ${parsed.status ?? 'nothing'} for ${owner} ${type}`,
        `Check that ${this.server} is authoritative for ${this.zone}.`,
      );
    }
    return { values: parsed.values, ttl: parsed.values.length ? parsed.ttl! : 0 };
  }

  async setTtl(name: string, type: RecordType, ttl: number): Promise<RecordSet> {
    checkTtl(ttl);
    const current = await this.readRecord(name, type);
    if (!current.values.length) {
      throw new DnsError(
        'PRECONDITION_FAILED',
        this.kind,
        `cannot change the TTL of ${fqdn(name, this.zone)} ${type}: the record does not exist on ${this.server}`,
      );
    }
    return this.replace(name, type, current.values, ttl);
  }

  async setTarget(name: string, type: RecordType, value: string, ttl?: number): Promise<RecordSet> {
    checkValue(type, value);
    let newTtl = ttl;
    if (newTtl === undefined) {
      const current = await this.readRecord(name, type);
      if (!current.values.length) {
        throw new DnsError(
          'INVALID_INPUT',
          this.kind,
          `${fqdn(name, this.zone)} ${type} does not exist yet, so setting its target needs a TTL`,
        );
      }
      newTtl = current.ttl;
    }
    return this.replace(name, type, [value], checkTtl(newTtl));
  }

  /**
   * One update message whose prerequisite is the record set as read: `prereq
   * yxrrset NAME TYPE "old"` (exactly that value) or `prereq nxrrset NAME TYPE`
   * (no such record). The server applies all of it or none.
   */
  async compareAndSet(
    name: string,
    type: RecordType,
    expected: string | undefined,
    value: string,
    ttl?: number,
  ): Promise<RecordSet> {
    checkValue(type, value);
    if (expected !== undefined) checkValue(type, expected);
    let newTtl = ttl;
    if (newTtl === undefined) {
      const current = await this.readRecord(name, type);
      if (!current.values.length && expected === undefined) {
        throw new DnsError(
          'INVALID_INPUT',
          this.kind,
          `${fqdn(name, this.zone)} ${type} does not exist yet, so creating it needs a TTL`,
        );
      }
      newTtl = current.values.length ? current.ttl : 60;
    }
    const owner = `${fqdn(name, this.zone)}.`;
    const prereq =
      expected === undefined
        ? `prereq nxrrset ${owner} ${type}`
        : `prereq yxrrset ${owner} ${type} ${rdata(type, expected)}`;
    return this.replace(name, type, [value], checkTtl(newTtl), { prereq, expected });
  }

  /** Delete the RRset and add the new one in a single signed update message. */
  private async replace(
    name: string,
    type: RecordType,
    values: string[],
    ttl: number,
    cas?: { prereq: string; expected: string | undefined },
  ): Promise<RecordSet> {
    const owner = `${fqdn(name, this.zone)}.`;
    const tool = this.#tool ?? (findExecutable('knsupdate') ? 'knsupdate' : 'nsupdate');
    const key = this.#key;
    const script = [
      `server ${this.#server.address} ${this.#server.port}`,
      `zone ${this.zone}.`,
      `key ${key.algorithm}:${key.name} ${key.secret}`,
      ...(cas ? [cas.prereq] : []),
      `update delete ${owner} ${type}`,
      ...values.map((v) => `update add ${owner} ${ttl} ${type} ${rdata(type, v)}`),
      'send',
      'quit',
      '',
    ].join('\n');
    const cmd = tool === 'knsupdate' ? sh`knsupdate` : sh`nsupdate -v`;
    const out = await this.#run(cmd, { input: script, timeoutMs: this.#timeoutMs });
    if (out.exitCode !== 0) {
      const detail = redactSecrets(`${out.stdout}\n${out.stderr}`, [key.secret]).trim();
      const rcode =
        /\b(NOTAUTH|BADSIG|BADKEY|BADTIME|REFUSED|NOTZONE|SERVFAIL|FORMERR|NXRRSET|YXRRSET)\b/.exec(
          detail,
        )?.[1];
      if (cas && (rcode === 'NXRRSET' || rcode === 'YXRRSET')) {
        const found = (await this.readRecord(name, type)).values;
        throw new DnsConflictError(
          this.kind,
          `RFC 2136 update of ${owner} ${type} on ${this.server} refused (${rcode}): ${conflictMessage(owner, type, cas.expected, found)}`,
          found,
          'Someone else changed the record since it was read: read it again and decide.',
        );
      }
      throw new DnsError(
        rcode === 'REFUSED' || rcode?.startsWith('BAD') || rcode === 'NOTAUTH'
          ? 'PRECONDITION_FAILED'
          : 'COMMAND_FAILED',
        this.kind,
        `RFC 2136 update of ${owner} ${type} on ${this.server} failed${rcode ? ` (${rcode})` : ''}: ${detail.split('\n').slice(-2).join(' | ')}`,
        rcode === 'NOTAUTH' || rcode?.startsWith('BAD')
          ? `The server refused TSIG key ${key.name}: check BATON_TSIG_KEY and the server's update ACL for ${this.zone}.`
          : `Check that ${this.server} is the primary for ${this.zone} and accepts updates.`,
      );
    }
    const after = await this.readRecord(name, type);
    return after;
  }
}
