import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readJournal } from '../lib/engine/journal.ts';
import { localTransport } from '../lib/transports/local.ts';
import { runsDir } from '../lib/app/paths.ts';
import { batonHome } from '../lib/core/home.ts';
import { acquireStackLock, newLockId } from '../lib/engine/stacklock.ts';
import { localNodes, ORDERED, ROOT, workspace, type Workspace, waitFor } from './helpers.ts';

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

function baton(ws: Workspace, ...args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [BATON, ...args], { cwd: ws.cwd, encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

/** A first controller, stopped inside s2 on b, still holding the stack. */
async function firstRunHanging(ws: Workspace): Promise<{ runId: string; kill(): Promise<void> }> {
  const child = spawn(
    process.execPath,
    [
      BATON,
      'run',
      ORDERED,
      '--stack',
      'nodes',
      '--yes',
      '--param',
      `dir=${ws.data}`,
      '--param',
      'slowAt=s2:b',
    ],
    { cwd: ws.cwd, stdio: 'ignore' },
  );
  const started = join(ws.data, 's2-b.started');
  await waitFor(
    'the first run to reach s2 on b',
    () => existsSync(started) && readFileSync(started, 'utf8').trim() !== '',
  );
  orphans.push(Number(readFileSync(started, 'utf8').trim()));
  const [runId] = readdirSync(runsDir(ws.cwd));
  return {
    runId: runId!,
    async kill() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
  };
}

describe('the stack lock', () => {
  it('refuses a second run on a stack another run holds, naming it, before any fact is gathered', async () => {
    const ws = workspace();
    const first = await firstRunHanging(ws);
    const before = ws.log();
    const second = baton(
      ws,
      'run',
      ORDERED,
      '--stack',
      'nodes',
      '--yes',
      '--param',
      `dir=${ws.data}`,
    );
    expect(second.status).toBe(3);
    expect(second.out).toContain('stack nodes is locked by run ' + first.runId);
    expect(second.out).toMatch(/lock id [0-9a-f]{8}/);
    expect(ws.log()).toEqual(before);
    // The refused run left no run behind.
    expect(readdirSync(runsDir(ws.cwd))).toEqual([first.runId]);
    await first.kill();
  });

  it('is never taken over silently: a dead run keeps it until `baton unlock`, which is journaled', async () => {
    const ws = workspace();
    const first = await firstRunHanging(ws);
    await first.kill();
    const refused = baton(
      ws,
      'run',
      ORDERED,
      '--stack',
      'nodes',
      '--yes',
      '--param',
      `dir=${ws.data}`,
    );
    expect(refused.status).toBe(3);
    const lockId = /lock id ([0-9a-f]{8})/.exec(refused.out)![1]!;

    const unlocked = baton(ws, 'unlock', 'nodes', lockId);
    expect(unlocked.status).toBe(0);
    expect(unlocked.out).toContain(`Lock ${lockId} of stack nodes broken on controller`);
    expect(unlocked.out).toContain(`held by run ${first.runId}`);
    const [unlock] = readdirSync(join(batonHome(ws.cwd), 'unlocks'));
    const events = readJournal(join(batonHome(ws.cwd), 'unlocks', unlock!)).records.map(
      (r) => r.event,
    );
    expect(events).toMatchObject([
      { kind: 'unlock', stack: 'nodes', lockId, removed: ['controller'] },
    ]);

    expect(baton(ws, 'unlock', 'nodes', lockId).status).toBe(2);
    const after = baton(
      ws,
      'run',
      ORDERED,
      '--stack',
      'nodes',
      '--yes',
      '--param',
      `dir=${ws.data}`,
    );
    expect(after.status).toBe(0);
  });

  it('a resume takes up the lock of its own run again, and releases it at the end', async () => {
    const ws = workspace();
    const first = await firstRunHanging(ws);
    await first.kill();
    const resumed = baton(ws, 'resume', first.runId);
    expect(resumed.status).toBe(0);
    expect(
      baton(ws, 'run', ORDERED, '--stack', 'nodes', '--yes', '--param', `dir=${ws.data}`).status,
    ).toBe(0);
  });

  it('is taken by exactly one of many controllers that try at once, and every other names it', async () => {
    const ws = workspace();
    const transport = localTransport();
    const tries = await Promise.allSettled(
      Array.from({ length: 16 }, (_, i) =>
        acquireStackLock(
          localNodes(),
          { lockId: newLockId(), runId: `run-${i}`, runbook: 'ordered', operator: 'test' },
          { transportFor: () => transport, now: () => new Date(), home: batonHome(ws.cwd) },
        ),
      ),
    );
    const won = tries.filter((t) => t.status === 'fulfilled');
    expect(won).toHaveLength(1);
    const winner = (won[0] as PromiseFulfilledResult<{ holder: { runId: string } }>).value.holder;
    for (const t of tries.filter((t) => t.status === 'rejected'))
      expect(String((t as PromiseRejectedResult).reason)).toContain(
        `stack nodes is locked by run ${winner.runId}`,
      );
  });

  it('takes a lock directory an older baton left empty (it stopped between making it and writing its holder)', async () => {
    const ws = workspace();
    const transport = localTransport();
    const deps = { transportFor: () => transport, now: () => new Date(), home: batonHome(ws.cwd) };
    const me = { lockId: newLockId(), runId: 'run-a', runbook: 'ordered', operator: 'test' };
    const first = await acquireStackLock(localNodes(), me, deps);
    const dir = join(batonHome(ws.cwd), 'locks');
    const [name] = readdirSync(dir).filter((f) => !f.endsWith('.log'));
    await first.release();
    mkdirSync(join(dir, name!));
    const again = await acquireStackLock(localNodes(), { ...me, lockId: newLockId() }, deps);
    expect(readFileSync(join(dir, name!, 'holder'), 'utf8')).toContain(again.holder.lockId);
    await again.release();
  });
});
