import { sha256 } from '../lib/core/hash.ts';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { sign } from '../lib/approval/approval.ts';
import type { ApprovalFile } from '../lib/core/events.ts';
import { main } from '../lib/app/cli.ts';
import type { RunEvent } from '../lib/core/events.ts';
import { GENESIS, readJournal } from '../lib/engine/journal.ts';
import { planHash } from '../lib/core/plan.ts';
import { startRun } from '../lib/app/runs.ts';
import { readPlanFile, type PlanFile } from '../lib/app/planfile.ts';
import { runsDir } from '../lib/app/paths.ts';
import { buildReport, renderMarkdown } from '../lib/app/report.ts';
import { SIGNATURES_FILE, sshHeadSigner } from '../lib/approval/signing.ts';
import {
  captureIo,
  forgetInIndex,
  inDir,
  localNodes,
  ORDERED,
  workspace,
  type Workspace,
} from './helpers.ts';

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

/**
 * A workspace whose `nodes` stack (directories on this machine, not a testnet)
 * needs two senior approvers, a hold and a reconfirmation; `ordered` may take
 * the emergency path.
 */
function production(
  rules: Record<string, unknown> = {},
  top: Record<string, unknown> = { emergency: { runbooks: ['ordered'] } },
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
      ...top,
    }),
  );
  const approvals = join(ws.cwd, 'approvals');
  mkdirSync(approvals);
  return { ...ws, plan: join(ws.cwd, 'plan.json'), approvals };
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
  opts: { emergency?: boolean; stopAt?: RunEvent['kind']; signingKey?: string } = {},
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
    signingKey: opts.signingKey ?? keys.key('alice'),
    ...(opts.emergency ? { emergency: true } : {}),
    deps: {
      onEvent(e) {
        // The controller dies right after this record.
        if (e.kind === opts.stopAt) throw new Error(`controller stopped after ${e.kind}`);
        if (e.kind !== 'hold-end') return;
        for (const who of reconfirmers) {
          pending.push(
            sign({
              purpose: 'reconfirm',
              planHash: file.planHash,
              policyHash: file.plan.policyHash,
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

async function cli(
  ws: Workspace,
  args: string[],
): Promise<{ code: number; text: string; stdout: string }> {
  const io = captureIo();
  const code = await inDir(ws.cwd, () => main(args, io));
  return { code, text: io.text(), stdout: io.stdout.join('\n') };
}

async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const before = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(before)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

const journalEvents = (ws: Workspace, runId: string): RunEvent[] =>
  readJournal(join(runsDir(ws.cwd), runId)).records.map((r) => r.event);

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
      policyHash: plan.plan.policyHash,
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
      policyHash: plan.plan.policyHash,
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

  it("practises production's rules on the built-in demo stack, which baton made", async () => {
    const ws = production();
    writeFileSync(
      join(ws.cwd, 'baton.policy.json'),
      JSON.stringify({
        stacks: {
          production: { approvers: 1, holdSeconds: 0, reconfirm: false, roles: ['senior'] },
        },
      }),
    );
    const onDemo = ['--param', `dir=${ws.data}`, '--param', 'role=web'];
    expect(
      (await cli(ws, ['plan', ORDERED, '--stack', 'demo', ...onDemo, '--out', ws.plan])).code,
    ).toBe(0);
    const plan = readPlanFile(ws.plan);
    // The testnet alone needs nothing...
    const free = await cli(ws, ['run', ORDERED, '--stack', 'demo', '--yes', ...onDemo]);
    expect(free.code, free.text).toBe(0);
    // ...under production's rules it needs the approval flow.
    const unapproved = await cli(ws, ['rehearse', '--plan', ws.plan, '--policy-of', 'production']);
    expect(unapproved.code).toBe(2);
    expect(unapproved.text).toContain('ordered on stack production needs 1 approval(s)');
    await approve(ws, 'alice');
    const r = await cli(ws, [
      'rehearse',
      '--plan',
      ws.plan,
      '--policy-of',
      'production',
      '--approvals',
      ws.approvals,
      '--signing-key',
      keys.key('bob'),
      '--json',
    ]);
    expect(r.code, r.text).toBe(0);
    const { runId } = JSON.parse(r.stdout) as { runId: string };
    const events = journalEvents(ws, runId);
    expect(events[0]).toMatchObject({ kind: 'run-start', mode: 'rehearse', stack: 'demo' });
    expect(events.find((e) => e.kind === 'approval')).toMatchObject({
      principal: 'alice@example.org',
      purpose: 'approve',
    });
    expect(plan.plan.policyHash).toMatch(/^[0-9a-f]{64}$/);
  });
});

/** A stack `prod` of directories on this machine: real hosts as far as baton can tell. */
function prodStack(ws: Workspace, policy: Record<string, unknown>): void {
  writeFileSync(
    join(ws.cwd, '.baton', 'stacks', 'prod.json'),
    JSON.stringify({ inventory: { ...localNodes(), stack: 'prod' } }),
  );
  writeFileSync(join(ws.cwd, 'baton.policy.json'), JSON.stringify(policy));
}

describe('the policy belongs to the repository, and testnets are what baton made', () => {
  it('refuses to rehearse a plan made on a stack that is not a testnet, and runs nothing', async () => {
    const ws = production();
    prodStack(ws, { stacks: { prod: { approvers: 2 } } });
    const plan = join(ws.cwd, 'p.json');
    expect(
      (
        await cli(ws, [
          'plan',
          ORDERED,
          '--stack',
          'prod',
          '--param',
          `dir=${ws.data}`,
          '--out',
          plan,
        ])
      ).code,
    ).toBe(0);
    const r = await cli(ws, ['rehearse', '--plan', plan, '--policy-of', 'demo']);
    expect(r.code).toBe(2);
    expect(r.text).toContain(
      'baton rehearse runs only on a testnet, and stack prod is not a testnet: its hosts were not made by `baton testnet up`',
    );
    expect(ws.log()).toEqual([]);
    expect(existsSync(runsDir(ws.cwd))).toBe(false);
  });

  it('refuses a --policy file that names testnets, naming the key and the file, and runs nothing', async () => {
    const ws = production();
    prodStack(ws, { stacks: { prod: { approvers: 2 } } });
    const overlay = join(ws.cwd, 'p.json');
    writeFileSync(overlay, JSON.stringify({ testnets: ['prod'] }));
    const r = await cli(ws, [
      'run',
      ORDERED,
      '--stack',
      'prod',
      '--yes',
      '--param',
      `dir=${ws.data}`,
      '--policy',
      overlay,
    ]);
    expect(r.code).toBe(2);
    expect(r.text).toContain(
      `the policy overlay ${overlay} has unknown key "testnets" at the top level`,
    );
    expect(r.text).toContain('whether a stack is a testnet comes from its inventory');
    expect(ws.log()).toEqual([]);
    expect(existsSync(runsDir(ws.cwd))).toBe(false);
  });

  it('refuses a --policy file that loosens the rules, naming each field', async () => {
    const ws = production();
    prodStack(ws, { stacks: { prod: { approvers: 2, roles: ['senior'] } } });
    const overlay = join(ws.cwd, 'p.json');
    writeFileSync(
      overlay,
      JSON.stringify({ stacks: { prod: { approvers: 0, roles: ['senior', 'helpdesk'] } } }),
    );
    const args = ['run', ORDERED, '--stack', 'prod', '--yes', '--param', `dir=${ws.data}`];
    const r = await cli(ws, [...args, '--policy', overlay]);
    expect(r.code).toBe(2);
    expect(r.text).toContain(
      `the policy overlay ${overlay} is looser than the repository's policy (${join(ws.cwd, 'baton.policy.json')}) for ordered on prod: approvers is 0, below 2; reconfirm is false, and must stay true; roles is [senior, helpdesk], wider than [senior]: it may only narrow them`,
    );
    writeFileSync(overlay, JSON.stringify({ approvers: 'elsewhere' }));
    const moved = await cli(ws, [...args, '--policy', overlay]);
    expect(moved.code).toBe(2);
    expect(moved.text).toContain(
      `the policy overlay ${overlay} sets approvers, which only the repository's baton.policy.json may set`,
    );
    expect(ws.log()).toEqual([]);
  });

  it('takes a stricter --policy file: three approvals where the repository asks two', async () => {
    const ws = production({ holdSeconds: 0, reconfirm: false });
    const overlay = join(ws.cwd, 'stricter.json');
    writeFileSync(overlay, JSON.stringify({ stacks: { nodes: { approvers: 3 } } }));
    const plan = await makePlan(ws);
    await approve(ws, 'alice');
    await approve(ws, 'bob');
    const r = await startRun({
      runbook: ORDERED,
      stack: 'nodes',
      params: [`dir=${ws.data}`],
      cwd: ws.cwd,
      approvals: ws.approvals,
      approvedHash: plan.planHash,
      policyFile: overlay,
      signingKey: keys.key('alice'),
    });
    expect(r.outcome).toBe('precondition-failed');
    expect(r.error).toBe(
      '3 distinct approval(s) needed, 2 valid (alice@example.org, bob@example.org)',
    );
    expect(journalEvents(ws, r.runId).find((e) => e.kind === 'policy')).toMatchObject({
      approvers: 3,
      source: `${join(ws.cwd, 'baton.policy.json')} + overlay ${overlay}`,
    });
    expect(ws.log()).toEqual([]);
  });

  it('refuses a repository policy with an unknown key, naming it and the file, instead of falling back to defaults', async () => {
    const ws = production();
    prodStack(ws, { stack: { prod: { approvers: 0 } } });
    const r = await cli(ws, [
      'run',
      ORDERED,
      '--stack',
      'prod',
      '--yes',
      '--param',
      `dir=${ws.data}`,
    ]);
    expect(r.code).toBe(2);
    expect(r.text).toContain(
      `the policy ${join(ws.cwd, 'baton.policy.json')} has unknown key "stack" at the top level`,
    );
    prodStack(ws, { stacks: { prod: { aprovers: 0 } } });
    const nested = await cli(ws, ['plan', ORDERED, '--stack', 'prod', '--param', `dir=${ws.data}`]);
    expect(nested.code).toBe(2);
    expect(nested.text).toContain('has unknown key "aprovers" at stacks.prod');
    expect(ws.log()).toEqual([]);
  });

  it.each(['demo', 'testnet'])(
    'treats a saved stack named %s as real hosts: it needs approvals and cannot be rehearsed on',
    async (name) => {
      const ws = production();
      writeFileSync(
        join(ws.cwd, '.baton', 'stacks', `${name}.json`),
        JSON.stringify({ inventory: { ...localNodes(), stack: name } }),
      );
      rmSync(join(ws.cwd, 'baton.policy.json'));
      const r = await cli(ws, [
        'run',
        ORDERED,
        '--stack',
        name,
        '--yes',
        '--param',
        `dir=${ws.data}`,
      ]);
      expect(r.code).toBe(2);
      expect(r.text).toContain(`ordered on stack ${name} needs 1 approval(s) (policy: defaults)`);
      const plan = join(ws.cwd, 'p.json');
      await cli(ws, ['plan', ORDERED, '--stack', name, '--param', `dir=${ws.data}`, '--out', plan]);
      const rehearsed = await cli(ws, ['rehearse', '--plan', plan]);
      expect(rehearsed.code).toBe(2);
      expect(rehearsed.text).toContain(`stack ${name} is not a testnet`);
      expect(ws.log()).toEqual([]);
    },
  );

  it("refuses approvals when the repository's approvers changed since the plan was made", async () => {
    const ws = production({ holdSeconds: 0, reconfirm: false });
    await makePlan(ws);
    await approve(ws, 'alice');
    await approve(ws, 'bob');
    const approvers = join(ws.cwd, 'approvers');
    writeFileSync(
      approvers,
      readFileSync(approvers, 'utf8') + `mallory@example.org senior ${pub('mallory')} mallory\n`,
    );
    const r = await cli(ws, [
      'run',
      '--plan',
      ws.plan,
      '--approvals',
      ws.approvals,
      '--signing-key',
      keys.key('bob'),
    ]);
    expect(r.code).toBe(1);
    expect(r.text).toMatch(
      /the repository's policy changed since the plan was made: the plan was made under policy [0-9a-f]{12}, and baton.policy.json and the approvers file now give [0-9a-f]{12}/,
    );
    expect(ws.log()).toEqual([]);
  });
});

describe('approvals are single-use and expire', () => {
  const quick = { holdSeconds: 0, reconfirm: false };

  it('refuses an approval already used by another run, naming that run', async () => {
    const ws = production(quick);
    await makePlan(ws);
    await approve(ws, 'alice');
    await approve(ws, 'bob');
    const first = await runApproved(ws, []);
    expect(first.outcome).toBe('done');
    for (let again = 0; again < 2; again++) {
      const r = await runApproved(ws, []);
      expect(r.outcome).toBe('precondition-failed');
      expect(r.error).toBe('2 distinct approval(s) needed, 0 valid');
      const reasons = refusals(r.events);
      expect(reasons).toHaveLength(2);
      for (const reason of reasons)
        expect(reason).toMatch(
          new RegExp(
            `was already used by run ${first.runId} \\(.+\\); an approval is good for one run$`,
          ),
        );
    }
    expect(ws.log().filter((l) => l.startsWith('apply:s1'))).toEqual(['apply:s1:a', 'apply:s1:b']);
  });

  it('refuses an expired approval, one signed in the future, and one longer-lived than the policy allows', async () => {
    const ws = production(quick);
    const plan = await makePlan(ws);
    const signAs = (
      who: string,
      extra: Partial<Parameters<typeof sign>[0]>,
    ): Promise<ApprovalFile> =>
      sign({
        purpose: 'approve',
        planHash: plan.planHash,
        policyHash: plan.plan.policyHash,
        runbook: 'ordered',
        stack: 'nodes',
        emergency: false,
        keyPath: keys.key(who),
        ...extra,
      });
    const hour = 3_600_000;
    const write = (name: string, a: ApprovalFile): void =>
      writeFileSync(join(ws.approvals, name), JSON.stringify(a));
    write('old.json', await signAs('alice', { now: new Date(Date.now() - 25 * hour) }));
    write('future.json', await signAs('bob', { now: new Date(Date.now() + 2 * hour) }));
    write('long.json', await signAs('alice', { ttlHours: 48 }));
    const r = await runApproved(ws, []);
    expect(r.outcome).toBe('precondition-failed');
    const reasons = refusals(r.events);
    expect(reasons.find((x) => x.includes('old.json'))).toMatch(
      /old\.json is refused: it expired at \S+ \(signed \S+\)$/,
    );
    expect(reasons.find((x) => x.includes('future.json'))).toMatch(
      /future\.json is refused: it was signed in the future \(\S+, 2 h ahead of this controller's clock/,
    );
    expect(reasons.find((x) => x.includes('long.json'))).toContain(
      'long.json is refused: it is valid for 48 h, and the policy allows approvals of at most 24 h',
    );
    expect(ws.log()).toEqual([]);
  });

  it('refuses an approval signed under another policy', async () => {
    const ws = production(quick);
    const plan = await makePlan(ws);
    await approve(ws, 'alice');
    const other = await sign({
      purpose: 'approve',
      planHash: plan.planHash,
      policyHash: 'f'.repeat(64),
      runbook: 'ordered',
      stack: 'nodes',
      emergency: false,
      keyPath: keys.key('bob'),
    });
    writeFileSync(join(ws.approvals, 'other-policy.json'), JSON.stringify(other));
    const r = await runApproved(ws, []);
    expect(r.outcome).toBe('precondition-failed');
    expect(refusals(r.events)).toContain(
      `${join(ws.approvals, 'other-policy.json')} was signed under policy ffffffffffff, and this run's policy is ${plan.plan.policyHash.slice(0, 12)}: baton.policy.json or the approvers file changed`,
    );
  });

  it('takes the approval policy time-to-live from the policy', async () => {
    const ws = production({ ...quick, approvalTtlHours: 2 });
    await makePlan(ws);
    const file = await approve(ws, 'alice');
    const a = JSON.parse(readFileSync(join(ws.approvals, file), 'utf8')) as ApprovalFile;
    expect(Date.parse(a.expiresAt) - Date.parse(a.signedAt)).toBe(2 * 3_600_000);
  });
});

describe('emergency is narrow and reviewed', () => {
  it('refuses --emergency on a runbook the policy does not mark emergency-capable, before anything runs', async () => {
    const ws = production({}, { emergency: { runbooks: ['failover'] } });
    await makePlan(ws);
    await approve(ws, 'bob', ['--emergency']);
    const r = await cli(ws, ['run', '--plan', ws.plan, '--approvals', ws.approvals, '--emergency']);
    expect(r.code).toBe(2);
    expect(r.text).toContain(
      "runbook ordered may not take the emergency path: the policy's emergency.runbooks lists only failover",
    );
    expect(existsSync(runsDir(ws.cwd))).toBe(false);
  });

  it("refuses an emergency approved only with the operator's own approval", async () => {
    const ws = production();
    await makePlan(ws);
    await approve(ws, 'bob', ['--emergency']);
    const r = await withEnv({ BATON_OPERATOR: 'bob@example.org' }, () =>
      runApproved(ws, [], { emergency: true }),
    );
    expect(r.outcome).toBe('precondition-failed');
    expect(r.error).toBe(
      "every approval is the operator's own (bob@example.org, run by bob@example.org): a second person must approve even in an emergency, unless the policy sets emergency.allowSolo",
    );
    expect(ws.log()).toEqual([]);
  });

  it("knows the operator's own approval by the policy's operators map and by the operator's own key", async () => {
    const ws = production(
      {},
      { emergency: { runbooks: ['ordered'] }, operators: { 'bob@example.org': ['bob@laptop'] } },
    );
    await makePlan(ws);
    await approve(ws, 'bob', ['--emergency']);
    const mapped = await withEnv({ BATON_OPERATOR: 'bob@laptop' }, () =>
      runApproved(ws, [], { emergency: true }),
    );
    expect(mapped.error).toContain(
      "every approval is the operator's own (bob@example.org, run by bob@laptop)",
    );
    const home = join(ws.cwd, 'home');
    mkdirSync(join(home, '.ssh'), { recursive: true });
    writeFileSync(join(home, '.ssh', 'id_ed25519.pub'), `${pub('bob')} bob\n`);
    const byKey = await withEnv({ BATON_OPERATOR: 'ops@controller', HOME: home }, () =>
      runApproved(ws, [], { emergency: true }),
    );
    expect(byKey.error).toContain(
      "every approval is the operator's own (bob@example.org, run by ops@controller)",
    );
    // Whoever signs the run's journal holds that key, wherever it is kept.
    const bySigningKey = await withEnv({ BATON_OPERATOR: 'ops@controller' }, () =>
      runApproved(ws, [], { emergency: true, signingKey: keys.key('bob') }),
    );
    expect(bySigningKey.error).toContain(
      "every approval is the operator's own (bob@example.org, run by ops@controller)",
    );
    expect(ws.log()).toEqual([]);
  });

  it('runs a solo emergency where the policy allows it, and shows it failing in runs and audit until a second approver countersigns', async () => {
    const ws = production({}, { emergency: { runbooks: ['ordered'], allowSolo: true } });
    writeFileSync(join(ws.cwd, 'baton.audit.json'), '{}');
    await makePlan(ws);
    await approve(ws, 'bob', ['--emergency']);
    await withEnv({ BATON_OPERATOR: 'bob@example.org' }, async () => {
      const r = await runApproved(ws, [], { emergency: true });
      expect(r.error).toBeUndefined();
      expect(r.outcome).toBe('done');
      expect(r.events.find((e) => e.kind === 'cleared')).toMatchObject({
        emergency: true,
        approvers: ['bob@example.org'],
        countersignatureDue: true,
      });
      const runs = await cli(ws, ['runs']);
      expect(runs.text).toContain(
        `countersignature DUE: approved by the operator alone (bob@example.org); a second approver runs \`baton countersign ${r.runId} --key KEY\``,
      );
      const audit = await cli(ws, ['audit', '--stack', 'nodes']);
      expect(audit.code).toBe(1);
      expect(audit.text).toContain(`FAIL  countersignature:nodes`);
      expect(audit.text).toContain(`1 solo emergency run(s) not countersigned: ${r.runId}`);

      const own = await cli(ws, ['countersign', r.runId, '--key', keys.key('bob')]);
      expect(own.code).toBe(1);
      expect(own.text).toContain(
        'bob@example.org approved the run; the countersignature must come from a second approver',
      );
      const outsider = await cli(ws, ['countersign', r.runId, '--key', keys.key('mallory')]);
      expect(outsider.code).toBe(1);
      expect(outsider.text).toContain('its key is not in the approvers file');

      const second = await cli(ws, ['countersign', r.runId, '--key', keys.key('alice')]);
      expect(second.code, second.text).toBe(0);
      expect(second.text).toContain(`run ${r.runId} countersigned by alice@example.org`);
      const after = await cli(ws, ['runs', '--json']);
      expect(JSON.parse(after.stdout)).toMatchObject([
        { runId: r.runId, countersignature: { state: 'signed', by: 'alice@example.org' } },
      ]);
      const passed = await cli(ws, ['audit', '--stack', 'nodes']);
      expect(passed.code, passed.text).toBe(0);

      // Its countersignature, copied to another solo run, does not count there.
      // bob approves afresh: the file of the used approval is overwritten.
      await approve(ws, 'bob', ['--emergency']);
      const next = await runApproved(ws, [], { emergency: true });
      expect(next.outcome).toBe('done');
      writeFileSync(
        join(runsDir(ws.cwd), next.runId, 'countersignature.json'),
        readFileSync(join(runsDir(ws.cwd), r.runId, 'countersignature.json')),
      );
      const copied = await cli(ws, ['runs']);
      expect(copied.text).toContain(
        `countersignature INVALID: ${join(runsDir(ws.cwd), next.runId, 'countersignature.json')} countersigns run ${r.runId}, not run ${next.runId}`,
      );
      expect((await cli(ws, ['audit', '--stack', 'nodes'])).code).toBe(1);
    });
  });
});

/** Replace a run's journal with these events, chained and headed as baton would have written them. */
function rechain(ws: Workspace, runId: string, events: RunEvent[]): void {
  const dir = join(runsDir(ws.cwd), runId);
  let prev = GENESIS;
  const lines = events.map((event, seq) => {
    const line = JSON.stringify({ seq, ts: new Date().toISOString(), prev, event });
    prev = sha256(line);
    return line;
  });
  writeFileSync(join(dir, 'journal.jsonl'), lines.map((l) => l + '\n').join(''));
  writeFileSync(join(dir, 'head'), JSON.stringify({ seq: lines.length - 1, hash: prev }) + '\n');
  // The operator holds the key that signs the run's heads, and can write the run store: a rewrite
  // is signed again, and noted in the store's index in place of what it replaces.
  rmSync(join(dir, SIGNATURES_FILE), { force: true });
  forgetInIndex(ws.cwd, runId);
  const signer = sshHeadSigner(keys.key('alice'), undefined, {
    index: join(ws.cwd, '.baton', 'runs-index.jsonl'),
  });
  lines.forEach((line, seq) => {
    const { kind } = events[seq]!;
    if (kind === 'cleared' || kind === 'run-end')
      signer.sign(dir, { seq, hash: sha256(line) }, kind);
  });
}

describe('resume and verify do not trust the cleared record', () => {
  const quick = { holdSeconds: 0, reconfirm: false };

  it('verifies the approvals behind a clearance and lists them: who, with which key, for what, under which policy', async () => {
    const ws = production();
    const { plan } = await makePlan(ws);
    await approve(ws, 'alice');
    await approve(ws, 'bob');
    const r = await runApproved(ws, ['alice', 'bob']);
    expect(r.outcome).toBe('done');
    const seq = r.events.findIndex((e) => e.kind === 'cleared');
    const fingerprint = (who: string): string =>
      execFileSync('ssh-keygen', ['-lf', keys.key(who) + '.pub'], { encoding: 'utf8' }).split(
        ' ',
      )[1]!;

    const json = await cli(ws, ['verify', r.runId, '--json']);
    expect(json.code, json.text).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      status: 'verified',
      clearances: [
        {
          seq,
          ok: true,
          policyHash: plan.policyHash,
          approversFile: join(ws.cwd, 'approvers'),
          approvals: [
            {
              purpose: 'approve',
              principal: 'alice@example.org',
              keyFingerprint: fingerprint('alice'),
            },
            {
              purpose: 'approve',
              principal: 'bob@example.org',
              keyFingerprint: fingerprint('bob'),
            },
            {
              purpose: 'reconfirm',
              principal: 'alice@example.org',
              keyFingerprint: fingerprint('alice'),
            },
            {
              purpose: 'reconfirm',
              principal: 'bob@example.org',
              keyFingerprint: fingerprint('bob'),
            },
          ],
        },
      ],
    });
    const text = await cli(ws, ['verify', r.runId]);
    expect(text.text).toContain(
      `clearance at record ${seq}: holds under policy ${plan.policyHash} (approvers file ${join(ws.cwd, 'approvers')})`,
    );
    expect(text.text).toContain(`reconfirm by bob@example.org (${fingerprint('bob')}): good`);
    expect(text.text).not.toContain('not checked here');
  });

  it('fails verify of a journal rechained around a forged cleared record and signed again with the operator key, naming the clearance', async () => {
    const ws = production(quick);
    await makePlan(ws);
    await approve(ws, 'mallory');
    const refused = await runApproved(ws, []);
    expect(refused.error).toBe('2 distinct approval(s) needed, 0 valid');
    const events: RunEvent[] = [
      ...refused.events.filter((e) => e.kind !== 'run-end'),
      {
        kind: 'cleared',
        emergency: false,
        approvers: ['alice@example.org', 'bob@example.org'],
        reconfirmedBy: [],
      },
      { kind: 'run-end', outcome: 'done', state: 'handed over' },
    ];
    rechain(ws, refused.runId, events);
    const seq = events.findIndex((e) => e.kind === 'cleared');

    const v = await cli(ws, ['verify', refused.runId]);
    expect(v.code).toBe(1);
    expect(v.text).toContain(`Run ${refused.runId}: FAILED verification`);
    // The heads are signed with the operator's own key, which is an approver's: they hold.
    expect(v.text).toContain(`record ${seq} (cleared): good signature by alice@example.org`);
    expect(v.text).toContain(
      `clearance at record ${seq}: BAD: the journal's clearance does not hold: the run needs 2 approval(s), and its cleared record carries 0 valid`,
    );
  });

  it('refuses to resume a refused run whose journal was rechained with a forged cleared record', async () => {
    const ws = production(quick);
    await makePlan(ws);
    await approve(ws, 'mallory');
    const refused = await runApproved(ws, []);
    expect(refused.error).toBe('2 distinct approval(s) needed, 0 valid');
    rechain(ws, refused.runId, [
      ...refused.events.filter((e) => e.kind !== 'run-end'),
      {
        kind: 'cleared',
        emergency: false,
        approvers: ['alice@example.org', 'bob@example.org'],
        reconfirmedBy: [],
      },
    ]);
    const r = await cli(ws, ['resume', refused.runId, '--signing-key', keys.key('alice')]);
    expect(r.code).toBe(1);
    expect(r.text).toContain(
      "the journal's clearance does not hold: the run needs 2 approval(s), and its cleared record carries 0 valid",
    );
    expect(r.text).toContain('Do not resume this run.');
    expect(ws.log()).toEqual([]);
  });

  it('refuses a cleared record that carries the approvals another run used', async () => {
    const ws = production(quick);
    await makePlan(ws);
    await approve(ws, 'alice');
    await approve(ws, 'bob');
    const first = await runApproved(ws, []);
    expect(first.outcome).toBe('done');
    const second = await runApproved(ws, []);
    expect(second.outcome).toBe('precondition-failed');
    const borrowed = first.events.find((e) => e.kind === 'cleared')!;
    rechain(ws, second.runId, [...second.events.filter((e) => e.kind !== 'run-end'), borrowed]);
    const logged = ws.log().length;
    const r = await cli(ws, ['resume', second.runId, '--signing-key', keys.key('alice')]);
    expect(r.code).toBe(1);
    expect(r.text).toContain(
      `the journal's clearance does not hold: the cleared record's approval 1 was used by run ${first.runId}, not by this run ${second.runId}`,
    );
    expect(ws.log()).toHaveLength(logged);
  });

  it('refuses a cleared record whose approvals were edited', async () => {
    const ws = production(quick);
    await makePlan(ws);
    await approve(ws, 'alice');
    await approve(ws, 'bob');
    const stopped = await runApproved(ws, [], { stopAt: 'cleared' });
    expect(stopped.outcome).toBe('needs-human');
    const events = stopped.events.map((e) =>
      e.kind === 'cleared'
        ? { ...e, approvals: e.approvals!.map((a) => ({ ...a, emergency: true })) }
        : e,
    );
    rechain(ws, stopped.runId, events);
    const r = await cli(ws, ['resume', stopped.runId, '--signing-key', keys.key('alice')]);
    expect(r.code).toBe(1);
    expect(r.text).toContain('does not match what the file says (forged or edited)');
    expect(ws.log()).toEqual([]);
  });

  it('resumes a cleared run after checking its approvals again', async () => {
    const ws = production(quick);
    await makePlan(ws);
    await approve(ws, 'alice');
    await approve(ws, 'bob');
    const stopped = await runApproved(ws, [], { stopAt: 'cleared' });
    expect(stopped.outcome).toBe('needs-human');
    expect(stopped.events.at(-1)).toMatchObject({ kind: 'cleared' });
    expect(ws.log()).toEqual([]);
    const r = await cli(ws, [
      'resume',
      stopped.runId,
      '--signing-key',
      keys.key('alice'),
      '--json',
    ]);
    expect(r.code, r.text).toBe(0);
    expect(ws.log().filter((l) => l.startsWith('apply:'))).toHaveLength(6);
  });
});
