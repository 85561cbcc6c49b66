/**
 * Linode DNS through API v4: domains and their records, paginated with
 * `page`/`pages`. An A record set is several records with one name; a TTL of 0
 * means the domain's default. The API has no conditional update (no etag, no
 * If-Match): a compare-and-set reads, compares, writes and reads again, so two
 * writers inside that window can both believe they won; the second read
 * catches the loser when it lands after the winner (docs/lease.md).
 */
import { ApiClient, type HttpClientOptions } from './http.ts';
import {
  holdsExpected,
  checkTtl,
  checkValue,
  conflictMessage,
  DnsConflictError,
  DnsError,
  normalizeZone,
  relativeName,
  type DnsProvider,
  type RecordSet,
  type RecordType,
} from './provider.ts';

export const linodeApiUrl = 'https://api.linode.com/v4';

export interface LinodeDnsOptions extends Partial<HttpClientOptions> {
  zone: string;
  /** A personal access token with Domains read/write. */
  token: string;
  /** Records per page, 25-500. Default 100. */
  pageSize?: number;
}

export interface LinodeRecord {
  id: number;
  type: string;
  name: string;
  target: string;
  ttl_sec: number;
}

interface LinodeDomain {
  id: number;
  domain: string;
  ttl_sec: number;
}

interface Page<T> {
  data: T[];
  page: number;
  pages: number;
  results: number;
}

function linodeReason(body: unknown): string | undefined {
  const errors = (body as { errors?: { reason?: string; field?: string }[] } | undefined)?.errors;
  if (!Array.isArray(errors) || !errors.length) return undefined;
  return errors.map((e) => (e.field ? `${e.field}: ${e.reason}` : e.reason)).join('; ');
}

export class LinodeDnsProvider implements DnsProvider {
  readonly kind = 'linode';
  readonly cas = 're-read';
  readonly zone: string;
  readonly #token: string;
  readonly #api: ApiClient;
  readonly #pageSize: number;
  #domain: LinodeDomain | undefined;

  constructor(options: LinodeDnsOptions) {
    this.zone = normalizeZone(options.zone);
    this.#token = options.token;
    if (!options.token) {
      throw new DnsError(
        'MISSING_PREREQUISITE',
        this.kind,
        'no Linode API token',
        'Set LINODE_TOKEN.',
      );
    }
    this.#pageSize = Math.min(500, Math.max(25, options.pageSize ?? 100));
    this.#api = new ApiClient(
      {
        name: 'Linode',
        kind: this.kind,
        secrets: () => [this.#token],
        reason: linodeReason,
        authHint:
          'Check LINODE_TOKEN: a personal access token with the Domains read/write scope, not expired.',
      },
      { ...options, baseUrl: options.baseUrl ?? linodeApiUrl },
    );
  }

  private call<T>(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<T> {
    return this.#api
      .request({ method, path, body, ...(headers ? { headers } : {}) }, `Bearer ${this.#token}`)
      .then((r) => r.body as T);
  }

  /** Every item of a paginated collection. */
  private async all<T>(path: string, headers?: Record<string, string>): Promise<T[]> {
    const items: T[] = [];
    for (let page = 1, pages = 1; page <= pages; page++) {
      const sep = path.includes('?') ? '&' : '?';
      const res = await this.call<Page<T>>(
        'GET',
        `${path}${sep}page=${page}&page_size=${this.#pageSize}`,
        undefined,
        headers,
      );
      if (!Array.isArray(res?.data) || typeof res.pages !== 'number') {
        throw new DnsError(
          'COMMAND_FAILED',
          this.kind,
          `Linode API GET ${path} did not answer a page of results`,
        );
      }
      items.push(...res.data);
      pages = Math.min(res.pages, 10_000);
    }
    return items;
  }

  private async domain(): Promise<LinodeDomain> {
    if (this.#domain) return this.#domain;
    const domains = await this.all<LinodeDomain>('domains', {
      'X-Filter': JSON.stringify({ domain: this.zone }),
    });
    const found = domains.find((d) => normalizeZone(d.domain) === this.zone);
    if (!found) {
      throw new DnsError(
        'INVALID_INPUT',
        this.kind,
        `Linode has no domain ${this.zone} in this account`,
        'Check the zone in the inventory and that the token belongs to the account that hosts it.',
      );
    }
    this.#domain = found;
    return found;
  }

  /** Every record of the zone. */
  async listRecords(): Promise<LinodeRecord[]> {
    const d = await this.domain();
    return this.all<LinodeRecord>(`domains/${d.id}/records`);
  }

  private async recordSet(
    name: string,
    type: RecordType,
  ): Promise<{ domain: LinodeDomain; records: LinodeRecord[] }> {
    const rel = relativeName(name, this.zone);
    const linodeName = rel === '@' ? '' : rel;
    const domain = await this.domain();
    const records = (await this.listRecords()).filter(
      (r) => r.type === type && r.name.toLowerCase() === linodeName,
    );
    return { domain, records };
  }

  private toSet(domain: LinodeDomain, records: LinodeRecord[]): RecordSet {
    if (!records.length) return { values: [], ttl: 0 };
    const ttls = records.map((r) => (r.ttl_sec === 0 ? domain.ttl_sec : r.ttl_sec));
    return { values: records.map((r) => r.target), ttl: Math.min(...ttls) };
  }

  async readRecord(name: string, type: RecordType): Promise<RecordSet> {
    const { domain, records } = await this.recordSet(name, type);
    return this.toSet(domain, records);
  }

  async setTtl(name: string, type: RecordType, ttl: number): Promise<RecordSet> {
    checkTtl(ttl);
    const { domain, records } = await this.recordSet(name, type);
    if (!records.length) {
      throw new DnsError(
        'PRECONDITION_FAILED',
        this.kind,
        `cannot change the TTL of ${name} ${type} in ${this.zone}: no such record on Linode`,
      );
    }
    const updated: LinodeRecord[] = [];
    for (const r of records) {
      updated.push(
        await this.call<LinodeRecord>('PUT', `domains/${domain.id}/records/${r.id}`, {
          ttl_sec: ttl,
        }),
      );
    }
    return this.toSet(domain, updated);
  }

  async setTarget(name: string, type: RecordType, value: string, ttl?: number): Promise<RecordSet> {
    const target = checkValue(type, value);
    if (ttl !== undefined) checkTtl(ttl);
    const { domain, records } = await this.recordSet(name, type);
    const [first, ...rest] = records;
    let kept: LinodeRecord;
    if (!first) {
      if (ttl === undefined) {
        throw new DnsError(
          'INVALID_INPUT',
          this.kind,
          `${name} ${type} does not exist in ${this.zone} yet, so setting its target needs a TTL`,
        );
      }
      const rel = relativeName(name, this.zone);
      kept = await this.call<LinodeRecord>('POST', `domains/${domain.id}/records`, {
        type,
        name: rel === '@' ? '' : rel,
        target,
        ttl_sec: ttl,
      });
    } else {
      kept = await this.call<LinodeRecord>('PUT', `domains/${domain.id}/records/${first.id}`, {
        target,
        ...(ttl !== undefined ? { ttl_sec: ttl } : {}),
      });
    }
    for (const r of rest) await this.call('DELETE', `domains/${domain.id}/records/${r.id}`);
    return this.toSet(domain, [kept]);
  }

  /** Read, compare, write, read again: not atomic (see the module comment). */
  async compareAndSet(
    name: string,
    type: RecordType,
    expected: string | undefined,
    value: string,
    ttl?: number,
  ): Promise<RecordSet> {
    const target = checkValue(type, value);
    const before = await this.readRecord(name, type);
    if (!holdsExpected(type, before.values, expected))
      this.conflict(name, type, expected, before.values);
    await this.setTarget(name, type, value, ttl ?? (before.values.length ? undefined : 60));
    const after = await this.readRecord(name, type);
    if (after.values.length !== 1 || after.values[0] !== target)
      this.conflict(name, type, expected, after.values, ' after baton wrote it');
    return after;
  }

  private conflict(
    name: string,
    type: RecordType,
    expected: string | undefined,
    found: string[],
    when = '',
  ): never {
    throw new DnsConflictError(
      this.kind,
      `Linode: ${conflictMessage(`${name} in ${this.zone}`, type, expected, found)}${when}`,
      found,
      'Someone else changed the record: read it again and decide.',
    );
  }
}
