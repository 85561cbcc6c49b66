/**
 * A data format: how one kind of data (Atheme's flat file, a PostgreSQL or
 * MariaDB database, an SQLite file) is frozen, copied, proven and put in
 * place. The data steps (freeze, snapshot, verify, install, writable) are
 * the same for every format; what differs is behind this interface. A format
 * runs its commands through the step's own `probe` (reads) and `$` (changes),
 * so a plan shows them and a journal records them.
 *
 * The complete-copy rule is the format's too: a copy is usable only when it
 * holds every part (table, record kind) the reference holds, none of them
 * shrunk past the policy. An empty copy of non-empty data is never complete.
 */
import type { z } from 'zod';
import type { Host } from '../core/inventory.ts';
import type { ApplyContext, Condition, Exec, Mutate } from '../core/runbook.ts';
import type { Cmd } from '../core/shell.ts';

/** What a copy holds, counted and hashed the format's own way. */
export interface Fingerprint {
  /** Rows or records per part (table, record kind), by name. */
  counts: Record<string, number>;
  /**
   * sha256 over the content in a canonical order: equal for the same data
   * however it is stored (a dump and a restored database of it agree).
   */
  content: string;
  /** Size on disk of what was fingerprinted, in bytes. */
  bytes: number;
  /** The first thing that did not read back: a copy with a fault is never used. */
  fault?: string;
  /** One line for the operator, e.g. "3 tables, 1204 rows" or "4 accounts, 2 channels". */
  summary: string;
}

/** Read-only access to one host, as a step's probe gives it. */
export interface FormatProbe {
  host: Host;
  probe: Exec;
}

/** Changes on one host, as a step's apply or undo makes them (planned, journaled). */
export interface FormatApply extends FormatProbe {
  $: Mutate;
  act: ApplyContext<unknown, unknown>['act'];
  note: ApplyContext<unknown, unknown>['note'];
  notes: ApplyContext<unknown, unknown>['notes'];
}

/** The complete-copy policy a run applies (its parameters). */
export interface CopyPolicy {
  /** How many fewer rows than the reference a part may hold, in percent, and still count. */
  maxShrinkPercent: number;
}

export interface DataFormat<P> {
  /** Short name, in step ids and titles: `atheme`, `postgresql`, `mariadb`, `sqlite`. */
  readonly name: string;
  /** What the data is, for titles: "services.db", "database app". */
  describe(params: P): string;
  /** The parameters this format needs; a runbook's schema extends with them. */
  readonly params: z.ZodObject;
  /** Programs it needs on a host that holds or receives the data. */
  tools(params: P): string[];

  /** Fingerprint the live data, read-only. */
  fingerprint(io: FormatProbe, params: P): Promise<Fingerprint>;

  /**
   * Refuse writes from clients. Notes what it found (`alreadyFrozen`), so
   * that `thaw` lifts only a freeze it set; idempotent.
   */
  freeze(io: FormatApply, params: P): Promise<void>;
  /** A write, made as a client would make it, that must fail now. */
  proveFrozen(io: FormatProbe, params: P): Promise<Condition>;
  /** Take writes again: the undo of `freeze`, on the host it froze (a snapshot carries no freeze, so an installed copy takes writes as it is). */
  thaw(io: FormatApply, params: P): Promise<void>;

  /** A read-only command that prints a snapshot of the frozen data on stdout, to stream host to host. */
  snapshot(params: P): Cmd;
  /** Restore a snapshot file into a scratch place on its host: a copy is proven by restoring it. */
  restoreScratch(io: FormatApply, file: string, params: P): Promise<void>;
  /** Fingerprint what restoreScratch restored. */
  fingerprintScratch(io: FormatProbe, params: P): Promise<Fingerprint>;
  /** Remove the scratch place (idempotent). */
  dropScratch(io: FormatApply, params: P): Promise<void>;

  /**
   * Make the restored scratch copy the live data on the standby, keeping what
   * was there as a named backup; idempotent.
   */
  install(io: FormatApply, params: P): Promise<void>;
  /** Put back what install replaced (the undo of install; idempotent). */
  uninstall(io: FormatApply, params: P): Promise<void>;

  /** What of `reference` the copy lacks, one line per part; empty when the copy is complete. */
  missing(copy: Fingerprint, reference: Fingerprint, policy: CopyPolicy): string[];
}

/**
 * The complete-copy rule over counts, for formats whose parts are tables:
 * every part of the reference is there, none shrunk past the policy, and an
 * empty copy of non-empty data is refused outright.
 */
export function missingByCounts(
  copy: Fingerprint,
  reference: Fingerprint,
  policy: CopyPolicy,
): string[] {
  const lines: string[] = [];
  const total = (f: Fingerprint): number => Object.values(f.counts).reduce((a, b) => a + b, 0);
  if (total(reference) > 0 && total(copy) === 0)
    lines.push(`empty: no rows at all, where the reference holds ${total(reference)}`);
  for (const [part, want] of Object.entries(reference.counts)) {
    const got = copy.counts[part];
    if (got === undefined) {
      lines.push(`${part}: missing (the reference holds ${want} rows)`);
      continue;
    }
    const floor = Math.ceil(want * (1 - policy.maxShrinkPercent / 100));
    if (got < floor)
      lines.push(`${part}: ${got} rows of ${want} (more than ${policy.maxShrinkPercent} % fewer)`);
  }
  return lines;
}
