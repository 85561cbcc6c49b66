/**
 * The fault matrix in CI: every step of handover and failover once, with the
 * faults in turn, so every fault comes at least twice (`npm run faults --
 * --sample` runs the same). `npm run faults` runs the whole matrix and writes
 * docs/reliability.md.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SshPool } from '../../lib/ssh.ts';
import * as testnet from '../../lib/testnet/index.ts';
import '../../lib/testnet/stack.ts';
import { ROOT } from '../helpers.ts';
import { assertPrerequisite, skipUnless } from '../support/require.ts';
import {
  ciSample,
  FAULTS,
  matrixSteps,
  runCaseSafely,
  type Case,
  type MatrixEnv,
} from './matrix.ts';

const missing = process.getuid?.() !== 0 ? 'needs root (the testnet)' : undefined;
const home = mkdtempSync(join(tmpdir(), 'baton-matrix-'));

describe.skipIf(skipUnless(missing, 'the fault matrix on the testnet'))(
  'the fault matrix, a sample',
  () => {
    let env: MatrixEnv;
    let pool: SshPool;
    const cases: Case[] = [];
    const steps: Record<string, string[]> = {};

    beforeAll(async () => {
      assertPrerequisite(missing);
      process.env.BATON_HOME = home;
      const { inventory } = await testnet.up({ topology: 'irc' });
      pool = testnet.testnetPool({ readyTimeoutMs: 20_000 });
      env = {
        home,
        bin: join(ROOT, 'bin', 'baton.js'),
        pool,
        inventory,
        log: (l) => console.log(l),
      };
      steps.handover = await matrixSteps(env, 'handover');
      steps.failover = await matrixSteps(env, 'failover');
      cases.push(...ciSample({ handover: steps.handover, failover: steps.failover }));
    }, 900_000);

    afterAll(async () => {
      await pool?.close();
      if (existsSync(join(home, 'testnet'))) await testnet.down();
      delete process.env.BATON_HOME;
      rmSync(home, { recursive: true, force: true });
    });

    it('covers every fault, and every step of both runbooks', () => {
      expect(new Set(cases.map((c) => c.fault))).toEqual(new Set(FAULTS));
      for (const rb of ['handover', 'failover']) {
        expect(steps[rb]!.length).toBeGreaterThan(8);
        expect(cases.filter((c) => c.runbook === rb).map((c) => c.step)).toEqual(steps[rb]);
      }
    });

    it('ends every case with one primary and every byte', async () => {
      const failed: string[] = [];
      for (const c of cases) {
        const r = await runCaseSafely(env, c);
        if (!r.ok) failed.push(`${c.runbook} ${c.step} ${c.fault}: ${r.failures.join('; ')}`);
      }
      expect(failed).toEqual([]);
    }, 3_000_000);
  },
);
