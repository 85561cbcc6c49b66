/**
 * `idempotent: true` is a promise: every step so marked is applied again
 * after a dropped connection (mid-apply, and after its last mutation), and
 * its verify and undo still hold, checked on the files themselves. The demo
 * runbook here; the IRC runbooks on the testnet in test/faults/.
 */
import { createHash } from 'node:crypto';
import {
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { planRunbook, startRun } from '../lib/app/runs.ts';
import { loadRunbook } from '../lib/app/registry.ts';
import { allOf, dropConnections, failAt, idempotentSteps } from './support/idempotence.ts';
import { workspace } from './helpers.ts';

/** Every file and link under `root`, with its content's sha256 or its target. */
function tree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      const st = lstatSync(path);
      const key = relative(root, path);
      if (st.isSymbolicLink()) out[key] = `-> ${readlinkSync(path)}`;
      else if (st.isDirectory()) walk(path);
      else out[key] = createHash('sha256').update(readFileSync(path)).digest('hex');
    }
  };
  walk(root);
  return out;
}

async function release(root: string, cwd: string): Promise<string> {
  const r = await startRun({
    runbook: 'config-release',
    stack: 'demo',
    params: [`root=${root}`],
    cwd,
  });
  return r.outcome;
}

describe('idempotent steps of config-release, on the demo stack', () => {
  for (const when of ['first', 'last'] as const) {
    it(`hold when their connection drops after their ${when} mutation: verify on the way, undo on the way back`, async () => {
      const ws = workspace();
      const root = mkdtempSync(join(tmpdir(), 'baton-demo-'));
      expect(await release(root, ws.cwd)).toBe('done');
      const before = tree(root);
      const next = join(ws.cwd, 'next.conf');
      writeFileSync(next, 'listen = 8081\n');

      const { plan } = await planRunbook({
        runbook: 'config-release',
        stack: 'demo',
        params: [`root=${root}`, `source=${next}`],
        cwd: ws.cwd,
      });
      const steps = idempotentSteps((await loadRunbook('config-release')).runbook, plan);
      expect(steps).toEqual(['stage', 'switch']);

      // Applied again after each drop, then rolled back from a refusal at the last host.
      const drops = dropConnections(plan, steps, when);
      const rolled = await startRun({
        runbook: 'config-release',
        stack: 'demo',
        params: [`root=${root}`, `source=${next}`],
        cwd: ws.cwd,
        deps: {
          afterMutation: allOf(drops.afterMutation, failAt('switch', 'gamma')),
          backoffMs: 1,
        },
      });
      expect(rolled.outcome).toBe('rolled-back');
      expect(drops.dropped).toEqual(
        expect.arrayContaining([
          'stage on alpha',
          'stage on beta',
          'stage on gamma',
          'switch on alpha',
        ]),
      );
      expect(tree(root)).toEqual(before);

      // Applied again after each drop, and verified: the release is live everywhere.
      const again = dropConnections(plan, steps, when);
      const done = await startRun({
        runbook: 'config-release',
        stack: 'demo',
        params: [`root=${root}`, `source=${next}`],
        cwd: ws.cwd,
        deps: { afterMutation: again.afterMutation, backoffMs: 1 },
      });
      expect(done.outcome).toBe('done');
      expect(again.dropped).toHaveLength(6);
      const after = tree(root);
      for (const host of ['alpha', 'beta', 'gamma']) {
        expect(after[`${host}/current.conf`]).toMatch(/^-> releases\/[0-9a-f]{16}\.conf$/);
        expect(after[`${host}/current.conf`]).not.toBe(before[`${host}/current.conf`]);
      }
    });
  }
});

describe('a second identical run of config-release', () => {
  it('has nothing to do: its checks find the release live, and it changes nothing', async () => {
    const ws = workspace();
    const root = mkdtempSync(join(tmpdir(), 'baton-demo-'));
    expect(await release(root, ws.cwd)).toBe('done');
    const before = tree(root);
    const { plan } = await planRunbook({
      runbook: 'config-release',
      stack: 'demo',
      params: [`root=${root}`],
      cwd: ws.cwd,
    });
    expect(plan.nothingToDo).toBe(true);
    expect(plan.steps.map((s) => s.skipped ?? s.hosts.map((h) => h.done !== undefined))).toEqual([
      [true, true, true],
      [true, true, true],
      'no host has more than 3 releases',
    ]);
    const again = await startRun({
      runbook: 'config-release',
      stack: 'demo',
      params: [`root=${root}`],
      cwd: ws.cwd,
    });
    expect(again).toMatchObject({
      outcome: 'done',
      nothingToDo: true,
      state: 'new release live on every host, old releases kept',
    });
    expect(tree(root)).toEqual(before);
  });
});
