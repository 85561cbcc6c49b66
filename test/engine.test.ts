import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TransientError } from '../lib/core/errors.ts';
import type { RunEvent } from '../lib/core/events.ts';
import type { Transport } from '../lib/core/exec.ts';
import { readJournal } from '../lib/engine/journal.ts';
import { localTransport } from '../lib/transports/local.ts';
import { planRunbook, startRun } from '../lib/app/runs.ts';
import { runsDir } from '../lib/app/paths.ts';
import { ORDERED, ORDERED_PONR, treeHash, workspace } from './helpers.ts';

function events(cwd: string, runId: string): RunEvent[] {
  return readJournal(join(runsDir(cwd), runId)).records.map((r) => r.event);
}

describe('plan', () => {
  it('with a failing precondition changes nothing and names host, check, expected, found and remedy', async () => {
    const ws = workspace();
    const before = treeHash(ws.data);
    const result = await startRun({
      runbook: ORDERED,
      stack: 'nodes',
      params: [`dir=${ws.data}`, 'checkFailAt=b'],
      cwd: ws.cwd,
    });
    expect(result.outcome).toBe('precondition-failed');
    expect(result.state).toBe('unchanged: as before the run');
    expect(result.error).toContain(
      'step s1, host b, check "host is in service": expected in service, found marked out of service',
    );
    expect(result.error).toContain('To do: Bring b back into service.');
    expect(treeHash(ws.data)).toBe(before);
    expect(ws.log()).toEqual([]);
    const kinds = events(ws.cwd, result.runId).map((e) => e.kind);
    expect(kinds).not.toContain('intent');
    expect(kinds.at(-1)).toBe('run-end');
  });

  it('lists every mutation per host as the exact command and marks points of no return', async () => {
    const ws = workspace();
    const { plan } = await planRunbook({
      runbook: ORDERED_PONR,
      stack: 'nodes',
      params: [`dir=${ws.data}`],
      cwd: ws.cwd,
    });
    const s2 = plan.steps.find((s) => s.id === 's2')!;
    expect(s2.pointOfNoReturn).toBe(true);
    expect(plan.steps.find((s) => s.id === 's1')!.pointOfNoReturn).toBe(false);
    expect(s2.hosts.map((h) => h.host)).toEqual(['a', 'b']);
    expect(s2.hosts[0]!.mutations).toEqual([
      `echo apply:s2:a >> ${ws.data}/log`,
      `touch ${ws.data}/s2-a.done`,
    ]);
    expect(plan.steps[0]!.hosts[1]!.undo).toEqual([
      `echo undo:s1:b >> ${ws.data}/log`,
      `rm -f ${ws.data}/s1-b.done`,
    ]);
  });

  it('is a dry run: probes run for real, no mutation reaches the host', async () => {
    const ws = workspace(['alpha', 'beta', 'gamma']);
    const root = join(ws.data, 'demo');
    // A real run first, so the dry run has live state to probe.
    const first = await startRun({
      runbook: 'config-release',
      params: [`root=${root}`],
      cwd: ws.cwd,
    });
    expect(first.outcome).toBe('done');
    const before = treeHash(ws.data);
    const { plan } = await planRunbook({
      runbook: 'config-release',
      params: [`root=${root}`, `source=${join(import.meta.dirname, 'fixtures', 'ordered.ts')}`],
      cwd: ws.cwd,
    });
    // The probes saw the release the first run made live...
    const facts = plan.facts as { perHost: Record<string, { live: string | null }> };
    expect(facts.perHost.alpha!.live).toMatch(/^releases\/[0-9a-f]{16}\.conf$/);
    // ...the plan holds the mutations...
    expect(plan.steps[0]!.hosts[0]!.mutations[0]).toBe(`mkdir -p ${root}/alpha/releases`);
    // ...and not one of them ran.
    expect(treeHash(ws.data)).toBe(before);
  });
});

describe('run', () => {
  it('applies steps in order and ends done with every step verified', async () => {
    const ws = workspace();
    const result = await startRun({
      runbook: ORDERED,
      stack: 'nodes',
      params: [`dir=${ws.data}`],
      cwd: ws.cwd,
    });
    expect(result.outcome).toBe('done');
    expect(result.state).toBe('s3 done');
    expect(ws.log()).toEqual([
      'apply:s1:a',
      'apply:s1:b',
      'apply:s2:a',
      'apply:s2:b',
      'apply:s3:a',
      'apply:s3:b',
    ]);
  });

  it('writes the intent before each mutation and the outcome after', async () => {
    const ws = workspace(['a']);
    const result = await startRun({
      runbook: ORDERED,
      stack: 'nodes',
      params: [`dir=${ws.data}`],
      cwd: ws.cwd,
    });
    const seq = events(ws.cwd, result.runId)
      .filter((e) => ['intent', 'command', 'outcome'].includes(e.kind))
      .map((e) => `${e.kind}:${'step' in e ? e.step : ''}`);
    expect(seq.slice(0, 5)).toEqual([
      'intent:s1',
      'command:s1',
      'command:s1',
      'command:s1',
      'outcome:s1',
    ]);
  });

  it('rolls back completed steps in reverse order when a step fails', async () => {
    const ws = workspace();
    const result = await startRun({
      runbook: ORDERED,
      stack: 'nodes',
      params: [`dir=${ws.data}`, 'failAt=s3:b'],
      cwd: ws.cwd,
    });
    expect(result.outcome).toBe('rolled-back');
    expect(result.state).toBe('unchanged: as before the run');
    expect(result.error).toContain('step s3 failed on b');
    expect(ws.log()).toEqual([
      'apply:s1:a',
      'apply:s1:b',
      'apply:s2:a',
      'apply:s2:b',
      'apply:s3:a',
      'apply:s3:b',
      'undo:s3:b',
      'undo:s3:a',
      'undo:s2:b',
      'undo:s2:a',
      'undo:s1:b',
      'undo:s1:a',
    ]);
    expect(existsSync(join(ws.data, 's1-a.done'))).toBe(false);
  });

  it('ends in needs-human with the exact next action when an undo fails', async () => {
    const ws = workspace();
    const result = await startRun({
      runbook: ORDERED,
      stack: 'nodes',
      params: [`dir=${ws.data}`, 'failAt=s3:a', 'undoFailAt=s2:b'],
      cwd: ws.cwd,
    });
    expect(result.outcome).toBe('needs-human');
    expect(result.state).toBe('partly rolled back: undo of step s2 failed on b');
    expect(result.next).toContain(`rm -f ${ws.data}/s2-b.done`);
    expect(result.next).toContain(`baton resume ${result.runId}`);
    // Rollback stopped at the failed undo: s1 was not undone.
    expect(ws.log().slice(-2)).toEqual(['undo:s3:a', 'undo:s2:b']);
    const end = events(ws.cwd, result.runId).at(-1)!;
    expect(end).toMatchObject({ kind: 'run-end', outcome: 'needs-human', state: result.state });
  });

  it('stops at a point of no return and names the state and the manual recovery', async () => {
    const ws = workspace();
    const result = await startRun({
      runbook: ORDERED_PONR,
      stack: 'nodes',
      params: [`dir=${ws.data}`, 'failAt=s3:b'],
      cwd: ws.cwd,
    });
    expect(result.outcome).toBe('needs-human');
    expect(result.state).toBe('s2 done');
    expect(result.next).toContain('Step s2 (Step s2) has no undo and ran on b, a');
    expect(result.next).toContain('delete the s2 markers by hand');
    expect(ws.log().slice(-2)).toEqual(['undo:s3:b', 'undo:s3:a']);
  });

  it('fans out over hosts no wider than the step allows', async () => {
    const ws = workspace(['a', 'b', 'c', 'd', 'e']);
    let running = 0;
    let widest = 0;
    const local = localTransport();
    const counting: Transport = {
      async exec(host, command, options) {
        running++;
        widest = Math.max(widest, running);
        try {
          await new Promise((r) => setTimeout(r, 20));
          return await local.exec(host, command, options);
        } finally {
          running--;
        }
      },
      close: async () => {},
    };
    const result = await startRun({
      runbook: join(import.meta.dirname, 'fixtures', 'fanout.ts'),
      stack: 'nodes',
      params: [`dir=${ws.data}`],
      cwd: ws.cwd,
      deps: { transportFor: () => counting },
    });
    expect(result.outcome).toBe('done');
    expect(widest).toBe(2);
  });
});

describe('failure handling', () => {
  it('retries a transient failure with backoff, and not a deterministic one', async () => {
    const ws = workspace(['a']);
    const local = localTransport();
    let resets = 1;
    const flaky: Transport = {
      async exec(host, command, options) {
        if (command.startsWith('echo apply:s2') && resets-- > 0) {
          throw new TransientError(
            host.name,
            'connection reset by peer before the command started',
            false,
          );
        }
        return local.exec(host, command, options);
      },
      close: async () => {},
    };
    const delays: number[] = [];
    const result = await startRun({
      runbook: ORDERED,
      stack: 'nodes',
      params: [`dir=${ws.data}`],
      cwd: ws.cwd,
      deps: {
        transportFor: () => flaky,
        sleep: async (ms) => void delays.push(ms),
        backoffMs: 100,
      },
    });
    expect(result.outcome).toBe('done');
    expect(delays).toEqual([100]);
    const retries = events(ws.cwd, result.runId).filter((e) => e.kind === 'retry');
    expect(retries).toHaveLength(1);

    const ws2 = workspace(['a']);
    const failed = await startRun({
      runbook: ORDERED,
      stack: 'nodes',
      params: [`dir=${ws2.data}`, 'failAt=s1:a'],
      cwd: ws2.cwd,
      deps: { sleep: async (ms) => void delays.push(ms) },
    });
    expect(failed.outcome).toBe('rolled-back');
    expect(events(ws2.cwd, failed.runId).filter((e) => e.kind === 'retry')).toHaveLength(0);
  });

  it('does not retry a connection that dropped after a mutation started, unless the step is idempotent', async () => {
    const ws = workspace(['a']);
    const local = localTransport();
    const dropping: Transport = {
      async exec(host, command, options) {
        if (command.startsWith('touch') && command.includes('s1-a.done')) {
          await local.exec(host, command, options);
          throw new TransientError(host.name, 'connection dropped mid-command', true);
        }
        return local.exec(host, command, options);
      },
      close: async () => {},
    };
    const result = await startRun({
      runbook: ORDERED,
      stack: 'nodes',
      params: [`dir=${ws.data}`],
      cwd: ws.cwd,
      deps: { transportFor: () => dropping, sleep: async () => {} },
    });
    expect(result.outcome).toBe('rolled-back');
    expect(result.error).toContain('not retried: a mutation had started');
    expect(ws.log()).toEqual(['apply:s1:a', 'undo:s1:a']);
  });
});

describe('secrets', () => {
  it('never appear in output, journal or report, though the hosts receive them', async () => {
    const ws = workspace(['a']);
    const token = 'hunter2-very-secret';
    process.env.BATON_TEST_TOKEN = token;
    const result = await startRun({
      runbook: ORDERED,
      stack: 'nodes',
      params: [`dir=${ws.data}`, 'token=@env:BATON_TEST_TOKEN', 'failAt=s2:a'],
      cwd: ws.cwd,
    });
    expect(result.outcome).toBe('rolled-back');
    // The failing command echoed the token to stderr; the journal keeps the output, redacted.
    const journal = readFileSync(join(runsDir(ws.cwd), result.runId, 'journal.jsonl'), 'utf8');
    expect(journal).toContain('[redacted:token]');
    expect(journal).not.toContain(token);
    expect(JSON.stringify(result)).not.toContain(token);
    expect(journal).toContain('@env:BATON_TEST_TOKEN');
  });
});

describe('step primitives', () => {
  it('plans actions and pipes as text, and performs them in a run', async () => {
    const { createServer } = await import('node:net');
    const { writeFileSync, readFileSync } = await import('node:fs');
    const server = createServer((s) => s.end('hello\n'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const ws = workspace();
      writeFileSync(join(ws.data, 'data-a'), 'x'.repeat(100_000));
      const runbook = join(import.meta.dirname, 'fixtures', 'primitives.ts');
      const params = [`dir=${ws.data}`, `port=${port}`];
      const { plan } = await planRunbook({ runbook, stack: 'nodes', params, cwd: ws.cwd });
      expect(plan.preflight).toMatchObject([{ name: 'greeting', ok: true }]);
      expect(plan.steps[1]!.hosts[0]).toEqual({
        host: 'a',
        mutations: [`pager: release with {"dir":"${ws.data}"}`],
        undo: [`pager: withdrawn with {"dir":"${ws.data}"}`],
      });
      expect(plan.steps[2]!.hosts[0]!.mutations).toEqual([
        `a: cat ${ws.data}/data-a | b: cat > ${ws.data}/data-b`,
      ]);
      expect(existsSync(join(ws.data, 'pager'))).toBe(false);

      const result = await startRun({ runbook, stack: 'nodes', params, cwd: ws.cwd });
      expect(result.outcome).toBe('done');
      expect(readFileSync(join(ws.data, 'pager'), 'utf8')).toBe('released\n');
      const copied = events(ws.cwd, result.runId).find(
        (e) => e.kind === 'command' && e.step === 'copy',
      ) as Extract<RunEvent, { kind: 'command' }>;
      expect(copied.result.stdout).toMatch(/^100000 bytes, sha256 [0-9a-f]{64}$/);
      expect(events(ws.cwd, result.runId).filter((e) => e.kind === 'log')).toEqual([
        { kind: 'log', step: 'announce', host: 'a', message: `announced: released ${ws.data}` },
      ]);
    } finally {
      server.close();
    }
  });
});

describe('what runs is what was planned', () => {
  const POINTER = join(import.meta.dirname, 'fixtures', 'pointer.ts');

  it("compares an action's data with the plan, not only its description", async () => {
    const ws = workspace();
    writeFileSync(join(ws.data, 'target'), 'b\n');
    const result = await startRun({
      runbook: POINTER,
      stack: 'nodes',
      params: [`dir=${ws.data}`],
      cwd: ws.cwd,
      // Between the plan and the step, the live state the action reads changes.
      gate: async () => {
        writeFileSync(join(ws.data, 'target'), 'c\n');
        return { ok: true, emergency: false, approvers: [], reconfirmedBy: [], replan: false };
      },
    });
    expect(result.outcome).toBe('rolled-back');
    expect(result.error).toContain(
      'step point on controller would run `dns: point www at the target with {"name":"www","value":"c"}` as mutation 1, ' +
        'but the plan says `dns: point www at the target with {"name":"www","value":"b"}`; it was not run',
    );
    expect(readFileSync(join(ws.data, 'pointed'), 'utf8')).toBe('back\n');
  });

  it('gives the action the data that was compared', async () => {
    const ws = workspace();
    writeFileSync(join(ws.data, 'target'), 'b\n');
    const result = await startRun({
      runbook: POINTER,
      stack: 'nodes',
      params: [`dir=${ws.data}`],
      cwd: ws.cwd,
    });
    expect(result.outcome).toBe('done');
    expect(readFileSync(join(ws.data, 'pointed'), 'utf8')).toBe('b\n');
    const acted = events(ws.cwd, result.runId).find((e) => e.kind === 'command');
    expect(acted).toMatchObject({
      result: { command: 'dns: point www at the target with {"name":"www","value":"b"}' },
    });
  });

  it('refuses a drifted plan before the gate, naming the step, host and command that differ', async () => {
    const ws = workspace();
    writeFileSync(join(ws.data, 'target'), 'b\n');
    const params = [`dir=${ws.data}`];
    const approved = await planRunbook({ runbook: POINTER, stack: 'nodes', params, cwd: ws.cwd });
    writeFileSync(join(ws.data, 'target'), 'c\n');
    const gated: string[] = [];
    const result = await startRun({
      runbook: POINTER,
      stack: 'nodes',
      params,
      cwd: ws.cwd,
      approvedHash: approved.hash,
      approvedPlan: approved.plan,
      gate: async (_plan, hash) => {
        gated.push(hash);
        return { ok: true, emergency: false, approvers: [], reconfirmedBy: [], replan: false };
      },
    });
    expect(result.outcome).toBe('precondition-failed');
    expect(result.error).toBe(
      `the plan changed since it was approved: approved ${approved.hash.slice(0, 12)}, the hosts now give ${result.planHash!.slice(0, 12)}:\n` +
        '- step point on controller, mutation 1: `dns: point www at the target with {"name":"www","value":"c"}` now, ' +
        '`dns: point www at the target with {"name":"www","value":"b"}` when approved',
    );
    expect(gated).toEqual([]);
    const kinds = events(ws.cwd, result.runId).map((e) => e.kind);
    expect(kinds).toEqual(['run-start', 'planned', 'preflight', 'run-end']);
    expect(existsSync(join(ws.data, 'pointed'))).toBe(false);
  });
});

describe('the journal and what hosts print', () => {
  it('keeps the output of changes but not of reads, which may be configuration with passwords', async () => {
    const ws = workspace(['a']);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(ws.data, 's1-a.done'), '');
    writeFileSync(join(ws.data, 'secret.conf'), 'sendpass="not-a-param-secret"\n');
    const result = await startRun({
      runbook: join(import.meta.dirname, 'fixtures', 'reads.ts'),
      stack: 'nodes',
      params: [`dir=${ws.data}`],
      cwd: ws.cwd,
    });
    expect(result.outcome).toBe('done');
    const journal = readFileSync(join(runsDir(ws.cwd), result.runId, 'journal.jsonl'), 'utf8');
    expect(journal).not.toContain('not-a-param-secret');
    expect(journal).toContain('changed it');
  });
});

describe('a controller that cannot finish its run', () => {
  it('ends in needs-human, pointing at resume, when recording fails mid-run', async () => {
    const ws = workspace(['a']);
    let broken = false;
    const result = await startRun({
      runbook: ORDERED,
      stack: 'nodes',
      params: [`dir=${ws.data}`],
      cwd: ws.cwd,
      deps: {
        onEvent(e) {
          if (e.kind === 'outcome' && e.step === 's1') broken = true;
          if (broken) throw new Error('ENOSPC: no space left on device, write');
        },
      },
    });
    expect(result.outcome).toBe('needs-human');
    expect(result.state).toBe('unknown: the controller stopped in the middle of the run');
    expect(result.next).toContain(`baton resume ${result.runId}`);
    expect(result.next).toContain('ENOSPC');
    expect(ws.log()).toEqual(['apply:s1:a']);
  });
});

describe('work already done', () => {
  const SETTLED = join(import.meta.dirname, 'fixtures', 'settled.ts');

  it('a step its check finds done on one host runs on the others only, and the plan says why', async () => {
    const ws = workspace();
    writeFileSync(join(ws.data, 'a.marked'), '');
    const params = [`dir=${ws.data}`];
    const { plan } = await planRunbook({ runbook: SETTLED, stack: 'nodes', params, cwd: ws.cwd });
    expect(plan.steps[0]!.hosts).toEqual([
      { host: 'a', mutations: [], undo: [], done: `marker present: ${ws.data}/a.marked` },
      {
        host: 'b',
        mutations: [`touch ${ws.data}/b.marked`],
        undo: [`rm -f ${ws.data}/b.marked`],
      },
    ]);
    expect(plan.nothingToDo).toBeUndefined();
    const result = await startRun({ runbook: SETTLED, stack: 'nodes', params, cwd: ws.cwd });
    expect(result).toMatchObject({ outcome: 'done', state: 'every node marked' });
    expect(result.nothingToDo).toBeUndefined();
    const intents = events(ws.cwd, result.runId).filter((e) => e.kind === 'intent');
    expect(intents.map((e) => e.host)).toEqual(['b']);
    expect(existsSync(join(ws.data, 'b.marked'))).toBe(true);
  });

  it('a run whose every step is done or skipped changes nothing, asks no gate, and ends done saying so', async () => {
    const ws = workspace();
    for (const h of ['a', 'b']) writeFileSync(join(ws.data, `${h}.marked`), '');
    const before = treeHash(ws.data);
    const gated: string[] = [];
    const result = await startRun({
      runbook: SETTLED,
      stack: 'nodes',
      params: [`dir=${ws.data}`],
      cwd: ws.cwd,
      gate: async (_plan, hash) => {
        gated.push(hash);
        return { ok: true, emergency: false, approvers: [], reconfirmedBy: [], replan: false };
      },
    });
    expect(result).toMatchObject({
      outcome: 'done',
      state: 'every node marked',
      nothingToDo: true,
    });
    expect(gated).toEqual([]);
    expect(treeHash(ws.data)).toBe(before);
    const journal = events(ws.cwd, result.runId);
    expect(journal.map((e) => e.kind)).toEqual(['run-start', 'planned', 'preflight', 'run-end']);
    expect(journal.at(-1)).toMatchObject({ kind: 'run-end', outcome: 'done', nothingToDo: true });
  });

  it('refuses an approved plan whose work was done since, naming the step and host', async () => {
    const ws = workspace();
    const params = [`dir=${ws.data}`];
    const approved = await planRunbook({ runbook: SETTLED, stack: 'nodes', params, cwd: ws.cwd });
    writeFileSync(join(ws.data, 'a.marked'), '');
    const result = await startRun({
      runbook: SETTLED,
      stack: 'nodes',
      params,
      cwd: ws.cwd,
      approvedHash: approved.hash,
      approvedPlan: approved.plan,
    });
    expect(result.outcome).toBe('precondition-failed');
    expect(result.error).toContain(
      `- step mark on a is now already done (marker present: ${ws.data}/a.marked)`,
    );
  });
});

describe("a runbook's own code that throws", () => {
  const THROWING = join(import.meta.dirname, 'fixtures', 'throwing.ts');
  const start = (ws: ReturnType<typeof workspace>, ...params: string[]) =>
    startRun({
      runbook: THROWING,
      stack: 'nodes',
      params: [`dir=${ws.data}`, ...params],
      cwd: ws.cwd,
    });

  it('while planning is named by runbook, step, host and phase, and nothing runs', async () => {
    const ws = workspace();
    const before = treeHash(ws.data);
    await expect(
      planRunbook({
        runbook: THROWING,
        stack: 'nodes',
        params: [`dir=${ws.data}`, 'throwIn=apply'],
        cwd: ws.cwd,
      }),
    ).rejects.toMatchObject({
      code: 'RUNBOOK_ERROR',
      message:
        "runbook throwing, step write on a, its apply (while planning) threw: TypeError: Cannot read properties of undefined (reading 'file')",
    });
    const facts = await start(ws, 'throwIn=facts');
    expect(facts).toMatchObject({
      outcome: 'precondition-failed',
      error: `runbook throwing, its facts threw: no inventory file in ${ws.data}`,
    });
    expect(facts.next).toContain("That is the runbook's own code, before any change");
    const check = await start(ws, 'throwIn=check');
    expect(check.outcome).toBe('precondition-failed');
    expect(check.error).toContain(
      'step write, host a, check "check could run": expected the check to complete, found the check threw: cannot read the state of a.',
    );
    expect(treeHash(ws.data)).toBe(before);
  });

  it('in a run fails its step, named with the host, and is rolled back; a secret in it is redacted', async () => {
    const ws = workspace(['a']);
    process.env.BATON_ENGINE_TOKEN = 'thrown-secret-42';
    const result = await start(ws, 'throwIn=verify', 'token=@env:BATON_ENGINE_TOKEN');
    expect(result.outcome).toBe('rolled-back');
    expect(result.error).toBe(
      'step write failed on a: the verify of runbook throwing threw: verify of a with [redacted:token]',
    );
    expect(existsSync(join(ws.data, 'a'))).toBe(false);
  });
});
