import { sha256 } from '../lib/core/hash.ts';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { sign } from '../lib/approval/approval.ts';
import { main } from '../lib/app/cli.ts';
import type { JournalRecord } from '../lib/core/events.ts';
import { readJournal } from '../lib/engine/journal.ts';
import { planRunbook, resumeRun, startRun } from '../lib/app/runs.ts';
import { runsDir } from '../lib/app/paths.ts';
import {
  headMessage,
  readSignatures,
  verifyRun,
  type Verification,
} from '../lib/approval/signing.ts';
import { captureIo, forgetInIndex, ORDERED, workspace, type Workspace } from './helpers.ts';

let keyDir: string;
const key = (name: string): string => join(keyDir, name);
const pub = (name: string): string =>
  readFileSync(key(name) + '.pub', 'utf8')
    .trim()
    .split(' ')
    .slice(0, 2)
    .join(' ');

beforeAll(() => {
  keyDir = join(workspace().cwd, 'keys');
  mkdirSync(keyDir);
  for (const name of ['alice', 'bob', 'mallory', 'ci']) {
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', key(name)]);
  }
});

/** A stack that needs one approval (alice's); bob is the operator and signs the journal. */
function production(): Workspace & { approvals: string } {
  const ws = workspace();
  writeFileSync(
    join(ws.cwd, 'approvers'),
    `alice@example.org senior ${pub('alice')} alice\nbob@example.org senior ${pub('bob')} bob\n`,
  );
  writeFileSync(
    join(ws.cwd, 'baton.policy.json'),
    JSON.stringify({ stacks: { nodes: { approvers: 1, holdSeconds: 0, reconfirm: false } } }),
  );
  const approvals = join(ws.cwd, 'approvals');
  mkdirSync(approvals);
  return { ...ws, approvals };
}

async function approvedRun(
  ws: Workspace & { approvals: string },
  extra: { gate?: () => never; signingKey?: string } = {},
): Promise<string> {
  const params = [`dir=${ws.data}`];
  const { plan, hash } = await planRunbook({
    runbook: ORDERED,
    stack: 'nodes',
    params,
    cwd: ws.cwd,
  });
  const approval = await sign({
    purpose: 'approve',
    planHash: hash,
    policyHash: plan.policyHash!,
    runbook: 'ordered',
    stack: 'nodes',
    emergency: false,
    keyPath: key('alice'),
  });
  writeFileSync(join(ws.approvals, 'alice.json'), JSON.stringify(approval));
  const result = await startRun({
    runbook: ORDERED,
    stack: 'nodes',
    params,
    cwd: ws.cwd,
    approvals: ws.approvals,
    approvedHash: hash,
    approvedPlan: plan,
    signingKey: key('bob'),
    ...extra,
  });
  return result.runId;
}

const runDirOf = (ws: Workspace, runId: string): string => join(runsDir(ws.cwd), runId);

async function cli(ws: Workspace, args: string[]): Promise<{ code: number; text: string }> {
  const io = captureIo();
  const before = process.cwd();
  process.chdir(ws.cwd);
  try {
    const code = await main(args, io);
    return { code, text: io.text() };
  } finally {
    process.chdir(before);
  }
}

/** What someone with write access to the run directory can do: change records and chain them again. */
function rechain(dir: string, edit: (records: JournalRecord[]) => JournalRecord[]): void {
  const records = readJournal(dir).records;
  let prev = '0'.repeat(64);
  const lines = edit(records).map((r, seq) => {
    const line = JSON.stringify({ ...r, seq, prev });
    prev = sha256(line);
    return line;
  });
  writeFileSync(join(dir, 'journal.jsonl'), lines.join('\n') + '\n');
  writeFileSync(join(dir, 'head'), JSON.stringify({ seq: lines.length - 1, hash: prev }) + '\n');
}

describe('signed journal heads', () => {
  it('signs the head where the run is cleared and where it ends, and verify says what it trusts', async () => {
    const ws = production();
    const runId = await approvedRun(ws);
    const { records } = readJournal(runDirOf(ws, runId));
    const cleared = records.find((r) => r.event.kind === 'cleared')!.seq;
    const end = records.at(-1)!;
    expect(end.event).toMatchObject({ kind: 'run-end', outcome: 'done' });
    expect(readSignatures(runDirOf(ws, runId)).map((s) => [s.seq, s.kind])).toEqual([
      [cleared, 'cleared'],
      [end.seq, 'run-end'],
    ]);

    const json = await cli(ws, ['verify', runId, '--json']);
    expect(json.code).toBe(0);
    const v = JSON.parse(json.text) as Verification;
    expect(v).toMatchObject({
      status: 'verified',
      problems: [],
      heads: [
        { seq: cleared, kind: 'cleared', ok: true, principal: 'bob@example.org' },
        { seq: end.seq, kind: 'run-end', ok: true, principal: 'bob@example.org' },
      ],
    });
    expect(v.trusted).toContain(`the approvers file ${join(ws.cwd, 'approvers')} (2 key(s))`);
    expect(v.clearances).toMatchObject([
      {
        seq: cleared,
        ok: true,
        approvals: [{ purpose: 'approve', principal: 'alice@example.org' }],
      },
    ]);
    expect(v.trusted).toContain(
      `the run index ${join(ws.cwd, '.baton', 'runs-index.jsonl')}, which notes every signed head: whoever can write it and the run directory can cut the end of both`,
    );
    const text = await cli(ws, ['verify', runId]);
    expect(text.text).toContain(`Run ${runId}: verified`);
    expect(text.text).toContain(`record ${end.seq} (run-end): good signature by bob@example.org`);
  });

  it('fails verify and resume for a journal whose run-end was dropped and which was chained again', async () => {
    const ws = production();
    const runId = await approvedRun(ws);
    const dir = runDirOf(ws, runId);
    const end = readJournal(dir).records.at(-1)!.seq;
    // Drop the run-end, and make the run look interrupted in its last step.
    rechain(dir, (records) => [
      ...records.slice(0, -1),
      { ...records.at(-1)!, event: { kind: 'log', message: 'controller lost' } },
      {
        ...records.at(-1)!,
        event: { kind: 'intent', step: 's3', host: 'b', attempt: 1, commands: [] },
      },
    ]);
    expect(() => readJournal(dir)).not.toThrow();
    const log = ws.log();

    const verify = await cli(ws, ['verify', runId]);
    expect(verify.code).toBe(1);
    expect(verify.text).toContain(`Run ${runId}: FAILED verification`);
    expect(verify.text).toContain(
      `the signed head at record ${end} (run-end) does not match the journal: records up to ${end} were rewritten after they were signed`,
    );
    await expect(
      resumeRun({ runId, params: [], cwd: ws.cwd, signingKey: key('bob') }),
    ).rejects.toMatchObject({
      code: 'JOURNAL_CORRUPT',
      message: expect.stringContaining(`the signed head at record ${end} (run-end) does not match`),
    });
    expect((await cli(ws, ['resume', runId, '--signing-key', key('bob')])).code).toBe(1);
    expect(ws.log()).toEqual(log);
  });

  it('fails a journal rewritten before its gate and signed again by a key nobody allowed', async () => {
    const ws = production();
    const runId = await approvedRun(ws);
    const dir = runDirOf(ws, runId);
    rechain(dir, (records) =>
      records.map((r) =>
        r.event.kind === 'run-start'
          ? { ...r, event: { ...r.event, operator: 'alice@laptop' } }
          : r,
      ),
    );
    const { records, hashes } = readJournal(dir);
    // Mallory signs the new heads in place of the old signatures.
    const forged = readSignatures(dir).map((s) => {
      const head = { seq: s.seq, hash: hashes[s.seq]! };
      const signature = execFileSync(
        'ssh-keygen',
        ['-q', '-Y', 'sign', '-f', key('mallory'), '-n', 'baton-journal'],
        { input: headMessage(head), encoding: 'utf8' },
      );
      return JSON.stringify({ ...s, ...head, signature });
    });
    writeFileSync(join(dir, 'signatures.jsonl'), forged.join('\n') + '\n');
    const v = await verifyRun(dir, {
      signers: {
        signers: [{ principal: 'bob@example.org', roles: ['senior'], publicKey: pub('bob') }],
        sources: ['bob'],
      },
    });
    const cleared = records.find((r) => r.event.kind === 'cleared')!.seq;
    expect(v.status).toBe('failed');
    expect(v.problems).toContain(
      `the signature at record ${cleared} (cleared) is not by an allowed signer, or is damaged`,
    );
    expect((await cli(ws, ['verify', runId])).code).toBe(1);
  });

  it('refuses a run that needs approvals without a signing key, before anything is recorded', async () => {
    const ws = production();
    const planFile = join(ws.cwd, 'plan.json');
    expect(
      (
        await cli(ws, [
          'plan',
          ORDERED,
          '--stack',
          'nodes',
          '--param',
          `dir=${ws.data}`,
          '--out',
          planFile,
        ])
      ).code,
    ).toBe(0);
    const run = await cli(ws, ['run', '--plan', planFile, '--approvals', ws.approvals]);
    expect(run.code).toBe(2);
    expect(run.text).toContain(
      'ordered on stack nodes needs approvals, so its journal must be signed, and no signing key was given',
    );
    expect(existsSync(runsDir(ws.cwd))).toBe(false);
  });

  it('makes a resume of a signed journal sign what it adds, and refuses one without a key', async () => {
    const ws = production();
    const runId = await approvedRun(ws, {
      gate: () => {
        throw new Error('the controller died at the gate');
      },
    });
    const dir = runDirOf(ws, runId);
    expect(readSignatures(dir)).toEqual([]);

    await expect(resumeRun({ runId, params: [], cwd: ws.cwd })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      message: `run ${runId} has a signed journal, so what its resume writes must be signed too, and no signing key was given`,
    });
    const resumed = await resumeRun({ runId, params: [], cwd: ws.cwd, signingKey: key('bob') });
    expect(resumed.outcome).toBe('precondition-failed');
    const end = readJournal(dir).records.at(-1)!;
    expect(end.event.kind).toBe('run-end');
    expect(readSignatures(dir).map((s) => [s.seq, s.kind])).toEqual([[end.seq, 'run-end']]);
    expect((await cli(ws, ['verify', runId])).code).toBe(0);
  });

  it('signs on resume a cleared record the controller wrote but did not live to sign', async () => {
    const ws = production();
    const runId = await approvedRun(ws);
    const dir = runDirOf(ws, runId);
    // The shape a crash right after writing the cleared record leaves.
    const read = readJournal(dir);
    const cleared = read.records.find((r) => r.event.kind === 'cleared')!.seq;
    const lines = readFileSync(join(dir, 'journal.jsonl'), 'utf8').split('\n');
    writeFileSync(join(dir, 'journal.jsonl'), lines.slice(0, cleared + 1).join('\n') + '\n');
    writeFileSync(join(dir, 'head'), JSON.stringify({ seq: cleared, hash: read.hashes[cleared] }));
    writeFileSync(join(dir, 'signatures.jsonl'), '');
    forgetInIndex(ws.cwd, runId);

    const before = await verifyRun(dir, {});
    expect(before.status).toBe('incomplete');
    const resumed = await resumeRun({ runId, params: [], cwd: ws.cwd, signingKey: key('bob') });
    expect(resumed.outcome).toBe('done');
    expect(readSignatures(dir).map((s) => s.kind)).toEqual(['cleared', 'run-end']);
    expect((await cli(ws, ['verify', runId])).code).toBe(0);
  });

  it('fails verify, resume and runs for a journal whose signed end was cut off with its signature', async () => {
    const ws = production();
    const runId = await approvedRun(ws);
    const dir = runDirOf(ws, runId);
    const read = readJournal(dir);
    const end = read.records.at(-1)!.seq;
    const cut = end - 2;
    // Drop the last records and their signatures, and the head with them: the chain still holds.
    const lines = readFileSync(join(dir, 'journal.jsonl'), 'utf8').split('\n');
    writeFileSync(join(dir, 'journal.jsonl'), lines.slice(0, cut + 1).join('\n') + '\n');
    writeFileSync(join(dir, 'head'), JSON.stringify({ seq: cut, hash: read.hashes[cut] }) + '\n');
    const kept = readSignatures(dir).filter((sig) => sig.seq <= cut);
    writeFileSync(
      join(dir, 'signatures.jsonl'),
      kept.map((k) => JSON.stringify(k) + '\n').join(''),
    );
    expect(() => readJournal(dir)).not.toThrow();
    const index = join(ws.cwd, '.baton', 'runs-index.jsonl');
    const problem = `the run index ${index} says run ${runId} was signed up to record ${end} (run-end), and the journal ends at record ${cut}: its signed end was cut off`;

    const verify = await cli(ws, ['verify', runId]);
    expect(verify.code).toBe(1);
    expect(verify.text).toContain(`Run ${runId}: FAILED verification`);
    expect(verify.text).toContain(`problem: ${problem}`);
    const runs = await cli(ws, ['runs', '--json']);
    expect(JSON.parse(runs.text)).toMatchObject([{ runId, journal: problem }]);
    expect((await cli(ws, ['runs'])).text).toContain(`  journal: ${problem}`);
    await expect(
      resumeRun({ runId, params: [], cwd: ws.cwd, signingKey: key('bob') }),
    ).rejects.toMatchObject({ code: 'JOURNAL_CORRUPT', message: expect.stringContaining(problem) });
  });

  it('fails verify of a signed journal whose entries the run index lost', async () => {
    const ws = production();
    const runId = await approvedRun(ws);
    forgetInIndex(ws.cwd, runId);
    const verify = await cli(ws, ['verify', runId]);
    expect(verify.code).toBe(1);
    expect(verify.text).toContain(
      `the journal has a signed head at record ${readJournal(runDirOf(ws, runId)).records.at(-1)!.seq} (run-end), and the run index ${join(ws.cwd, '.baton', 'runs-index.jsonl')} has no entry for run ${runId}`,
    );
  });

  it('refuses a signing key that is neither an approver nor a controller the policy names, before the run directory is made', async () => {
    const ws = production();
    const planFile = join(ws.cwd, 'plan.json');
    const plan = ['plan', ORDERED, '--stack', 'nodes', '--param', `dir=${ws.data}`];
    expect((await cli(ws, [...plan, '--out', planFile])).code).toBe(0);
    const approved = await cli(ws, [
      'approve',
      planFile,
      '--key',
      key('alice'),
      '--out',
      ws.approvals,
    ]);
    expect(approved.code).toBe(0);
    const run = ['run', '--plan', planFile, '--approvals', ws.approvals, '--signing-key'];
    const refused = await cli(ws, [...run, key('mallory')]);
    expect(refused.code).toBe(2);
    expect(refused.text).toContain(
      `the signing key ${key('mallory')} is not one that may sign journals: it is neither an approver's key nor a controller key the policy names (trusted: the approvers file ${join(ws.cwd, 'approvers')} (2 key(s)))`,
    );
    expect(existsSync(runsDir(ws.cwd))).toBe(false);
    // Nothing was used up: the same approval runs with a key the policy trusts.
    expect(existsSync(join(ws.cwd, '.baton', 'approvals'))).toBe(false);
    expect((await cli(ws, [...run, key('bob')])).code).toBe(0);
  });

  it('signs with a controller key the policy names under signers.controllers, which verify trusts', async () => {
    const ws = production();
    const policyFile = join(ws.cwd, 'baton.policy.json');
    const policy = JSON.parse(readFileSync(policyFile, 'utf8')) as Record<string, unknown>;
    writeFileSync(
      policyFile,
      JSON.stringify({ ...policy, signers: { controllers: [`${pub('ci')} ci-controller`] } }),
    );
    const runId = await approvedRun(ws, { signingKey: key('ci') });
    const v = await cli(ws, ['verify', runId, '--json']);
    expect(v.code, v.text).toBe(0);
    const verification = JSON.parse(v.text) as Verification;
    expect(verification.heads.map((h) => [h.kind, h.ok, h.principal])).toEqual([
      ['cleared', true, 'controller:ci-controller'],
      ['run-end', true, 'controller:ci-controller'],
    ]);
    expect(verification.trusted).toContain(
      `the controller key(s) under signers.controllers in ${policyFile} (1)`,
    );
    // Without the policy naming it, the same key is refused.
    writeFileSync(policyFile, JSON.stringify(policy));
    await expect(approvedRun(ws, { signingKey: key('ci') })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      message: expect.stringContaining(
        `the signing key ${key('ci')} is not one that may sign journals`,
      ),
    });
  });

  it('says of a testnet run that nothing is signed, and exits 1', async () => {
    const ws = workspace(['a']);
    const result = await startRun({
      runbook: ORDERED,
      stack: 'nodes',
      params: [`dir=${ws.data}`],
      cwd: ws.cwd,
    });
    expect(result.outcome).toBe('done');
    const verify = await cli(ws, ['verify', result.runId]);
    expect(verify.code).toBe(1);
    expect(verify.text).toContain(`Run ${result.runId}: NOT verified: nothing is signed`);
    expect(verify.text).toContain(
      'could not check: who wrote the journal: no head is signed, so anyone who can write the run directory could have rewritten it and its chain',
    );
  });
});
