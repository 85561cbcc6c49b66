/**
 * Atheme's services.db as steps see it: read on a host, parsed as Atheme
 * would parse it, compared by what it holds (accounts, nicks, channels).
 */
import { checkAthemeDb, type AthemeDbFault, type AthemeFingerprint } from '../atheme/db.ts';
import type { Exec } from '../runbook.ts';
import { sh } from '../shell.ts';

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
