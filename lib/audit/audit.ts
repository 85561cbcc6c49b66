/**
 * One audit: the checks a config asks for, run against a stack's hosts over
 * their transports, with secrets loaded first so that nothing leaves
 * unredacted, and the results kept for `audit ack` and the status page.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Inventory } from '../core/inventory.ts';
import { Redactor } from '../core/redact.ts';
import { defaultTransports, type Transports } from '../transports/index.ts';
import { checkContext, runChecks, worst, type CheckResult, type Verdict } from './check.ts';
import { auditChecks } from './checks.ts';
import type { AuditConfig } from './config.ts';
import { fileHistory, type DiskHistory } from './history.ts';
import { readPassphrase } from './passphrase.ts';
import type { Project } from '../core/project.ts';
import { auditPaths, type AuditPaths } from './state.ts';

export interface AuditReport {
  stack: string;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  /** The worst verdict of all checks. */
  verdict: Verdict;
  counts: Record<Verdict, number>;
  checks: CheckResult[];
}

export interface AuditOptions {
  config: AuditConfig;
  inventory: Inventory;
  /** Default: the controller's shell and ssh with pinned keys. */
  transports?: Transports;
  now?: () => Date;
  /** Where state is kept (`last.json`: the newest result of every check). */
  paths?: AuditPaths;
  history?: DiskHistory;
  /** Run only checks whose id or kind starts with one of these. */
  only?: readonly string[];
  concurrency?: number;
  onResult?: (result: CheckResult) => void;
  /** Further values to keep out of every output. */
  redactor?: Redactor;
  /** The project, whose run store has the runs that owe countersignatures and whose policy checks them. */
  project?: Project;
}

/** The redactor for a config: every passphrase and listed secret that can be read now. */
export function configRedactor(config: AuditConfig, into = new Redactor()): Redactor {
  for (const d of config.encryptedDevices) {
    const p = readPassphrase(d.passphrase);
    if ('value' in p) into.add(`passphrase:${d.name}`, p.value);
  }
  config.secrets.forEach((ref, i) => {
    const p = readPassphrase(ref);
    if ('value' in p) into.add(`secret${i + 1}`, p.value);
  });
  return into;
}

/** The last result of every check, so a partial run (`--only`) does not forget the others. */
function keepLast(file: string, report: AuditReport): void {
  let previous: AuditReport | undefined;
  if (existsSync(file)) {
    try {
      previous = JSON.parse(readFileSync(file, 'utf8')) as AuditReport;
    } catch {
      previous = undefined;
    }
  }
  const fresh = new Set(report.checks.map((c) => c.id));
  const checks = [...(previous?.checks ?? []).filter((c) => !fresh.has(c.id)), ...report.checks];
  const counts: Record<Verdict, number> = { pass: 0, warn: 0, fail: 0 };
  for (const c of checks) counts[c.verdict]++;
  const merged: AuditReport = {
    ...report,
    verdict: worst(checks.map((c) => c.verdict)),
    counts,
    checks,
  };
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(merged, null, 2) + '\n', { mode: 0o600 });
}

export async function runAudit(options: AuditOptions): Promise<AuditReport> {
  const now = options.now ?? ((): Date => new Date());
  const paths = options.paths ?? auditPaths();
  const redactor = configRedactor(options.config, options.redactor);
  const owned = options.transports ? undefined : defaultTransports();
  const transports = options.transports ?? owned!;
  const started = now();
  const t0 = performance.now();
  try {
    let checks = auditChecks(options.config, options.inventory, options.project);
    if (options.only?.length) {
      checks = checks.filter((c) =>
        options.only!.some((o) => c.id === o || c.id.startsWith(o) || c.kind === o),
      );
    }
    const ctx = checkContext({
      inventory: options.inventory,
      transportFor: (h) => transports.transportFor(h),
      now,
      history: options.history ?? fileHistory(paths.history),
      redactor,
    });
    const results = await runChecks(checks, ctx, {
      ...(options.concurrency ? { concurrency: options.concurrency } : {}),
      ...(options.onResult ? { onResult: options.onResult } : {}),
    });
    const counts: Record<Verdict, number> = { pass: 0, warn: 0, fail: 0 };
    for (const r of results) counts[r.verdict]++;
    const report: AuditReport = redactor.redactDeep({
      stack: options.inventory.stack,
      startedAt: started.toISOString(),
      finishedAt: now().toISOString(),
      durationMs: Math.round(performance.now() - t0),
      verdict: worst(results.map((r) => r.verdict)),
      counts,
      checks: results,
    });
    if (results.length > 0) keepLast(paths.last, report);
    return report;
  } finally {
    await owned?.close();
  }
}
