import { describe, expect, it } from 'vitest';
import { dnsProviderFor } from '../lib/integrations/dns/index.ts';
import { checkValue, fqdn, relativeName, sameValues } from '../lib/integrations/dns/provider.ts';
import { parseDig } from '../lib/integrations/dns/verify.ts';
import type { DnsInventory } from '../lib/core/inventory.ts';

const inv = (provider: string): DnsInventory => ({
  zone: 'example.net',
  provider,
  servers: [{ name: 'ns1', address: '192.0.2.53', port: 5353 }],
  records: [],
});

describe('DNS provider selection', () => {
  it('builds the provider the inventory names, with credentials from the environment', () => {
    const secret = Buffer.alloc(32, 1).toString('base64');
    const rfc = dnsProviderFor(inv('rfc2136'), {
      env: { BATON_TSIG_KEY: `hmac-sha256:cut:${secret}` },
    });
    expect([rfc.kind, rfc.zone, (rfc as unknown as { server: string }).server]).toEqual([
      'rfc2136',
      'example.net',
      '192.0.2.53:5353',
    ]);
    const primary = dnsProviderFor(inv('rfc2136'), {
      env: { BATON_TSIG_KEY: `cut:${secret}`, BATON_DNS_PRIMARY: '127.0.0.1:5300' },
    });
    expect((primary as unknown as { server: string }).server).toBe('127.0.0.1:5300');
    expect(dnsProviderFor(inv('linode'), { env: { LINODE_TOKEN: 't' } }).kind).toBe('linode');
    expect(
      dnsProviderFor(inv('azure'), {
        env: {
          AZURE_ACCESS_TOKEN: 't',
          ARM_SUBSCRIPTION_ID: 'sub',
          BATON_AZURE_DNS_RESOURCE_GROUP: 'rg',
        },
      }).kind,
    ).toBe('azure');
  });

  it('names the missing variable, and an unknown provider', () => {
    expect(() => dnsProviderFor(inv('linode'), { env: {} })).toThrow(
      'LINODE_TOKEN is not set, and the linode DNS provider needs it',
    );
    expect(() => dnsProviderFor(inv('azure'), { env: { AZURE_ACCESS_TOKEN: 't' } })).toThrow(
      /AZURE_SUBSCRIPTION_ID is not set/,
    );
    expect(() => dnsProviderFor(inv('route53'), { env: {} })).toThrow(
      'DNS provider route53 for zone example.net is not one baton knows',
    );
  });
});

describe('record names and values', () => {
  it('takes relative, qualified and absolute names', () => {
    expect(relativeName('irc', 'example.net')).toBe('irc');
    expect(relativeName('IRC.Example.Net.', 'example.net.')).toBe('irc');
    expect(relativeName('example.net', 'example.net')).toBe('@');
    expect(relativeName('@', 'example.net')).toBe('@');
    expect(fqdn('@', 'example.net')).toBe('example.net');
    expect(() => relativeName('irc.example.org.', 'example.net')).toThrow(
      'record name irc.example.org. is not in zone example.net',
    );
  });

  it('refuses values of the wrong kind', () => {
    expect(() => checkValue('AAAA', '192.0.2.1')).toThrow(
      'AAAA value "192.0.2.1" is not an IPv6 address',
    );
    expect(checkValue('CNAME', 'Irc.Example.Net.')).toBe('irc.example.net');
    expect(() => checkValue('TXT', 'a\nb')).toThrow(/line break/);
    expect(sameValues('A', ['192.0.2.2', '192.0.2.1'], ['192.0.2.1', '192.0.2.2'])).toBe(true);
  });

  it('parses dig answers: status, the aa flag, values and the lowest TTL', () => {
    const out = [
      ';; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1',
      ';; flags: qr aa; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 1',
      'irc.example.net.\t60\tIN\tA\t192.0.2.1',
      'irc.example.net.\t30\tIN\tA\t192.0.2.2',
      'other.example.net.\t30\tIN\tA\t192.0.2.3',
    ].join('\n');
    expect(parseDig(out, 'irc.example.net', 'A')).toEqual({
      status: 'NOERROR',
      authoritative: true,
      values: ['192.0.2.1', '192.0.2.2'],
      ttl: 30,
    });
  });
});
