import { createSocket, type Socket } from 'node:dgram';
import { afterAll, describe, expect, it } from 'vitest';
import {
  chooseActiveHost,
  leaseRecordName,
  nodeResolverFor,
  type ActiveHostArgs,
  type AuthoritativeServer,
} from './active-host.ts';
import { dnsError, leaseDns, recordingLog } from './mocks.ts';

/**
 * A DNS server on 127.0.0.1 that answers TXT queries from `zone` (each
 * record a list of character-strings) and NXDOMAIN for any other name.
 */
async function localDns(
  zone: Record<string, string[][]>,
): Promise<{ port: number; socket: Socket }> {
  const socket = createSocket('udp4');
  socket.on('message', (query, peer) => {
    let at = 12;
    const labels: string[] = [];
    while (query[at]! > 0) {
      labels.push(query.subarray(at + 1, at + 1 + query[at]!).toString('ascii'));
      at += query[at]! + 1;
    }
    const question = query.subarray(12, at + 5);
    const records = zone[labels.join('.').toLowerCase()];
    const header = Buffer.alloc(12);
    query.copy(header, 0, 0, 2);
    header.writeUInt16BE(0x8400 | (records ? 0 : 3), 2); // an authoritative answer, or NXDOMAIN
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(records?.length ?? 0, 6);
    const answers = (records ?? []).map((chunks) => {
      const rdata = Buffer.concat(
        chunks.map((c) => Buffer.concat([Buffer.from([c.length]), Buffer.from(c)])),
      );
      const fixed = Buffer.alloc(12);
      fixed.writeUInt16BE(0xc00c, 0); // the name, as a pointer to the question's
      fixed.writeUInt16BE(16, 2); // TXT
      fixed.writeUInt16BE(1, 4); // IN
      fixed.writeUInt32BE(60, 6);
      fixed.writeUInt16BE(rdata.length, 10);
      return Buffer.concat([fixed, rdata]);
    });
    socket.send(Buffer.concat([header, question, ...answers]), peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { port: socket.address().port, socket };
}

const sockets: Socket[] = [];
afterAll(() => sockets.forEach((s) => s.close()));

const lease = (holder: string, gen: number, expires = '2026-12-01T23:00:00Z') =>
  `holder=${holder} gen=${gen} expires=${expires}`;
const servers: AuthoritativeServer[] = [
  { name: 'ns1.example.net', address: '192.0.2.1', port: 53 },
  { name: 'ns2.example.net', address: '192.0.2.2', port: 53 },
];

function args(
  over: Partial<ActiveHostArgs>,
): ActiveHostArgs & { log: ReturnType<typeof recordingLog> } {
  return {
    zone: 'example.net',
    record: '_lease.services',
    servers,
    hosts: ['paralysis', 'nebula', 'emergency1'],
    configured: 'paralysis',
    resolverFor: leaseDns().resolverFor,
    ...over,
    log: recordingLog(),
  };
}

describe('reading the lease with node:dns', () => {
  it('asks the configured server, on its port, and joins a record split in character-strings', async () => {
    const dns = await localDns({
      '_lease.services.example.net': [['holder=nebula ', 'gen=3 expires=2026-12-01T23:00:00Z']],
    });
    sockets.push(dns.socket);
    const resolver = nodeResolverFor({ name: 'local', address: '127.0.0.1', port: dns.port });
    expect(await resolver.resolveTxt('_lease.services.example.net')).toEqual([
      ['holder=nebula ', 'gen=3 expires=2026-12-01T23:00:00Z'],
    ]);
    const a = args({
      servers: [{ name: 'local', address: '127.0.0.1', port: dns.port }],
      resolverFor: nodeResolverFor,
    });
    expect(await chooseActiveHost(a)).toMatchObject({ host: 'nebula', from: 'lease' });
  });

  it('falls back to the config where the server has no such name', async () => {
    const dns = await localDns({});
    sockets.push(dns.socket);
    const a = args({
      servers: [{ name: 'local', address: '127.0.0.1', port: dns.port }],
      resolverFor: nodeResolverFor,
    });
    expect(await chooseActiveHost(a)).toEqual({ host: 'paralysis', from: 'config' });
    expect(a.log.lines).toEqual([
      {
        level: 'warn',
        message: `the lease _lease.services.example.net could not be read (local (127.0.0.1:${dns.port}): no such name); the active records follow stack config baton:activeHost=paralysis`,
      },
    ]);
  });
});

describe('choosing the active host', () => {
  it('takes the highest generation: a server that answers an older one has not caught up', async () => {
    const a = args({
      resolverFor: leaseDns((s) =>
        s.name === 'ns1.example.net' ? [lease('paralysis', 6)] : [lease('nebula', 7)],
      ).resolverFor,
    });
    expect(await chooseActiveHost(a)).toMatchObject({ host: 'nebula', lease: { gen: 7 } });
    expect(a.log.lines).toEqual([
      {
        level: 'warn',
        message:
          'the active records follow the lease _lease.services.example.net, held by nebula (gen 7, until 2026-12-01T23:00:00Z) (ns1.example.net (192.0.2.1:53): older generation 6), not stack config baton:activeHost=paralysis; update the fallback with: pulumi config set baton:activeHost nebula',
      },
    ]);
  });

  it('follows a lease one server has while another does not answer, and says which', async () => {
    const a = args({
      resolverFor: leaseDns((s) =>
        s.name === 'ns1.example.net' ? dnsError('ECONNREFUSED') : [lease('paralysis', 2)],
      ).resolverFor,
    });
    expect(await chooseActiveHost(a)).toMatchObject({ host: 'paralysis', from: 'lease' });
    expect(a.log.lines).toEqual([
      {
        level: 'info',
        message:
          'the active records follow the lease _lease.services.example.net, held by paralysis (gen 2, until 2026-12-01T23:00:00Z) (ns1.example.net (192.0.2.1:53): connection refused)',
      },
    ]);
  });

  it('follows an expired lease: its holder is still where services last ran', async () => {
    const a = args({
      resolverFor: leaseDns(() => [lease('emergency1', 9, '2020-01-01T00:00:00Z')]).resolverFor,
    });
    expect(await chooseActiveHost(a)).toMatchObject({ host: 'emergency1', from: 'lease' });
  });

  it('reads a record of the first format, the holder alone, as generation 0', async () => {
    const a = args({ resolverFor: leaseDns(() => ['nebula']).resolverFor });
    expect(await chooseActiveHost(a)).toMatchObject({ host: 'nebula', lease: { gen: 0 } });
  });

  it('falls back to the config where a value is not a lease, or there are several', async () => {
    const a = args({
      resolverFor: leaseDns((s) =>
        s.name === 'ns1.example.net' ? ['holder=nebula gen=x'] : ['nebula', 'paralysis'],
      ).resolverFor,
    });
    expect(await chooseActiveHost(a)).toEqual({ host: 'paralysis', from: 'config' });
    expect(a.log.lines[0]!.message).toBe(
      'the lease _lease.services.example.net could not be read (ns1.example.net (192.0.2.1:53): no lease in "holder=nebula gen=x"; ns2.example.net (192.0.2.2:53): no lease in "nebula", "paralysis"); the active records follow stack config baton:activeHost=paralysis',
    );
  });

  it('refuses when no lease can be read and the config names no host, saying what to do', async () => {
    const { configured: _, ...rest } = args({});
    await expect(chooseActiveHost({ ...rest, log: recordingLog() })).rejects.toThrow(
      "records follow the active host, but the lease _lease.services.example.net could not be read (ns1.example.net (192.0.2.1:53): no TXT record; ns2.example.net (192.0.2.2:53): no TXT record) and stack config baton:activeHost is not set. Make the lease readable on the zone's servers (baton:dns.servers), or set the fallback: pulumi config set baton:activeHost <host>",
    );
  });

  it('refuses a lease held by a host this stack does not have', async () => {
    const a = args({ resolverFor: leaseDns(() => [lease('ghost', 3)]).resolverFor });
    await expect(chooseActiveHost(a)).rejects.toThrow(
      "the lease _lease.services.example.net is held by ghost (gen 3, until 2026-12-01T23:00:00Z) on ns1.example.net (192.0.2.1:53), which is not one of this stack's hosts (paralysis, nebula, emergency1). Add the host to baton:hosts, or move the lease to one of them with a runbook",
    );
  });

  it('refuses two holders at the same generation', async () => {
    const a = args({
      resolverFor: leaseDns((s) =>
        s.name === 'ns1.example.net' ? [lease('paralysis', 5)] : [lease('nebula', 5)],
      ).resolverFor,
    });
    await expect(chooseActiveHost(a)).rejects.toThrow(
      /has two holders at generation 5: paralysis on ns1\.example\.net .*, nebula on ns2\.example\.net .*Fix the record on the zone's primary server/,
    );
  });

  it('names the record relative to the zone', () => {
    expect(leaseRecordName('example.net')).toBe('_lease.services.example.net');
    expect(leaseRecordName('irc.test', '_lease.irc')).toBe('_lease.irc.irc.test');
  });
});
