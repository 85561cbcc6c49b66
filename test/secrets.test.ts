import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../lib/app/cli.ts';
import { InvalidInputError } from '../lib/core/errors.ts';
import { inventoryHash } from '../lib/core/inventory.ts';
import { Journal } from '../lib/engine/journal.ts';
import { resumeRun, startRun } from '../lib/app/runs.ts';
import { loadRunbook } from '../lib/app/registry.ts';
import { runsDir } from '../lib/app/paths.ts';
import { allText, captureIo, localNodes, ROOT, workspace, inDir } from './helpers.ts';
import { everyCommandLine } from './support/argv.ts';
import { assertPrerequisite, skipUnless } from './support/require.ts';
import { sshdUnavailable, startSshd, type TestSshd } from './support/sshd.ts';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'secrets.ts');
/** Quotes, dollar signs, backslashes and a newline, with plain chunks that betray any part of it. */
const SECRET = `Xq7'"$Wd6\\n$(id)\`w\`\nZk9' \\'`;
const CHUNKS = ['Xq7', 'Wd6', 'Zk9'];

function traces(text: string): string[] {
  return CHUNKS.filter((c) => text.includes(c));
}

describe('a secret made of quotes, dollar signs, backslashes and a newline', () => {
  it('reaches the hosts, and no output, plan file, journal, report or error message', async () => {
    const ws = workspace(['a', 'b']);
    process.env.BATON_SECRETS_PW = SECRET;
    const given = ['--stack', 'nodes', '--param', `dir=${ws.data}`];
    given.push('--param', 'pw=@env:BATON_SECRETS_PW');
    const baton = async (args: string[]) => {
      const io = captureIo();
      const code = await inDir(ws.cwd, () => main(args, io));
      return { code, text: io.text() };
    };
    const planFile = join(ws.cwd, 'plan.json');
    const plan = await baton(['plan', FIXTURE, ...given, '--json', '--out', planFile]);
    const run = await baton(['run', FIXTURE, ...given, '--yes']);
    expect(readFileSync(join(ws.data, 'pw-a'), 'utf8')).toBe(SECRET);
    const outputs = {
      plan,
      'plan as text': await baton(['plan', FIXTURE, ...given]),
      run,
      'failed run': await baton(['run', FIXTURE, ...given, '--param', 'fail=apply', '--yes']),
      'failed plan': await baton(['plan', FIXTURE, ...given, '--param', 'fail=facts']),
      'plan that throws': await baton(['plan', FIXTURE, ...given, '--param', 'fail=throw']),
    };
    expect(Object.values(outputs).map((o) => o.code)).toEqual([0, 0, 0, 1, 1, 1]);
    expect(outputs['plan that throws'].text).toContain('the runbook cannot use [redacted:pw]');
    expect(outputs['failed run'].text).toContain('Why: step write failed on');
    expect(outputs['failed run'].text).toContain('bad: [redacted:pw]');
    expect(outputs['failed plan'].text).toContain(
      "'[redacted:pw]' >&2; exit 4` exited 4: [redacted:pw]",
    );

    const reports: Record<string, string> = {};
    for (const id of readdirSync(runsDir(ws.cwd))) {
      reports[`${id} md`] = (await baton(['report', id])).text;
      reports[`${id} json`] = (await baton(['report', id, '--format', 'json'])).text;
    }
    const texts: Record<string, string> = {
      ...Object.fromEntries(Object.entries(outputs).map(([k, o]) => [k, o.text])),
      ...reports,
      'plan file': readFileSync(planFile, 'utf8'),
      'every file under .baton': allText(join(ws.cwd, '.baton')),
    };
    for (const [what, text] of Object.entries(texts)) {
      expect(text.length, what).toBeGreaterThan(50);
      expect(traces(text), what).toEqual([]);
    }
    expect(texts['plan file']).toContain("printf '%s' '[redacted:pw]'");

    // The journal keeps the tail of a change's output: cut after redacting, never inside a marker.
    const journal = texts['every file under .baton'];
    expect(journal).toContain(`…${'x'.repeat(1990)}`);
    expect(journal).not.toMatch(/…[a-z:]*\]x/);
  });

  it('shows in no command line on the controller while a run uses it, though given inline', async () => {
    const ws = workspace(['a']);
    const args = [join(ROOT, 'bin', 'baton.js'), 'run', FIXTURE, '--stack', 'nodes', '--yes'];
    args.push('--param', `dir=${ws.data}`, '--param', `pw=${SECRET}`, '--param', 'hold=2');
    const child = spawn(process.execPath, args, { cwd: ws.cwd, stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    // The host's copy is written first; then the command holding the secret sleeps.
    await expect
      .poll(() => existsSync(join(ws.data, 'pw-a')), { timeout: 20_000, interval: 50 })
      .toBe(true);
    const listing = everyCommandLine();
    expect(await exited).toBe(0);
    expect(listing).toContain('__baton_n');
    expect(listing).toContain(
      `${FIXTURE} --stack nodes --yes --param dir=… --param pw=… --param hold=…`,
    );
    expect(traces(listing)).toEqual([]);
  });
});

describe('a secret given inline', () => {
  it('is refused when resuming a run on a stack whose runs need approvals', async () => {
    const ws = workspace(['a']);
    const runId = 'resume-inline-secret';
    const dir = join(runsDir(ws.cwd), runId);
    mkdirSync(dir, { recursive: true });
    const inventory = { ...localNodes(['a']), stack: 'prod' };
    const loaded = await loadRunbook(FIXTURE, ws.cwd);
    Journal.create(dir).append({
      kind: 'run-start',
      runId,
      runbook: 'secrets',
      runbookFile: FIXTURE,
      codeVersion: loaded.codeVersion,
      codeManifest: loaded.codeManifest,
      stack: 'prod',
      mode: 'run',
      operator: 'test',
      params: { dir: ws.data, pw: '[redacted:pw]' },
      secretParams: ['pw'],
      inventory,
      inventoryHash: inventoryHash(inventory),
      pid: process.pid,
    });
    const resuming = resumeRun({ runId, params: ['pw=inline-secret-1'], cwd: ws.cwd });
    await expect(resuming).rejects.toThrow(InvalidInputError);
    await expect(resuming).rejects.toThrow(
      'secret parameter pw of runbook secrets is given inline, and runs on this stack need approvals',
    );
  });
});

const missing = sshdUnavailable();

describe.skipIf(skipUnless(missing, 'a run against a real sshd'))(
  'a run against a host behind a real OpenSSH sshd',
  () => {
    let sshd: TestSshd;
    beforeAll(async () => {
      assertPrerequisite(missing);
      sshd = await startSshd();
    });
    afterAll(async () => {
      await sshd?.stop();
    });

    it('puts the secret in no command line on the host or the controller, and in no journal', async () => {
      const ws = workspace(['a']);
      process.env.BATON_SECRETS_PW = SECRET;
      const running = startRun({
        runbook: FIXTURE,
        stack: 'nodes',
        inventory: { stack: 'nodes', hosts: [{ ...sshd.host('a'), roles: ['node'] }] },
        params: [`dir=${sshd.dir}`, 'pw=@env:BATON_SECRETS_PW', 'hold=2'],
        cwd: ws.cwd,
      });
      await expect
        .poll(() => existsSync(join(sshd.dir, 'pw-a')), { timeout: 20_000, interval: 50 })
        .toBe(true);
      const listing = everyCommandLine();
      const result = await running;
      expect(result.outcome).toBe('done');
      expect(readFileSync(join(sshd.dir, 'pw-a'), 'utf8')).toBe(SECRET);
      expect(listing).toContain('__baton_n');
      expect(traces(listing)).toEqual([]);
      const journal = allText(runsDir(ws.cwd));
      expect(journal).toContain("printf '%s' '[redacted:pw]'");
      expect(traces(journal)).toEqual([]);
    });
  },
);
