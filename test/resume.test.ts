import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readJournal } from '../lib/engine/journal.ts';
import { runsDir } from '../lib/app/paths.ts';
import {
  ORDERED,
  ORDERED_COMMIT,
  ORDERED_MARKED,
  ROOT,
  workspace,
  type Workspace,
  waitFor,
} from './helpers.ts';

const BATON = join(ROOT, 'bin', 'baton.js');
const orphans: number[] = [];

afterEach(() => {
  for (const pid of orphans.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** Start a real controller, let it reach s2 on host b, and kill -9 it there. */
async function runAndKillMidStep(
  ws: Workspace,
  effect: 'before' | 'after',
  runbook = ORDERED,
): Promise<string> {
  const child = spawn(
    process.execPath,
    [
      BATON,
      'run',
      runbook,
      '--stack',
      'nodes',
      '--yes',
      '--param',
      `dir=${ws.data}`,
      '--param',
      'slowAt=s2:b',
      '--param',
      `effect=${effect}`,
    ],
    { cwd: ws.cwd, stdio: 'ignore' },
  );
  const started = join(ws.data, 's2-b.started');
  await waitFor(
    'the controller to reach s2 on b',
    () => existsSync(started) && readFileSync(started, 'utf8').trim() !== '',
  );
  orphans.push(Number(readFileSync(started, 'utf8').trim()));
  const exited = new Promise((r) => child.once('exit', (_code, signal) => r(signal)));
  child.kill('SIGKILL');
  expect(await exited).toBe('SIGKILL');
  const [runId] = readdirSync(runsDir(ws.cwd));
  return runId!;
}

function resume(ws: Workspace, runId: string): { status: number | null; stdout: string } {
  const r = spawnSync(process.execPath, [BATON, 'resume', runId, '--json'], {
    cwd: ws.cwd,
    encoding: 'utf8',
  });
  return { status: r.status, stdout: r.stdout };
}

describe('resume after the controller was killed mid-step', () => {
  it('re-verifies the interrupted step, continues when it verifies, and repeats no completed step', async () => {
    const ws = workspace();
    const runId = await runAndKillMidStep(ws, 'before');
    const events = readJournal(join(runsDir(ws.cwd), runId)).records.map((r) => r.event);
    const last = events.filter((e) => e.kind === 'intent').at(-1);
    expect(last).toMatchObject({ kind: 'intent', step: 's2', host: 'b' });
    expect(events.some((e) => e.kind === 'outcome' && e.step === 's2' && e.host === 'b')).toBe(
      false,
    );

    const r = resume(ws, runId);
    expect(JSON.parse(r.stdout)).toMatchObject({ outcome: 'done', exitCode: 0 });
    expect(r.status).toBe(0);
    expect(ws.log()).toEqual([
      'apply:s1:a',
      'apply:s1:b',
      'apply:s2:a',
      'apply:s2:b',
      'apply:s3:a',
      'apply:s3:b',
    ]);
    const after = readJournal(join(runsDir(ws.cwd), runId)).records.map((r) => r.event);
    expect(after.find((e) => e.kind === 'resume')).toMatchObject({
      interrupted: [{ step: 's2', host: 'b' }],
    });
    expect(
      after.find((e) => e.kind === 'outcome' && e.step === 's2' && e.host === 'b'),
    ).toMatchObject({
      ok: true,
      recovered: true,
    });
  });

  it('rolls back when the interrupted step does not verify', async () => {
    const ws = workspace();
    const runId = await runAndKillMidStep(ws, 'after');
    const r = resume(ws, runId);
    expect(r.status).toBe(1);
    const result = JSON.parse(r.stdout) as { outcome: string; error: string };
    expect(result.outcome).toBe('rolled-back');
    expect(result.error).toContain('interrupted work did not verify after the restart: s2 on b');
    expect(ws.log()).toEqual([
      'apply:s1:a',
      'apply:s1:b',
      'apply:s2:a',
      'apply:s2:b',
      'undo:s2:b',
      'undo:s2:a',
      'undo:s1:b',
      'undo:s1:a',
    ]);
  });

  it('refuses to resume a run that ended', () => {
    const ws = workspace(['a']);
    const done = spawnSync(
      process.execPath,
      [BATON, 'run', ORDERED, '--stack', 'nodes', '--yes', '--param', `dir=${ws.data}`],
      {
        cwd: ws.cwd,
        encoding: 'utf8',
      },
    );
    expect(done.status).toBe(0);
    const [id] = readdirSync(runsDir(ws.cwd));
    const again = spawnSync(process.execPath, [BATON, 'resume', id!], {
      cwd: ws.cwd,
      encoding: 'utf8',
    });
    expect(again.status).toBe(2);
    expect(again.stderr).toContain(`run ${id} already ended: done`);
  });
});

describe('past the point of no return', () => {
  function run(ws: Workspace, ...params: string[]): { status: number | null; stdout: string } {
    return runOf(ORDERED_COMMIT, ws, ...params);
  }
  function runOf(
    runbook: string,
    ws: Workspace,
    ...params: string[]
  ): { status: number | null; stdout: string } {
    const r = spawnSync(
      process.execPath,
      [
        BATON,
        'run',
        runbook,
        '--stack',
        'nodes',
        '--yes',
        '--json',
        '--param',
        `dir=${ws.data}`,
        ...params.flatMap((p) => ['--param', p]),
      ],
      { cwd: ws.cwd, encoding: 'utf8' },
    );
    return { status: r.status, stdout: r.stdout };
  }

  it('a failure after the commit step undoes nothing, stops for a person, and a resume finishes the run', () => {
    const ws = workspace();
    const r = run(ws, 'failAt=s3:a');
    expect(r.status).toBe(3);
    const result = JSON.parse(r.stdout) as { outcome: string; state: string; next: string };
    expect(result.outcome).toBe('needs-human');
    expect(result.state).toBe('past the point of no return: s2 done');
    expect(result.next).toContain('baton undoes nothing from here');
    expect(ws.log().filter((l) => l.startsWith('undo:'))).toEqual([]);
    for (const f of ['s1-a', 's1-b', 's2-a', 's2-b'])
      expect(existsSync(join(ws.data, `${f}.done`))).toBe(true);

    writeFileSync(join(ws.data, 'healed'), '');
    const [runId] = readdirSync(runsDir(ws.cwd));
    const again = resume(ws, runId!);
    expect(JSON.parse(again.stdout)).toMatchObject({ outcome: 'done', exitCode: 0 });
    expect(ws.log()).toEqual([
      'apply:s1:a',
      'apply:s1:b',
      'apply:s2:a',
      'apply:s2:b',
      'apply:s3:a',
      'apply:s3:a',
      'apply:s3:b',
    ]);
  });

  it('a resume after a kill inside the commit step goes forward even when the step did not verify', async () => {
    const ws = workspace();
    const runId = await runAndKillMidStep(ws, 'after', ORDERED_COMMIT);
    expect(existsSync(join(ws.data, 's2-b.done'))).toBe(false);
    const r = resume(ws, runId);
    expect(JSON.parse(r.stdout)).toMatchObject({ outcome: 'done', exitCode: 0 });
    expect(ws.log().filter((l) => l.startsWith('undo:'))).toEqual([]);
    expect(ws.log().slice(-3)).toEqual(['apply:s2:b', 'apply:s3:a', 'apply:s3:b']);
    for (const f of ['s1-a', 's1-b', 's2-a', 's2-b', 's3-a', 's3-b'])
      expect(existsSync(join(ws.data, `${f}.done`))).toBe(true);
  });

  it('a step that marks its point of no return rolls back when it fails before the mark, and goes forward after it', () => {
    const early = workspace();
    const r = runOf(ORDERED_MARKED, early, 'failAt=s2:a');
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ outcome: 'rolled-back' });
    expect(early.log()).toEqual([
      'apply:s1:a',
      'apply:s1:b',
      'apply:s2:a',
      'undo:s2:a',
      'undo:s1:b',
      'undo:s1:a',
    ]);
    const [earlyRun] = readdirSync(runsDir(early.cwd));
    const earlyKinds = readJournal(join(runsDir(early.cwd), earlyRun!)).records.map(
      (x) => x.event.kind,
    );
    expect(earlyKinds).not.toContain('commit');

    const late = workspace();
    const l = runOf(ORDERED_MARKED, late, 'failLateAt=s2:a');
    expect(l.status).toBe(3);
    const result = JSON.parse(l.stdout) as { outcome: string; next: string };
    expect(result.outcome).toBe('needs-human');
    expect(result.next).toContain('baton undoes nothing from here');
    expect(late.log().filter((x) => x.startsWith('undo:'))).toEqual([]);
    const [runId] = readdirSync(runsDir(late.cwd));
    const events = readJournal(join(runsDir(late.cwd), runId!)).records.map((x) => x.event);
    expect(events.filter((e) => e.kind === 'commit')).toEqual([
      { kind: 'commit', step: 's2', host: 'a' },
    ]);
    writeFileSync(join(late.data, 'healed'), '');
    expect(JSON.parse(resume(late, runId!).stdout)).toMatchObject({ outcome: 'done', exitCode: 0 });
    expect(late.log().filter((x) => x.startsWith('undo:'))).toEqual([]);
    for (const f of ['s1-a', 's1-b', 's2-a', 's2-b', 's3-a', 's3-b'])
      expect(existsSync(join(late.data, `${f}.done`))).toBe(true);
  });

  it('before the commit step, a failure still rolls back', () => {
    const ws = workspace();
    const r = run(ws, 'failAt=s1:b');
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ outcome: 'rolled-back' });
    expect(ws.log()).toEqual(['apply:s1:a', 'apply:s1:b', 'undo:s1:b', 'undo:s1:a']);
  });
});
