/**
 * Runs on disk and the three entry points the CLI and tests use: plan a
 * runbook, start a run, resume a run. A run lives in `runs/<run-id>/` in the
 * baton home (the app's `home`: $BATON_HOME, else `.baton/` in the project root).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import {
  Session,
  historyFrom,
  type EngineDeps,
  type PlanResult,
  type RunInput,
  type RunResult,
} from '../engine/engine.ts';
import { codeChanges, describeCodeChanges, manifestHash } from '../core/code-version.ts';
import { BatonError, InvalidInputError, JournalCorruptError } from '../core/errors.ts';
import type { RunEvent } from '../core/events.ts';
import { inventoryHash, type Inventory } from '../core/inventory.ts';
import { Journal, readJournal, type HeadSigner, type JournalRead } from '../engine/journal.ts';
import { parseParamArgs, rawFromRecorded, validateParams, type RawParam } from '../core/params.ts';
import { operatorIdentity, operatorKeys } from '../approval/approval.ts';
import { approvalGate, gates, verifyClearance, type Gate } from '../approval/gate.ts';
import { approvalLedger } from '../approval/ledger.ts';
import {
  loadOverlay,
  loadRepositoryPolicy,
  resolvePolicy,
  type RepositoryPolicy,
} from '../approval/policy.ts';
import { testnetOrigin } from '../testnet/stack.ts';
import {
  loadSigners,
  readSignatures,
  requireTrusted,
  runSigner,
  sshHeadSigner,
  verifyRun,
  type ClearanceVerifier,
  type Signers,
} from '../approval/signing.ts';
import { SIGNING_KEY_ENV } from '../core/env.ts';
import type { Redactor } from '../core/redact.ts';
import { type Plan } from '../core/plan.ts';
import type { AnyRunbook } from '../core/runbook.ts';
import { runIndex, runsDir } from './paths.ts';
import { type ProjectRef } from '../core/project.ts';
import { batonHome } from '../core/home.ts';
import { acquireLock, runDir } from './run-store.ts';
import type { LoadedRunbook } from './registry.ts';
import { createApp, type App } from './app.ts';
import type { Transports } from '../transports/index.ts';
import {
  acquireStackLock,
  breakStackLock,
  newLockId,
  type LockHolder,
  type StackLock,
} from '../engine/stacklock.ts';

/**
 * Who may sign a run's journal: the approvers in the repository's approvers
 * file and the controller keys its policy names under `signers.controllers`.
 */
export function trustedSigners(repo: RepositoryPolicy, controllerKey?: string): Signers {
  return loadSigners({
    approversFile: repo.approversFile,
    ...(repo.data.signers
      ? { controllers: { keys: repo.data.signers.controllers, file: repo.file! } }
      : {}),
    ...(controllerKey ? { controllerKey } : {}),
  });
}

export function operatorName(): string {
  if (process.env.BATON_OPERATOR) return process.env.BATON_OPERATOR;
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry (containers): keep "unknown"
  }
  return `${user}@${hostname()}`;
}

export function newRunId(runbook: string, now: Date): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `${stamp}-${runbook}-${randomBytes(2).toString('hex')}`;
}

export interface Invocation {
  runbook: string;
  stack?: string;
  /** `name=value` strings as given on the command line. */
  params: string[];
  /** Params already parsed (from a plan file); replaces `params`. */
  rawParams?: Map<string, RawParam>;
  cwd?: string;
  deps?: Partial<EngineDeps>;
  /** Replaces the stack's inventory (tests, the testnet). */
  inventory?: Inventory;
  /** The approved plan a run must still be; compared before any gate. */
  approved?: RunInput['approved'];
  /** Whether secrets may be given inline; by default refused where the stack's policy needs approvals. */
  inlineSecrets?: 'allow' | 'refuse';
  /** Where stacks, runbooks and transports come from, and the project; default the CLI's (createApp) for `cwd`. */
  app?: App;
}

const appFor = (o: { cwd?: string; app?: App }): App =>
  o.app ?? createApp({ ...(o.cwd ? { cwd: o.cwd } : {}) });

interface Prepared {
  loaded: LoadedRunbook;
  repo: RepositoryPolicy;
  stack: string;
  inventory: Inventory;
  session: Session;
  recordedParams: Record<string, unknown>;
  secretNames: string[];
  redactor: Redactor;
  runId: string;
  transports: Transports;
  now: () => Date;
}

function stackFor(runbook: AnyRunbook, given: string | undefined): string {
  const stack = given ?? runbook.defaultStack;
  if (!stack) {
    throw new InvalidInputError(
      `runbook ${runbook.name} needs a stack`,
      'Pass --stack NAME (for example --stack local for the testnet, --stack production).',
    );
  }
  return stack;
}

async function prepare(app: App, inv: Invocation, runId?: string): Promise<Prepared> {
  const loaded = await app.runbook(inv.runbook);
  const { runbook } = loaded;
  const stack = stackFor(runbook, inv.stack);
  // Parameters are checked before the stack is even loaded: bad input touches nothing.
  const validated = validateParams(
    runbook.params,
    inv.rawParams ?? parseParamArgs(inv.params),
    runbook.name,
    { inlineSecrets: inv.inlineSecrets ?? 'allow' },
  );
  const repo = loadRepositoryPolicy(app);
  const inventory = inv.inventory ?? (await app.inventory(stack));
  // Where the stack's policy needs approvals, secrets come by reference only.
  if (!inv.inlineSecrets && inlineSecretsOn(runbook, stack, repo, inventory, app) === 'refuse')
    validateParams(runbook.params, inv.rawParams ?? parseParamArgs(inv.params), runbook.name, {
      inlineSecrets: 'refuse',
    });
  const now = inv.deps?.now ?? (() => new Date());
  const id = runId ?? newRunId(runbook.name, now());
  const transports = await app.transports();
  const deps: EngineDeps = {
    transportFor: transports.transportFor,
    now,
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    ...inv.deps,
  };
  const session = new Session(
    {
      runbook,
      stack,
      inventory,
      params: validated.params,
      recordedParams: validated.recorded,
      redactor: validated.redactor,
      codeVersion: loaded.codeVersion,
      codeManifest: loaded.codeManifest,
      inventoryHash: inventoryHash(inventory),
      policyHash: repo.hash,
      runId: id,
      ...(inv.approved ? { approved: inv.approved } : {}),
    },
    deps,
  );
  return {
    loaded,
    repo,
    stack,
    inventory,
    session,
    recordedParams: validated.recorded,
    secretNames: validated.secretNames,
    redactor: validated.redactor,
    runId: id,
    transports,
    now,
  };
}

/** Secrets on a command line are in `ps` for the whole run: refused where runs need approvals. */
function inlineSecretsOn(
  runbook: AnyRunbook,
  stack: string,
  repo: RepositoryPolicy,
  inventory: Inventory,
  project: ProjectRef,
): 'allow' | 'refuse' {
  const policy = resolvePolicy({
    repo,
    runbook: runbook.name,
    stack,
    destructive: runbook.steps.some((s) => s.destructive),
    testnet: testnetOrigin(inventory, project).testnet,
  });
  return policy.approvers > 0 ? 'refuse' : 'allow';
}

/** Dry run: probes run for real, mutations are recorded and returned, nothing is changed. */
export async function planRunbook(inv: Invocation): Promise<PlanResult> {
  const p = await prepare(appFor(inv), inv);
  try {
    return await p.session.plan();
  } catch (e) {
    throw p.redactor.redactError(e);
  } finally {
    await p.transports.close();
  }
}

export interface StartOptions extends Invocation {
  mode?: 'run' | 'rehearse';
  /** Called with the run id as soon as the run directory exists. */
  onStart?(runId: string, dir: string): void;
  /** Approval files: a directory, or `-` with `stdinApprovals`. */
  approvals?: string;
  stdinApprovals?: string;
  /** The plan hash the approvals were made for (from the plan file). */
  approvedHash?: string;
  /** The policy hash the plan file was made under. */
  approvedPolicyHash?: string;
  /** The plan the approvals were made for: a drift is named step by step, before the gate. */
  approvedPlan?: Plan;
  emergency?: boolean;
  /** A stricter policy on top of the repository's (`--policy FILE`); a looser one is refused. */
  policyFile?: string;
  /** Apply another stack's policy (practise the production flow on a testnet). */
  policyOf?: string;
  /** Another gate after the approvals (a person's confirmation on a terminal). */
  gate?: Gate;
  /** How often to look for reconfirmations. */
  pollMs?: number;
  /** The ssh key that signs the journal's heads; required where the policy needs approvals. */
  signingKey?: string;
}

export async function startRun(opts: StartOptions): Promise<RunResult> {
  const app = appFor(opts);
  const overlayFile = opts.policyFile ? resolve(app.cwd, opts.policyFile) : undefined;
  const overlay = overlayFile ? { file: overlayFile, data: loadOverlay(overlayFile) } : undefined;
  // The gate needs the inventory to know its rules; the session is made first, so it is handed over once known.
  let approvals: Gate | undefined;
  const p = await prepare(app, {
    ...opts,
    deps: { ...opts.deps, gate: (plan, hash, record) => approvals!(plan, hash, record) },
    ...(opts.approvedHash
      ? {
          approved: {
            hash: opts.approvedHash,
            ...(opts.approvedPlan ? { plan: opts.approvedPlan } : {}),
          },
        }
      : {}),
  });
  try {
    const { runbook } = p.loaded;
    const origin = testnetOrigin(p.inventory, app);
    if (opts.mode === 'rehearse' && !origin.testnet) {
      throw new InvalidInputError(
        `baton rehearse runs only on a testnet, and ${origin.why}`,
        'Rehearse on the testnet (`baton rehearse RUNBOOK`, stack local) or on the demo stack; real hosts take `baton run` with approvals.',
      );
    }
    if (opts.policyOf && !origin.testnet) {
      throw new InvalidInputError(
        `--policy-of practises another stack's rules on a testnet only, and ${origin.why}`,
      );
    }
    const policy = resolvePolicy({
      repo: p.repo,
      runbook: runbook.name,
      stack: opts.policyOf ?? p.stack,
      destructive: runbook.steps.some((s) => s.destructive),
      testnet: origin.testnet && !opts.policyOf,
      ...(overlay ? { overlay } : {}),
    });
    if (opts.emergency && !policy.emergencyAllowed) {
      const listed = p.repo.data.emergency?.runbooks ?? [];
      throw new InvalidInputError(
        `runbook ${runbook.name} may not take the emergency path: ${
          listed.length
            ? `the policy's emergency.runbooks lists only ${listed.join(', ')}`
            : `the policy (${policy.source}) lists no runbook under emergency.runbooks`
        }`,
        "Run it on the planned path with approvals; or have the repository's baton.policy.json list it under emergency.runbooks.",
      );
    }
    const rules = opts.emergency ? policy.emergency : policy;
    if (rules.approvers > 0 && (!opts.approvals || !opts.approvedHash)) {
      throw new InvalidInputError(
        `${runbook.name} on stack ${opts.policyOf ?? p.stack} needs ${rules.approvers} approval(s) (policy: ${policy.source})`,
        `Write the plan with \`baton plan ${runbook.name} --stack ${p.stack} --out plan.json\`, have it approved with \`baton approve plan.json --key KEY\`, then run \`baton run --plan plan.json --approvals DIR\`.`,
      );
    }
    const signer = runSigner({
      keyPath: opts.signingKey,
      needsApprovals: rules.approvers > 0,
      what: `${runbook.name} on stack ${opts.policyOf ?? p.stack}`,
      trusted: trustedSigners(p.repo),
      index: runIndex(app),
      now: p.now,
    });
    const sleep = opts.deps?.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    approvals = gates(
      approvalGate({
        policy,
        emergency: Boolean(opts.emergency),
        ...(opts.approvedHash ? { approvedHash: opts.approvedHash } : {}),
        ...(opts.approvedPolicyHash ? { approvedPolicyHash: opts.approvedPolicyHash } : {}),
        ...(opts.approvals ? { approvals: opts.approvals } : {}),
        ...(opts.stdinApprovals !== undefined ? { stdin: opts.stdinApprovals } : {}),
        ...(opts.pollMs ? { pollMs: opts.pollMs } : {}),
        runId: p.runId,
        // Whoever signs the journal holds the key: an approval made with it is the operator's own.
        operator: operatorIdentity(operatorName(), policy.operators, [
          ...(await operatorKeys()),
          ...(signer ? [signer.identity.publicKey] : []),
        ]),
        ledger: approvalLedger(app.home),
        now: p.now,
        sleep,
      }),
      opts.gate,
    );
    // Before any fact is gathered: one run per stack, whichever controller starts it.
    const lock = await acquireStackLock(
      p.inventory,
      {
        lockId: newLockId(),
        runId: p.runId,
        runbook: p.loaded.runbook.name,
        operator: operatorName(),
      },
      { transportFor: p.transports.transportFor, now: p.now, home: app.home },
    );
    const dir = join(runsDir(app), p.runId);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const release = acquireLock(dir, p.runId);
    let result: RunResult | undefined;
    try {
      const journal = Journal.create(dir, undefined, p.now, signer);
      opts.onStart?.(p.runId, dir);
      result = await stopped(p.runId, () =>
        p.session.run(journal, {
          kind: 'run-start',
          runId: p.runId,
          runbook: p.loaded.runbook.name,
          runbookFile: p.loaded.file,
          codeVersion: p.loaded.codeVersion,
          codeManifest: p.loaded.codeManifest,
          stack: p.stack,
          mode: opts.mode ?? 'run',
          operator: operatorName(),
          params: p.recordedParams,
          secretParams: p.secretNames,
          inventory: p.inventory,
          inventoryHash: inventoryHash(p.inventory),
          pid: process.pid,
          lock: {
            lockId: lock.holder.lockId,
            places: lock.places.filter((x) => x.outcome === 'taken').map((x) => x.place),
          },
        }),
      );
      return result;
    } finally {
      await endLock(lock, result);
      release();
    }
  } finally {
    await p.transports.close();
  }
}

/** A run that stopped for a person keeps the stack locked: its resume takes it up again. */
async function endLock(lock: StackLock, result: RunResult | undefined): Promise<void> {
  if (result && result.outcome !== 'needs-human') await lock.release();
}

export interface ResumeOptions {
  runId: string;
  /** Secret params given again (`name=value`, `name=@env:VAR`); other params come from the journal. */
  params: string[];
  cwd?: string;
  deps?: Partial<EngineDeps>;
  /** Signs the heads the resume writes; required when the journal is signed. */
  signingKey?: string;
  /** Who may have signed the journal (the approvers file format); default the policy's approvers file. */
  allowedSigners?: string;
  /** A controller's public key that may sign too. */
  controllerKey?: string;
  app?: App;
}

/**
 * The signers a run's journal is checked against: those of the given file
 * (the approvers file format), else the repository's trusted signers; plus
 * a controller key given. Undefined when that is no one.
 */
export function signersFor(opts: {
  allowedSigners?: string;
  controllerKey?: string;
  /** The project (an app), or a directory to find it from. */
  cwd?: ProjectRef;
}): Signers | undefined {
  const controllerKey = opts.controllerKey ? { controllerKey: opts.controllerKey } : {};
  if (opts.allowedSigners && !existsSync(opts.allowedSigners))
    throw new InvalidInputError(`no allowed signers file ${opts.allowedSigners}`);
  const signers = opts.allowedSigners
    ? loadSigners({ approversFile: opts.allowedSigners, ...controllerKey })
    : trustedSigners(loadRepositoryPolicy(opts.cwd), opts.controllerKey);
  return signers.signers.length ? signers : undefined;
}

/**
 * The check `baton verify` makes of a journal's clearance: the approvals its
 * cleared record carries, verified again under the repository's policy, as a
 * resume does (gate.ts verifyClearance).
 */
export function clearanceVerifier(at?: ProjectRef): ClearanceVerifier {
  return async (records, signerKeys) => {
    const events = records.map((r) => r.event);
    const start = events[0];
    if (start?.kind !== 'run-start')
      throw new JournalCorruptError('the journal does not begin with run-start');
    const planned = events.find(
      (e): e is Extract<RunEvent, { kind: 'planned' }> => e.kind === 'planned',
    );
    const policy = resolvePolicy({
      repo: loadRepositoryPolicy(at),
      runbook: start.runbook,
      stack: planned?.plan.stack ?? start.stack,
      destructive: planned ? planned.plan.steps.some((s) => s.destructive) : true,
      testnet: testnetOrigin(start.inventory, at).testnet,
    });
    const check = await verifyClearance(events, policy, {
      ledger: approvalLedger(batonHome(at)),
      operatorKeys: signerKeys,
    });
    return {
      policyHash: policy.hash,
      approversFile: policy.approversFile,
      approvals: check.approvals,
    };
  };
}

/**
 * Before a resume acts on a journal: a signed journal must agree with every
 * signed head (a rewritten, re-chained journal does not) and with the run
 * index, and the resume must sign what it adds, with a key that may sign.
 */
async function verifyForResume(
  app: App,
  dir: string,
  read: JournalRead,
  opts: ResumeOptions,
): Promise<{ signer?: HeadSigner; lastUnsigned: boolean; signerKeys: string[] }> {
  const signed =
    readSignatures(dir).length > 0 ||
    read.records.some((r) => r.event.kind === 'policy' && r.event.approvers > 0);
  if (!signed) return { lastUnsigned: false, signerKeys: [] };
  const signers = signersFor({ ...opts, cwd: app });
  if (!signers) {
    throw new InvalidInputError(
      `run ${opts.runId} has a signed journal, and no allowed signers to check it against`,
      'Pass --allowed-signers FILE (the approvers file), or resume from the directory that holds baton.policy.json.',
    );
  }
  const v = await verifyRun(dir, { signers, index: runIndex(app) });
  if (v.status === 'failed') {
    throw new JournalCorruptError(
      `run ${opts.runId}'s journal fails verification: ${v.problems.join('; ')}`,
      `Do not resume from it. \`baton verify ${opts.runId}\` says what holds; keep a copy for the post-mortem and inspect the hosts by hand.`,
    );
  }
  if (!opts.signingKey) {
    throw new InvalidInputError(
      `run ${opts.runId} has a signed journal, so what its resume writes must be signed too, and no signing key was given`,
      `Pass --signing-key KEY (or set ${SIGNING_KEY_ENV}).`,
    );
  }
  const signer = sshHeadSigner(opts.signingKey, opts.deps?.now, { index: runIndex(app) });
  const identity = requireTrusted(signer, signers);
  return {
    signer,
    lastUnsigned: v.status === 'incomplete',
    signerKeys: [
      ...new Set([
        ...v.heads.flatMap((h) => (h.publicKey ? [h.publicKey] : [])),
        identity.publicKey,
      ]),
    ],
  };
}

export async function resumeRun(opts: ResumeOptions): Promise<RunResult> {
  const app = appFor(opts);
  const dir = runDir(opts.runId, app);
  const read = readJournal(dir);
  const events = read.records.map((r) => r.event);
  const start = events[0];
  if (!start || start.kind !== 'run-start')
    throw new JournalCorruptError(`${dir}: the journal does not begin with run-start`);
  const history = historyFrom(events, operatorName());
  // A run that stopped for a person can be resumed once the cause is fixed; one that ended cannot.
  if (history?.ended && history.ended.outcome !== 'needs-human') {
    throw new InvalidInputError(
      `run ${opts.runId} already ended: ${history.ended.outcome} (${history.ended.state})`,
      `Nothing to resume. \`baton report ${opts.runId}\` shows what it did.`,
    );
  }
  const { signer, lastUnsigned, signerKeys } = await verifyForResume(app, dir, read, opts);
  const release = acquireLock(dir, opts.runId);
  try {
    const loaded = await app.runbook(start.runbookFile);
    refuseChangedCode(start, loaded, opts.runId);
    const raw = rawFromRecorded(
      start.params,
      start.secretParams,
      parseParamArgs(opts.params),
      `run ${opts.runId}`,
      'baton resume',
    );
    const validated = validateParams(loaded.runbook.params, raw, loaded.runbook.name, {
      inlineSecrets: inlineSecretsOn(
        loaded.runbook,
        start.stack,
        loadRepositoryPolicy(app),
        start.inventory,
        app,
      ),
    });
    if (history?.cleared) {
      // The cleared record is evidence to check, not a fact to trust.
      await verifyClearance(
        events,
        resolvePolicy({
          repo: loadRepositoryPolicy(app),
          runbook: start.runbook,
          stack: history.plan.stack,
          destructive: loaded.runbook.steps.some((s) => s.destructive),
          testnet: testnetOrigin(start.inventory, app).testnet,
        }),
        {
          ledger: approvalLedger(app.home),
          operatorKeys: [...(await operatorKeys()), ...signerKeys],
        },
      );
    }
    if (!history) {
      // The controller died before the plan was recorded: nothing was changed.
      const journal = Journal.reopen(dir, validated.redactor, undefined, signer, lastUnsigned);
      journal.append({
        kind: 'run-end',
        outcome: 'precondition-failed',
        state: loaded.runbook.safeState ?? 'unchanged: as before the run',
        error: 'the controller stopped before the plan was complete; no mutation had started',
        next: 'Plan and run again.',
      });
      return {
        runId: opts.runId,
        outcome: 'precondition-failed',
        state: loaded.runbook.safeState ?? 'unchanged: as before the run',
        error: 'the controller stopped before the plan was complete; no mutation had started',
      };
    }
    const now = opts.deps?.now ?? (() => new Date());
    const transports = await app.transports();
    let lock: StackLock | undefined;
    let result: RunResult | undefined;
    try {
      lock = await acquireStackLock(
        start.inventory,
        {
          lockId: start.lock?.lockId ?? newLockId(),
          runId: opts.runId,
          runbook: start.runbook,
          operator: operatorName(),
        },
        { transportFor: transports.transportFor, now, home: app.home },
      );
      const session = new Session(
        {
          runbook: loaded.runbook,
          stack: start.stack,
          inventory: start.inventory,
          params: validated.params,
          recordedParams: validated.recorded,
          redactor: validated.redactor,
          codeVersion: loaded.codeVersion,
          codeManifest: loaded.codeManifest,
          inventoryHash: start.inventoryHash,
          policyHash: history.plan.policyHash,
          runId: opts.runId,
        },
        {
          transportFor: transports.transportFor,
          now,
          sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
          ...opts.deps,
        },
      );
      result = await stopped(opts.runId, () =>
        session.resume(Journal.reopen(dir, validated.redactor, now, signer, lastUnsigned), history),
      );
      return result;
    } finally {
      if (lock) await endLock(lock, result);
      await transports.close();
    }
  } finally {
    release();
  }
}

/** A run continues only under the code it started with: the journal's record of it names what changed. */
function refuseChangedCode(
  start: Extract<RunEvent, { kind: 'run-start' }>,
  loaded: LoadedRunbook,
  runId: string,
): void {
  if (loaded.codeVersion === start.codeVersion) return;
  const recorded =
    start.codeManifest && manifestHash(start.codeManifest) === start.codeVersion
      ? start.codeManifest
      : undefined;
  const changed = recorded
    ? describeCodeChanges(codeChanges(recorded, loaded.codeManifest))
    : 'the journal does not say which files it covered';
  throw new BatonError(
    'CODE_CHANGED',
    `the code changed since run ${runId} started (code ${loaded.codeVersion.slice(0, 12)}, was ${start.codeVersion.slice(0, 12)}): ${changed}`,
    'Resume under the code that started the run (check out that commit, and the same lockfile); nothing was run. To run the new code, plan it again.',
  );
}

/**
 * A run that throws instead of ending (the journal could not be written, the
 * disk is full) has left the hosts somewhere between two records: that is a
 * person's call, never "failed and safe".
 */
async function stopped(runId: string, drive: () => Promise<RunResult>): Promise<RunResult> {
  try {
    return await drive();
  } catch (e) {
    const error = e instanceof Error ? e.message : String(e);
    return {
      runId,
      outcome: 'needs-human',
      state: 'unknown: the controller stopped in the middle of the run',
      error,
      next:
        `Fix the cause (${error}), then \`baton resume ${runId}\`: it re-verifies the interrupted step ` +
        `and continues or rolls back. \`baton report ${runId}\` shows the last recorded step.`,
    };
  }
}

export interface UnlockResult {
  stack: string;
  lockId: string;
  removed: string[];
  unreachable: string[];
  holder?: LockHolder;
  /** The journal of the unlock, under unlocks/ in the baton home. */
  journal: string;
}

/** `baton unlock`: break a stack lock by its id, journaled here and logged on each place. */
export async function unlockStack(opts: {
  stack: string;
  lockId: string;
  cwd?: string;
  inventory?: Inventory;
  app?: App;
}): Promise<UnlockResult> {
  const app = appFor(opts);
  const inventory = opts.inventory ?? (await app.inventory(opts.stack));
  const transports = await app.transports();
  const now = (): Date => new Date();
  const by = operatorName();
  try {
    const r = await breakStackLock(inventory, opts.lockId, by, {
      transportFor: transports.transportFor,
      now,
      home: app.home,
    });
    const stamp = newRunId(`unlock-${opts.stack}`, now());
    const dir = join(app.home, 'unlocks', stamp);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    Journal.create(dir, undefined, now).append({
      kind: 'unlock',
      stack: opts.stack,
      lockId: opts.lockId,
      by,
      removed: r.removed,
      unreachable: r.unreachable,
      ...(r.holder
        ? {
            holder: {
              runId: r.holder.runId,
              operator: r.holder.operator,
              controller: r.holder.controller,
              takenAt: r.holder.takenAt,
            },
          }
        : {}),
    });
    if (r.removed.length === 0 && r.unreachable.length === 0) {
      throw new InvalidInputError(
        `no place of stack ${opts.stack} holds lock ${opts.lockId}`,
        'The lock was released or broken already; a run refused for a lock names the lock id that holds it.',
      );
    }
    return { stack: opts.stack, lockId: opts.lockId, ...r, journal: dir };
  } finally {
    await transports.close();
  }
}
