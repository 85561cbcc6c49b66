import { inspect } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LinodeDnsProvider, type LinodeRecord } from '../lib/integrations/dns/linode.ts';
import { DnsConflictError, DnsError } from '../lib/integrations/dns/provider.ts';
import {
  captureOutput,
  startApi,
  type LocalApi,
  type Reply,
  type SeenRequest,
} from './dns-http.ts';

const TOKEN = 'linode-test-token-5f0c1e9a7b3d4c2e';

/** Linode API v4 as published: bearer auth, page/pages pagination, {errors:[{reason}]}. */
class FakeLinode {
  domains = Array.from({ length: 60 }, (_, i) => ({
    id: 100 + i,
    domain: `zone${i}.example`,
    ttl_sec: 3600,
  }));
  records = new Map<number, LinodeRecord[]>();
  nextId = 5000;
  honourFilter = false;
  rateLimited = 0;
  retryAfter: string | undefined = '1';
  echoToken = false;
  /** Another writer that lands just after a client's next PUT. */
  writeAfterNextPut: (() => void) | undefined;

  constructor() {
    this.domains.push({ id: 777, domain: 'example.net', ttl_sec: 86400 });
    const recs: LinodeRecord[] = [];
    for (let i = 0; i < 70; i++)
      recs.push({
        id: this.nextId++,
        type: 'A',
        name: `host${i}`,
        target: `192.0.2.${i}`,
        ttl_sec: 300,
      });
    recs.push({ id: this.nextId++, type: 'A', name: 'irc', target: '192.0.2.10', ttl_sec: 300 });
    recs.push({ id: this.nextId++, type: 'A', name: 'irc', target: '192.0.2.11', ttl_sec: 300 });
    recs.push({ id: this.nextId++, type: 'A', name: 'services', target: '192.0.2.10', ttl_sec: 0 });
    recs.push({
      id: this.nextId++,
      type: 'AAAA',
      name: 'irc',
      target: '2001:db8::10',
      ttl_sec: 300,
    });
    this.records.set(777, recs);
  }

  static validTtls = [
    30, 120, 300, 3600, 7200, 14400, 28800, 57600, 86400, 172800, 345600, 604800, 1209600, 2419200,
  ];
  static round(ttl: number): number {
    if (ttl === 0) return 0;
    return FakeLinode.validTtls.reduce((best, v) =>
      Math.abs(v - ttl) <= Math.abs(best - ttl) ? v : best,
    );
  }

  page<T>(items: T[], url: URL): Reply {
    const page = Number(url.searchParams.get('page') ?? '1');
    const size = Number(url.searchParams.get('page_size') ?? '100');
    if (size < 25 || size > 500)
      return { status: 400, body: { errors: [{ field: 'page_size', reason: 'Must be 25-500' }] } };
    const pages = Math.max(1, Math.ceil(items.length / size));
    if (page < 1 || page > pages)
      return { status: 400, body: { errors: [{ field: 'page', reason: 'Invalid page' }] } };
    return {
      status: 200,
      body: {
        data: items.slice((page - 1) * size, page * size),
        page,
        pages,
        results: items.length,
      },
    };
  }

  handle = (req: SeenRequest): Reply => {
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      return {
        status: 401,
        body: {
          errors: [
            {
              reason: this.echoToken
                ? `Invalid Token ${String(req.headers.authorization)}`
                : 'Invalid Token',
            },
          ],
        },
      };
    }
    if (this.rateLimited > 0) {
      this.rateLimited--;
      return {
        status: 429,
        headers: this.retryAfter ? { 'retry-after': this.retryAfter } : {},
        body: { errors: [{ reason: 'Too many requests' }] },
      };
    }
    const parts = req.url.pathname.split('/').filter(Boolean);
    if (parts[0] !== 'v4') return { status: 404, body: { errors: [{ reason: 'Not found' }] } };
    const [, coll, domainId, sub, recordId] = parts;
    if (coll !== 'domains') return { status: 404, body: { errors: [{ reason: 'Not found' }] } };
    if (!domainId) {
      const filter = req.headers['x-filter']
        ? (JSON.parse(String(req.headers['x-filter'])) as { domain?: string })
        : {};
      const list =
        this.honourFilter && filter.domain
          ? this.domains.filter((d) => d.domain === filter.domain)
          : this.domains;
      return this.page(list, req.url);
    }
    const records = this.records.get(Number(domainId));
    if (!records || sub !== 'records')
      return { status: 404, body: { errors: [{ reason: 'Not found' }] } };
    if (!recordId && req.method === 'GET') return this.page(records, req.url);
    if (!recordId && req.method === 'POST') {
      const b = req.body as Partial<LinodeRecord>;
      const rec = {
        id: this.nextId++,
        type: b.type!,
        name: b.name ?? '',
        target: b.target!,
        ttl_sec: FakeLinode.round(b.ttl_sec ?? 0),
      };
      records.push(rec);
      return { status: 200, body: rec };
    }
    const idx = records.findIndex((r) => r.id === Number(recordId));
    if (idx < 0) return { status: 404, body: { errors: [{ reason: 'Not found' }] } };
    if (req.method === 'PUT') {
      const b = req.body as Partial<LinodeRecord>;
      const rec = { ...records[idx]!, ...b };
      if (b.ttl_sec !== undefined) rec.ttl_sec = FakeLinode.round(b.ttl_sec);
      records[idx] = rec;
      const after = this.writeAfterNextPut;
      this.writeAfterNextPut = undefined;
      after?.();
      return { status: 200, body: rec };
    }
    if (req.method === 'DELETE') {
      records.splice(idx, 1);
      return { status: 200, body: {} };
    }
    return { status: 405, body: { errors: [{ reason: 'Method not allowed' }] } };
  };
}

describe('Linode DNS API v4 client', () => {
  let fake: FakeLinode;
  let api: LocalApi;
  const sleeps: number[] = [];
  const client = (over: Partial<ConstructorParameters<typeof LinodeDnsProvider>[0]> = {}) =>
    new LinodeDnsProvider({
      zone: 'example.net',
      token: TOKEN,
      baseUrl: `${api.url}/v4`,
      pageSize: 25,
      sleep: async (ms) => {
        sleeps.push(ms);
      },
      ...over,
    });

  beforeAll(async () => {
    api = await startApi((req) => fake.handle(req));
  });
  afterAll(() => api.close());
  afterEach(() => {
    sleeps.length = 0;
    api.requests.length = 0;
  });
  const fresh = () => (fake = new FakeLinode());

  it('finds the zone and the record set across pages (page/pages)', async () => {
    fresh();
    expect(await client().readRecord('irc', 'A')).toEqual({
      values: ['192.0.2.10', '192.0.2.11'],
      ttl: 300,
    });
    const domainPages = api.requests
      .filter((r) => r.url.pathname === '/v4/domains')
      .map((r) => r.url.searchParams.get('page'));
    expect(domainPages).toEqual(['1', '2', '3']);
    const recordPages = api.requests
      .filter((r) => r.url.pathname === '/v4/domains/777/records')
      .map((r) => r.url.searchParams.get('page'));
    expect(recordPages).toEqual(['1', '2', '3']);
    expect(
      api.requests.every(
        (r) => r.headers['x-filter'] === undefined || r.url.pathname === '/v4/domains',
      ),
    ).toBe(true);
  });

  it('reads a TTL of 0 as the domain default, and an absent record as no values', async () => {
    fresh();
    expect(await client().readRecord('services.example.net', 'A')).toEqual({
      values: ['192.0.2.10'],
      ttl: 86400,
    });
    expect(await client().readRecord('nothing', 'A')).toEqual({ values: [], ttl: 0 });
    expect(await client().readRecord('irc', 'AAAA')).toEqual({
      values: ['2001:db8::10'],
      ttl: 300,
    });
  });

  it('lowers the TTL of every record in the set and reports what Linode stored', async () => {
    fresh();
    fake.honourFilter = true;
    expect(await client().setTtl('irc', 'A', 60)).toEqual({
      values: ['192.0.2.10', '192.0.2.11'],
      ttl: 30,
    });
    const puts = api.requests.filter((r) => r.method === 'PUT');
    expect(puts.map((r) => r.body)).toEqual([{ ttl_sec: 60 }, { ttl_sec: 60 }]);
    expect(await client().readRecord('irc', 'A')).toEqual({
      values: ['192.0.2.10', '192.0.2.11'],
      ttl: 30,
    });
  });

  it('sets one target: updates the first record and deletes the rest; creates a missing one', async () => {
    fresh();
    fake.honourFilter = true;
    expect(await client().setTarget('irc', 'A', '198.51.100.7', 120)).toEqual({
      values: ['198.51.100.7'],
      ttl: 120,
    });
    expect(
      api.requests.filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.url.pathname}`),
    ).toEqual(['PUT /v4/domains/777/records/5070', 'DELETE /v4/domains/777/records/5071']);
    expect(await client().readRecord('irc', 'A')).toEqual({ values: ['198.51.100.7'], ttl: 120 });
    expect(await client().setTarget('new', 'A', '198.51.100.8', 30)).toEqual({
      values: ['198.51.100.8'],
      ttl: 30,
    });
    await expect(client().setTarget('other', 'A', '198.51.100.9')).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    await expect(client().setTtl('other', 'A', 30)).rejects.toMatchObject({
      code: 'PRECONDITION_FAILED',
    });
  });

  it('compare-and-set reads, compares, writes and reads again: a stale value is refused before any write', async () => {
    fresh();
    const recs = fake.records.get(777)!;
    recs.push({ id: 9001, type: 'TXT', name: '_lease', target: 'holder=a gen=1', ttl_sec: 30 });
    expect(
      await client().compareAndSet('_lease', 'TXT', 'holder=a gen=1', 'holder=b gen=2'),
    ).toEqual({ values: ['holder=b gen=2'], ttl: 30 });
    const before = api.requests.filter((r) => r.method !== 'GET').length;
    const stale = (await client()
      .compareAndSet('_lease', 'TXT', 'holder=a gen=1', 'holder=c gen=2')
      .catch((e: unknown) => e)) as DnsConflictError;
    expect(stale).toBeInstanceOf(DnsConflictError);
    expect(stale.found).toEqual(['holder=b gen=2']);
    expect(api.requests.filter((r) => r.method !== 'GET').length).toBe(before);
  });

  it('compare-and-set finds a writer that landed after its write on the second read (Linode has no If-Match)', async () => {
    fresh();
    const recs = fake.records.get(777)!;
    recs.push({ id: 9002, type: 'TXT', name: '_lease', target: 'holder=a gen=1', ttl_sec: 30 });
    fake.writeAfterNextPut = () => {
      recs.find((r) => r.id === 9002)!.target = 'holder=other gen=2';
    };
    const err = (await client()
      .compareAndSet('_lease', 'TXT', 'holder=a gen=1', 'holder=b gen=2')
      .catch((e: unknown) => e)) as DnsConflictError;
    expect(err).toBeInstanceOf(DnsConflictError);
    expect(err.found).toEqual(['holder=other gen=2']);
    expect(err.message).toContain('after baton wrote it');
  });

  it('waits as Retry-After asks on 429, then succeeds', async () => {
    fresh();
    fake.honourFilter = true;
    fake.rateLimited = 2;
    expect(await client().readRecord('irc', 'A')).toMatchObject({
      values: ['192.0.2.10', '192.0.2.11'],
    });
    expect(sleeps).toEqual([1000, 1000]);
  });

  it('gives up after a bounded number of 429s with a TRANSIENT error', async () => {
    fresh();
    fake.rateLimited = 1000;
    fake.retryAfter = undefined;
    const err = (await client({ maxRetries: 3 })
      .readRecord('irc', 'A')
      .catch((e: unknown) => e)) as DnsError;
    expect(err).toBeInstanceOf(DnsError);
    expect(err.code).toBe('TRANSIENT');
    expect(err.message).toBe(
      'Linode API GET /v4/domains answered 429: Too many requests after 4 attempts',
    );
    expect(api.requests.length).toBe(4);
    expect(sleeps).toEqual([1000, 2000, 4000]);
  });

  it('maps 401 to a clear error that never contains the token, even when the server echoes it', async () => {
    fresh();
    fake.echoToken = true;
    const wrong = 'wrong-token-0123456789abcdef';
    const { result, output } = await captureOutput(() =>
      client({ token: wrong }).readRecord('irc', 'A'),
    );
    const err = result as DnsError;
    expect(err).toBeInstanceOf(DnsError);
    expect(err.code).toBe('INVALID_INPUT');
    expect(err.status).toBe(401);
    expect(err.message).toBe(
      'Linode API GET /v4/domains answered 401: Invalid Token Bearer [redacted]. The token was refused',
    );
    expect(err.hint).toMatch(/LINODE_TOKEN/);
    for (const text of [
      err.message,
      err.hint,
      String(err.stack),
      JSON.stringify(err),
      inspect(err),
      output,
    ]) {
      expect(text).not.toContain(wrong);
      expect(text).not.toContain(TOKEN);
    }
    expect(inspect(client(), { depth: 10 })).not.toContain(TOKEN);
  });

  it('maps a zone missing from the account and a 404 to clear errors', async () => {
    fresh();
    await expect(client({ zone: 'absent.example' }).readRecord('irc', 'A')).rejects.toThrow(
      'Linode has no domain absent.example in this account',
    );
    const err = (await client({ baseUrl: `${api.url}/v3` })
      .readRecord('irc', 'A')
      .catch((e: unknown) => e)) as DnsError;
    expect(err.code).toBe('INVALID_INPUT');
    expect(err.message).toBe('Linode API GET /v3/domains answered 404: Not found. Not found');
  });

  it('sends nothing anywhere but the configured base URL', async () => {
    fresh();
    fake.honourFilter = true;
    await client().setTtl('irc', 'A', 120);
    expect(api.requests.length).toBeGreaterThan(0);
    expect(new Set(api.requests.map((r) => r.headers.host))).toEqual(
      new Set([new URL(api.url).host]),
    );
  });
});
