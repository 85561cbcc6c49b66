import { describe, expect, it } from 'vitest';
import { plainDisplay, taskListDisplay } from '../lib/display.ts';

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
