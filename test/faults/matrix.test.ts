/**
 * The fault matrix in CI: every step of handover and failover once, with the
 * faults in turn, so every fault comes at least twice (`npm run faults --
 * --sample` runs the same). Its two halves run at once, each through the
 * harness in a process of its own on a testnet of its own (namespaces are
 * named after the state directory). `npm run faults` runs the whole matrix and
 * writes docs/reliability.md.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers.ts';
import { assertPrerequisite, skipUnless } from '../support/require.ts';
import { FAULTS, RUNBOOKS, type CaseResult } from './matrix.ts';

const missing = process.getuid?.() !== 0 ? 'needs root (the testnet)' : undefined;
const dir = mkdtempSync(join(tmpdir(), 'baton-matrix-'));

interface Outcome {
  code: number | null;
  steps: Record<string, string[]>;
  results: CaseResult[];
}

/** Half `half` of the CI sample, on a testnet of its own; its lines go to the test log as they come. */
function sample(half: 1 | 2): Promise<Outcome> {
  const label = `half ${half}`;
  const file = join(dir, `half-${half}.json`);
  const child = spawn(
    process.execPath,
    [
      join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'),
      join(ROOT, 'test', 'faults', 'run-matrix.ts'),
      '--sample',
      '--shard',
      `${half}/2`,
      '--results',
      file,
    ],
    { cwd: ROOT, env: { ...process.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const tail: string[] = [];
  const lines = (d: Buffer): void => {
    for (const line of d.toString().split('\n').filter(Boolean)) {
      console.log(`[${label}] ${line}`);
      tail.push(line);
      if (tail.length > 40) tail.shift();
    }
  };
  child.stdout.on('data', lines);
  child.stderr.on('data', lines);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => {
      try {
        const parsed = JSON.parse(readFileSync(file, 'utf8')) as Omit<Outcome, 'code'>;
        resolve({ code, steps: parsed.steps, results: parsed.results });
      } catch (e) {
        reject(
          new Error(`${label} of the sample wrote no results (exit ${code}):\n${tail.join('\n')}`, {
            cause: e,
          }),
        );
      }
    });
  });
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(skipUnless(missing, 'the fault matrix on the testnet'))(
  'the fault matrix, a sample',
  () => {
    it('ends every case with one primary and every byte, and covers every step and every fault', async () => {
      assertPrerequisite(missing);
      const halves = await Promise.all([sample(1), sample(2)]);
      const all = halves.flatMap((h) => h.results);
      for (const rb of RUNBOOKS) {
        const steps = halves[0]!.steps[rb]!;
        expect(steps.length).toBeGreaterThan(8);
        expect(halves[1]!.steps[rb]).toEqual(steps);
        expect(
          all
            .filter((r) => r.runbook === rb)
            .map((r) => r.step)
            .sort(),
        ).toEqual([...steps].sort());
      }
      expect(new Set(all.map((c) => c.fault))).toEqual(new Set(FAULTS));
      expect(
        all
          .filter((r) => !r.ok)
          .map((r) => `${r.runbook} ${r.step} ${r.fault}: ${r.failures.join('; ')}`),
      ).toEqual([]);
      expect(halves.map((h) => h.code)).toEqual([0, 0]);
    }, 3_000_000);
  },
);
