/**
 * The DNS provider for an inventory's zone, with credentials from the
 * environment (never from the inventory, which is not secret):
 *
 * - `rfc2136`: BATON_TSIG_KEY=`hmac-sha256:name:base64secret`; updates go to
 *   BATON_DNS_PRIMARY (`address[:port]`) or else the first listed server.
 * - `linode`: LINODE_TOKEN (the variable the Pulumi Linode provider reads too).
 * - `azure`: AZURE_ACCESS_TOKEN, AZURE_SUBSCRIPTION_ID (or ARM_SUBSCRIPTION_ID),
 *   BATON_AZURE_DNS_RESOURCE_GROUP.
 */
import type { DnsInventory } from '../../core/inventory.ts';
import { AzureDnsProvider } from './azure.ts';
import type { CommandRunner } from './command.ts';
import type { HttpClientOptions } from './http.ts';
import { LinodeDnsProvider } from './linode.ts';
import { DnsError, type DnsProvider } from './provider.ts';
import { parseTsigKey, Rfc2136Provider } from './rfc2136.ts';

export { verifyAnswer, type ServerAnswer, type VerifyResult } from './verify.ts';
export type { DnsProvider, RecordSet, RecordType } from './provider.ts';

export interface DnsProviderDeps {
  env?: NodeJS.ProcessEnv;
  /** Where dig and knsupdate run; the controller by default. */
  run?: CommandRunner;
  /** HTTP settings for the API providers (base URL, fetch, sleep, retries). */
  http?: Partial<HttpClientOptions>;
}

function need(env: NodeJS.ProcessEnv, name: string, provider: string, alt?: string): string {
  const value = env[name] ?? (alt ? env[alt] : undefined);
  if (!value) {
    throw new DnsError(
      'MISSING_PREREQUISITE',
      provider,
      `${name} is not set, and the ${provider} DNS provider needs it`,
      `Export ${name} in the shell that runs baton (see infra/README.md).`,
    );
  }
  return value;
}

export function dnsProviderFor(dns: DnsInventory, deps: DnsProviderDeps = {}): DnsProvider {
  const env = deps.env ?? process.env;
  switch (dns.provider) {
    case 'rfc2136': {
      const tsig = parseTsigKey(need(env, 'BATON_TSIG_KEY', 'rfc2136'));
      const primary = env['BATON_DNS_PRIMARY'];
      let server: { address: string; port: number };
      if (primary) {
        const m = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(primary);
        server = { address: m?.[1] ?? primary, port: Number(m?.[2] ?? 53) };
      } else if (dns.servers[0]) {
        server = { address: dns.servers[0].address, port: dns.servers[0].port };
      } else {
        throw new DnsError(
          'INVALID_INPUT',
          'rfc2136',
          `the inventory lists no server for zone ${dns.zone}`,
        );
      }
      return new Rfc2136Provider({
        zone: dns.zone,
        server,
        tsig,
        ...(deps.run ? { run: deps.run } : {}),
      });
    }
    case 'linode':
      return new LinodeDnsProvider({
        ...deps.http,
        zone: dns.zone,
        token: need(env, 'LINODE_TOKEN', 'linode'),
      });
    case 'azure':
      return new AzureDnsProvider({
        ...deps.http,
        zone: dns.zone,
        token: need(env, 'AZURE_ACCESS_TOKEN', 'azure'),
        subscriptionId: need(env, 'AZURE_SUBSCRIPTION_ID', 'azure', 'ARM_SUBSCRIPTION_ID'),
        resourceGroup: need(env, 'BATON_AZURE_DNS_RESOURCE_GROUP', 'azure'),
      });
    default:
      throw new DnsError(
        'INVALID_INPUT',
        dns.provider,
        `DNS provider ${dns.provider} for zone ${dns.zone} is not one baton knows`,
        'Use rfc2136, linode or azure in the inventory.',
      );
  }
}
