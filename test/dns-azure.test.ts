import { inspect } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AzureDnsProvider } from '../lib/integrations/dns/azure.ts';
import { DnsConflictError, DnsError } from '../lib/integrations/dns/provider.ts';
import {
  captureOutput,
  startApi,
  type LocalApi,
  type Reply,
  type SeenRequest,
} from './dns-http.ts';

const TOKEN = 'eyJ0eXAiOiJKV1QiLCJhbGciOi.azure-test-token.c2lnbmF0dXJl';
const SUB = '00000000-1111-2222-3333-444444444444';
const RG = 'dns-rg';
const ZONE = 'example.net';
const zonePath = `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Network/dnsZones/${ZONE}`;

interface Set {
  name: string;
  type: string;
  etag: string;
  properties: Record<string, unknown>;
}

/** Azure DNS (ARM, api-version 2018-05-01) as published: etags, If-Match, nextLink, {error:{code,message}}. */
class FakeAzureDns {
  sets = new Map<string, Set>();
  etags = 0;
  rateLimited = 0;
  retryAfter = '2';
  changeBeforeNextPut = false;
  /** Another writer that lands between a client's GET and its PUT. */
  writeBeforeNextPut: (() => void) | undefined;
  baseUrl = '';

  constructor() {
    this.add('irc', 'A', {
      TTL: 300,
      ARecords: [{ ipv4Address: '192.0.2.10' }, { ipv4Address: '192.0.2.11' }],
      metadata: { owner: 'ops' },
    });
    this.add('@', 'A', { TTL: 3600, ARecords: [{ ipv4Address: '192.0.2.1' }] });
    this.add('www', 'CNAME', { TTL: 300, CNAMERecord: { cname: 'irc.example.net' } });
    this.add('note', 'TXT', { TTL: 300, TXTRecords: [{ value: ['hello ', 'world'] }] });
    for (let i = 0; i < 230; i++)
      this.add(`host${i}`, 'A', {
        TTL: 3600,
        ARecords: [{ ipv4Address: `198.51.100.${i % 250}` }],
      });
  }

  add(name: string, type: string, properties: Record<string, unknown>): void {
    this.sets.set(`${type}/${name}`, { name, type, etag: `etag-${++this.etags}`, properties });
  }

  view(s: Set): unknown {
    return {
      id: `${zonePath}/${s.type}/${s.name}`,
      name: s.name,
      type: `Microsoft.Network/dnszones/${s.type}`,
      etag: s.etag,
      properties: { ...s.properties, fqdn: `${s.name === '@' ? '' : `${s.name}.`}${ZONE}.` },
    };
  }

  handle = (req: SeenRequest): Reply => {
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      return {
        status: 401,
        body: {
          error: { code: 'InvalidAuthenticationToken', message: 'The access token is invalid.' },
        },
      };
    }
    if (req.url.searchParams.get('api-version') !== '2018-05-01') {
      return {
        status: 400,
        body: {
          error: { code: 'InvalidApiVersionParameter', message: 'The api-version is invalid.' },
        },
      };
    }
    if (this.rateLimited > 0) {
      this.rateLimited--;
      return {
        status: 429,
        headers: { 'retry-after': this.retryAfter },
        body: { error: { code: 'TooManyRequests', message: 'Throttled' } },
      };
    }
    if (!req.url.pathname.startsWith(zonePath)) {
      return {
        status: 404,
        body: {
          error: {
            code: 'ResourceNotFound',
            message: `The Resource 'Microsoft.Network/dnszones/...' was not found.`,
          },
        },
      };
    }
    const rest = req.url.pathname
      .slice(zonePath.length)
      .split('/')
      .filter(Boolean)
      .map(decodeURIComponent);
    if (rest.length === 1 && req.method === 'GET') {
      const all = [...this.sets.values()].filter(
        (s) => rest[0] === 'recordsets' || s.type === rest[0],
      );
      const top = Number(req.url.searchParams.get('$top') ?? '100');
      const skip = Number(req.url.searchParams.get('$skipToken') ?? '0');
      const page = all.slice(skip, skip + top);
      const next =
        skip + top < all.length
          ? `${this.baseUrl}${zonePath}/${rest[0]}?api-version=2018-05-01&$top=${top}&$skipToken=${skip + top}`
          : undefined;
      return {
        status: 200,
        body: { value: page.map((s) => this.view(s)), ...(next ? { nextLink: next } : {}) },
      };
    }
    const [type, name] = rest as [string, string];
    const key = `${type}/${name}`;
    const existing = this.sets.get(key);
    if (req.method === 'GET') {
      return existing
        ? { status: 200, body: this.view(existing) }
        : {
            status: 404,
            body: {
              error: {
                code: 'NotFound',
                message: `The resource record '${name}' does not exist in resource group '${RG}' of subscription '${SUB}'.`,
              },
            },
          };
    }
    if (req.method === 'PUT') {
      if (this.writeBeforeNextPut) {
        const write = this.writeBeforeNextPut;
        this.writeBeforeNextPut = undefined;
        write();
        return this.handle(req);
      }
      if (this.changeBeforeNextPut && existing) {
        this.changeBeforeNextPut = false;
        existing.etag = `etag-${++this.etags}`;
      }
      const ifMatch = req.headers['if-match'];
      const ifNone = req.headers['if-none-match'];
      if ((ifMatch && (!existing || existing.etag !== ifMatch)) || (ifNone === '*' && existing)) {
        return {
          status: 412,
          body: {
            error: {
              code: 'PreconditionFailed',
              message: 'The condition specified using HTTP conditional header(s) is not met.',
            },
          },
        };
      }
      const props = (req.body as { properties: Record<string, unknown> }).properties;
      const set: Set = { name, type, etag: `etag-${++this.etags}`, properties: props };
      this.sets.set(key, set);
      return { status: existing ? 200 : 201, body: this.view(set) };
    }
    return { status: 405, body: { error: { code: 'MethodNotAllowed', message: 'no' } } };
  };
}

describe('Azure DNS (ARM REST 2018-05-01) client', () => {
  let fake: FakeAzureDns;
  let api: LocalApi;
  let elsewhere: LocalApi;
  const sleeps: number[] = [];
  const client = (over: Partial<ConstructorParameters<typeof AzureDnsProvider>[0]> = {}) =>
    new AzureDnsProvider({
      zone: ZONE,
      subscriptionId: SUB,
      resourceGroup: RG,
      token: TOKEN,
      baseUrl: api.url,
      sleep: async (ms) => {
        sleeps.push(ms);
      },
      ...over,
    });
  const fresh = () => {
    fake = new FakeAzureDns();
    fake.baseUrl = api.url;
  };

  beforeAll(async () => {
    api = await startApi((req) => fake.handle(req));
    elsewhere = await startApi(() => ({ status: 200, body: { value: [] } }));
  });
  afterAll(async () => {
    await api.close();
    await elsewhere.close();
  });
  afterEach(() => {
    sleeps.length = 0;
    api.requests.length = 0;
  });

  it('reads a record set and its TTL; a missing one (404 NotFound) has no values', async () => {
    fresh();
    expect(await client().readRecord('irc', 'A')).toEqual({
      values: ['192.0.2.10', '192.0.2.11'],
      ttl: 300,
    });
    expect(await client().readRecord('example.net', 'A')).toEqual({
      values: ['192.0.2.1'],
      ttl: 3600,
    });
    expect(await client().readRecord('www', 'CNAME')).toEqual({
      values: ['irc.example.net'],
      ttl: 300,
    });
    expect(await client().readRecord('note', 'TXT')).toEqual({ values: ['hello world'], ttl: 300 });
    expect(await client().readRecord('absent', 'A')).toEqual({ values: [], ttl: 0 });
    expect(api.requests.map((r) => `${r.method} ${r.url.pathname}`)[0]).toBe(
      `GET ${zonePath}/A/irc`,
    );
    expect(api.requests.every((r) => r.url.searchParams.get('api-version') === '2018-05-01')).toBe(
      true,
    );
  });

  it('lowers a TTL with a PUT guarded by the etag it read, keeping values and metadata', async () => {
    fresh();
    const etag = fake.sets.get('A/irc')!.etag;
    expect(await client().setTtl('irc', 'A', 60)).toEqual({
      values: ['192.0.2.10', '192.0.2.11'],
      ttl: 60,
    });
    const put = api.requests.find((r) => r.method === 'PUT')!;
    expect(put.headers['if-match']).toBe(etag);
    expect(put.body).toEqual({
      properties: {
        metadata: { owner: 'ops' },
        TTL: 60,
        ARecords: [{ ipv4Address: '192.0.2.10' }, { ipv4Address: '192.0.2.11' }],
      },
    });
  });

  it('sets one target, keeping the TTL; creates a missing record set with If-None-Match', async () => {
    fresh();
    expect(await client().setTarget('irc.example.net.', 'A', '198.51.100.20')).toEqual({
      values: ['198.51.100.20'],
      ttl: 300,
    });
    expect(await client().setTarget('fresh', 'A', '198.51.100.21', 30)).toEqual({
      values: ['198.51.100.21'],
      ttl: 30,
    });
    const create = api.requests.filter((r) => r.method === 'PUT')[1]!;
    expect(create.headers['if-none-match']).toBe('*');
    await expect(client().setTarget('other', 'A', '198.51.100.22')).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    await expect(client().setTtl('other', 'A', 30)).rejects.toMatchObject({
      code: 'PRECONDITION_FAILED',
    });
  });

  it('refuses to overwrite a record set that changed since it was read (412)', async () => {
    fresh();
    fake.changeBeforeNextPut = true;
    const err = (await client()
      .setTarget('irc', 'A', '198.51.100.30')
      .catch((e: unknown) => e)) as DnsError;
    expect(err.code).toBe('PRECONDITION_FAILED');
    expect(err.message).toBe(
      `Azure DNS API PUT ${zonePath}/A/irc answered 412: PreconditionFailed: The condition specified using HTTP conditional header(s) is not met. The record changed since baton read it`,
    );
    expect(await client().readRecord('irc', 'A')).toEqual({
      values: ['192.0.2.10', '192.0.2.11'],
      ttl: 300,
    });
  });

  it('compare-and-set writes only over the value it read, guarded by that etag', async () => {
    fresh();
    fake.add('_lease', 'TXT', { TTL: 60, TXTRecords: [{ value: ['holder=a gen=1'] }] });
    const etag = fake.sets.get('TXT/_lease')!.etag;
    expect(
      await client().compareAndSet('_lease', 'TXT', 'holder=a gen=1', 'holder=b gen=2'),
    ).toEqual({ values: ['holder=b gen=2'], ttl: 60 });
    expect(api.requests.find((r) => r.method === 'PUT')!.headers['if-match']).toBe(etag);
    // A stale value is refused before any write, naming what the record holds.
    api.requests.length = 0;
    const stale = (await client()
      .compareAndSet('_lease', 'TXT', 'holder=a gen=1', 'holder=c gen=2')
      .catch((e: unknown) => e)) as DnsConflictError;
    expect(stale).toBeInstanceOf(DnsConflictError);
    expect(stale.found).toEqual(['holder=b gen=2']);
    expect(stale.message).toContain('no longer holds "holder=a gen=1": it holds "holder=b gen=2"');
    expect(api.requests.some((r) => r.method === 'PUT')).toBe(false);
    // Created only where none exists.
    expect(await client().compareAndSet('_new', 'TXT', undefined, 'x', 30)).toEqual({
      values: ['x'],
      ttl: 30,
    });
    expect(api.requests.find((r) => r.method === 'PUT')!.headers['if-none-match']).toBe('*');
    await expect(client().compareAndSet('_new', 'TXT', undefined, 'y', 30)).rejects.toThrow(
      DnsConflictError,
    );
  });

  it('compare-and-set loses to a writer that lands between its read and its write (412), and says who won', async () => {
    fresh();
    fake.add('_lease', 'TXT', { TTL: 60, TXTRecords: [{ value: ['holder=a gen=1'] }] });
    fake.writeBeforeNextPut = () =>
      fake.add('_lease', 'TXT', { TTL: 60, TXTRecords: [{ value: ['holder=other gen=2'] }] });
    const err = (await client()
      .compareAndSet('_lease', 'TXT', 'holder=a gen=1', 'holder=b gen=2')
      .catch((e: unknown) => e)) as DnsConflictError;
    expect(err).toBeInstanceOf(DnsConflictError);
    expect(err.status).toBe(412);
    expect(err.found).toEqual(['holder=other gen=2']);
    expect(await client().readRecord('_lease', 'TXT')).toEqual({
      values: ['holder=other gen=2'],
      ttl: 60,
    });
  });

  it('lists every record set by following nextLink', async () => {
    fresh();
    const all = await client().listRecordSets();
    expect(all.length).toBe(234);
    expect(all.find((s) => s.name === 'note')).toEqual({
      name: 'note',
      type: 'TXT',
      ttl: 300,
      values: ['hello world'],
    });
    expect(api.requests.map((r) => r.url.searchParams.get('$skipToken'))).toEqual([
      null,
      '100',
      '200',
    ]);
    expect((await client().listRecordSets('CNAME')).map((s) => s.name)).toEqual(['www']);
  });

  it('never follows a nextLink to another origin, so the token goes nowhere else', async () => {
    fresh();
    const original = fake.handle;
    fake.handle = (req) => {
      const reply = original(req);
      const body = reply.body as { nextLink?: string };
      if (body?.nextLink) body.nextLink = body.nextLink.replace(api.url, elsewhere.url);
      return reply;
    };
    await expect(client().listRecordSets()).rejects.toThrow(
      /refused to follow a link to http:\/\/127\.0\.0\.1:\d+/,
    );
    expect(elsewhere.requests).toEqual([]);
  });

  it('retries 429 as Retry-After asks, within a bound', async () => {
    fresh();
    fake.rateLimited = 2;
    expect(await client().readRecord('irc', 'A')).toMatchObject({ ttl: 300 });
    expect(sleeps).toEqual([2000, 2000]);
    fresh();
    fake.rateLimited = 100;
    fake.retryAfter = '600';
    const err = (await client({ maxRetries: 2, maxRetryDelayMs: 5000 })
      .readRecord('irc', 'A')
      .catch((e: unknown) => e)) as DnsError;
    expect(err.code).toBe('TRANSIENT');
    expect(err.message).toBe(
      `Azure DNS API GET ${zonePath}/A/irc answered 429: TooManyRequests: Throttled after 3 attempts`,
    );
    expect(sleeps.slice(2)).toEqual([5000, 5000]);
  });

  it('maps 401 to a clear error; the token is in no message, stack, inspection or output', async () => {
    fresh();
    const wrong = 'eyJ.wrong-azure-token.sig';
    let calls = 0;
    const { result, output } = await captureOutput(() =>
      client({
        token: async () => {
          calls++;
          return wrong;
        },
      }).readRecord('irc', 'A'),
    );
    const err = result as DnsError;
    expect(calls).toBe(1);
    expect(err).toBeInstanceOf(DnsError);
    expect(err.code).toBe('INVALID_INPUT');
    expect(err.status).toBe(401);
    expect(err.message).toBe(
      `Azure DNS API GET ${zonePath}/A/irc answered 401: InvalidAuthenticationToken: The access token is invalid. The token was refused`,
    );
    expect(err.hint).toMatch(/AZURE_ACCESS_TOKEN/);
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

  it('maps a missing zone or resource group (404) to a clear error', async () => {
    fresh();
    const err = (await client({ resourceGroup: 'other-rg' })
      .setTtl('irc', 'A', 60)
      .catch((e: unknown) => e)) as DnsError;
    expect(err.code).toBe('INVALID_INPUT');
    expect(err.message).toBe(
      'Azure DNS has no zone example.net in resource group other-rg (404 ResourceNotFound)',
    );
    const listErr = (await client({ resourceGroup: 'other-rg' })
      .listRecordSets()
      .catch((e: unknown) => e)) as DnsError;
    expect(listErr.code).toBe('INVALID_INPUT');
    expect(listErr.message).toMatch(
      /answered 404: ResourceNotFound: The Resource .* was not found\. Not found$/,
    );
    expect(listErr.hint).toMatch(/zone name/);
  });
});
