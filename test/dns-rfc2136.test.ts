import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localRunner, type CommandRunner } from '../lib/integrations/dns/command.ts';
import { DnsConflictError, DnsError } from '../lib/integrations/dns/provider.ts';
import { parseTsigKey, Rfc2136Provider } from '../lib/integrations/dns/rfc2136.ts';
import { verifyAnswer } from '../lib/integrations/dns/verify.ts';
import { findExecutable } from '../lib/transports/which.ts';
import { knotMissing, startKnot, zoneFile, type KnotServer } from './dns-knot.ts';

const missing = knotMissing();
const required = process.env['BATON_REQUIRE_TESTNET'] === '1';
const title =
  missing && !required
    ? `RFC 2136 against real Knot (skipped: ${missing})`
    : 'RFC 2136 against real Knot';

const zone = 'example.test';
const records = [
  'irc 300 A 192.0.2.10',
  'services 300 A 192.0.2.10',
  'multi 600 A 192.0.2.1',
  'multi 600 A 192.0.2.2',
  'note 300 TXT "hello"',
];

it.runIf(!!missing && required)(
  'has knotd, knsupdate and dig, as BATON_REQUIRE_TESTNET=1 demands',
  () => {
    throw new Error(`BATON_REQUIRE_TESTNET=1 but ${missing}`);
  },
);

describe.skipIf(!!missing && !required)(title, () => {
  let primary: KnotServer;
  let secondary: KnotServer;
  const commands: { text: string; input: string | undefined }[] = [];
  const recording: CommandRunner = async (cmd, options) => {
    commands.push({ text: cmd.text, input: options?.input });
    return localRunner(cmd, options);
  };
  const provider = (over: Partial<ConstructorParameters<typeof Rfc2136Provider>[0]> = {}) =>
    new Rfc2136Provider({
      zone,
      server: { address: primary.address, port: primary.port },
      tsig: primary.key,
      run: recording,
      ...over,
    });
  const servers = () => [
    { name: 'ns1', address: primary.address, port: primary.port },
    { name: 'ns2', address: secondary.address, port: secondary.port },
  ];

  beforeAll(async () => {
    if (missing) throw new Error(`BATON_REQUIRE_TESTNET=1 but ${missing}`);
    [primary, secondary] = await Promise.all([
      startKnot(zone, zoneFile(zone, records)),
      startKnot(zone, zoneFile(zone, records)),
    ]);
  });
  afterAll(async () => {
    await Promise.all([primary?.stop(), secondary?.stop()]);
  });

  it('reads a record set and its TTL from the server', async () => {
    expect(await provider().readRecord('multi', 'A')).toEqual({
      values: ['192.0.2.1', '192.0.2.2'],
      ttl: 600,
    });
    expect(await provider().readRecord('irc.example.test.', 'A')).toEqual({
      values: ['192.0.2.10'],
      ttl: 300,
    });
    expect(await provider().readRecord('absent', 'A')).toEqual({ values: [], ttl: 0 });
    expect(await provider().readRecord('note', 'TXT')).toEqual({ values: ['hello'], ttl: 300 });
  });

  it('lowers a TTL and keeps the values, in one signed update', async () => {
    expect(await provider().setTtl('multi', 'A', 30)).toEqual({
      values: ['192.0.2.1', '192.0.2.2'],
      ttl: 30,
    });
  });

  it('changes the target, keeping the TTL or setting a new one', async () => {
    expect(await provider().setTarget('irc', 'A', '192.0.2.20')).toEqual({
      values: ['192.0.2.20'],
      ttl: 300,
    });
    expect(await provider().setTarget('services.example.test', 'A', '192.0.2.20', 60)).toEqual({
      values: ['192.0.2.20'],
      ttl: 60,
    });
    expect(await provider().setTarget('note', 'TXT', 'say "hi" \\ there')).toEqual({
      values: ['say "hi" \\ there'],
      ttl: 300,
    });
  });

  it('compare-and-set: two writers from the same value, the first wins and the second is refused, naming what the record holds', async () => {
    const lease = '_lease.services';
    await provider().setTarget(
      lease,
      'TXT',
      'holder=nebula gen=1 expires=2026-12-01T23:00:00Z',
      60,
    );
    const read = 'holder=nebula gen=1 expires=2026-12-01T23:00:00Z';
    const first = 'holder=emergency1 gen=2 expires=2026-12-01T23:00:30Z';
    commands.length = 0;
    expect(await provider().compareAndSet(lease, 'TXT', read, first)).toEqual({
      values: [first],
      ttl: 60,
    });
    expect(commands.find((c) => c.text === 'knsupdate')?.input).toContain(
      `prereq yxrrset _lease.services.example.test. TXT "${read}"\nupdate delete _lease.services.example.test. TXT\n`,
    );
    const second = (await provider()
      .compareAndSet(lease, 'TXT', read, 'holder=paralysis gen=2 expires=2026-12-01T23:00:30Z')
      .catch((e: unknown) => e)) as DnsConflictError;
    expect(second).toBeInstanceOf(DnsConflictError);
    expect(second.code).toBe('PRECONDITION_FAILED');
    expect(second.found).toEqual([first]);
    expect(second.message).toContain('refused (NXRRSET)');
    expect(second.message).toContain(`no longer holds "${read}": it holds "${first}"`);
    expect(second.message).not.toContain(primary.key.secret);
    expect((await provider().readRecord(lease, 'TXT')).values).toEqual([first]);
  });

  it('compare-and-set creates a record only where none exists (prereq nxrrset)', async () => {
    expect(await provider().compareAndSet('_fresh', 'TXT', undefined, 'one', 60)).toEqual({
      values: ['one'],
      ttl: 60,
    });
    const again = (await provider()
      .compareAndSet('_fresh', 'TXT', undefined, 'two', 60)
      .catch((e: unknown) => e)) as DnsConflictError;
    expect(again).toBeInstanceOf(DnsConflictError);
    expect(again.message).toContain('refused (YXRRSET)');
    expect(again.found).toEqual(['one']);
  });

  it('verifies the answer on every authoritative server and names the one that differs', async () => {
    await provider().setTarget('irc', 'A', '192.0.2.30', 60);
    const result = await verifyAnswer(servers(), 'irc.example.test', 'A', '192.0.2.30');
    expect(result).toEqual({
      ok: false,
      answers: [
        {
          server: 'ns1',
          address: '127.0.0.1',
          port: primary.port,
          values: ['192.0.2.30'],
          ttl: 60,
          status: 'NOERROR',
          ok: true,
        },
        {
          server: 'ns2',
          address: '127.0.0.1',
          port: secondary.port,
          values: ['192.0.2.10'],
          ttl: 300,
          status: 'NOERROR',
          ok: false,
        },
      ],
    });
    await provider({
      server: { address: secondary.address, port: secondary.port },
      tsig: secondary.key,
    }).setTarget('irc', 'A', '192.0.2.30', 60);
    const again = await verifyAnswer(servers(), 'irc.example.test', 'A', ['192.0.2.30'], {
      maxTtl: 60,
    });
    expect(again.ok).toBe(true);
    expect(again.answers.map((a) => [a.server, a.ttl])).toEqual([
      ['ns1', 60],
      ['ns2', 60],
    ]);
    const tooLong = await verifyAnswer(servers(), 'irc.example.test', 'A', '192.0.2.30', {
      maxTtl: 30,
    });
    expect(tooLong.ok).toBe(false);
  });

  it('reports a server that does not answer, and one that is not authoritative', async () => {
    const result = await verifyAnswer(
      [
        { name: 'ns1', address: primary.address, port: primary.port },
        { name: 'gone', address: '127.0.0.1', port: 9 },
      ],
      'outside.example.org',
      'A',
      '192.0.2.1',
      { timeoutSeconds: 1 },
    );
    expect(result.ok).toBe(false);
    expect(result.answers[0]).toMatchObject({
      server: 'ns1',
      status: 'REFUSED',
      error: 'answered REFUSED',
    });
    expect(result.answers[1]).toMatchObject({
      server: 'gone',
      ok: false,
      error: expect.stringMatching(/^no reply|dig exited/),
    });
  });

  it('passes the TSIG key on stdin only: never in argv, and never in an error', async () => {
    commands.length = 0;
    await provider().setTtl('services', 'A', 120);
    const updates = commands.filter((c) => c.input !== undefined && c.input !== '');
    expect(updates.length).toBe(1);
    expect(updates[0]!.input).toContain(primary.key.secret);
    for (const c of commands) expect(c.text).not.toContain(primary.key.secret);

    const wrong = { ...primary.key, secret: Buffer.alloc(32, 7).toString('base64') };
    const err = await provider({ tsig: wrong })
      .setTtl('services', 'A', 60)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DnsError);
    const e = err as DnsError;
    expect(e.code).toBe('PRECONDITION_FAILED');
    expect(e.message).toMatch(
      /RFC 2136 update of services\.example\.test\. A on 127\.0\.0\.1:\d+ failed \(BADSIG\)/,
    );
    expect(e.hint).toMatch(/refused TSIG key baton-test/);
    for (const text of [e.message, e.hint ?? '', String(e.stack), JSON.stringify(e)]) {
      expect(text).not.toContain(wrong.secret);
      expect(text).not.toContain(primary.key.secret);
    }
    expect(await provider().readRecord('services', 'A')).toEqual({
      values: ['192.0.2.20'],
      ttl: 120,
    });
  });

  it('refuses a value that could smuggle a line into the update, before running anything', async () => {
    commands.length = 0;
    await expect(
      provider().setTarget('irc', 'A', '192.0.2.1\nupdate delete example.test. NS', 60),
    ).rejects.toThrow(/contains a line break/);
    await expect(provider().setTarget('irc', 'A', '; rm -rf /', 60)).rejects.toThrow(
      /not an IPv4 address/,
    );
    await expect(provider().readRecord('-x; rm', 'A')).rejects.toThrow(/is not a DNS name/);
    await expect(provider().readRecord('www.example.org.', 'A')).rejects.toThrow(
      /is not in zone example.test/,
    );
    expect(commands).toEqual([]);
  });

  it('needs a TTL to create a record, and an existing record to change a TTL', async () => {
    await expect(provider().setTarget('fresh', 'A', '192.0.2.9')).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    await expect(provider().setTtl('fresh', 'A', 60)).rejects.toMatchObject({
      code: 'PRECONDITION_FAILED',
    });
    expect(await provider().setTarget('fresh', 'A', '192.0.2.9', 45)).toEqual({
      values: ['192.0.2.9'],
      ttl: 45,
    });
  });

  it.skipIf(!findExecutable('nsupdate'))('works through BIND nsupdate as well', async () => {
    expect(await provider({ tool: 'nsupdate' }).setTarget('irc', 'A', '192.0.2.40', 90)).toEqual({
      values: ['192.0.2.40'],
      ttl: 90,
    });
  });
});

describe('TSIG key format', () => {
  it('reads algorithm:name:secret and name:secret', () => {
    expect(parseTsigKey('hmac-sha512:cut:c2VjcmV0')).toEqual({
      algorithm: 'hmac-sha512',
      name: 'cut',
      secret: 'c2VjcmV0',
    });
    expect(parseTsigKey('cut:c2VjcmV0')).toEqual({
      algorithm: 'hmac-sha256',
      name: 'cut',
      secret: 'c2VjcmV0',
    });
  });

  it('says what is wrong without echoing the key', () => {
    const secret = 'not base64 !! s3cr3t';
    try {
      parseTsigKey(`hmac-sha256:cut:${secret}`);
      expect.unreachable();
    } catch (e) {
      expect((e as DnsError).message).toBe(
        'the TSIG key is not in the form algorithm:name:base64-secret',
      );
      expect(JSON.stringify(e) + String((e as Error).stack)).not.toContain('s3cr3t');
    }
  });
});
