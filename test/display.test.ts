import { describe, expect, it } from 'vitest';
import { canRedraw, fitRows, plainDisplay, taskListDisplay } from '../lib/app/display.ts';
import { onTerminal } from './support/terminal.ts';
import { ORDERED, workspace } from './helpers.ts';

describe('display', () => {
  it('draws a task list in place on a terminal: step, host, state, elapsed', () => {
    let t = 0;
    let screen = '';
    const stream = { write: (s: string) => ((screen += s), true) } as unknown as NodeJS.WriteStream;
    const d = taskListDisplay(stream, () => t);
    d.event({ kind: 'intent', step: 'stage', host: 'alpha', attempt: 1, commands: [] });
    t = 1500;
    d.event({ kind: 'outcome', step: 'stage', host: 'alpha', ok: true, durationMs: 1500 });
    d.event({ kind: 'intent', step: 'switch', host: 'alpha', attempt: 1, commands: [] });
    t = 4000;
    d.close();
    const last = screen.split('\x1b[J').at(-1)!;
    expect(last).toBe(
      '  ✓ stage     alpha   ok             1.5s\n  … switch    alpha   running        2.5s\n',
    );
    expect(screen).toContain('\x1b[1A\x1b[J');
  });

  it('is redrawn only on a terminal that is not dumb, and not where NO_COLOR is set', () => {
    expect(canRedraw({ TERM: 'xterm-256color' })).toBe(true);
    expect(canRedraw({ TERM: 'dumb' })).toBe(false);
    expect(canRedraw({ TERM: 'xterm', NO_COLOR: '1' })).toBe(false);
    // no-color.org: an empty NO_COLOR is as if unset.
    expect(canRedraw({ TERM: 'xterm', NO_COLOR: '' })).toBe(true);
  });

  it('prints plain lines elsewhere', () => {
    const lines: string[] = [];
    const d = plainDisplay(
      (l) => lines.push(l),
      () => new Date('2026-11-21T06:01:02Z'),
    );
    d.event({
      kind: 'undo-outcome',
      step: 'switch',
      host: 'beta',
      ok: false,
      durationMs: 3,
      error: 'exit 1',
    });
    d.event({
      kind: 'command',
      step: 'x',
      host: 'y',
      phase: 'apply',
      result: { command: 'true', exitCode: 0, signal: null, durationMs: 1, stdout: '', stderr: '' },
    });
    expect(lines).toEqual(['06:01:02 switch beta: UNDO FAILED: exit 1']);
  });
});

describe('the task list fits the terminal', () => {
  const row = (name: string, until?: number) => ({
    name,
    ...(until === undefined ? {} : { until }),
  });

  it('keeps every row while they fit, one line short of the height', () => {
    const rows = [row('a', 1), row('b', 2), row('c')];
    expect(fitRows(rows, 4)).toEqual({ shown: rows, hidden: 0 });
    expect(fitRows(rows, undefined)).toEqual({ shown: rows, hidden: 0 });
  });

  it('when taller, shows the running rows and the latest finished ones, in order, and counts the rest', () => {
    const rows = [row('a', 1), row('b', 5), row('c'), row('d', 3), row('e', 4), row('f')];
    expect(fitRows(rows, 5)).toEqual({ shown: [row('b', 5), row('c'), row('f')], hidden: 3 });
  });

  it('redraws no more lines than the terminal has, with a "… N more" line and lines cut to its width', () => {
    let screen = '';
    const stream = {
      write: (s: string) => ((screen += s), true),
      rows: 5,
      columns: 40,
    } as unknown as NodeJS.WriteStream;
    const d = taskListDisplay(stream, () => 0);
    for (const host of ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta']) {
      d.event({ kind: 'intent', step: 'stage', host, attempt: 1, commands: [] });
      d.event({ kind: 'outcome', step: 'stage', host, ok: true, durationMs: 1 });
    }
    d.event({
      kind: 'intent',
      step: 'switch-the-live-link',
      host: 'alpha',
      attempt: 1,
      commands: [],
    });
    d.close();
    for (const [, n] of screen.matchAll(/\x1b\[(\d+)A/g)) expect(Number(n)).toBeLessThanOrEqual(4);
    const last = screen.split('\x1b[J').at(-1)!.split('\n').filter(Boolean);
    expect(last).toHaveLength(4);
    expect(last[0]).toBe('  … 4 more');
    expect(last.at(-1)).toMatch(/^ {2}… switch-the-live-link {2}alpha .*…$/);
    for (const line of last) expect(line.length).toBeLessThan(40);
  });
});

describe('on a real terminal', () => {
  const run = (env: Record<string, string | undefined>, rows = 24) => {
    const ws = workspace(['a', 'b', 'c', 'd']);
    return onTerminal(['run', ORDERED, '--stack', 'nodes', '--yes', '--param', `dir=${ws.data}`], {
      cwd: ws.cwd,
      env: { NO_COLOR: undefined, ...env },
      rows,
    });
  };

  it('redraws the task list in place, never taller than the terminal', async () => {
    const r = await run({ TERM: 'xterm-256color' }, 6);
    expect(r.status).toBe(0);
    const ups = [...r.screen.matchAll(/\x1b\[(\d+)A/g)].map((m) => Number(m[1]));
    expect(ups.length).toBeGreaterThan(0);
    expect(Math.max(...ups)).toBeLessThanOrEqual(5);
    expect(r.screen).toMatch(/… \d+ more/);
  });

  it.each([
    ['TERM=dumb', { TERM: 'dumb' }],
    ['NO_COLOR', { TERM: 'xterm-256color', NO_COLOR: '1' }],
  ])('with %s prints plain appended lines, no escape sequences', async (_what, env) => {
    const r = await run(env);
    expect(r.status).toBe(0);
    expect(r.screen).not.toContain('\x1b');
    expect(r.screen).toMatch(/^\d\d:\d\d:\d\d s3 d: ok \(\d+ ms\)\r$/m);
  });
});
