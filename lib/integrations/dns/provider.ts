/**
 * One interface for the DNS providers the runbooks' cut step uses (RFC 2136,
 * Linode, Azure), and the checks every provider shares: record names, values
 * that may be written, and secrets kept out of every message.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { BatonError, type ErrorCode } from '../../core/errors.ts';

export type RecordType = 'A' | 'AAAA' | 'CNAME' | 'TXT';
export const recordTypes: readonly RecordType[] = ['A', 'AAAA', 'CNAME', 'TXT'];

/** A record set as the provider stores it. No values: the record does not exist. */
export interface RecordSet {
  values: string[];
  ttl: number;
}

export interface DnsProvider {
  /** `rfc2136`, `linode` or `azure`. */
  readonly kind: string;
  /** The zone, without a trailing dot. */
  readonly zone: string;
  /** The record set `name` (relative like `irc`, or fully qualified) of `type`. */
  readRecord(name: string, type: RecordType): Promise<RecordSet>;
  /** Change the TTL of an existing record set, keeping its values. */
  setTtl(name: string, type: RecordType, ttl: number): Promise<RecordSet>;
  /** Make `value` the record set's only value; keeps the TTL unless `ttl` is given. */
  setTarget(name: string, type: RecordType, value: string, ttl?: number): Promise<RecordSet>;
  /**
   * Compare-and-set: make `value` the record set's only value only if it holds
   * exactly `expected` now (or, with `expected` undefined, does not exist).
   * Keeps the TTL unless `ttl` is given (a new record needs one). Refused with
   * a DnsConflictError that says what the record holds instead.
   */
  compareAndSet(
    name: string,
    type: RecordType,
    expected: string | undefined,
    value: string,
    ttl?: number,
  ): Promise<RecordSet>;
  /**
   * How the comparison is made: `atomic` when the server refuses the update
   * itself (RFC 2136 prerequisites, an etag with If-Match); `re-read` when the
   * API has no conditional update and the record is read before and after.
   */
  readonly cas: 'atomic' | 're-read';
}

/** A failed call to a DNS provider; never carries a token or key. */
export class DnsError extends BatonError {
  readonly provider: string;
  readonly status: number | undefined;
  constructor(code: ErrorCode, provider: string, message: string, hint?: string, status?: number) {
    super(code, message, hint);
    this.name = 'DnsError';
    this.provider = provider;
    this.status = status;
  }
}

/** A compare-and-set refused: the record no longer holds what the caller read. */
export class DnsConflictError extends DnsError {
  /** The values the record holds now (re-read after the refusal); empty when it does not exist. */
  readonly found: string[];
  constructor(provider: string, message: string, found: string[], hint?: string, status?: number) {
    super('PRECONDITION_FAILED', provider, message, hint, status);
    this.name = 'DnsConflictError';
    this.found = found;
  }
}

/** The message of a refused compare-and-set. */
export function conflictMessage(
  owner: string,
  type: RecordType,
  expected: string | undefined,
  found: readonly string[],
): string {
  const was = expected === undefined ? 'no record' : JSON.stringify(expected);
  const now = found.length ? found.map((v) => JSON.stringify(v)).join(', ') : 'no record';
  return `${owner} ${type} no longer holds ${was}: it holds ${now}; nothing was written`;
}

export function normalizeZone(zone: string): string {
  return zone.trim().replace(/\.$/, '').toLowerCase();
}

const NAME =
  /^(\*\.)?([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/**
 * The name relative to the zone: `@` for the apex. Accepts `irc`, `irc.example.net`,
 * `irc.example.net.`; an absolute name outside the zone is refused.
 */
export function relativeName(name: string, zone: string): string {
  const z = normalizeZone(zone);
  const absolute = name.endsWith('.');
  const n = name.replace(/\.$/, '').toLowerCase();
  if (n === '' || n === '@' || n === z) return '@';
  if (n.endsWith(`.${z}`)) return checkName(n.slice(0, -z.length - 1), name);
  if (absolute) {
    throw new DnsError('INVALID_INPUT', 'dns', `record name ${name} is not in zone ${z}`);
  }
  return checkName(n, name);
}

function checkName(rel: string, original: string): string {
  if (!NAME.test(rel)) {
    throw new DnsError(
      'INVALID_INPUT',
      'dns',
      `record name ${JSON.stringify(original)} is not a DNS name`,
      'Use letters, digits, dashes and dots only.',
    );
  }
  return rel;
}

/** The fully qualified name, without the trailing dot. */
export function fqdn(name: string, zone: string): string {
  const rel = relativeName(name, zone);
  const z = normalizeZone(zone);
  return rel === '@' ? z : `${rel}.${z}`;
}

/** Refuse values that are not of the type, or that could smuggle text into an update. */
/** Compare-and-set's test: the record set holds exactly `expected`, or nothing when it is undefined. */
export function holdsExpected(
  type: RecordType,
  values: readonly string[],
  expected: string | undefined,
): boolean {
  return expected === undefined
    ? values.length === 0
    : values.length === 1 && values[0] === checkValue(type, expected);
}

export function checkValue(type: RecordType, value: string): string {
  const bad = (why: string): never => {
    throw new DnsError('INVALID_INPUT', 'dns', `${type} value ${JSON.stringify(value)} ${why}`);
  };
  if (/[\r\n\0]/.test(value)) bad('contains a line break or NUL');
  if (type === 'A' && !isIPv4(value)) bad('is not an IPv4 address');
  if (type === 'AAAA' && !isIPv6(value)) bad('is not an IPv6 address');
  if (type === 'CNAME') {
    const host = value.replace(/\.$/, '');
    if (!NAME.test(host)) bad('is not a host name');
    return host.toLowerCase();
  }
  if (type === 'TXT' && value.length > 2048) bad('is longer than 2048 characters');
  return value;
}

export function checkTtl(ttl: number): number {
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > 2147483647) {
    throw new DnsError('INVALID_INPUT', 'dns', `TTL ${ttl} is not a whole number of seconds ≥ 1`);
  }
  return ttl;
}

/** Compare value lists as sets, the way resolvers see them. */
export function sameValues(type: RecordType, a: readonly string[], b: readonly string[]): boolean {
  const norm = (v: string) => (type === 'CNAME' ? v.replace(/\.$/, '').toLowerCase() : v);
  const x = [...new Set(a.map(norm))].sort();
  const y = [...new Set(b.map(norm))].sort();
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** Replace every occurrence of each secret with `[redacted]`. */
export function redactSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (s) out = out.split(s).join('[redacted]');
  return out;
}
