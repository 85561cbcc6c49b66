/**
 * The engine against real hosts over ssh: a dry run changes nothing on a
 * testnet host, a run applies and verifies there, and a controller killed
 * mid-step is resumed from its journal.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findHost, type Inventory } from '../lib/core/inventory.ts';
import { readJournal } from '../lib/engine/journal.ts';
import { planRunbook, startRun } from '../lib/app/runs.ts';
import { runsDir } from '../lib/app/paths.ts';
import type { SshPool } from '../lib/transports/ssh.ts';
import * as testnet from '../lib/testnet/index.ts';
import { ORDERED, ROOT } from './helpers.ts';
import { assertPrerequisite, skipUnless } from './support/require.ts';

const missing = process.getuid?.() !== 0 ? 'needs root (the testnet)' : undefined;
const home = mkdtempSync(join(tmpdir(), 'baton-engine-testnet-'));
const BATON = join(ROOT, 'bin', 'baton.js');
const DIR = '/srv/baton-engine';

describe.skipIf(skipUnless(missing, 'the engine on the testnet'))(
  'the engine on testnet hosts over ssh',
  () => {
    let pool: SshPool;
    let inv: Inventory;
    const onSolo = async (command: string): Promise<string> =>
      (await pool.exec(findHost(inv, 'solo'), command, { timeoutMs: 20_000 })).stdout;
    const params = (...extra: string[]): string[] => [`dir=${DIR}`, 'role=test', ...extra];

    beforeAll(async () => {
      assertPrerequisite(missing);
      process.env.BATON_HOME = home;
      inv = (await testnet.up({ topology: 'solo' })).inventory;
      pool = testnet.testnetPool();
    }, 600_000);

    afterAll(async () => {
      await pool?.close();
      if (existsSync(join(home, 'testnet'))) await testnet.down();
      delete process.env.BATON_HOME;
      rmSync(home, { recursive: true, force: true });
    });

    it('plans over ssh without changing the host', async () => {
      await onSolo(`rm -rf ${DIR} && mkdir -p ${DIR}`);
      const before = await onSolo(`find ${DIR} -exec stat -c '%n %s %Y' {} +`);
      const { plan } = await planRunbook({
        runbook: ORDERED,
        stack: 'local',
        params: params(),
        cwd: home,
      });
      expect(plan.steps[0]!.hosts).toEqual([
        {
          host: 'solo',
          mutations: [`echo apply:s1:solo >> ${DIR}/log`, `touch ${DIR}/s1-solo.done`],
          undo: [`echo undo:s1:solo >> ${DIR}/log`, `rm -f ${DIR}/s1-solo.done`],
        },
      ]);
      expect(plan.preflight).toMatchObject([
        { host: 'solo', ok: true },
        { host: 'solo', ok: true },
        { host: 'solo', ok: true },
      ]);
      expect(await onSolo(`find ${DIR} -exec stat -c '%n %s %Y' {} +`)).toBe(before);
    });

    it('runs and rolls back over ssh', async () => {
      await onSolo(`rm -rf ${DIR} && mkdir -p ${DIR}`);
      const done = await startRun({
        runbook: ORDERED,
        stack: 'local',
        params: params(),
        cwd: home,
      });
      expect(done.outcome).toBe('done');
      expect(await onSolo(`cat ${DIR}/log`)).toBe('apply:s1:solo\napply:s2:solo\napply:s3:solo\n');
      await onSolo(`rm -rf ${DIR} && mkdir -p ${DIR}`);
      const rolled = await startRun({
        runbook: ORDERED,
        stack: 'local',
        params: params('failAt=s3:solo'),
        cwd: home,
      });
      expect(rolled.outcome).toBe('rolled-back');
      expect(await onSolo(`cat ${DIR}/log`)).toBe(
        'apply:s1:solo\napply:s2:solo\napply:s3:solo\nundo:s3:solo\nundo:s2:solo\nundo:s1:solo\n',
      );
    });

    it('resumes over ssh after the controller was killed mid-step', async () => {
      await onSolo(`rm -rf ${DIR} && mkdir -p ${DIR}`);
      const runs = runsDir(home);
      const already = existsSync(runs) ? readdirSync(runs) : [];
      const child = spawn(
        process.execPath,
        [
          BATON,
          'run',
          ORDERED,
          '--stack',
          'local',
          '--yes',
          ...params('slowAt=s2:solo').flatMap((p) => ['--param', p]),
        ],
        { cwd: home, env: { ...process.env, BATON_HOME: home }, stdio: 'ignore' },
      );
      const until = Date.now() + 60_000;
      while (!(await onSolo(`cat ${DIR}/s2-solo.started 2>/dev/null || true`)).trim()) {
        if (Date.now() > until) throw new Error('the controller did not reach s2');
        await new Promise((r) => setTimeout(r, 100));
      }
      const exited = new Promise((r) => child.once('exit', (_c, signal) => r(signal)));
      child.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');
      await onSolo(`kill $(cat ${DIR}/s2-solo.started) 2>/dev/null || true`);
      const runId = readdirSync(runs).find((r) => !already.includes(r))!;
      const resumed = spawnSync(process.execPath, [BATON, 'resume', runId, '--json'], {
        cwd: home,
        env: { ...process.env, BATON_HOME: home },
        encoding: 'utf8',
      });
      expect(JSON.parse(resumed.stdout)).toMatchObject({ outcome: 'done', exitCode: 0 });
      expect(await onSolo(`cat ${DIR}/log`)).toBe('apply:s1:solo\napply:s2:solo\napply:s3:solo\n');
      const events = readJournal(join(runs, runId)).records.map((r) => r.event);
      expect(events.find((e) => e.kind === 'resume')).toMatchObject({
        interrupted: [{ step: 's2', host: 'solo' }],
      });
    });
  },
);
