/**
 * Runs on disk and the three entry points the CLI and tests use: plan a
 * runbook, start a run, resume a run. A run lives in `.baton/runs/<run-id>/`.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  Session,
  historyFrom,
  type EngineDeps,
  type PlanResult,
  type RunResult,
} from './engine.ts';
import { BatonError, InvalidInputError, JournalCorruptError } from './errors.ts';
import type { RunEvent } from './events.ts';
import { inventoryHash, loadInventory, type Inventory } from './inventory.ts';
import { Journal, readJournal, type JournalRead } from './journal.ts';
import {
  parseParamArgs,
  rawFromRecorded,
  secretParamNames,
  validateParams,
  type RawParam,
} from './params.ts';
import { resolvePolicy } from './approval.ts';
import type { Redactor } from './redact.ts';
import { approvalGate, gates, type Gate } from './gate.ts';
import { planHash as hashOf, type Plan } from './plan.ts';
import type { AnyRunbook } from './runbook.ts';
import { defaultTransports, type Transports } from './transports.ts';

export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export function batonVersion(): string {
  const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/** Where runs and local state live: $BATON_HOME, else ./.baton. */
export function batonHome(cwd = process.cwd()): string {
  return process.env.BATON_HOME ? resolve(process.env.BATON_HOME) : join(resolve(cwd), '.baton');
}

export function runsDir(cwd?: string): string {
  return join(batonHome(cwd), 'runs');
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

export interface LoadedRunbook {
  runbook: AnyRunbook;
  file: string;
  /** Hash of the runbook's source and baton's version: approvals and resumes bind to it. */
  codeVersion: string;
}

/** A runbook by name (./runbooks/NAME.ts, then baton's own runbooks/) or by path. */
export async function loadRunbook(ref: string, cwd = process.cwd()): Promise<LoadedRunbook> {
  const candidates =
    ref.includes('/') || /\.(ts|js|mjs)$/.test(ref)
      ? [isAbsolute(ref) ? ref : resolve(cwd, ref)]
      : [join(resolve(cwd), 'runbooks', `${ref}.ts`), join(PACKAGE_ROOT, 'runbooks', `${ref}.ts`)];
  const file = candidates.find((f) => existsSync(f));
  if (!file) {
    throw new InvalidInputError(
      `no runbook ${ref}`,
      `Looked for ${candidates.join(' and ')}. \`baton runbooks\` lists the runbooks baton knows.`,
    );
  }
  const mod = (await import(pathToFileURL(file).href)) as { default?: AnyRunbook };
  const runbook = mod.default;
  if (!runbook || runbook.kind !== 'baton.runbook') {
    throw new InvalidInputError(`${file} does not export a runbook as default (use defineRunbook)`);
  }
  const codeVersion = createHash('sha256')
    .update(readFileSync(file))
    .update(`\0baton@${batonVersion()}`)
    .digest('hex');
  return { runbook, file, codeVersion };
}

export function listRunbooks(cwd = process.cwd()): string[] {
  const names = new Set<string>();
  for (const dir of [join(resolve(cwd), 'runbooks'), join(PACKAGE_ROOT, 'runbooks')]) {
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir))
      if (f.endsWith('.ts') && !f.endsWith('.test.ts')) names.add(f.slice(0, -3));
  }
  return [...names].sort();
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
  /** Whether secrets may be given inline; by default refused where the stack's policy needs approvals. */
  inlineSecrets?: 'allow' | 'refuse';
}

interface Prepared {
  loaded: LoadedRunbook;
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

async function prepare(inv: Invocation, runId?: string): Promise<Prepared> {
  const cwd = inv.cwd ?? process.cwd();
  const loaded = await loadRunbook(inv.runbook, cwd);
  const { runbook } = loaded;
  const stack = stackFor(runbook, inv.stack);
  // Parameters are checked before the stack is even loaded: bad input touches nothing.
  const validated = validateParams(
    runbook.params,
    inv.rawParams ?? parseParamArgs(inv.params),
    runbook.name,
    { inlineSecrets: inv.inlineSecrets ?? inlineSecretsOn(runbook, stack, cwd) },
  );
  const inventory = inv.inventory ?? (await loadInventory(stack, cwd));
  const now = inv.deps?.now ?? (() => new Date());
  const id = runId ?? newRunId(runbook.name, now());
  const transports = defaultTransports();
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
      inventoryHash: inventoryHash(inventory),
      runId: id,
    },
    deps,
  );
  return {
    loaded,
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
function inlineSecretsOn(runbook: AnyRunbook, stack: string, cwd?: string): 'allow' | 'refuse' {
  const policy = resolvePolicy({
    runbook: runbook.name,
    stack,
    destructive: runbook.steps.some((s) => s.destructive),
    ...(cwd ? { cwd } : {}),
  });
  return policy.approvers > 0 ? 'refuse' : 'allow';
}

/** Dry run: probes run for real, mutations are recorded and returned, nothing is changed. */
export async function planRunbook(inv: Invocation): Promise<PlanResult> {
  const p = await prepare(inv);
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
  emergency?: boolean;
  /** The policy file; default ./baton.policy.json, else built-in defaults. */
  policyFile?: string;
  /** Apply another stack's policy (rehearse the production flow on the testnet). */
  policyOf?: string;
  /** Another gate after the approvals (a person's confirmation on a terminal). */
  gate?: Gate;
  /** How often to look for reconfirmations. */
  pollMs?: number;
}

export async function startRun(opts: StartOptions): Promise<RunResult> {
  const { runbook } = await loadRunbook(opts.runbook, opts.cwd);
  const stack = stackFor(runbook, opts.stack);
  const policy = resolvePolicy({
    runbook: runbook.name,
    stack: opts.policyOf ?? stack,
    destructive: runbook.steps.some((s) => s.destructive),
    ...(opts.policyFile ? { file: opts.policyFile } : {}),
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
  });
  const rules = opts.emergency ? policy.emergency : policy;
  if (rules.approvers > 0 && (!opts.approvals || !opts.approvedHash)) {
    throw new InvalidInputError(
      `${runbook.name} on stack ${opts.policyOf ?? stack} needs ${rules.approvers} approval(s) (policy: ${policy.source})`,
      `Write the plan with \`baton plan ${runbook.name} --stack ${stack} --out plan.json\`, have it approved with \`baton approve plan.json --key KEY\`, then run \`baton run --plan plan.json --approvals DIR\`.`,
    );
  }
  const now = opts.deps?.now ?? (() => new Date());
  const sleep = opts.deps?.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const gate = gates(
    approvalGate({
      policy,
      emergency: Boolean(opts.emergency),
      ...(opts.approvedHash ? { approvedHash: opts.approvedHash } : {}),
      ...(opts.approvals ? { approvals: opts.approvals } : {}),
      ...(opts.stdinApprovals !== undefined ? { stdin: opts.stdinApprovals } : {}),
      ...(opts.pollMs ? { pollMs: opts.pollMs } : {}),
      now,
      sleep,
    }),
    opts.gate,
  );
  const p = await prepare({
    ...opts,
    inlineSecrets: policy.approvers > 0 ? 'refuse' : 'allow',
    deps: { ...opts.deps, gate },
  });
  const dir = join(runsDir(opts.cwd), p.runId);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const release = acquireLock(dir, p.runId);
  try {
    const journal = Journal.create(dir, undefined, p.now);
    opts.onStart?.(p.runId, dir);
    return await stopped(p.runId, () =>
      p.session.run(journal, {
        kind: 'run-start',
        runId: p.runId,
        runbook: p.loaded.runbook.name,
        runbookFile: p.loaded.file,
        codeVersion: p.loaded.codeVersion,
        stack: p.stack,
        mode: opts.mode ?? 'run',
        operator: operatorName(),
        params: p.recordedParams,
        secretParams: p.secretNames,
        inventory: p.inventory,
        inventoryHash: inventoryHash(p.inventory),
        pid: process.pid,
      }),
    );
  } finally {
    await p.transports.close();
    release();
  }
}

export interface ResumeOptions {
  runId: string;
  /** Secret params given again (`name=value`, `name=@env:VAR`); other params come from the journal. */
  params: string[];
  cwd?: string;
  deps?: Partial<EngineDeps>;
}

export async function resumeRun(opts: ResumeOptions): Promise<RunResult> {
  const dir = runDir(opts.runId, opts.cwd);
  const read = readJournal(dir);
  const events = read.records.map((r) => r.event);
  const start = events[0];
  if (!start || start.kind !== 'run-start')
    throw new JournalCorruptError(`${dir}: the journal does not begin with run-start`);
  const history = historyFrom(events, operatorName());
  if (history?.ended) {
    throw new InvalidInputError(
      `run ${opts.runId} already ended: ${history.ended.outcome} (${history.ended.state})`,
      `Nothing to resume. \`baton report ${opts.runId}\` shows what it did.`,
    );
  }
  const release = acquireLock(dir, opts.runId);
  try {
    const loaded = await loadRunbook(start.runbookFile, opts.cwd);
    if (loaded.codeVersion !== start.codeVersion) {
      throw new BatonError(
        'PLAN_DRIFT',
        `runbook ${start.runbook} changed since run ${opts.runId} started (code ${loaded.codeVersion.slice(0, 12)}, was ${start.codeVersion.slice(0, 12)})`,
        'Resume with the version of the runbook that started the run (check out that commit).',
      );
    }
    const raw = rawFromRecorded(
      start.params,
      start.secretParams,
      parseParamArgs(opts.params),
      `run ${opts.runId}`,
      'baton resume',
    );
    const validated = validateParams(loaded.runbook.params, raw, loaded.runbook.name, {
      inlineSecrets: inlineSecretsOn(loaded.runbook, start.stack, opts.cwd),
    });
    if (!history) {
      // The controller died before the plan was recorded: nothing was changed.
      const journal = Journal.reopen(dir, validated.redactor);
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
    const transports = defaultTransports();
    try {
      const session = new Session(
        {
          runbook: loaded.runbook,
          stack: start.stack,
          inventory: start.inventory,
          params: validated.params,
          recordedParams: validated.recorded,
          redactor: validated.redactor,
          codeVersion: loaded.codeVersion,
          inventoryHash: start.inventoryHash,
          runId: opts.runId,
        },
        {
          transportFor: transports.transportFor,
          now,
          sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
          ...opts.deps,
        },
      );
      return await stopped(opts.runId, () =>
        session.resume(Journal.reopen(dir, validated.redactor, now), history),
      );
    } finally {
      await transports.close();
    }
  } finally {
    release();
  }
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

export function runDir(runId: string, cwd?: string): string {
  if (!/^[A-Za-z0-9._-]+$/.test(runId))
    throw new InvalidInputError(`${JSON.stringify(runId)} is not a run id`);
  const dir = join(runsDir(cwd), runId);
  if (!existsSync(dir)) {
    throw new InvalidInputError(
      `no run ${runId} in ${runsDir(cwd)}`,
      '`baton runs` lists the runs.',
    );
  }
  return dir;
}

/** One controller per run: a lock file holding the pid; a dead holder's lock is taken over. */
export function acquireLock(dir: string, runId: string): () => void {
  const file = join(dir, 'lock');
  if (existsSync(file)) {
    const [pidText, host] = readFileSync(file, 'utf8').trim().split(' ');
    const pid = Number(pidText);
    if (host === hostname() && pid && pid !== process.pid && alive(pid)) {
      throw new BatonError(
        'RUN_LOCKED',
        `run ${runId} is being driven by process ${pid} on this machine`,
        `Wait for it to finish, or stop it (kill ${pid}) and then \`baton resume ${runId}\`.`,
      );
    }
    if (host !== hostname()) {
      throw new BatonError(
        'RUN_LOCKED',
        `run ${runId} is locked by a controller on ${host}`,
        `Make sure that controller is gone, then delete ${file} and resume.`,
      );
    }
  }
  writeFileSync(file, `${process.pid} ${hostname()}\n`, { mode: 0o600 });
  return () => rmSync(file, { force: true });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface RunSummary {
  runId: string;
  runbook: string;
  stack: string;
  operator: string;
  startedAt: string;
  endedAt?: string;
  outcome: string;
  state?: string;
  journal: 'verified' | string;
}

export function listRuns(cwd?: string): RunSummary[] {
  const root = runsDir(cwd);
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .sort()
    .map((runId): RunSummary => {
      const dir = join(root, runId);
      let read: JournalRead;
      try {
        read = readJournal(dir);
      } catch (e) {
        return {
          runId,
          runbook: '?',
          stack: '?',
          operator: '?',
          startedAt: '?',
          outcome: 'unknown',
          journal: (e as Error).message,
        };
      }
      const first = read.records[0];
      const start = first?.event.kind === 'run-start' ? first.event : undefined;
      const end = read.records.findLast((r) => r.event.kind === 'run-end');
      const endEvent = end?.event as Extract<RunEvent, { kind: 'run-end' }> | undefined;
      return {
        runId,
        runbook: start?.runbook ?? '?',
        stack: start?.stack ?? '?',
        operator: start?.operator ?? '?',
        startedAt: first?.ts ?? '?',
        ...(end ? { endedAt: end.ts } : {}),
        outcome:
          endEvent?.outcome ??
          (existsSync(join(dir, 'lock')) ? 'running or interrupted' : 'interrupted'),
        ...(endEvent ? { state: endEvent.state } : {}),
        journal: 'verified',
      };
    });
}

/** A plan written by `baton plan --out`: what approvers sign and `baton run --plan` runs. */
export interface PlanFile {
  kind: 'baton.plan';
  planHash: string;
  runbookFile: string;
  plan: Plan;
}

export function writePlanFile(path: string, plan: Plan, hash: string, runbookFile: string): void {
  const file: PlanFile = { kind: 'baton.plan', planHash: hash, runbookFile, plan };
  writeFileSync(path, JSON.stringify(file, null, 2) + '\n', { mode: 0o600 });
}

/** Read a plan file and check that its content still hashes to the hash it carries. */
export function readPlanFile(path: string): PlanFile {
  let data: PlanFile;
  try {
    data = JSON.parse(readFileSync(path, 'utf8')) as PlanFile;
  } catch (e) {
    throw new InvalidInputError(`${path} is not a plan file: ${(e as Error).message}`);
  }
  if (data?.kind !== 'baton.plan' || !data.plan || typeof data.planHash !== 'string') {
    throw new InvalidInputError(
      `${path} is not a plan file (write one with \`baton plan … --out FILE\`)`,
    );
  }
  const actual = hashOf(data.plan);
  if (actual !== data.planHash) {
    throw new BatonError(
      'APPROVAL_REFUSED',
      `${path} was edited after it was made: its plan hashes to ${actual.slice(0, 12)}, but it says ${data.planHash.slice(0, 12)}`,
      'Approvals bind to the plan as made; plan again and have it approved.',
    );
  }
  return data;
}

/** The invocation a plan file describes; secrets not given by reference must be given again. */
export async function invocationFromPlan(
  file: PlanFile,
  secretArgs: string[],
  cwd?: string,
): Promise<Invocation> {
  const loaded = await loadRunbook(file.runbookFile, cwd);
  return {
    runbook: file.runbookFile,
    stack: file.plan.stack,
    params: [],
    rawParams: rawFromRecorded(
      file.plan.params,
      secretParamNames(loaded.runbook.params),
      parseParamArgs(secretArgs),
      'this plan',
      'baton run --plan',
    ),
    ...(cwd ? { cwd } : {}),
  };
}
