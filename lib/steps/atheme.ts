/**
 * Atheme's services.db as steps see it: read on a host, parsed as Atheme
 * would parse it, compared by what it holds (accounts, nicks, channels).
 */
import {
  checkAthemeDb,
  type AthemeDbFault,
  type AthemeFingerprint,
} from '../integrations/atheme/db.ts';
import type { Exec } from '../core/runbook.ts';
import { sh } from '../core/shell.ts';

export interface DbSummary {
  path: string;
  bytes: number;
  /** Present when the file does not load; worded as Atheme words it. */
  fault?: string;
  fingerprint?: AthemeFingerprint;
  accounts: string[];
  nicks: string[];
  channels: string[];
}

export function faultText(fault: AthemeDbFault): string {
  return fault.message;
}

/** Read and parse a services.db on a host through `probe`. */
export async function readDb(probe: Exec, path: string): Promise<DbSummary> {
  const out = await probe(sh`cat ${path}`);
  const check = checkAthemeDb(out.stdout, { file: path });
  const bytes = Buffer.byteLength(out.stdout);
  if (!check.ok)
    return { path, bytes, fault: faultText(check.fault), accounts: [], nicks: [], channels: [] };
  return {
    path,
    bytes,
    fingerprint: check.fingerprint,
    accounts: check.db.accounts.map((a) => a.name).sort(),
    nicks: check.db.nicks.map((n) => n.nick).sort(),
    channels: check.db.channels.map((c) => c.name).sort(),
  };
}

export function describeDb(db: DbSummary): string {
  if (db.fault) return db.fault;
  const f = db.fingerprint!;
  return `${f.accounts} accounts, ${f.nicks} nicks, ${f.channels} channels (sha256 ${f.sha256.slice(0, 12)})`;
}

/** What `earlier` held that `later` lost: accounts, nicks or channels missing from it. */
export function lostSince(earlier: DbSummary, later: DbSummary): string[] {
  const lost: string[] = [];
  const missing = (kind: string, a: string[], b: string[]): void => {
    const have = new Set(b);
    const gone = a.filter((x) => !have.has(x));
    if (gone.length)
      lost.push(
        `${kind} ${gone.slice(0, 5).join(', ')}${gone.length > 5 ? ` and ${gone.length - 5} more` : ''}`,
      );
  };
  missing('accounts', earlier.accounts, later.accounts);
  missing('nicks', earlier.nicks, later.nicks);
  missing('channels', earlier.channels, later.channels);
  return lost;
}

export interface Counts {
  accounts: number;
  nicks: number;
  channels: number;
}

/**
 * The complete-copy rule: a copy is usable only if it is not empty, loads, and
 * holds at least what the reference held (the most complete copy known, or
 * the live primary), less `shrinkPercent` of each kind for accounts that
 * expired meanwhile. Returns why a copy is refused, with the numbers missing.
 */
export function incompleteCopy(
  copy: Pick<DbSummary, 'bytes' | 'fault' | 'fingerprint'>,
  reference: { counts: Counts; from: string } | undefined,
  shrinkPercent: number,
): string | undefined {
  if (copy.bytes === 0) return 'empty (0 bytes): nothing to start from';
  if (copy.fault) return copy.fault;
  if (!reference) return undefined;
  const have = copy.fingerprint!;
  const short: string[] = [];
  for (const kind of ['accounts', 'nicks', 'channels'] as const) {
    const want = reference.counts[kind];
    const floor = Math.ceil(want * (1 - shrinkPercent / 100));
    if (have[kind] < floor)
      short.push(`${have[kind]} of ${want} ${kind} (${want - have[kind]} missing)`);
  }
  return short.length
    ? `incomplete: holds ${short.join(', ')} of what ${reference.from} holds; at most ${shrinkPercent}% fewer is accepted`
    : undefined;
}

/** The most complete of several loaded copies, kind by kind, as the reference a copy must match. */
export function mostComplete(
  copies: Array<{ where: string; counts: Counts }>,
): { counts: Counts; from: string } | undefined {
  if (copies.length === 0) return undefined;
  const best = (kind: keyof Counts): { n: number; where: string } =>
    copies.reduce((a, c) => (c.counts[kind] > a.n ? { n: c.counts[kind], where: c.where } : a), {
      n: -1,
      where: '',
    });
  const a = best('accounts');
  const n = best('nicks');
  const c = best('channels');
  const from = [...new Set([a.where, n.where, c.where])].join(' and ');
  return { counts: { accounts: a.n, nicks: n.n, channels: c.n }, from };
}
