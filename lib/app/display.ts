/**
 * The console view of a run, made from the same events as the journal: a
 * live task list on a terminal that can be redrawn, plain lines otherwise.
 */
import type { EventFormatters, RunEvent } from '../core/events.ts';
import { formatEvent } from '../core/events.ts';

export interface Display {
  event(event: RunEvent): void;
  close(): void;
}

function hhmmss(date: Date): string {
  return date.toISOString().slice(11, 19);
}

const lineFor: EventFormatters<string | undefined> = {
  'run-start': (e) => `run ${e.runId}: ${e.runbook} on stack ${e.stack} by ${e.operator}`,
  planned: (e) =>
    `plan ${e.planHash.slice(0, 12)}: ${e.plan.nothingToDo ? 'nothing to do' : `${e.plan.steps.filter((s) => !s.skipped).length} steps`}`,
  preflight: (e) => {
    const failed = e.conditions.filter((c) => !c.ok).length;
    return `preflight: ${e.conditions.length - failed} of ${e.conditions.length} checks passed`;
  },
  policy: (e) =>
    e.approvers === 0
      ? `policy (${e.source}): no approvals needed`
      : `policy (${e.source}): ${e.approvers} approver(s)${e.emergency ? ' (emergency)' : ''}, hold ${e.holdSeconds} s${e.reconfirm ? ', then reconfirm' : ''}`,
  approval: (e) =>
    `${e.purpose === 'approve' ? 'approved' : 'reconfirmed'} by ${e.principal} (${e.roles.join(', ')}; key ${e.keyFingerprint})${e.emergency ? ' as an EMERGENCY' : ''}`,
  'approval-refused': (e) => `refused ${e.source}: ${e.reason}`,
  hold: (e) => `holding for ${e.seconds} s, until ${e.until.slice(11, 19)} UTC`,
  'hold-end': (e) =>
    `hold over; reconfirm with: baton approve PLAN --reconfirm ${e.token} --key KEY (needed from ${e.reconfirmBy.join(', ')})`,
  cleared: (e) =>
    e.approvers.length
      ? `cleared to run${e.emergency ? ' as an EMERGENCY' : ''}: approved by ${e.approvers.join(', ')}${e.reconfirmedBy.length ? `, reconfirmed by ${e.reconfirmedBy.join(', ')}` : ''}${e.countersignatureDue ? ' (alone: a second approver must countersign the run)' : ''}`
      : 'cleared to run',
  'step-start': (e) => `${e.step}: starting on ${e.hosts.join(', ')}`,
  intent: (e) => `${e.step} ${e.host}: running${e.attempt > 1 ? ` (attempt ${e.attempt})` : ''}`,
  command: () => undefined,
  retry: (e) => `${e.step} ${e.host}: transient failure, retry in ${e.delayMs} ms: ${e.error}`,
  outcome: (e) =>
    `${e.step} ${e.host}: ${e.ok ? (e.recovered ? 'verified after restart' : 'ok') : `FAILED: ${e.error ?? ''}`} (${e.durationMs} ms)`,
  'step-end': () => undefined,
  note: (e) =>
    `${e.step} ${e.host}: found ${Object.entries(e.data)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(' ')}`,
  commit: (e) => `${e.step} ${e.host}: the point of no return: from here the run only goes forward`,
  forward: (e) => `past the point of no return (${e.step}): going forward only: ${e.reason}`,
  'rollback-start': (e) => `rolling back: ${e.reason}`,
  'undo-intent': (e) => `${e.step} ${e.host}: undoing`,
  'undo-outcome': (e) =>
    `${e.step} ${e.host}: ${e.ok ? 'undone' : `UNDO FAILED: ${e.error ?? ''}`}`,
  resume: (e) =>
    `resumed by ${e.operator}${e.interrupted.length ? `; interrupted: ${e.interrupted.map((i) => `${i.step} on ${i.host}`).join(', ')}` : ''}`,
  unlock: (e) =>
    `lock ${e.lockId} of stack ${e.stack} broken by ${e.by}: removed on ${e.removed.join(', ') || 'no place'}${e.unreachable.length ? `; unreachable: ${e.unreachable.join(', ')}` : ''}`,
  log: (e) => `${e.step ?? ''} ${e.host ?? ''}: ${e.message}`.trim(),
  'run-end': (e) =>
    `run ended: ${e.nothingToDo ? 'nothing to do' : e.outcome}; hosts are ${e.state}`,
};

/**
 * Whether a terminal may be redrawn in place: not with TERM=dumb, which has no
 * cursor movement, nor with NO_COLOR set (https://no-color.org), whose users
 * ask for plain text; both get plain appended lines.
 */
export function canRedraw(env: NodeJS.ProcessEnv): boolean {
  return env.TERM !== 'dumb' && !env.NO_COLOR;
}

export function describeEvent(event: RunEvent): string | undefined {
  return formatEvent(event, lineFor);
}

export function plainDisplay(
  write: (line: string) => void,
  now: () => Date = () => new Date(),
): Display {
  return {
    event(event) {
      const line = describeEvent(event);
      if (line) write(`${hhmmss(now())} ${line}`);
    },
    close() {},
  };
}

type RowState =
  'running' | 'ok' | 'FAILED' | 'retrying' | 'undoing' | 'undone' | 'UNDO FAILED' | 'verified';

interface Row {
  step: string;
  host: string;
  state: RowState;
  since: number;
  until?: number;
}

const MARK: Record<RowState, string> = {
  running: '…',
  retrying: '↻',
  ok: '✓',
  verified: '✓',
  FAILED: '✗',
  undoing: '↶',
  undone: '↶',
  'UNDO FAILED': '✗',
};

/**
 * The rows that fit in a terminal `height` lines tall: all of them, or every
 * running row and the latest finished ones, with the count of the rest. One
 * line stays free for the cursor: a block taller than the screen would scroll
 * its top away, out of reach of the redraw.
 */
export function fitRows<R extends { until?: number }>(
  rows: R[],
  height: number | undefined,
): { shown: R[]; hidden: number } {
  const room = height ? Math.max(2, height - 1) : Infinity;
  if (rows.length <= room) return { shown: rows, hidden: 0 };
  const budget = room - 1;
  const keep = new Set(rows.filter((r) => r.until === undefined).slice(-budget));
  const latest = rows
    .filter((r) => r.until !== undefined)
    .sort((a, b) => b.until! - a.until!)
    .slice(0, budget - keep.size);
  for (const r of latest) keep.add(r);
  return { shown: rows.filter((r) => keep.has(r)), hidden: rows.length - keep.size };
}

/** A task list redrawn in place: step, host, state, elapsed; as tall as the terminal allows. */
export function taskListDisplay(
  stream: NodeJS.WriteStream,
  now: () => number = () => Date.now(),
): Display {
  const rows = new Map<string, Row>();
  const notes: string[] = [];
  let drawn = 0;
  const set = (step: string, host: string, state: RowState, done: boolean): void => {
    const key = `${step}\u0000${host}`;
    const row = rows.get(key);
    const t = now();
    if (!row || state === 'running' || state === 'undoing')
      rows.set(key, { step, host, state, since: t });
    else rows.set(key, { ...row, state, ...(done ? { until: t } : {}) });
  };
  const draw = (): void => {
    const width = Math.max(8, ...[...rows.values()].map((r) => r.step.length));
    const hostWidth = Math.max(6, ...[...rows.values()].map((r) => r.host.length));
    const lines = [...notes.splice(0)];
    const { shown, hidden } = fitRows([...rows.values()], stream.rows);
    const block = shown.map((r) => {
      const elapsed = (((r.until ?? now()) - r.since) / 1000).toFixed(1);
      return `  ${MARK[r.state]} ${r.step.padEnd(width)}  ${r.host.padEnd(hostWidth)}  ${r.state.padEnd(11)} ${elapsed.padStart(6)}s`;
    });
    if (hidden > 0) block.unshift(`  … ${hidden} more`);
    // A wrapped line takes two rows, and the redraw would move up one too few.
    const columns = stream.columns;
    if (columns) {
      for (const [i, line] of block.entries())
        if (line.length >= columns) block[i] = line.slice(0, columns - 2) + '…';
    }
    let out = drawn > 0 ? `\x1b[${drawn}A\x1b[J` : '';
    out += [...lines, ...block].map((l) => l + '\n').join('');
    stream.write(out);
    drawn = block.length;
  };
  const timer = setInterval(draw, 200);
  timer.unref();
  return {
    event(e) {
      switch (e.kind) {
        case 'intent':
          set(e.step, e.host, 'running', false);
          break;
        case 'retry':
          set(e.step, e.host, 'retrying', false);
          break;
        case 'outcome':
          set(e.step, e.host, e.ok ? (e.recovered ? 'verified' : 'ok') : 'FAILED', true);
          break;
        case 'undo-intent':
          set(e.step, e.host, 'undoing', false);
          break;
        case 'undo-outcome':
          set(e.step, e.host, e.ok ? 'undone' : 'UNDO FAILED', true);
          break;
        case 'command':
        case 'step-start':
        case 'step-end':
          break;
        default: {
          const line = describeEvent(e);
          if (line) notes.push(line);
        }
      }
      draw();
    },
    close() {
      clearInterval(timer);
      draw();
    },
  };
}
