/** The audit for people: a table of verdicts, then the evidence and remedy of each warning and failure. */
import type { AuditReport } from './audit.ts';
import type { CheckResult, Verdict } from './check.ts';
import { formatDuration } from './duration.ts';

const LABEL: Record<Verdict, string> = { pass: 'pass', warn: 'WARN', fail: 'FAIL' };

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + ' '.repeat(width - text.length);
}

export function verdictLine(report: AuditReport): string {
  const { pass, warn, fail } = report.counts;
  return `${report.checks.length} checks: ${pass} pass, ${warn} warn, ${fail} fail`;
}

/** The table, and below it the details of every check that did not pass (of all with `verbose`). */
export function renderTable(report: AuditReport, options: { verbose?: boolean } = {}): string {
  const lines: string[] = [
    `baton audit of stack ${report.stack} at ${report.finishedAt.slice(0, 19)}Z: ${verdictLine(report)} (${formatDuration(report.durationMs)})`,
    '',
  ];
  const idWidth = Math.min(44, Math.max(5, ...report.checks.map((c) => c.id.length)));
  lines.push(`  ${pad('', 4)}  ${pad('CHECK', idWidth)}  FOUND`);
  for (const c of report.checks) {
    lines.push(`  ${pad(LABEL[c.verdict], 4)}  ${pad(c.id, idWidth)}  ${c.summary}`);
  }
  const detailed = report.checks.filter((c) => options.verbose || c.verdict !== 'pass');
  for (const c of detailed) lines.push('', ...details(c));
  lines.push(
    '',
    report.counts.fail > 0
      ? `The audit FAILED: ${report.counts.fail} check${report.counts.fail === 1 ? '' : 's'} failed.`
      : report.counts.warn > 0
        ? 'The audit passed with warnings.'
        : 'The audit passed.',
  );
  return lines.join('\n');
}

function details(c: CheckResult): string[] {
  return [
    `${LABEL[c.verdict]} ${c.id}: ${c.title}`,
    `  on ${c.targets.join(', ')}, measured ${c.measuredAt} in ${c.durationMs} ms (post-mortem ${c.incident})`,
    ...c.evidence.map((e) => `  - ${e}`),
    ...(c.remedy ? [`  what to do: ${c.remedy}`] : []),
  ];
}
