/**
 * The `lease` pack (docs/lease.md): one TXT record names the host allowed to
 * run the service. A move writes it by compare-and-set over the value the
 * plan read, so the last writer does not win; each host's lease check refuses
 * a start the lease does not allow, and its watchdog stops the service once
 * the lease is lost. A failover waits out the old holder's expiry and grace.
 */
import { z } from 'zod';
import { verifyAnswer, type DnsProvider } from '../integrations/dns/index.ts';
import { DnsConflictError } from '../integrations/dns/provider.ts';
import {
  describeLease,
  formatLease,
  isoSeconds,
  leaseExpired,
  leaseOf,
  parseLease,
  type Lease,
} from '../core/lease.ts';
import { BatonError } from '../core/errors.ts';
import {
  condition,
  type Condition,
  type FactsContext,
  type ProbeContext,
  type StepDef,
} from '../core/runbook.ts';
import { sh } from '../core/shell.ts';
import {
  dnsFor,
  dnsOf,
  dnsProbe,
  dnsRoute,
  dnsServers,
  fqdn,
  runnerOf,
  type DnsOf,
  type DnsParams,
} from './dns.ts';
import type { MoveFacts, MoveOf } from './host.ts';
import { absolutePath, dnsName } from './params.ts';

export const leaseParams = z.object({
  lease: dnsName
    .default('_lease.services')
    .describe('TXT record naming the host allowed to run services (docs/lease.md)'),
  leaseConf: absolutePath
    .default('/etc/baton/lease.conf')
    .describe(
      "the lease check's and watchdog's settings on the services hosts: the run takes the lease length and grace from the target's copy",
    ),
  leaseSeconds: z
    .number()
    .int()
    .min(5)
    .optional()
    .describe(
      "how long a lease the run writes lasts unless its holder renews it (default: LEASE_SECONDS of the target's lease.conf, else 30)",
    ),
  leaseGrace: z
    .number()
    .int()
    .min(0)
    .optional()
    .describe(
      "seconds a failover waits past the old holder's lease expiry, within which its watchdog fences it (default: LEASE_GRACE of the target's lease.conf, else 10)",
    ),
});

export type LeaseParams = z.output<typeof leaseParams>;

/** The lease as the authoritative server answered it at planning. */
export interface LeaseFacts {
  name: string;
  holder: string | undefined;
  ttl: number | undefined;
  /** The TXT value exactly as read: what a compare-and-set starts from. */
  value?: string;
  gen?: number;
  /** ISO time; absent for a lease of the first format. */
  expires?: string;
}

/** What a run needs of a services host's lease.conf (contrib/lease/lease.conf.example). */
export interface LeaseConf {
  host: string;
  path: string;
  seconds?: number;
  grace?: number;
}

/** LEASE_SECONDS and LEASE_GRACE of a lease.conf: plain `KEY=number` lines, as the scripts source them. */
export function parseLeaseConf(text: string): { seconds?: number; grace?: number } {
  const value = (key: string): number | undefined => {
    const m = new RegExp(`^\\s*${key}=["']?(\\d{1,6})["']?\\s*(?:#.*)?$`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const seconds = value('LEASE_SECONDS');
  const grace = value('LEASE_GRACE');
  return {
    ...(seconds !== undefined ? { seconds } : {}),
    ...(grace !== undefined ? { grace } : {}),
  };
}

/**
 * The lease length and grace a run works with: what the target's lease.conf
 * says (its watchdog renews and fences by it), else the parameters, else 30 s
 * and 10 s. A parameter that disagrees with the host is refused by the lease
 * step's check (see leaseTimingConditions).
 */
export function leaseTiming(
  facts: Pick<LeaseState, 'leaseConf'>,
  params: Pick<LeaseParams, 'leaseSeconds' | 'leaseGrace'>,
): { seconds: number; grace: number } {
  return {
    seconds: facts.leaseConf?.seconds ?? params.leaseSeconds ?? 30,
    grace: facts.leaseConf?.grace ?? params.leaseGrace ?? 10,
  };
}

/** What the lease steps decide from. */
export interface LeaseState {
  lease: LeaseFacts;
  /** The target's lease.conf as far as the run needs it; absent when the target has none. */
  leaseConf?: LeaseConf;
}

export interface LeaseAccess<F> {
  lease: (facts: F) => LeaseState;
  move: MoveOf<F>;
  dns: DnsOf<F>;
}

type LeaseView = MoveFacts & LeaseState & { dnsVia: string };

/** The lease as the authoritative servers answer it now, and the target's lease.conf. */
export async function gatherLeaseFacts<P extends LeaseParams>(
  ctx: FactsContext<P>,
  to: string,
): Promise<LeaseState> {
  const { params } = ctx;
  const route = dnsRoute(ctx);
  const answer = await verifyAnswer(
    route.servers,
    fqdn(params.lease, route.zone),
    'TXT',
    [],
    route.run ? { run: route.run } : {},
  );
  const values = answer.answers[0]?.values ?? [];
  const text = await ctx.probe(to)(sh`cat ${params.leaseConf}`, { allowFail: true });
  const leaseConf: LeaseConf | undefined =
    text.exitCode === 0
      ? { host: to, path: params.leaseConf, ...parseLeaseConf(text.stdout) }
      : undefined;
  return {
    lease: leaseFacts(params.lease, values, answer.answers[0]?.ttl),
    ...(leaseConf ? { leaseConf } : {}),
  };
}

export function leaseFacts(name: string, values: string[], ttl: number | undefined): LeaseFacts {
  const lease = leaseOf(values);
  return {
    name,
    holder: lease?.holder ?? (values.length ? values.join(', ') : undefined),
    ttl,
    ...(values.length === 1 ? { value: values[0]! } : {}),
    ...(lease
      ? { gen: lease.gen, ...(lease.expires ? { expires: isoSeconds(lease.expires) } : {}) }
      : {}),
  };
}

function plannedLease(facts: Pick<LeaseState, 'lease'>): Lease | undefined {
  return facts.lease.value !== undefined ? parseLease(facts.lease.value) : undefined;
}

/** A lease parameter that says otherwise than the target's lease.conf is refused: the watchdog goes by the file. */
export function leaseTimingConditions(
  facts: Pick<LeaseState, 'leaseConf'>,
  params: Pick<LeaseParams, 'leaseSeconds' | 'leaseGrace'>,
): Condition[] {
  const conf = facts.leaseConf;
  if (!conf) return [];
  const pairs = [
    ['leaseSeconds', 'LEASE_SECONDS', params.leaseSeconds, conf.seconds],
    ['leaseGrace', 'LEASE_GRACE', params.leaseGrace, conf.grace],
  ] as const;
  return pairs
    .filter(([, , given, onHost]) => given !== undefined && onHost !== undefined)
    .map(([param, key, given, onHost]) =>
      condition(`${param} agrees with ${key} in ${conf.path} on ${conf.host}`, given === onHost, {
        expected: `${onHost}`,
        found: `--param ${param}=${given}`,
        remedy: `Leave ${param} out (the run takes ${key} from the host), or change ${key} on every services host first.`,
      }),
    );
}

/** When services may start elsewhere in a failover: the old holder's expiry plus the grace. */
function fencedAt(expires: string | undefined, grace: number): Date | undefined {
  return expires ? new Date(Date.parse(expires) + grace * 1000) : undefined;
}

/**
 * Move the lease by compare-and-set: only from the holder and generation the
 * plan read (its holder's watchdog may have renewed the expiry meanwhile; the
 * update carries the exact value read just before as its prerequisite). A
 * lease that names anyone else, or another generation, is refused, naming who
 * holds it now. Returns the value it replaced, or undefined when the lease
 * already was where it was going (a retry).
 */
async function moveLease(
  dns: DnsProvider,
  name: string,
  from: { holder: string; gen: number },
  to: { holder: string; gen: number; seconds: number },
  now: () => Date,
): Promise<Lease | undefined> {
  for (let attempt = 1; ; attempt++) {
    const current = await dns.readRecord(name, 'TXT');
    const lease = leaseOf(current.values);
    if (lease && lease.holder === to.holder && lease.gen === to.gen) return undefined;
    if (!lease || lease.holder !== from.holder || lease.gen !== from.gen) {
      throw new BatonError(
        'PRECONDITION_FAILED',
        `the lease ${name} is not where the plan found it: expected held by ${from.holder} (gen ${from.gen}), now ${lease ? describeLease(lease) : current.values.length ? `unreadable: ${current.values.map((v) => JSON.stringify(v)).join(', ')}` : 'no record'}; nothing was written`,
        'Someone else moved it (another run, a person): find out who before anything else. baton writes a lease only over the value it read, so the last writer does not win.',
      );
    }
    const next = formatLease({
      holder: to.holder,
      gen: to.gen,
      expires: new Date(now().getTime() + to.seconds * 1000),
    });
    try {
      await dns.compareAndSet(name, 'TXT', current.values[0]!, next);
      return lease;
    } catch (e) {
      // Renewed between the read and the write: read again (the holder and generation decide).
      if (!(e instanceof DnsConflictError) || attempt >= 5) throw e;
    }
  }
}

export function leaseStep<P extends LeaseParams & DnsParams, F>(
  access: LeaseAccess<F>,
  kind: 'handover' | 'failover' = 'handover',
): StepDef<P, F> {
  const view = (facts: F): LeaseView => ({
    ...access.move(facts),
    ...access.lease(facts),
    dnsVia: access.dns(facts).dnsVia,
  });
  const planned = (facts: LeaseView): { gen: number; next: number } => {
    const gen = plannedLease(facts)?.gen ?? 0;
    return { gen, next: gen + 1 };
  };
  return {
    id: 'lease',
    title:
      kind === 'failover'
        ? "Move the services lease to the standby by compare-and-set, then wait out the old holder's expiry"
        : 'Move the services lease to the standby by compare-and-set (the old primary may no longer start services)',
    targets: 'controller',
    state: 'the lease names the target host: the source host cannot start services',
    idempotent: true,
    async check(ctx) {
      const { params, now } = ctx;
      const facts = view(ctx.facts);
      const lease = plannedLease(facts);
      const conditions: Condition[] = [
        condition(`lease ${facts.lease.name}`, lease !== undefined && lease.holder === facts.from, {
          expected: `held by ${facts.from}`,
          found: facts.lease.value
            ? lease
              ? describeLease(lease)
              : `not a lease: ${JSON.stringify(facts.lease.value)}`
            : facts.lease.holder
              ? `several records: ${facts.lease.holder}`
              : 'no lease record',
          remedy: lease
            ? `The lease names ${lease.holder}, not ${facts.from}: find out who moved it before anything else (docs/lease.md).`
            : `Create the TXT record ${facts.lease.name} as "holder=${facts.from} gen=1 expires=…", and install the lease check and watchdog on the services hosts (docs/lease.md).`,
        }),
      ];
      conditions.push(...leaseTimingConditions(facts, params));
      const timing = leaseTiming(facts, params);
      if (kind === 'failover' && lease?.holder === facts.from) {
        const at = fencedAt(facts.lease.expires, timing.grace);
        const wait = at ? Math.max(0, Math.ceil((at.getTime() - now().getTime()) / 1000)) : 0;
        conditions.push({
          ...condition(
            `${facts.from}'s lease runs out before services start on ${facts.to}`,
            true,
            {
              expected: `services start on ${facts.to} only after ${facts.from}'s lease expiry plus ${timing.grace} s of grace, within which its watchdog stops its services`,
              found: at
                ? `${describeLease(lease)}: the run waits until ${isoSeconds(at)}, about ${wait} s from now (longer if ${facts.from} renews it before the move)`
                : `${describeLease(lease)}: a lease of the first format has no expiry to wait out, so ${facts.from} has no watchdog to fence it; only its lease check stops a restart`,
            },
          ),
          notice: true,
        });
      }
      return conditions;
    },
    async apply(ctx) {
      const { params } = ctx;
      const facts = view(ctx.facts);
      const dns = dnsFor(ctx, dnsProbe(ctx, facts.dnsVia));
      const { gen, next } = planned(facts);
      const timing = leaseTiming(facts, params);
      let replaced: Lease | undefined;
      await ctx.act(
        `dns: move the lease ${facts.lease.name} from ${facts.from} (gen ${gen}) to ${facts.to} (gen ${next}, ${timing.seconds} s), by compare-and-set`,
        {
          name: facts.lease.name,
          holder: facts.from,
          gen,
          to: facts.to,
          nextGen: next,
          seconds: timing.seconds,
        },
        async (d) => {
          replaced = await moveLease(
            dns,
            d.name,
            { holder: d.holder, gen: d.gen },
            { holder: d.to, gen: d.nextGen, seconds: d.seconds },
            ctx.now,
          );
          if (replaced?.expires) ctx.note({ replacedExpires: isoSeconds(replaced.expires) });
          return replaced
            ? `replaced "${formatLeaseLoosely(replaced)}"`
            : `already held by ${d.to} (gen ${d.nextGen})`;
        },
      );
      if (kind !== 'failover') return;
      const at = fencedAt(facts.lease.expires, timing.grace);
      if (!at) return;
      await ctx.act(
        `wait until ${isoSeconds(at)}: ${facts.from}'s lease expiry plus ${timing.grace} s of grace (longer if it renewed the lease since the plan)`,
        { until: isoSeconds(at), grace: timing.grace },
        async (d) => {
          const renewed =
            (replaced?.expires && isoSeconds(replaced.expires)) ||
            (typeof ctx.notes.replacedExpires === 'string' ? ctx.notes.replacedExpires : undefined);
          const until = Math.max(
            Date.parse(d.until),
            renewed ? Date.parse(renewed) + d.grace * 1000 : 0,
          );
          const ms = until - ctx.now().getTime();
          if (ms > 0) await ctx.sleep(ms);
          return `waited until ${isoSeconds(new Date(until))}`;
        },
      );
    },
    async verify(ctx) {
      const facts = view(ctx.facts);
      return leaseConditions(ctx, facts, facts.to, planned(facts).next);
    },
    async undo(ctx) {
      const { params } = ctx;
      const facts = view(ctx.facts);
      const dns = dnsFor(ctx, dnsProbe(ctx, facts.dnsVia));
      const { next } = planned(facts);
      await ctx.act(
        `dns: move the lease ${facts.lease.name} back to ${facts.from} (gen ${next + 1}), by compare-and-set, if this run moved it`,
        {
          name: facts.lease.name,
          holder: facts.to,
          gen: next,
          to: facts.from,
          nextGen: next + 1,
          seconds: leaseTiming(facts, params).seconds,
        },
        async (d) => {
          const current = leaseOf((await dns.readRecord(d.name, 'TXT')).values);
          // Only what this run wrote is reverted: a lease it did not move (or one moved since) stays.
          if (current?.holder !== d.holder || current.gen !== d.gen)
            return `not moved by this run: ${describeLease(current)}; left as it is`;
          const replaced = await moveLease(
            dns,
            d.name,
            { holder: d.holder, gen: d.gen },
            { holder: d.to, gen: d.nextGen, seconds: d.seconds },
            ctx.now,
          );
          return replaced ? `replaced "${formatLeaseLoosely(replaced)}"` : 'already back';
        },
      );
    },
  };
}

function formatLeaseLoosely(lease: Lease): string {
  return lease.expires ? formatLease(lease) : lease.holder;
}

/** Every authoritative server answers the lease naming `holder` with generation `gen` (its expiry renews). */
async function leaseConditions<P, F>(
  ctx: ProbeContext<P, F>,
  facts: LeaseView,
  holder: string,
  gen: number,
): Promise<Condition[]> {
  const zone = dnsOf(ctx.inventory).zone;
  const name = fqdn(facts.lease.name, zone);
  const result = await verifyAnswer(dnsServers(ctx.inventory), name, 'TXT', [], {
    run: runnerOf(dnsProbe(ctx, facts.dnsVia)),
  });
  return result.answers.map((a) => {
    const lease = leaseOf(a.values);
    return condition(
      `${a.server} answers the lease ${name}`,
      !a.error && lease?.holder === holder && lease.gen === gen && !leaseExpired(lease, ctx.now()),
      {
        expected: `held by ${holder} (gen ${gen}), not expired`,
        found: a.error ?? (lease ? describeLease(lease) : a.values.join(', ') || 'nothing'),
      },
    );
  });
}
