/**
 * How long users' writes were refused: the interval a runbook marks (the
 * step that freezes them, the step after which they are taken again),
 * measured from the journal's times and shown in the report, the run's
 * --json and its last lines.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runsDir } from '../lib/app/paths.ts';
import { buildReport, renderMarkdown } from '../lib/app/report.ts';
import { runDir } from '../lib/app/run-store.ts';
import { readJournal } from '../lib/engine/journal.ts';
import { ROOT, workspace } from './helpers.ts';

const BATON = join(ROOT, 'bin', 'baton.js');
const FROZEN = join(ROOT, 'test', 'fixtures', 'ordered-frozen.ts');

function baton(cwd: string, args: string[]): { status: number | null; stdout: string } {
  const r = spawnSync(process.execPath, [BATON, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, BATON_HOME: undefined },
  });
  return { status: r.status, stdout: r.stdout };
}

describe('the frozen interval', () => {
  it('runs from the first mutation of the freezing step to the end of the step that ends it', () => {
    const ws = workspace(['a', 'b']);
    const r = baton(ws.cwd, [
      'run',
      FROZEN,
      '--stack',
      'nodes',
      '--yes',
      '--json',
      '--param',
      `dir=${ws.data}`,
    ]);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as {
      runId: string;
      frozen: {
        from: string;
        until: string;
        ms: number;
        endedBy: string;
        steps: Array<{ step: string; ms: number }>;
      };
    };
    expect(out.frozen).toMatchObject({ endedBy: 'step' });
    expect(out.frozen.steps.map((s) => s.step)).toEqual(['s1', 's2']);
    // Measured from the journal itself: the first intent of s1 to the end of s2.
    const records = readJournal(runDir(out.runId, ws.cwd)).records;
    const from = records.find((x) => x.event.kind === 'intent' && x.event.step === 's1')!;
    const until = records.find((x) => x.event.kind === 'step-end' && x.event.step === 's2')!;
    expect(out.frozen.from).toBe(from.ts);
    expect(out.frozen.until).toBe(until.ts);
    expect(out.frozen.ms).toBe(Date.parse(until.ts) - Date.parse(from.ts));
    expect(out.frozen.ms).toBeGreaterThanOrEqual(out.frozen.steps[1]!.ms);
    // s3 runs after writes are taken again: not in the interval.
    expect(
      Date.parse(records.find((x) => x.event.kind === 'intent' && x.event.step === 's3')!.ts),
    ).toBeGreaterThanOrEqual(Date.parse(until.ts));
    const text = renderMarkdown(buildReport(readJournal(runDir(out.runId, ws.cwd))));
    expect(text).toMatch(
      /- \*\*Writes frozen:\*\* [\d.]+ (ms|s), .* \(writable again\): s1 [\d.]+ (ms|s), s2 [\d.]+ (ms|s)/,
    );
  });

  it('ends when a rollback undoes the freeze, and the run says how long it was', () => {
    const ws = workspace(['a']);
    const r = baton(ws.cwd, [
      'run',
      FROZEN,
      '--stack',
      'nodes',
      '--yes',
      '--param',
      `dir=${ws.data}`,
      '--param',
      'failAt=s2:a',
    ]);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^Writes frozen: [\d.]+ s$/m);
    const [runId] = readdirSync(runsDir(ws.cwd));
    const report = buildReport(readJournal(runDir(runId!, ws.cwd)));
    expect(report.frozen).toMatchObject({ endedBy: 'rollback' });
    const undone = readJournal(runDir(runId!, ws.cwd)).records.find(
      (x) => x.event.kind === 'undo-outcome' && x.event.step === 's1',
    )!;
    expect(report.frozen!.until).toBe(undone.ts);
  });

  it('is absent where the runbook marks no freeze', () => {
    const ws = workspace(['a']);
    const r = baton(ws.cwd, [
      'run',
      join(ROOT, 'test', 'fixtures', 'ordered.ts'),
      '--stack',
      'nodes',
      '--yes',
      '--json',
      '--param',
      `dir=${ws.data}`,
    ]);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).not.toHaveProperty('frozen');
  });
});
