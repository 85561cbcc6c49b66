/**
 * The `dns` pack: the records a move cuts over, their TTLs lowered and waited
 * out beforehand, the cut itself, and every authoritative server checked
 * after it. The DNS tools run where the stack's DNS server is reachable: on
 * its own host when the inventory has it, else on the controller.
 */
import { z } from 'zod';
import { dnsProviderFor, verifyAnswer, type DnsProvider } from '../integrations/dns/index.ts';
import type { CommandRunner } from '../integrations/dns/command.ts';
import type { RecordType } from '../integrations/dns/provider.ts';
import type { DnsInventory, Host, Inventory } from '../core/inventory.ts';
import { secret } from '../core/params.ts';
import {
  condition,
  type Condition,
  type Exec,
  type FactsContext,
  type ProbeContext,
  type RunbookContext,
  type StepDef,
} from '../core/runbook.ts';
import type { MoveOf } from './host.ts';

export const dnsParams = z.object({
  maxTtl: z.number().int().min(0).default(300).describe('the TTL a cut record may have'),
  maxTtlWait: z
    .number()
    .int()
    .min(0)
    .default(3600)
    .describe('longest TTL the run waits out after lowering it'),
  tsigKey: secret(
    z
      .string()
      .regex(
        /^[A-Za-z0-9-]+:[A-Za-z0-9._-]+:[A-Za-z0-9+/=]+$/,
        'must be algorithm:name:base64secret',
      ),
  )
    .optional()
    .describe('TSIG key for RFC 2136 DNS (algorithm:name:secret)'),
});

export type DnsParams = z.output<typeof dnsParams>;

export interface CutRecord {
  name: string;
  type: RecordType;
  ttl: number;
  value: string;
}

/** What the dns steps decide from, gathered before any change. */
export interface DnsFacts {
  /** Where DNS tools run: the DNS server's own host when it is in the inventory, else the controller. */
  dnsVia: string;
  /** The records that name the source host now, as the authoritative servers answer. */
  records: CutRecord[];
}

export type DnsOf<F> = (facts: F) => DnsFacts;

export function dnsOf(inventory: Inventory): DnsInventory {
  if (!inventory.dns) throw new Error(`stack ${inventory.stack} has no DNS section`);
  return inventory.dns;
}

export const fqdn = (name: string, zone: string): string =>
  name.endsWith('.') ? name.slice(0, -1) : `${name}.${zone}`;

export function runnerOf(probe: Exec): CommandRunner {
  return async (command, options = {}) => {
    const r = await probe(command, {
      allowFail: true,
      ...(options.input ? { input: options.input } : {}),
    });
    return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr };
  };
}

/** A DNS provider whose tools (dig, knsupdate) run on `via` through the step's probes. */
export function dnsFor<P extends DnsParams>(
  ctx: Pick<RunbookContext<P, unknown>, 'inventory' | 'params'>,
  probe: Exec,
): DnsProvider {
  return dnsProviderFor(dnsOf(ctx.inventory), {
    env: { ...process.env, ...(ctx.params.tsigKey ? { BATON_TSIG_KEY: ctx.params.tsigKey } : {}) },
    run: runnerOf(probe),
  });
}

export type DnsServer = { name: string; address: string; port: number };

export function dnsServers(inventory: Inventory): DnsServer[] {
  return dnsOf(inventory).servers.map((s) => ({ name: s.name, address: s.address, port: s.port }));
}

/** The probe DNS tools run through in a step: on the DNS host, or the controller. */
export function dnsProbe<P, F>(ctx: ProbeContext<P, F>, dnsVia: string): Exec {
  return dnsVia === 'controller' ? ctx.probe : ctx.on(dnsVia).probe;
}

/** Where the DNS tools run while facts are gathered, and how to reach the servers from there. */
export interface DnsRoute {
  dnsVia: string;
  zone: string;
  servers: DnsServer[];
  run?: CommandRunner;
}

export function dnsRoute<P>(ctx: FactsContext<P>): DnsRoute {
  const dns = dnsOf(ctx.inventory);
  const server = dns.servers[0];
  const dnsVia =
    ctx.inventory.hosts.find((h) => server && h.address === server.address)?.name ?? 'controller';
  const run = dnsVia === 'controller' ? undefined : runnerOf(ctx.probe(dnsVia));
  return { dnsVia, zone: dns.zone, servers: dnsServers(ctx.inventory), ...(run ? { run } : {}) };
}

/**
 * The records to cut: the stack's A records that name `from` now, as the
 * authoritative servers answer (after a handover the stack still declares
 * the old address until `pulumi up` follows).
 */
export async function gatherDnsFacts<P>(ctx: FactsContext<P>, from: Host): Promise<DnsFacts> {
  const route = dnsRoute(ctx);
  const records: CutRecord[] = [];
  for (const r of dnsOf(ctx.inventory).records.filter((r) => r.type === 'A')) {
    const answer = await verifyAnswer(
      route.servers,
      fqdn(r.name, route.zone),
      'A',
      [],
      route.run ? { run: route.run } : {},
    );
    if (!answer.answers.some((a) => a.values.includes(from.address))) continue;
    const ttl = Math.max(...answer.answers.map((a) => a.ttl ?? r.ttl));
    records.push({ name: r.name, type: 'A', ttl, value: from.address });
  }
  return { dnsVia: route.dnsVia, records };
}

/** Every authoritative server answers `name` with `expected` (and a TTL at most `maxTtl`). */
export async function answerConditions<P, F>(
  ctx: ProbeContext<P, F>,
  dnsVia: string,
  name: string,
  type: RecordType,
  expected: string,
  maxTtl?: number,
): Promise<Condition[]> {
  const zone = dnsOf(ctx.inventory).zone;
  const result = await verifyAnswer(dnsServers(ctx.inventory), fqdn(name, zone), type, expected, {
    run: runnerOf(dnsProbe(ctx, dnsVia)),
    ...(maxTtl !== undefined ? { maxTtl } : {}),
  });
  return result.answers.map((a) =>
    condition(`${a.server} answers ${fqdn(name, zone)} ${type}`, a.ok, {
      expected: `${expected}${maxTtl !== undefined ? ` with TTL at most ${maxTtl}` : ''}`,
      found: a.error ?? `${a.values.join(', ') || 'nothing'} (TTL ${a.ttl ?? '-'})`,
    }),
  );
}

export function duration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return h ? `${h} h ${m} min` : `${m} min`;
}

export interface DnsAccess<F> {
  dns: DnsOf<F>;
  move: MoveOf<F>;
}

export function ttlStep<P extends DnsParams, F>(access: DnsAccess<F>): StepDef<P, F> {
  return {
    id: 'ttl',
    title: 'The DNS records can be cut inside the window',
    targets: 'controller',
    async check({ facts, params, inventory }) {
      const { records } = access.dns(facts);
      const conditions: Condition[] = records.map((r) =>
        condition(
          `TTL of ${fqdn(r.name, inventory.dns!.zone)}`,
          r.ttl <= Math.max(params.maxTtl, params.maxTtlWait),
          {
            expected: `at most ${params.maxTtl} s, or at most ${params.maxTtlWait} s to lower and wait out`,
            found: `${r.ttl} s`,
            remedy: `Lower the TTL to ${params.maxTtl} s at least ${r.ttl} s before the handover (resolvers keep the old answer that long), then plan again.`,
          },
        ),
      );
      conditions.push(
        condition('a DNS record to cut', records.length > 0, {
          expected: `an A record pointing at ${access.move(facts).from}`,
          found: records.length ? records.map((r) => r.name).join(', ') : 'none',
          remedy: "Check the stack's DNS section.",
        }),
      );
      return conditions;
    },
  };
}

/** A failover cannot wait out a TTL: it says how long clients may keep the old address. */
export function ttlNoticeStep<P, F>(access: DnsAccess<F>): StepDef<P, F> {
  return {
    id: 'ttl',
    title: 'How long clients may keep the old address',
    targets: 'controller',
    async check({ facts, inventory }) {
      const { records } = access.dns(facts);
      const worst = Math.max(0, ...records.map((r) => r.ttl));
      return {
        ...condition('DNS TTL of the cut records', records.length > 0, {
          expected: `an A record pointing at ${access.move(facts).from}`,
          found: records.length
            ? `${records.map((r) => `${fqdn(r.name, inventory.dns!.zone)} ${r.ttl} s`).join(', ')}: resolvers may keep the old address up to ${duration(worst)}`
            : 'none',
        }),
        notice: true,
      };
    },
  };
}

export function lowerTtlStep<P extends DnsParams, F>(access: DnsAccess<F>): StepDef<P, F> {
  const high = (facts: F, params: P): CutRecord[] =>
    access.dns(facts).records.filter((r) => r.ttl > params.maxTtl);
  return {
    id: 'lower-ttl',
    title: 'Lower the TTL of the cut records and wait out the old one',
    targets: 'controller',
    when: ({ facts, params }) => high(facts, params).length > 0,
    idempotent: true,
    async apply(ctx) {
      const records = high(ctx.facts, ctx.params);
      const dns = dnsFor(ctx, dnsProbe(ctx, access.dns(ctx.facts).dnsVia));
      for (const r of records) {
        await ctx.act(
          `dns: set TTL of ${r.name} ${r.type} to ${ctx.params.maxTtl} s (was ${r.ttl} s)`,
          { name: r.name, type: r.type, ttl: ctx.params.maxTtl },
          async (d) => {
            await dns.setTtl(d.name, d.type, d.ttl);
          },
        );
      }
      const wait = Math.max(...records.map((r) => r.ttl));
      await ctx.act(`wait ${wait} s for resolvers to drop the old TTL`, { seconds: wait }, (d) =>
        ctx.sleep(d.seconds * 1000),
      );
    },
    async verify(ctx) {
      const { dnsVia, records } = access.dns(ctx.facts);
      return (
        await Promise.all(
          records.map((r) =>
            answerConditions(ctx, dnsVia, r.name, r.type, r.value, ctx.params.maxTtl),
          ),
        )
      ).flat();
    },
    async undo(ctx) {
      const dns = dnsFor(ctx, dnsProbe(ctx, access.dns(ctx.facts).dnsVia));
      for (const r of high(ctx.facts, ctx.params)) {
        await ctx.act(
          `dns: set TTL of ${r.name} ${r.type} back to ${r.ttl} s`,
          { name: r.name, type: r.type, ttl: r.ttl },
          async (d) => {
            await dns.setTtl(d.name, d.type, d.ttl);
          },
        );
      }
    },
  };
}

export function cutDnsStep<P extends DnsParams, F>(access: DnsAccess<F>): StepDef<P, F> {
  return {
    id: 'cut-dns',
    title: 'Point the service names at the standby and check every authoritative server',
    targets: 'controller',
    state: 'services running on the target host, and DNS names it',
    idempotent: true,
    async apply(ctx) {
      const { dnsVia, records } = access.dns(ctx.facts);
      const dns = dnsFor(ctx, dnsProbe(ctx, dnsVia));
      const to = ctx.hostNamed(access.move(ctx.facts).to);
      for (const r of records) {
        await ctx.act(
          `dns: set ${r.name} ${r.type} to ${to.address} (${to.name})`,
          { name: r.name, type: r.type, value: to.address },
          async (d) => {
            await dns.setTarget(d.name, d.type, d.value);
          },
        );
      }
    },
    async verify(ctx) {
      const { dnsVia, records } = access.dns(ctx.facts);
      const to = ctx.hostNamed(access.move(ctx.facts).to);
      return (
        await Promise.all(
          records.map((r) => answerConditions(ctx, dnsVia, r.name, r.type, to.address)),
        )
      ).flat();
    },
    async undo(ctx) {
      const { dnsVia, records } = access.dns(ctx.facts);
      const dns = dnsFor(ctx, dnsProbe(ctx, dnsVia));
      for (const r of records) {
        await ctx.act(
          `dns: set ${r.name} ${r.type} back to ${r.value}`,
          { name: r.name, type: r.type, value: r.value },
          async (d) => {
            await dns.setTarget(d.name, d.type, d.value);
          },
        );
      }
    },
  };
}
