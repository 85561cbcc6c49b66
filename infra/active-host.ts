/**
 * The host the `active` records point to, read at deployment time from the
 * services lease on the zone's authoritative servers (docs/lease.md): the
 * lease names the host services run on, whichever controller moved it, so
 * `pulumi up` from any working copy declares the records DNS already has.
 * Stack config `baton:activeHost` is the fallback for when no server answers
 * with a lease (a new zone, DNS out of reach), and a warning says so.
 */
import { promises as dns } from 'node:dns';
import { isIP } from 'node:net';
import * as pulumi from '@pulumi/pulumi';
import { describeLease, leaseOf, type Lease } from '../lib/core/lease.ts';
import type { Inventory } from '../lib/core/inventory.ts';

export type AuthoritativeServer = NonNullable<Inventory['dns']>['servers'][number];

/** The part of node:dns's promise `Resolver` that reads the lease. */
export interface TxtResolver {
  resolveTxt(name: string): Promise<string[][]>;
}

/** A resolver that asks `server` and no other. */
export type ResolverFor = (server: AuthoritativeServer) => TxtResolver;

export interface ActiveHostLog {
  info(message: string): void;
  warn(message: string): void;
}

export interface ActiveHostChoice {
  host: string;
  from: 'lease' | 'config';
  lease?: Lease;
}

export interface ActiveHostArgs {
  zone: string;
  /** The lease record relative to the zone (`baton:dns.lease`). */
  record: string;
  servers: readonly AuthoritativeServer[];
  /** The stack's host names: the lease must name one of them. */
  hosts: readonly string[];
  /** Stack config `baton:activeHost`, the fallback. */
  configured?: string;
  resolverFor: ResolverFor;
  log: ActiveHostLog;
}

export const defaultLeaseRecord = '_lease.services';

/** Long enough for a distant server, short enough that a dead one does not stall a preview. */
const queryTimeoutMs = 3000;

export function leaseRecordName(zone: string, record: string = defaultLeaseRecord): string {
  return `${record}.${zone}`;
}

/** A node:dns Resolver that asks `server` only; a server given by name is looked up first. */
export function nodeResolverFor(server: AuthoritativeServer): TxtResolver {
  return {
    async resolveTxt(name) {
      const address = isIP(server.address)
        ? server.address
        : (await dns.lookup(server.address)).address;
      const resolver = new dns.Resolver({ timeout: queryTimeoutMs, tries: 2 });
      resolver.setServers([
        isIP(address) === 6 ? `[${address}]:${server.port}` : `${address}:${server.port}`,
      ]);
      return resolver.resolveTxt(name);
    },
  };
}

/** Log through the engine, so `pulumi preview` shows which host the records follow. */
export const pulumiLog: ActiveHostLog = {
  info: (message) => void pulumi.log.info(message),
  warn: (message) => void pulumi.log.warn(message),
};

function dnsProblem(e: unknown): string {
  const code = (e as { code?: string }).code;
  switch (code) {
    case 'ENODATA':
      return 'no TXT record';
    case 'ENOTFOUND':
      return 'no such name';
    case 'ETIMEOUT':
      return 'no answer in time';
    case 'ECONNREFUSED':
      return 'connection refused';
    default:
      return code ? `${code}: ${(e as Error).message}` : String((e as Error).message ?? e);
  }
}

type Answer =
  { server: AuthoritativeServer; lease: Lease } | { server: AuthoritativeServer; problem: string };

async function ask(
  server: AuthoritativeServer,
  name: string,
  args: ActiveHostArgs,
): Promise<Answer> {
  try {
    const values = (await args.resolverFor(server).resolveTxt(name)).map((chunks) =>
      chunks.join(''),
    );
    const lease = leaseOf(values);
    if (lease) return { server, lease };
    const problem =
      values.length === 0
        ? 'no TXT record'
        : `no lease in ${values.map((v) => JSON.stringify(v)).join(', ')}`;
    return { server, problem };
  } catch (e) {
    return { server, problem: dnsProblem(e) };
  }
}

const where = (s: AuthoritativeServer): string => `${s.name} (${s.address}:${s.port})`;

/**
 * Ask every authoritative server for the lease and take the highest
 * generation: a generation only grows, so a server answering a lower one has
 * not caught up yet. The records follow the holder whether or not its lease
 * has expired: that is still where services last ran.
 */
export async function chooseActiveHost(args: ActiveHostArgs): Promise<ActiveHostChoice> {
  const name = leaseRecordName(args.zone, args.record);
  const answers = await Promise.all(args.servers.map((s) => ask(s, name, args)));
  const leases = answers.flatMap((a) => ('lease' in a ? [a] : []));
  if (leases.length === 0) {
    const why =
      answers.map((a) => `${where(a.server)}: ${'problem' in a ? a.problem : ''}`).join('; ') ||
      'no authoritative servers';
    if (!args.configured) {
      throw new pulumi.RunError(
        `records follow the active host, but the lease ${name} could not be read (${why}) and stack config baton:activeHost is not set. Make the lease readable on the zone's servers (baton:dns.servers), or set the fallback: pulumi config set baton:activeHost <host>`,
      );
    }
    args.log.warn(
      `the lease ${name} could not be read (${why}); the active records follow stack config baton:activeHost=${args.configured}`,
    );
    return { host: args.configured, from: 'config' };
  }
  const newest = leases.reduce((a, b) => (b.lease.gen > a.lease.gen ? b : a));
  const { lease } = newest;
  const rival = leases.find((a) => a.lease.gen === lease.gen && a.lease.holder !== lease.holder);
  if (rival) {
    throw new pulumi.RunError(
      `the lease ${name} has two holders at generation ${lease.gen}: ${lease.holder} on ${where(newest.server)}, ${rival.lease.holder} on ${where(rival.server)}. Fix the record on the zone's primary server before deploying; the records cannot follow both`,
    );
  }
  if (!args.hosts.includes(lease.holder)) {
    throw new pulumi.RunError(
      `the lease ${name} is ${describeLease(lease)} on ${where(newest.server)}, which is not one of this stack's hosts (${args.hosts.join(', ')}). Add the host to baton:hosts, or move the lease to one of them with a runbook`,
    );
  }
  const notes = [
    ...leases
      .filter((a) => a.lease.gen < lease.gen)
      .map((a) => `${where(a.server)}: older generation ${a.lease.gen}`),
    ...answers.flatMap((a) => ('problem' in a ? [`${where(a.server)}: ${a.problem}`] : [])),
  ];
  const from = `the lease ${name}, ${describeLease(lease)}${notes.length ? ` (${notes.join('; ')})` : ''}`;
  if (args.configured && args.configured !== lease.holder) {
    args.log.warn(
      `the active records follow ${from}, not stack config baton:activeHost=${args.configured}; update the fallback with: pulumi config set baton:activeHost ${lease.holder}`,
    );
  } else {
    args.log.info(`the active records follow ${from}`);
  }
  return { host: lease.holder, from: 'lease', lease };
}
