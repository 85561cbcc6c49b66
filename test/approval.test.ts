import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { sign, type ApprovalFile } from '../lib/approval.ts';
import { main } from '../lib/cli.ts';
import type { RunEvent } from '../lib/events.ts';
import { readJournal } from '../lib/journal.ts';
import { planHash } from '../lib/plan.ts';
import { readPlanFile, runsDir, startRun, type PlanFile } from '../lib/runs.ts';
import { buildReport, renderMarkdown } from '../lib/report.ts';
import { captureIo, ORDERED, workspace, type Workspace } from './helpers.ts';

interface Keys {
  dir: string;
  key(name: string): string;
}

let keys: Keys;

beforeAll(() => {
  const dir = join(workspace().cwd, 'keys');
  mkdirSync(dir);
  for (const name of ['alice', 'bob', 'carol', 'mallory']) {
    execFileSync('ssh-keygen', [
      '-q',
      '-t',
      'ed25519',
      '-N',
      '',
      '-C',
      name,
      '-f',
      join(dir, name),
    ]);
  }
  keys = { dir, key: (name) => join(dir, name) };
});

const pub = (name: string): string =>
  readFileSync(keys.key(name) + '.pub', 'utf8')
    .trim()
    .split(' ')
    .slice(0, 2)
    .join(' ');

/** A workspace whose `nodes` stack needs two senior approvers, a hold and a reconfirmation. */
function production(
  rules: Record<string, unknown> = {},
): Workspace & { plan: string; approvals: string } {
  const ws = workspace();
  writeFileSync(
    join(ws.cwd, 'approvers'),
    [
      '# principal roles key',
      `alice@example.org senior,admin ${pub('alice')} alice`,
      `bob@example.org senior ${pub('bob')} bob`,
      `carol@example.org helpdesk ${pub('carol')} carol`,
    ].join('\n') + '\n',
  );
  writeFileSync(
    join(ws.cwd, 'baton.policy.json'),
    JSON.stringify({
      stacks: {
        nodes: {
          approvers: 2,
          holdSeconds: 1,
          reconfirm: true,
          roles: ['senior'],
          reconfirmTimeoutSeconds: 20,
          emergency: { approvers: 1 },
          ...rules,
        },
      },
    }),
  );
  const approvals = join(ws.cwd, 'approvals');
  mkdirSync(approvals);
  return { ...ws, plan: join(ws.cwd, 'plan.json'), approvals };
}

async function inDir<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const before = process.cwd();
  process.chdir(dir);
  try {
    return await fn();
  } finally {
    process.chdir(before);
  }
}

async function makePlan(ws: Workspace & { plan: string }, extra: string[] = []): Promise<PlanFile> {
  const io = captureIo();
  const code = await inDir(ws.cwd, () =>
    main(
      [
        'plan',
        ORDERED,
        '--stack',
        'nodes',
        '--param',
        `dir=${ws.data}`,
        ...extra,
        '--out',
        ws.plan,
      ],
      io,
    ),
  );
  expect(code).toBe(0);
  return readPlanFile(ws.plan);
}

async function approve(
  ws: Workspace & { plan: string; approvals: string },
  who: string,
  extra: string[] = [],
): Promise<string> {
  const io = captureIo();
  const code = await inDir(ws.cwd, () =>
    main(
      ['approve', ws.plan, '--key', keys.key(who), '--out', ws.approvals, '--as', who, ...extra],
      io,
    ),
  );
  expect(code, io.text()).toBe(0);
  return readdirSync(ws.approvals).find(
    (f) => f.includes(who) && f.startsWith(extra.includes('--reconfirm') ? 'reconfirm' : 'approve'),
  )!;
}

/** Run the approved plan; when the hold ends, the named approvers reconfirm with the token the run printed. */
async function runApproved(
  ws: Workspace & { plan: string; approvals: string },
  reconfirmers: string[],
  opts: { emergency?: boolean } = {},
): Promise<{ outcome: string; error?: string; events: RunEvent[]; runId: string }> {
  const file = readPlanFile(ws.plan);
  const pending: Array<Promise<void>> = [];
  const result = await startRun({
    runbook: ORDERED,
    stack: 'nodes',
    params: [`dir=${ws.data}`],
    cwd: ws.cwd,
    approvals: ws.approvals,
    approvedHash: file.planHash,
    pollMs: 50,
    signingKey: keys.key('alice'),
    ...(opts.emergency ? { emergency: true } : {}),
    deps: {
      onEvent(e) {
        if (e.kind !== 'hold-end') return;
        for (const who of reconfirmers) {
          pending.push(
            sign({
              purpose: 'reconfirm',
              planHash: file.planHash,
              runbook: 'ordered',
              stack: 'nodes',
              emergency: false,
              token: e.token,
              keyPath: keys.key(who),
            }).then((a) =>
              writeFileSync(join(ws.approvals, `reconfirm-${who}.json`), JSON.stringify(a)),
            ),
          );
        }
      },
    },
  });
  await Promise.all(pending);
  const events = readJournal(join(runsDir(ws.cwd), result.runId)).records.map((r) => r.event);
  return { ...result, events };
}

const refusals = (events: RunEvent[]): string[] =>
  events
    .filter(
      (e): e is Extract<RunEvent, { kind: 'approval-refused' }> => e.kind === 'approval-refused',
    )
    .map((e) => e.reason);

describe('two-person rule', () => {
  it('runs with two valid approvals, after the hold and both reconfirmations, and records who and when', async () => {
    const ws = production();
    await makePlan(ws);
    await approve(ws, 'alice');
    await approve(ws, 'bob');
    const r = await runApproved(ws, ['alice', 'bob']);
    expect(r.error).toBeUndefined();
    expect(r.outcome).toBe('done');
    const kinds = r.events.map((e) => e.kind);
    const order = [
      'policy',
      'approval',
      'approval',
      'hold',
      'hold-end',
      'approval',
      'approval',
      'cleared',
    ];
    expect(kinds.filter((k) => order.includes(k))).toEqual(order);
    expect(kinds.indexOf('cleared')).toBeLessThan(kinds.indexOf('intent'));
    const hold = r.events.find((e) => e.kind === 'hold')!;
    const holdEnd = readJournal(join(runsDir(ws.cwd), r.runId)).records.find(
      (x) => x.event.kind === 'hold-end',
    )!;
    const holdStart = readJournal(join(runsDir(ws.cwd), r.runId)).records.find(
      (x) => x.event.kind === 'hold',
    )!;
    expect(Date.parse(holdEnd.ts) - Date.parse(holdStart.ts)).toBeGreaterThanOrEqual(1000);
    expect(hold).toMatchObject({ seconds: 1 });
    const report = renderMarkdown(buildReport(readJournal(join(runsDir(ws.cwd), r.runId))));
    expect(report).toMatch(
      /\*\*Approved by:\*\* alice@example\.org \(senior, admin; SHA256:[^)]+\), bob@example\.org \(senior; SHA256:/,
    );
    expect(report).toContain('**Reconfirmed by:** alice@example.org');
    expect(report).toContain('**Emergency:** no');
    expect(report).toContain('**Hold:** 1 s');
  });

  it('refuses the same approver twice', async () => {
    const ws = production();
    await makePlan(ws);
    const first = await approve(ws, 'alice');
    writeFileSync(join(ws.approvals, 'copy.json'), readFileSync(join(ws.approvals, first)));
    const r = await runApproved(ws, []);
    expect(r.outcome).toBe('precondition-failed');
    expect(refusals(r.events)).toContain(
      'alice@example.org already approved: the same approver counts once',
    );
    expect(r.error).toBe('2 distinct approval(s) needed, 1 valid (alice@example.org)');
    expect(ws.log()).toEqual([]);
  });

  it('refuses a signer who is not in the approvers file, and one without the required role', async () => {
    const ws = production();
    await makePlan(ws);
    await approve(ws, 'alice');
    await approve(ws, 'mallory');
    await approve(ws, 'carol');
    const r = await runApproved(ws, []);
    expect(r.outcome).toBe('precondition-failed');
    const reasons = refusals(r.events);
    expect(
      reasons.some((x) =>
        x.includes('its key is not in the approvers file (it says it is from mallory)'),
      ),
    ).toBe(true);
    expect(reasons).toContain(
      'carol@example.org has roles helpdesk, and this policy needs one of senior',
    );
    expect(ws.log()).toEqual([]);
  });

  it('refuses a signature over another plan', async () => {
    const ws = production();
    const other = await makePlan(ws, ['--param', 'failAt=s9:z']);
    await approve(ws, 'alice');
    await approve(ws, 'bob');
    const current = await makePlan(ws);
    expect(current.planHash).not.toBe(other.planHash);
    const r = await runApproved(ws, []);
    expect(r.outcome).toBe('precondition-failed');
    expect(refusals(r.events)).toContain(
      `${join(
        ws.approvals,
        readdirSync(ws.approvals).find((f) => f.includes('alice'))!,
      )} approves plan ${other.planHash.slice(0, 12)}, not this plan ${current.planHash.slice(0, 12)}`,
    );
  });

  it('refuses a forged and a truncated signature', async () => {
    const ws = production();
    const plan = await makePlan(ws);
    const aliceFile = join(ws.approvals, await approve(ws, 'alice'));
    const bobFile = join(ws.approvals, await approve(ws, 'bob'));
    // Forged: bob's signature bytes are changed.
    const bob = JSON.parse(readFileSync(bobFile, 'utf8')) as ApprovalFile;
    const lines = bob.signature.split('\n');
    lines[3] = lines[3]!.slice(0, 10) + (lines[3]![10] === 'A' ? 'B' : 'A') + lines[3]!.slice(11);
    writeFileSync(bobFile, JSON.stringify({ ...bob, signature: lines.join('\n') }));
    // Edited: alice's approval of this plan, re-labelled as an emergency.
    writeFileSync(
      join(ws.approvals, 'edited.json'),
      JSON.stringify({
        ...(JSON.parse(readFileSync(aliceFile, 'utf8')) as ApprovalFile),
        emergency: true,
      }),
    );
    rmSync(aliceFile);
    const r1 = await runApproved(ws, [], { emergency: true });
    expect(r1.outcome).toBe('precondition-failed');
    expect(
      refusals(r1.events).some((x) =>
        x.includes(
          'the signature by alice@example.org does not match what the file says (forged or edited)',
        ),
      ),
    ).toBe(true);

    rmSync(join(ws.approvals, 'edited.json'));
    // Truncated: alice's signature cut in half, and a file cut short.
    const good = await sign({
      purpose: 'approve',
      planHash: plan.planHash,
      runbook: 'ordered',
      stack: 'nodes',
      emergency: false,
      keyPath: keys.key('alice'),
    });
    writeFileSync(
      join(ws.approvals, 'truncated.json'),
      JSON.stringify({ ...good, signature: good.signature.slice(0, good.signature.length / 2) }),
    );
    writeFileSync(join(ws.approvals, 'cut.json'), JSON.stringify(good).slice(0, 200));
    const r2 = await runApproved(ws, []);
    expect(r2.outcome).toBe('precondition-failed');
    const reasons = refusals(r2.events);
    expect(
      reasons.some((x) =>
        x.includes('truncated.json is refused: its signature is damaged or not an SSH signature'),
      ),
    ).toBe(true);
    expect(
      reasons.some((x) => x.includes('cut.json is not an approval: not JSON (truncated?)')),
    ).toBe(true);
    expect(
      reasons.some((x) => x.includes('bob') || x.includes('forged') || x.includes('damaged')),
    ).toBe(true);
    expect(ws.log()).toEqual([]);
  });

  it('refuses a reconfirmation made before the hold ended', async () => {
    const ws = production();
    const plan = await makePlan(ws);
    await approve(ws, 'alice');
    await approve(ws, 'bob');
    // Signed ahead of time, with a guessed token: the real one does not exist until the hold ends.
    const early = await sign({
      purpose: 'reconfirm',
      planHash: plan.planHash,
      runbook: 'ordered',
      stack: 'nodes',
      emergency: false,
      token: '0'.repeat(32),
      keyPath: keys.key('alice'),
    });
    writeFileSync(join(ws.approvals, 'early.json'), JSON.stringify(early));
    const r = await runApproved(ws, ['alice', 'bob']);
    expect(refusals(r.events)).toContain(
      `${join(ws.approvals, 'early.json')} does not carry this hold's reconfirmation token: it was made before the hold ended, or for another run`,
    );
    // The on-time reconfirmations still count.
    expect(r.outcome).toBe('done');
  });

  it('refuses a plan edited after approval', async () => {
    const ws = production();
    await makePlan(ws);
    await approve(ws, 'alice');
    await approve(ws, 'bob');
    const file = JSON.parse(readFileSync(ws.plan, 'utf8')) as PlanFile;
    file.plan.params.failAt = 's1:a';
    writeFileSync(ws.plan, JSON.stringify(file));
    const io = captureIo();
    const code = await inDir(ws.cwd, () =>
      main(['run', '--plan', ws.plan, '--approvals', ws.approvals], io),
    );
    expect(code).toBe(1);
    expect(io.text()).toMatch(
      /plan\.json was edited after it was made: its plan hashes to [0-9a-f]{12}, but it says/,
    );

    // Edited and re-hashed: it no longer matches what the hosts give, nor what was signed.
    file.planHash = planHash(file.plan);
    writeFileSync(ws.plan, JSON.stringify(file));
    const io2 = captureIo();
    const code2 = await inDir(ws.cwd, () =>
      main(
        [
          'run',
          '--plan',
          ws.plan,
          '--approvals',
          ws.approvals,
          '--signing-key',
          keys.key('alice'),
          '--json',
        ],
        io2,
      ),
    );
    expect(code2, io2.text()).toBe(1);
    // Its mutations no longer follow from its parameters, so the hosts give another plan.
    expect(io2.text()).toContain(
      `the plan changed since it was approved: approved ${file.planHash.slice(0, 12)}`,
    );
    expect(ws.log()).toEqual([]);
  });

  it('refuses to start without approvals where the policy needs them, before anything is recorded', async () => {
    const ws = production();
    const io = captureIo();
    const code = await inDir(ws.cwd, () =>
      main(['run', ORDERED, '--stack', 'nodes', '--yes', '--param', `dir=${ws.data}`], io),
    );
    expect(code).toBe(2);
    expect(io.text()).toContain('ordered on stack nodes needs 2 approval(s)');
    expect(io.text()).toContain('baton approve plan.json');
  });

  it('runs an emergency with one approver and marks it in the journal and the report', async () => {
    const ws = production();
    await makePlan(ws);
    await approve(ws, 'bob', ['--emergency']);
    const r = await runApproved(ws, [], { emergency: true });
    expect(r.error).toBeUndefined();
    expect(r.outcome).toBe('done');
    expect(r.events.find((e) => e.kind === 'cleared')).toMatchObject({
      emergency: true,
      approvers: ['bob@example.org'],
    });
    const report = renderMarkdown(buildReport(readJournal(join(runsDir(ws.cwd), r.runId))));
    expect(report).toContain('**Emergency:** yes');
    expect(report).toContain('approved by bob@example.org | as an emergency');
  });

  it('does not let a planned-run approval stand in for an emergency one', async () => {
    const ws = production();
    await makePlan(ws);
    await approve(ws, 'bob');
    const r = await runApproved(ws, [], { emergency: true });
    expect(r.outcome).toBe('precondition-failed');
    expect(refusals(r.events)).toContain(
      'bob@example.org approved a planned run, not an emergency',
    );
  });

  it('rehearses on a testnet under the production policy', async () => {
    const ws = production();
    writeFileSync(
      join(ws.cwd, 'baton.policy.json'),
      JSON.stringify({
        testnets: ['nodes'],
        stacks: {
          production: { approvers: 1, holdSeconds: 0, reconfirm: false, roles: ['senior'] },
        },
      }),
    );
    const plan = await makePlan(ws);
    // The testnet alone needs nothing...
    const free = await startRun({
      runbook: ORDERED,
      stack: 'nodes',
      params: [`dir=${ws.data}`],
      cwd: ws.cwd,
    });
    expect(free.outcome).toBe('done');
    // ...under production's rules it needs the approval flow.
    await expect(
      startRun({
        runbook: ORDERED,
        stack: 'nodes',
        params: [`dir=${ws.data}`],
        cwd: ws.cwd,
        policyOf: 'production',
      }),
    ).rejects.toThrow('ordered on stack production needs 1 approval(s)');
    await approve(ws, 'alice');
    const r = await startRun({
      runbook: ORDERED,
      stack: 'nodes',
      params: [`dir=${ws.data}`],
      cwd: ws.cwd,
      policyOf: 'production',
      approvals: ws.approvals,
      approvedHash: plan.planHash,
      signingKey: keys.key('alice'),
    });
    expect(r.outcome).toBe('done');
    const events = readJournal(join(runsDir(ws.cwd), r.runId)).records.map((x) => x.event);
    expect(events.find((e) => e.kind === 'approval')).toMatchObject({
      principal: 'alice@example.org',
      purpose: 'approve',
    });
  });
});
