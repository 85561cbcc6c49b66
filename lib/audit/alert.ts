/**
 * Alerting on failed checks through a command the operator chooses (mail,
 * a pager's CLI, a webhook with curl): the failures arrive on its stdin.
 * A failure nobody acknowledges repeats, with growing pauses, and from the
 * `escalateAfter`-th alert on it also goes to the escalation command and
 * names the escalation contact: incident 002's operator slept through an
 * hourly call that never changed. `baton audit ack` stops the repeats of
 * one failure until the check passes again.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { InvalidInputError } from '../core/errors.ts';
import type { AuditReport } from './audit.ts';
import type { CheckResult } from './check.ts';
import type { AlertConfig } from './config.ts';
import { formatDuration, parseDuration } from './duration.ts';

export interface Acknowledgement {
  at: string;
  by: string;
  note?: string;
}

export interface FailureState {
  failingSince: string;
  /** Alerts sent for this failure. */
  alerts: number;
  lastAlertAt?: string;
  summary: string;
  ack?: Acknowledgement;
}

export interface AlertState {
  version: 1;
  failures: Record<string, FailureState>;
}

export type AlertLevel = 'alert' | 'escalated' | 'resolved';

export interface AlertItem {
  id: string;
  level: AlertLevel;
  /** Which alert of this failure this is (1 = the first). */
  count: number;
  failingSince: string;
  result?: CheckResult;
}

export interface AlertPlan {
  due: AlertItem[];
  /** Failures acknowledged (or not due yet): not sent this time. */
  quiet: Array<{ id: string; why: string }>;
  next: AlertState;
}

export function readAlertState(file: string): AlertState {
  if (!existsSync(file)) return { version: 1, failures: {} };
  try {
    const data = JSON.parse(readFileSync(file, 'utf8')) as AlertState;
    if (data.version === 1 && data.failures && typeof data.failures === 'object') return data;
  } catch {
    // Fall through: a damaged state file must not stop alerts, so start over (and alert again).
  }
  return { version: 1, failures: {} };
}

export function writeAlertState(file: string, state: AlertState): void {
  mkdirSync(dirname(file), { recursive: true });
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
  renameSync(temp, file);
}

/** Pause before the (n+1)-th alert: repeat, doubled after each alert, at most maxRepeat. */
export function repeatDelayMs(alertsSent: number, policy: AlertConfig): number {
  const repeat = parseDuration(policy.repeat)!;
  const max = parseDuration(policy.maxRepeat)!;
  return Math.min(max, repeat * 2 ** Math.max(0, alertsSent - 1));
}

/** Which failures to alert now, which resolved, and the state afterwards. Pure. */
export function planAlerts(
  state: AlertState,
  results: readonly CheckResult[],
  policy: AlertConfig,
  now: Date,
): AlertPlan {
  const next: AlertState = { version: 1, failures: { ...state.failures } };
  const due: AlertItem[] = [];
  const quiet: AlertPlan['quiet'] = [];
  const t = now.getTime();
  for (const r of results) {
    const was = state.failures[r.id];
    if (r.verdict !== 'fail') {
      if (was) {
        delete next.failures[r.id];
        if (was.alerts > 0)
          due.push({
            id: r.id,
            level: 'resolved',
            count: was.alerts,
            failingSince: was.failingSince,
            result: r,
          });
      }
      continue;
    }
    const s: FailureState = was
      ? { ...was, summary: r.summary }
      : { failingSince: r.measuredAt, alerts: 0, summary: r.summary };
    next.failures[r.id] = s;
    if (s.ack) {
      quiet.push({ id: r.id, why: `acknowledged by ${s.ack.by} at ${s.ack.at}` });
      continue;
    }
    const wait = s.alerts === 0 ? 0 : repeatDelayMs(s.alerts, policy);
    const since = s.lastAlertAt ? t - Date.parse(s.lastAlertAt) : Infinity;
    if (since < wait) {
      quiet.push({
        id: r.id,
        why: `alerted ${s.alerts} time${s.alerts === 1 ? '' : 's'}; next repeat in ${formatDuration(wait - since)}`,
      });
      continue;
    }
    s.alerts += 1;
    s.lastAlertAt = now.toISOString();
    due.push({
      id: r.id,
      level: s.alerts >= policy.escalateAfter ? 'escalated' : 'alert',
      count: s.alerts,
      failingSince: s.failingSince,
      result: r,
    });
  }
  return { due, quiet, next };
}

function ordinal(n: number): string {
  const s = ['th', 'st', 'nd', 'rd'];
  const v = n % 100;
  return `${n}${s[(v - 20) % 10] ?? s[v] ?? s[0]}`;
}

/** The text an alert command reads on stdin. */
export function alertMessage(
  report: Pick<AuditReport, 'stack' | 'finishedAt'>,
  items: readonly AlertItem[],
  policy: AlertConfig,
): string {
  const failing = items.filter((i) => i.level !== 'resolved');
  const escalated = items.filter((i) => i.level === 'escalated');
  const lines = [
    `baton audit, stack ${report.stack}, ${report.finishedAt}: ${failing.length} failing check${failing.length === 1 ? '' : 's'}${escalated.length ? `, ${escalated.length} ESCALATED` : ''}`,
  ];
  if (escalated.length && policy.escalationContact)
    lines.push(`Escalated to ${policy.escalationContact}: nobody acknowledged these.`);
  for (const i of items) {
    const r = i.result;
    lines.push('');
    if (i.level === 'resolved') {
      lines.push(`RESOLVED ${i.id}: ${r?.summary ?? ''} (failing since ${i.failingSince})`);
      continue;
    }
    lines.push(
      `${i.level === 'escalated' ? 'ESCALATED FAIL' : 'FAIL'} ${i.id}: ${r?.summary ?? ''}`,
      `  ${ordinal(i.count)} alert; failing since ${i.failingSince}; measured ${r?.measuredAt ?? ''}`,
      ...(r?.evidence ?? []).map((e) => `  - ${e}`),
      ...(r?.remedy ? [`  what to do: ${r.remedy}`] : []),
      `  acknowledge: baton audit ack ${i.id}`,
    );
  }
  return lines.join('\n') + '\n';
}

export interface AlertDelivery {
  command: 'alert' | 'escalate';
  items: number;
  exitCode: number | null;
  error?: string;
}

/** Run an operator's alert command with `text` on stdin; never throws. */
export function runAlertCommand(
  command: string,
  text: string,
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<{ exitCode: number | null; error?: string }> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], {
      stdio: ['pipe', 'ignore', 'pipe'],
      env: { ...process.env, ...env },
    });
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stderr.on('data', (c: Buffer) => {
      if (stderr.length < 4096) stderr += c.toString();
    });
    child.stdin.on('error', () => undefined);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ exitCode: null, error: e.message });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve(
        code === 0
          ? { exitCode: 0 }
          : {
              exitCode: code,
              error: signal
                ? `killed by ${signal}`
                : stderr.trim().split('\n').slice(-2).join(' | ') || `exit ${code}`,
            },
      );
    });
    child.stdin.end(text);
  });
}

export interface AlertOutcome {
  sent: AlertItem[];
  quiet: AlertPlan['quiet'];
  deliveries: AlertDelivery[];
}

/**
 * Alert what is due and save the state. An alert whose command failed is not
 * counted as sent, so the next audit tries again.
 */
export async function alertFailures(
  report: AuditReport,
  policy: AlertConfig,
  stateFile: string,
  now: Date,
): Promise<AlertOutcome> {
  const state = readAlertState(stateFile);
  const plan = planAlerts(state, report.checks, policy, now);
  const deliveries: AlertDelivery[] = [];
  const escalated = plan.due.filter((i) => i.level === 'escalated');
  const env = (items: readonly AlertItem[], level: string): Record<string, string> => ({
    BATON_AUDIT_STACK: report.stack,
    BATON_AUDIT_LEVEL: level,
    BATON_AUDIT_FAILING: String(items.filter((i) => i.level !== 'resolved').length),
    BATON_AUDIT_ESCALATED: String(items.filter((i) => i.level === 'escalated').length),
    BATON_AUDIT_CONTACT: policy.escalationContact ?? '',
  });
  let failedIds = new Set<string>();
  if (plan.due.length && policy.command) {
    const level = escalated.length
      ? 'escalated'
      : plan.due.some((i) => i.level === 'alert')
        ? 'alert'
        : 'resolved';
    const r = await runAlertCommand(
      policy.command,
      alertMessage(report, plan.due, policy),
      env(plan.due, level),
    );
    deliveries.push({ command: 'alert', items: plan.due.length, ...r });
    if (r.exitCode !== 0) failedIds = new Set(plan.due.map((i) => i.id));
  }
  if (escalated.length && policy.escalateCommand) {
    const r = await runAlertCommand(
      policy.escalateCommand,
      alertMessage(report, escalated, policy),
      env(escalated, 'escalated'),
    );
    deliveries.push({ command: 'escalate', items: escalated.length, ...r });
    if (r.exitCode === 0) for (const i of escalated) failedIds.delete(i.id);
  }
  for (const id of failedIds) {
    const before = state.failures[id];
    const after = plan.next.failures[id];
    if (!after) {
      if (before) plan.next.failures[id] = before;
      continue;
    }
    const { lastAlertAt: _unsent, ...rest } = after;
    plan.next.failures[id] = before
      ? {
          ...rest,
          alerts: before.alerts,
          ...(before.lastAlertAt ? { lastAlertAt: before.lastAlertAt } : {}),
        }
      : { ...rest, alerts: 0 };
  }
  writeAlertState(stateFile, plan.next);
  return {
    sent: plan.due.filter((i) => !failedIds.has(i.id)),
    quiet: plan.quiet,
    deliveries,
  };
}

/** Record that a person has seen a failure: its repeats stop until the check passes again. */
export function acknowledge(
  stateFile: string,
  lastReport: AuditReport | undefined,
  id: string,
  ack: Acknowledgement,
): FailureState {
  const state = readAlertState(stateFile);
  let failure = state.failures[id];
  if (!failure) {
    const result = lastReport?.checks.find((c) => c.id === id);
    if (!result || result.verdict !== 'fail') {
      const failing = [
        ...new Set([
          ...Object.keys(state.failures),
          ...(lastReport?.checks.filter((c) => c.verdict === 'fail').map((c) => c.id) ?? []),
        ]),
      ];
      throw new InvalidInputError(
        `${id} is not failing${lastReport ? ` in the last audit (${lastReport.finishedAt})` : ''}: nothing to acknowledge`,
        failing.length
          ? `Failing now: ${failing.join(', ')}.`
          : 'No check is failing; run `baton audit` to look again.',
      );
    }
    failure = { failingSince: result.measuredAt, alerts: 0, summary: result.summary };
  }
  failure = { ...failure, ack };
  state.failures[id] = failure;
  writeAlertState(stateFile, state);
  return failure;
}
