import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../lib/cli.ts';
import { runsDir } from '../lib/runs.ts';
import { allText, captureIo, ORDERED, ROOT, workspace, inDir } from './helpers.ts';

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
