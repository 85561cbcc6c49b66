/**
 * The report of a run, rendered from its verified journal in the style of a
 * post-mortem timeline: UTC times, step, host, duration, who, outcome.
 */
import type { JournalRecord, RunEvent } from '../core/events.ts';
import type { JournalRead } from '../engine/journal.ts';

export interface TimelineEntry {
  time: string;
  step: string;
  host: string;
  durationMs?: number;
  outcome: string;
  detail?: string;
}

export interface Report {
  runId: string;
  runbook: string;
  stack: string;
  mode: string;
  operator: string;
  resumedBy: string[];
  approvedBy: string[];
  reconfirmedBy: string[];
  /** Approvals and reconfirmations that were refused, with why. */
  refused: Array<{ source: string; reason: string }>;
  hold?: { seconds: number; from: string; until: string };
  policy?: string;
  emergency: boolean;
  params: Record<string, unknown>;
  planHash?: string;
  inventoryHash: string;
  codeVersion: string;
  startedAt: string;
  endedAt?: string;
  outcome: string;
  /** The run found every step already done or skipped, and changed nothing. */
  nothingToDo?: boolean;
  state?: string;
  next?: string;
  error?: string;
  preflight: { passed: number; failed: number };
  /** How long users' writes were refused, where the runbook marks it (steps with `frozen`). */
  frozen?: FrozenInterval;
  timeline: TimelineEntry[];
  journal: { records: number; head: string; verified: true; headLagged: boolean };
}

export interface FrozenInterval {
  /** The first mutation of the step that freezes writes. */
  from: string;
  /** When writes were taken again: the step that ends the freeze done, the freeze undone, or the run ended. */
  until?: string;
  ms?: number;
  /** What ended it; absent while the run has not ended. */
  endedBy?: 'step' | 'rollback' | 'run-end';
  /** The time each step inside it took, in order (the one that ends it included). */
  steps: Array<{ step: string; ms: number }>;
}

/** The frozen interval of a run, from the steps its plan marks and the journal's times. */
function frozenInterval(records: readonly JournalRecord[]): FrozenInterval | undefined {
  const planned = records.find((r) => r.event.kind === 'planned')?.event;
  if (planned?.kind !== 'planned') return undefined;
  const begins = planned.plan.steps.find((s) => s.frozen === 'begins' && !s.skipped)?.id;
  const ends = planned.plan.steps.find((s) => s.frozen === 'ends' && !s.skipped)?.id;
  if (!begins) return undefined;
  const from = records.find((r) => r.event.kind === 'intent' && r.event.step === begins);
  if (!from) return undefined;
  const t = (r: JournalRecord): number => Date.parse(r.ts);
  let until: JournalRecord | undefined;
  let endedBy: FrozenInterval['endedBy'];
  const open = new Map<string, JournalRecord>();
  const steps: FrozenInterval['steps'] = [];
  for (const r of records.slice(records.indexOf(from))) {
    const e = r.event;
    if (e.kind === 'step-start') open.set(e.step, r);
    if (e.kind === 'step-end' && e.ok) {
      const began = open.get(e.step);
      steps.push({ step: e.step, ms: t(r) - t(began ?? from) });
      if (e.step === ends) {
        until = r;
        endedBy = 'step';
        break;
      }
    }
    if (e.kind === 'undo-outcome' && e.step === begins) {
      until = r;
      endedBy = 'rollback';
      break;
    }
    if (e.kind === 'run-end' && e.outcome !== 'needs-human') {
      until = r;
      endedBy = 'run-end';
      break;
    }
  }
  return {
    from: from.ts,
    ...(until ? { until: until.ts, ms: t(until) - t(from), endedBy } : {}),
    steps,
  };
}

function utc(ts: string): string {
  return ts.replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

export function buildReport(read: JournalRead): Report {
  const records = read.records;
  const first = records[0];
  if (!first || first.event.kind !== 'run-start')
    throw new Error('journal does not begin with run-start');
  const start = first.event;
  const report: Report = {
    runId: start.runId,
    runbook: start.runbook,
    stack: start.stack,
    mode: start.mode,
    operator: start.operator,
    resumedBy: [],
    approvedBy: [],
    reconfirmedBy: [],
    refused: [],
    emergency: false,
    params: start.params,
    inventoryHash: start.inventoryHash,
    codeVersion: start.codeVersion,
    startedAt: first.ts,
    outcome: 'interrupted (no run-end recorded; `baton resume` continues it)',
    preflight: { passed: 0, failed: 0 },
    timeline: [],
    journal: {
      records: records.length,
      head: read.head.hash,
      verified: true,
      headLagged: read.headLagged,
    },
  };
  const open = new Map<string, JournalRecord>();
  const push = (r: JournalRecord, entry: Omit<TimelineEntry, 'time'>): void => {
    report.timeline.push({ time: r.ts, ...entry });
  };
  for (const r of records) {
    const e: RunEvent = r.event;
    switch (e.kind) {
      case 'planned':
        report.planHash = e.planHash;
        break;
      case 'preflight': {
        const failed = e.conditions.filter((c) => !c.ok);
        report.preflight = { passed: e.conditions.length - failed.length, failed: failed.length };
        for (const c of failed) {
          push(r, {
            step: c.step,
            host: c.host,
            outcome: 'precondition failed',
            detail: `${c.name}: expected ${c.expected}, found ${c.found}`,
          });
        }
        break;
      }
      case 'intent':
        open.set(`${e.step}\u0000${e.host}`, r);
        break;
      case 'outcome': {
        const began = open.get(`${e.step}\u0000${e.host}`);
        push(began ?? r, {
          step: e.step,
          host: e.host,
          durationMs: began ? Date.parse(r.ts) - Date.parse(began.ts) : e.durationMs,
          outcome: e.ok ? (e.recovered ? 'verified after restart' : 'ok') : 'failed',
          ...(e.error ? { detail: e.error } : {}),
        });
        break;
      }
      case 'retry':
        push(r, { step: e.step, host: e.host, outcome: `retry ${e.attempt}`, detail: e.error });
        break;
      case 'rollback-start':
        push(r, { step: '-', host: '-', outcome: 'rollback started', detail: e.reason });
        break;
      case 'undo-intent':
        open.set(`undo\u0000${e.step}\u0000${e.host}`, r);
        break;
      case 'undo-outcome': {
        const began = open.get(`undo\u0000${e.step}\u0000${e.host}`);
        push(began ?? r, {
          step: e.step,
          host: e.host,
          durationMs: e.durationMs,
          outcome: e.ok ? 'undone' : 'undo failed',
          ...(e.error ? { detail: e.error } : {}),
        });
        break;
      }
      case 'resume':
        report.resumedBy.push(e.operator);
        push(r, { step: '-', host: '-', outcome: `resumed by ${e.operator}` });
        break;
      case 'run-end':
        report.endedAt = r.ts;
        report.outcome = e.outcome;
        if (e.nothingToDo) report.nothingToDo = true;
        report.state = e.state;
        if (e.next) report.next = e.next;
        if (e.error) report.error = e.error;
        break;
      case 'policy':
        report.policy = `${e.approvers} approver(s)${e.roles.length ? ` with role ${e.roles.join(' or ')}` : ''}, hold ${e.holdSeconds} s${e.reconfirm ? ', reconfirmation' : ''} (${e.source})`;
        break;
      case 'approval': {
        const who = `${e.principal} (${e.roles.join(', ')}; ${e.keyFingerprint})`;
        if (e.purpose === 'approve') report.approvedBy.push(who);
        else report.reconfirmedBy.push(who);
        push(r, {
          step: '-',
          host: '-',
          outcome:
            e.purpose === 'approve'
              ? `approved by ${e.principal}`
              : `reconfirmed by ${e.principal}`,
          ...(e.emergency ? { detail: 'as an emergency' } : {}),
        });
        break;
      }
      case 'approval-refused':
        report.refused.push({ source: e.source, reason: e.reason });
        push(r, { step: '-', host: '-', outcome: 'approval refused', detail: e.reason });
        break;
      case 'hold':
        report.hold = { seconds: e.seconds, from: r.ts, until: e.until };
        push(r, { step: '-', host: '-', outcome: `hold for ${e.seconds} s` });
        break;
      case 'hold-end':
        push(r, { step: '-', host: '-', outcome: 'hold over, reconfirmation asked' });
        break;
      case 'cleared':
        report.emergency = e.emergency;
        push(r, {
          step: '-',
          host: '-',
          outcome: e.emergency ? 'cleared to run: EMERGENCY' : 'cleared to run',
          ...(e.countersignatureDue
            ? { detail: 'approved by its operator alone: a countersignature is due' }
            : {}),
        });
        break;
      case 'run-start':
      case 'command':
      case 'step-start':
      case 'step-end':
      case 'log':
      case 'note':
      case 'unlock':
        break;
      case 'commit':
        push(r, { step: e.step, host: e.host, outcome: 'point of no return' });
        break;
      case 'forward':
        push(r, {
          step: e.step,
          host: '-',
          outcome: 'past the point of no return: forward only',
          detail: e.reason,
        });
        break;
    }
  }
  const frozen = frozenInterval(records);
  if (frozen) report.frozen = frozen;
  return report;
}

function seconds(ms: number | undefined): string {
  if (ms === undefined) return '';
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

export function renderMarkdown(report: Report): string {
  const lines: string[] = [];
  lines.push(`# Run ${report.runId}: ${report.runbook} on ${report.stack}`, '');
  lines.push('## Summary', '');
  lines.push(`- **Outcome:** ${report.outcome}${report.nothingToDo ? ' (nothing to do)' : ''}`);
  if (report.state) lines.push(`- **Hosts left in state:** ${report.state}`);
  if (report.error) lines.push(`- **Why:** ${report.error.replaceAll('\n', ' ')}`);
  if (report.next) lines.push(`- **Next action:** ${report.next}`);
  lines.push(`- **Started:** ${utc(report.startedAt)}`);
  if (report.endedAt) lines.push(`- **Ended:** ${utc(report.endedAt)}`);
  lines.push(
    `- **Run by:** ${report.operator}${report.resumedBy.length ? `; resumed by ${report.resumedBy.join(', ')}` : ''}`,
  );
  lines.push(
    `- **Approved by:** ${report.approvedBy.length ? report.approvedBy.join(', ') : 'no approvals recorded'}`,
  );
  if (report.reconfirmedBy.length) {
    lines.push(`- **Reconfirmed by:** ${report.reconfirmedBy.join(', ')}`);
  }
  if (report.hold) {
    lines.push(
      `- **Hold:** ${report.hold.seconds} s, ${utc(report.hold.from)} to ${utc(report.hold.until)}`,
    );
  }
  if (report.policy) lines.push(`- **Policy:** ${report.policy}`);
  for (const r of report.refused) lines.push(`- **Refused:** ${r.source}: ${r.reason}`);
  lines.push(`- **Emergency:** ${report.emergency ? 'yes' : 'no'}`);
  lines.push(`- **Mode:** ${report.mode}`);
  const params = Object.entries(report.params).filter(([, v]) => v !== undefined);
  if (params.length)
    lines.push(
      `- **Parameters:** ${params.map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(', ')}`,
    );
  lines.push(
    `- **Preflight:** ${report.preflight.passed} checks passed, ${report.preflight.failed} failed`,
  );
  if (report.frozen) {
    const f = report.frozen;
    const by = {
      step: 'writable again',
      rollback: 'the freeze undone',
      'run-end': 'the run ended',
    };
    lines.push(
      f.ms === undefined
        ? `- **Writes frozen:** since ${utc(f.from)}, not taken again yet`
        : `- **Writes frozen:** ${seconds(f.ms)}, ${utc(f.from)} to ${utc(f.until!)} (${by[f.endedBy!]}): ${f.steps.map((s) => `${s.step} ${seconds(s.ms)}`).join(', ')}`,
    );
  }
  if (report.planHash) lines.push(`- **Plan:** ${report.planHash}`);
  lines.push(`- **Inventory:** ${report.inventoryHash}`);
  lines.push(`- **Runbook code:** ${report.codeVersion}`);
  lines.push(
    `- **Journal:** ${report.journal.records} records, hash chain verified, head ${report.journal.head}` +
      (report.journal.headLagged
        ? ' (the controller stopped between writing the last record and its head)'
        : ''),
  );
  lines.push('', '## Timeline (UTC)', '');
  lines.push('| time | step | host | duration | outcome | detail |', '|---|---|---|---|---|---|');
  for (const t of report.timeline) {
    lines.push(
      `| ${t.time.slice(11, 19)} | ${cell(t.step)} | ${cell(t.host)} | ${seconds(t.durationMs)} | ${cell(t.outcome)} | ${cell(t.detail ?? '')} |`,
    );
  }
  return lines.join('\n') + '\n';
}
