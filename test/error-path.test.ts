/**
 * One error path: the same failure, met by `baton plan` or by `baton run`
 * before any change, ends with the same exit code and the same error code,
 * as text and as --json, and the run changes nothing.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, treeHash, workspace } from './helpers.ts';

const BATON = join(ROOT, 'bin', 'baton.js');
const THROWING = join(ROOT, 'test', 'fixtures', 'throwing.ts');

function baton(cwd: string, args: string[]): { status: number | null; stdout: string } {
  const r = spawnSync(process.execPath, [BATON, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, BATON_DEBUG: undefined, BATON_HOME: undefined },
  });
  return { status: r.status, stdout: r.stdout };
}

describe('plan and run end the same failure the same way', () => {
  const cases: Array<[string, (data: string) => string[], number, string]> = [
    ['an unknown stack', () => ['--stack', 'nowhere'], 2, 'INVALID_INPUT'],
    ['a parameter with a newline', () => ['--param', 'dir=/tmp/a\nb'], 2, 'INVALID_INPUT'],
    [
      'bad input the facts find',
      (d) => ['--param', `dir=${d}`, '--param', 'throwIn=facts-input'],
      2,
      'INVALID_INPUT',
    ],
    [
      "the runbook's own code throwing in its facts",
      (d) => ['--param', `dir=${d}`, '--param', 'throwIn=facts'],
      1,
      'RUNBOOK_ERROR',
    ],
    [
      'a probe that fails on a host',
      () => ['--param', 'dir=/nonexistent/dir', '--param', 'throwIn=probe'],
      1,
      'COMMAND_FAILED',
    ],
  ];

  it.each(cases)('%s', (_what, extra, exitCode, code) => {
    const ws = workspace(['a']);
    const given = extra(ws.data);
    const args = [THROWING, ...(given.includes('--stack') ? [] : ['--stack', 'nodes']), ...given];
    const before = treeHash(ws.data);
    const plan = baton(ws.cwd, ['plan', ...args, '--json']);
    const run = baton(ws.cwd, ['run', ...args, '--yes', '--json']);
    const runText = baton(ws.cwd, ['run', ...args, '--yes']);
    expect(plan.status).toBe(exitCode);
    expect(run.status).toBe(exitCode);
    expect(runText.status).toBe(exitCode);
    const p = JSON.parse(plan.stdout) as { code: string; exitCode: number };
    const r = JSON.parse(run.stdout) as { code: string; exitCode: number; outcome?: string };
    expect(p).toMatchObject({ code, exitCode });
    expect(r).toMatchObject({ code, exitCode });
    // A run that gets as far as a journal says it changed nothing.
    if (r.outcome) expect(r.outcome).toBe('precondition-failed');
    expect(treeHash(ws.data)).toBe(before);
  });
});
