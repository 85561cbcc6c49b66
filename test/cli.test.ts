import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../lib/app/cli.ts';
import { runsDir } from '../lib/app/paths.ts';
import { onTerminal } from './support/terminal.ts';
import { allText, captureIo, ORDERED, ROOT, treeHash, workspace, inDir } from './helpers.ts';

const BATON = join(ROOT, 'bin', 'baton.js');

describe('baton CLI', () => {
  it('`baton plan config-release --json` prints the plan and exits 0 with no build step', () => {
    const ws = workspace();
    const r = spawnSync(process.execPath, [BATON, 'plan', 'config-release', '--json'], {
      cwd: ws.cwd,
      encoding: 'utf8',
    });
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as {
      ok: boolean;
      planHash: string;
      plan: { steps: Array<{ id: string }> };
    };
    expect(out.ok).toBe(true);
    expect(out.planHash).toMatch(/^[0-9a-f]{64}$/);
    expect(out.plan.steps.map((s) => s.id)).toEqual(['stage', 'switch', 'prune']);
    expect(existsSync(join(ws.cwd, '.baton', 'demo'))).toBe(false);
  });

  it('rejects an invalid parameter with exit 2, naming it, and creates nothing', async () => {
    const ws = workspace();
    const io = captureIo();
    const code = await inDir(ws.cwd, () =>
      main(['run', 'config-release', '--yes', '--param', 'keep=0'], io),
    );
    expect(code).toBe(2);
    expect(io.text()).toContain(
      'parameter keep of runbook config-release is invalid: Too small: expected number to be >=1',
    );
    expect(existsSync(runsDir(ws.cwd))).toBe(false);
  });

  it('reports an unknown command or option as invalid input', async () => {
    expect(await main(['frobnicate'], captureIo())).toBe(2);
    expect(await main(['plan', 'config-release', '--nope'], captureIo())).toBe(2);
  });

  it.each(['plan', 'run', 'rehearse', 'resume', 'report', 'runs', 'runbooks', 'countersign'])(
    '`baton %s --help` shows examples',
    async (cmd) => {
      const io = captureIo();
      expect(await main([cmd, '--help'], io)).toBe(0);
      expect(io.text()).toContain('Examples:');
    },
  );

  it('exits 1 after a rollback and 3 when a human is needed', async () => {
    const ws = workspace();
    const rolled = captureIo();
    const args = ['run', ORDERED, '--stack', 'nodes', '--yes', '--param', `dir=${ws.data}`];
    expect(await inDir(ws.cwd, () => main([...args, '--param', 'failAt=s2:a'], rolled))).toBe(1);
    expect(rolled.text()).toContain('Hosts are in state: unchanged: as before the run');
    const stuck = captureIo();
    expect(
      await inDir(ws.cwd, () =>
        main([...args, '--param', 'failAt=s2:a', '--param', 'undoFailAt=s1:a', '--json'], stuck),
      ),
    ).toBe(3);
    const result = JSON.parse(stuck.stdout.join('\n')) as {
      outcome: string;
      next: string;
      exitCode: number;
    };
    expect(result).toMatchObject({ outcome: 'needs-human', exitCode: 3 });
    expect(result.next).toContain('baton resume');
  });

  it('renders the report as markdown and json, and fails on a tampered journal', async () => {
    const ws = workspace();
    await inDir(ws.cwd, () =>
      main(
        [
          'run',
          ORDERED,
          '--stack',
          'nodes',
          '--yes',
          '--param',
          `dir=${ws.data}`,
          '--param',
          'failAt=s2:b',
        ],
        captureIo(),
      ),
    );
    const [runId] = readdirSync(runsDir(ws.cwd));
    const md = captureIo();
    expect(await inDir(ws.cwd, () => main(['report', runId!], md))).toBe(0);
    const text = md.stdout.join('\n');
    expect(text).toContain(`# Run ${runId}: ordered on nodes`);
    expect(text).toContain('- **Outcome:** rolled-back');
    expect(text).toMatch(/\| \d\d:\d\d:\d\d \| s2 \| b \| \d+ ms \| failed \|/);
    expect(text).toMatch(/\| \d\d:\d\d:\d\d \| s1 \| a \| \d+ ms \| undone \|/);
    expect(text).toContain('hash chain verified');

    const js = captureIo();
    expect(await inDir(ws.cwd, () => main(['report', runId!, '--format', 'json'], js))).toBe(0);
    const report = JSON.parse(js.stdout.join('\n')) as {
      outcome: string;
      timeline: Array<{ step: string; outcome: string }>;
    };
    expect(report.outcome).toBe('rolled-back');
    expect(report.timeline.filter((t) => t.outcome === 'undone').map((t) => t.step)).toEqual([
      's2',
      's2',
      's1',
      's1',
    ]);

    const file = join(runsDir(ws.cwd), runId!, 'journal.jsonl');
    writeFileSync(file, readFileSync(file, 'utf8').replace('echo apply:s1:a', 'echo apply:s1:X'));
    const bad = captureIo();
    expect(await inDir(ws.cwd, () => main(['report', runId!], bad))).toBe(1);
    expect(bad.text()).toContain('the chain is broken');
  });

  it('never prints or stores a secret parameter, though the hosts receive it', async () => {
    const ws = workspace(['alpha', 'beta', 'gamma']);
    const secret = 'Tr0ub4dor&3-horse';
    process.env.BATON_CLI_CREDENTIAL = secret;
    const source = join(ws.data, 'app.conf');
    writeFileSync(source, 'password = @CREDENTIAL@\n');
    const root = join(ws.data, 'hosts');
    const io = captureIo();
    const code = await inDir(ws.cwd, () =>
      main(
        [
          'run',
          'config-release',
          '--yes',
          '--param',
          `source=${source}`,
          '--param',
          `root=${root}`,
          '--param',
          'credential=@env:BATON_CLI_CREDENTIAL',
        ],
        io,
      ),
    );
    expect(code).toBe(0);
    expect(readFileSync(join(root, 'alpha', 'current.conf'), 'utf8')).toBe(
      `password = ${secret}\n`,
    );
    const [runId] = readdirSync(runsDir(ws.cwd));
    const report = captureIo();
    await inDir(ws.cwd, () => main(['report', runId!, '--format', 'json'], report));
    const plan = captureIo();
    await inDir(ws.cwd, () =>
      main(
        [
          'plan',
          'config-release',
          '--json',
          '--param',
          `source=${source}`,
          '--param',
          `root=${join(ws.data, 'other')}`,
          '--param',
          `credential=${secret}`,
        ],
        plan,
      ),
    );
    for (const text of [io.text(), report.text(), plan.text(), allText(runsDir(ws.cwd))]) {
      expect(text.length).toBeGreaterThan(100);
      expect(text).not.toContain(secret);
    }
    expect(plan.text()).toContain('[redacted:credential]');
  });

  it.each(['x', 'Qz7pw'])(
    'refuses the secret %j, shorter than 8 characters, with exit 2, naming it and not printing it',
    async (value) => {
      const ws = workspace(['a']);
      const io = captureIo();
      const args = ['--param', `dir=${ws.data}`, '--param', `token=${value}`];
      const code = await inDir(ws.cwd, () =>
        main(['plan', ORDERED, '--stack', 'nodes', ...args], io),
      );
      expect(code).toBe(2);
      expect(io.text()).toContain(
        'secret parameter token of runbook ordered is shorter than 8 characters',
      );
      expect(io.text()).not.toContain(`token=${value}`);
      if (value.length > 1) expect(io.text()).not.toContain(value);
    },
  );

  it('takes secrets only by reference where runs need approvals, and inline on a testnet', async () => {
    const ws = workspace(['a']);
    const stacks = join(ws.cwd, '.baton', 'stacks');
    writeFileSync(join(stacks, 'prod.json'), readFileSync(join(stacks, 'nodes.json')));
    const plan = async (stack: string, token: string) => {
      const io = captureIo();
      const args = ['--param', `dir=${ws.data}`, '--param', `token=${token}`];
      const code = await inDir(ws.cwd, () =>
        main(['plan', ORDERED, '--stack', stack, ...args], io),
      );
      return { code, text: io.text() };
    };
    const inline = await plan('prod', 'inline-secret-1');
    expect(inline.code).toBe(2);
    expect(inline.text).toContain(
      'secret parameter token of runbook ordered is given inline, and runs on this stack need approvals',
    );
    expect(inline.text).not.toContain('inline-secret-1');
    process.env.BATON_CLI_TOKEN = 'by-reference-1';
    expect((await plan('prod', '@env:BATON_CLI_TOKEN')).code).toBe(0);
    expect((await plan('nodes', 'inline-secret-1')).code).toBe(0);
  });

  it('lists runs with their outcome', async () => {
    const ws = workspace(['a']);
    await inDir(ws.cwd, () =>
      main(['run', ORDERED, '--stack', 'nodes', '--yes', '--param', `dir=${ws.data}`], captureIo()),
    );
    const io = captureIo();
    expect(await inDir(ws.cwd, () => main(['runs', '--json'], io))).toBe(0);
    expect(JSON.parse(io.stdout.join('\n'))).toMatchObject([
      { runbook: 'ordered', stack: 'nodes', outcome: 'done', journal: 'verified' },
    ]);
  });
});

const THROWING = join(ROOT, 'test', 'fixtures', 'throwing.ts');
const SETTLED = join(ROOT, 'test', 'fixtures', 'settled.ts');

function baton(
  cwd: string,
  args: string[],
  env: Record<string, string | undefined> = {},
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BATON, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, BATON_DEBUG: undefined, ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const STACK_FRAME = /^\s+at /m;

describe('with --json, every failure is one JSON object on stdout and its exit code', () => {
  const failures: Array<[string, string[], number, string, string]> = [
    [
      'a bad parameter',
      ['plan', 'config-release', '--param', 'keep=0'],
      2,
      'INVALID_INPUT',
      'parameter keep of runbook config-release is invalid',
    ],
    ['an unknown runbook', ['plan', 'nope'], 2, 'INVALID_INPUT', 'no runbook nope'],
    [
      'an unknown option',
      ['plan', 'config-release', '--nope'],
      2,
      'INVALID_INPUT',
      "unknown option '--nope'",
    ],
    ['an unknown command', ['frobnicate'], 2, 'INVALID_INPUT', "unknown command 'frobnicate'"],
    ['a missing argument', ['report'], 2, 'INVALID_INPUT', "missing required argument 'run-id'"],
    [
      'a run refused for want of a terminal to confirm on',
      ['run', 'config-release'],
      2,
      'INVALID_INPUT',
      'baton run asks for confirmation, and there is no terminal to ask on',
    ],
    [
      'a runbook file that does not load',
      ['plan', join(ROOT, 'test', 'fixtures', 'unloadable.ts')],
      2,
      'INVALID_INPUT',
      'could not be loaded: half written: the steps are missing',
    ],
    [
      "a runbook's own code throwing while planning",
      [
        'plan',
        THROWING,
        '--stack',
        'nodes',
        '--param',
        'dir=/nonexistent',
        '--param',
        'throwIn=apply',
      ],
      1,
      'RUNBOOK_ERROR',
      'runbook throwing, step write on a, its apply (while planning) threw: TypeError',
    ],
    [
      'an error baton did not expect',
      ['plan', join(ROOT, 'test', 'fixtures', 'broken.ts'), '--stack', 'nodes'],
      1,
      'INTERNAL',
      'baton stopped on an error it did not expect: TypeError',
    ],
  ];

  it.each(failures)('%s', (_what, args, exitCode, code, error) => {
    const ws = workspace(['a']);
    const r = baton(ws.cwd, [...args, '--json']);
    expect(r.status).toBe(exitCode);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(Object.keys(out).sort()).toEqual(
      [...('hint' in out ? ['hint'] : []), 'code', 'error', 'exitCode'].sort(),
    );
    expect(out).toMatchObject({ code, exitCode });
    expect(out.error).toContain(error);
    expect(r.stderr).not.toMatch(STACK_FRAME);
  });

  it('a journal that does not verify carries them beside the verification', () => {
    const ws = workspace(['a']);
    const run = ['run', ORDERED, '--stack', 'nodes', '--yes', '--param', `dir=${ws.data}`];
    expect(baton(ws.cwd, run).status).toBe(0);
    const [runId] = readdirSync(runsDir(ws.cwd));
    const r = baton(ws.cwd, ['verify', runId!, '--json']);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      runId,
      status: 'unsigned',
      code: 'JOURNAL_UNVERIFIED',
      exitCode: 1,
      error: `the journal of run ${runId} is unsigned: nothing in it is signed`,
    });
  });

  it('a plan whose preconditions fail carries the same fields beside the plan', () => {
    const ws = workspace();
    const r = baton(ws.cwd, [
      ...['plan', ORDERED, '--stack', 'nodes', '--json'],
      ...['--param', `dir=${ws.data}`, '--param', 'checkFailAt=b'],
    ]);
    expect(r.status).toBe(1);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(out).toMatchObject({ ok: false, code: 'PRECONDITION_FAILED', exitCode: 1 });
    expect(out.error).toContain('step s1, host b, check "host is in service"');
    expect(out.hint).toContain('Nothing was changed');
    expect(out.plan).toBeDefined();
  });

  it('a run refusing a plan that drifted since it was approved carries them beside its result', () => {
    const ws = workspace();
    writeFileSync(join(ws.data, 'target'), 'b\n');
    const pointer = join(ROOT, 'test', 'fixtures', 'pointer.ts');
    const plan = join(ws.cwd, 'plan.json');
    expect(
      baton(ws.cwd, [
        'plan',
        pointer,
        '--stack',
        'nodes',
        '--param',
        `dir=${ws.data}`,
        '--out',
        plan,
      ]).status,
    ).toBe(0);
    writeFileSync(join(ws.data, 'target'), 'c\n');
    const r = baton(ws.cwd, ['run', '--plan', plan, '--yes', '--json']);
    expect(r.status).toBe(1);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(out).toMatchObject({
      outcome: 'precondition-failed',
      code: 'PRECONDITION_FAILED',
      exitCode: 1,
    });
    expect(out.error).toContain('the plan changed since it was approved');
    expect(out.hint).toBe(out.next);
    expect(existsSync(join(ws.data, 'pointed'))).toBe(false);
  });
});

describe("a runbook's own thrown error", () => {
  const args = (ws: { data: string }, where: string): string[] => [
    ...[THROWING, '--stack', 'nodes', '--param', `dir=${ws.data}`],
    ...['--param', `throwIn=${where}`],
  ];

  it('names the runbook, step and host, and shows a stack only with BATON_DEBUG=1', () => {
    const ws = workspace(['a']);
    const plain = baton(ws.cwd, ['plan', ...args(ws, 'apply')]);
    expect(plain.status).toBe(1);
    expect(plain.stdout).toBe('');
    expect(plain.stderr).toBe(
      "error: runbook throwing, step write on a, its apply (while planning) threw: TypeError: Cannot read properties of undefined (reading 'file')\n" +
        "what to do: That is the runbook's own code, before any change: fix what it names (or the runbook), then plan again. BATON_DEBUG=1 shows where it was thrown.\n",
    );
    const debug = baton(ws.cwd, ['plan', ...args(ws, 'apply')], { BATON_DEBUG: '1' });
    expect(debug.status).toBe(1);
    expect(debug.stderr).toMatch(STACK_FRAME);
    expect(debug.stderr).toContain('caused by: TypeError');
    expect(debug.stderr).toContain('test/fixtures/throwing.ts:');
  });

  it('in its facts or in a live verify ends the run with the place named, and no stack', () => {
    const ws = workspace(['a']);
    const facts = baton(ws.cwd, ['run', ...args(ws, 'facts'), '--yes']);
    expect(facts.status).toBe(1);
    expect(facts.stdout).toContain(
      `Why: runbook throwing, its facts threw: no inventory file in ${ws.data}`,
    );
    const verify = baton(ws.cwd, ['run', ...args(ws, 'verify'), '--yes']);
    expect(verify.status).toBe(1);
    expect(verify.stdout).toContain(
      'Why: step write failed on a: the verify of runbook throwing threw: verify of a with undefined',
    );
    expect(verify.stdout).toContain('Hosts are in state: unchanged: as before the run');
    for (const r of [facts, verify]) expect(r.stdout + r.stderr).not.toMatch(STACK_FRAME);
  });
});

describe('a second identical run', () => {
  it('has nothing to do: it says so, changes nothing and exits 0, as its plan does', () => {
    const ws = workspace();
    const root = join(ws.data, 'hosts');
    const run = ['run', 'config-release', '--yes', '--param', `root=${root}`];
    expect(baton(ws.cwd, run).status).toBe(0);
    const before = treeHash(root);
    const again = baton(ws.cwd, run);
    expect(again.status).toBe(0);
    expect(again.stdout).toMatch(
      /Run \S+: nothing to do: every step is already done or skipped; nothing was changed/,
    );
    const json = baton(ws.cwd, [...run, '--json']);
    expect(json.status).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      outcome: 'done',
      nothingToDo: true,
      exitCode: 0,
    });
    const plan = baton(ws.cwd, ['plan', 'config-release', '--param', `root=${root}`]);
    expect(plan.status).toBe(0);
    expect(plan.stdout).toContain(
      'Nothing to do: every step is already done or skipped; a run changes nothing.',
    );
    expect(plan.stdout).toContain(
      '1. stage: Stage the new release beside the live one  [ALREADY DONE]',
    );
    expect(treeHash(root)).toBe(before);
  });
});

describe('the confirmation on a terminal', () => {
  const run = (ws: { cwd: string; data: string }, ...params: string[]) =>
    onTerminal(['run', SETTLED, '--stack', 'nodes', '--param', `dir=${ws.data}`, ...params], {
      cwd: ws.cwd,
      env: { TERM: 'dumb' },
      answers: ['y', 'settled'],
    });

  it('asks y/N when the destructive step is skipped in the plan', async () => {
    const ws = workspace();
    const r = await run(ws);
    expect(r.asked).toEqual(['Proceed? [y/N] ']);
    expect(r.status).toBe(0);
    expect(r.screen).toContain('SKIPPED: not asked to sweep');
  });

  it('asks for the runbook name when a destructive step will run', async () => {
    const ws = workspace();
    const r = await onTerminal(
      ['run', SETTLED, '--stack', 'nodes', '--param', `dir=${ws.data}`, '--param', 'sweep=true'],
      { cwd: ws.cwd, env: { TERM: 'dumb' }, answers: ['settled'] },
    );
    expect(r.asked).toEqual(['Type the runbook name to proceed: ']);
    expect(r.screen).toContain('This plan has destructive steps (sweep).');
    expect(r.status).toBe(0);
    expect(existsSync(join(ws.data, 'swept'))).toBe(true);
  });

  it('asks y/N when the destructive step is already done, and nothing when nothing is left', async () => {
    const ws = workspace();
    writeFileSync(join(ws.data, 'swept'), '');
    const r = await run(ws, '--param', 'sweep=true');
    expect(r.asked).toEqual(['Proceed? [y/N] ']);
    expect(r.status).toBe(0);
    const idle = await run(ws, '--param', 'sweep=true');
    expect(idle.asked).toEqual([]);
    expect(idle.status).toBe(0);
    expect(idle.screen).toContain('nothing to do');
  });
});
