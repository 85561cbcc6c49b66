/**
 * The engine: plan (every fact and precondition before the first mutation),
 * execute (write-ahead journal, verify, retry transient failures), roll back
 * in reverse order, and resume a run whose controller died.
 */
import { canonicalJson } from '../core/hash.ts';
import type { CodeManifest } from '../core/code-version.ts';
import {
  atPlace,
  BatonError,
  errorMessage,
  isBatonError,
  thrownText,
  TransientError,
  type ErrorCode,
  type RunbookPlace,
} from '../core/errors.ts';
import type { Clearance, CommandRecord, Phase, RunEvent, RunOutcome } from '../core/events.ts';
import type { Duplex } from 'node:stream';
import { CommandError, type CommandResult, type PipeResult, type Transport } from '../core/exec.ts';
import { findHost, hostsWithRole, type Host, type Inventory } from '../core/inventory.ts';
import type { Journal } from './journal.ts';
import {
  planDifferences,
  planHash,
  preflightFailures,
  renderPreflightFailures,
  type Plan,
  type PlannedStep,
} from '../core/plan.ts';
import { clipTail, type Redactor } from '../core/redact.ts';
import {
  isPointOfNoReturn,
  type AnyRunbook,
  type AnyStep,
  type ApplyContext,
  type CheckResult,
  type CommandOptions,
  type Condition,
  type Exec,
  type Notes,
  type Mutate,
  type MutateOptions,
  type ProbeContext,
  type RunbookContext,
} from '../core/runbook.ts';
import { isTemplateCall, sh, type Cmd, type ShellValue } from '../core/shell.ts';

export const CONTROLLER: Host = {
  name: 'controller',
  roles: ['controller'],
  address: 'localhost',
  connection: 'local',
};

/** Side effects come in here, with real defaults in cli.ts; tests swap them. */
export interface EngineDeps {
  transportFor(host: Host): Transport;
  now(): Date;
  sleep(ms: number): Promise<void>;
  /** Every event, for the console; the journal receives them separately. */
  onEvent?(event: RunEvent): void;
  /**
   * Called once with the plan before the first mutation (approvals, a person's
   * confirmation). Refusal stops the run with nothing changed.
   */
  gate?(plan: Plan, hash: string, record: (event: RunEvent) => void): Promise<GateResult>;
  /** Base delay for retries of transient failures. */
  backoffMs?: number;
  /**
   * Called after each mutation of a live apply has returned: fault injection
   * (a test throws a TransientError here to drop the connection mid-step).
   */
  afterMutation?(at: {
    step: string;
    host: string;
    index: number;
    command: string;
  }): Promise<void> | void;
}

export type GateResult =
  | {
      ok: true;
      emergency: boolean;
      approvers: string[];
      reconfirmedBy: string[];
      /** Time passed (a hold): plan again and require the same plan before going on. */
      replan: boolean;
      /** The evidence for the journal's cleared record. */
      clearance?: Clearance;
    }
  | { ok: false; reason: string; next: string };

export interface RunInput {
  runbook: AnyRunbook;
  stack: string;
  inventory: Inventory;
  params: unknown;
  /** Params as recorded (secrets replaced). */
  recordedParams: Record<string, unknown>;
  redactor: Redactor;
  codeVersion: string;
  codeManifest: CodeManifest;
  inventoryHash: string;
  /** The repository's approval policy the plan is made under. */
  policyHash: string;
  runId: string;
  /** The plan that was approved (a run from a plan file): the run goes on only if the hosts still give it. */
  approved?: { hash: string; plan?: Plan };
}

export interface PlanResult {
  plan: Plan;
  hash: string;
}

export interface RunResult {
  runId: string;
  outcome: RunOutcome;
  state: string;
  next?: string;
  error?: string;
  planHash?: string;
  /** Done without changing anything: every step was already done or skipped. */
  nothingToDo?: boolean;
  /**
   * The error code of what ended the run before any change, where an error
   * did (the same code `baton plan` gives for it): INTERNAL for one baton did
   * not expect.
   */
  code?: ErrorCode | 'INTERNAL';
}

const OUTPUT_TAIL = 2000;

function asConditions(result: CheckResult): Condition[] {
  if (!result) return [];
  return Array.isArray(result) ? result : [result];
}

/** What a check found done on a host, when every condition holds and one says so. */
function doneOn(conditions: Condition[]): string | undefined {
  if (!conditions.every((c) => c.ok)) return undefined;
  const done = conditions.find((c) => c.alreadyDone);
  return done ? `${done.name}: ${done.found}` : undefined;
}

function resolveTargets(
  runbookName: string,
  step: AnyStep,
  ctx: RunbookContext<unknown, unknown>,
): Host[] {
  const t = step.targets;
  if (t === 'controller') return [CONTROLLER];
  let hosts: Host[];
  if (typeof t === 'function') {
    let chosen: Array<Host | string>;
    try {
      chosen = t(ctx);
    } catch (e) {
      throw atPlace({ runbook: runbookName, step: step.id, phase: 'targets' }, e);
    }
    hosts = chosen.map((h) => (typeof h === 'string' ? findHost(ctx.inventory, h) : h));
  } else if ('role' in t) {
    hosts = hostsWithRole(ctx.inventory, t.role);
    if (hosts.length === 0) {
      throw new BatonError(
        'INVALID_INPUT',
        `step ${step.id} targets role ${t.role}, but stack ${ctx.stack} has no host with that role`,
        `Give a host the role ${t.role} in the stack, or pick another stack.`,
      );
    }
  } else {
    hosts = t.hosts.map((name) => findHost(ctx.inventory, name));
  }
  return hosts;
}

/** Run `fn` over items, at most `limit` at once; stop starting new ones once `stopped()` is true. */
async function forEachLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
  stopped: () => boolean,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length && !stopped()) {
      const item = items[next++]!;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

type Mode =
  | { kind: 'probe' }
  | { kind: 'record'; into: string[] }
  | {
      kind: 'live';
      phase: Phase;
      step: string;
      mutation: boolean;
      /** For apply: the planned mutations, compared command by command. */
      planned?: string[];
      counter: Counter;
    };

interface Counter {
  /** Mutations issued, to compare with the plan. */
  mutations: number;
  /** Mutations that may have had an effect on the host. */
  started: number;
}

function live(
  phase: Phase,
  step: string,
  mutation: boolean,
  counter: Counter,
  planned?: string[],
): Mode {
  return { kind: 'live', phase, step, mutation, counter, ...(planned ? { planned } : {}) };
}

class StepFailure extends Error {
  constructor(
    readonly step: string,
    readonly host: string,
    message: string,
  ) {
    super(message);
  }
}

/** One run (or one plan) of one runbook. */
export class Session {
  private facts: unknown = undefined;
  private readonly targets = new Map<string, Host[]>();
  private journal: Journal | undefined;
  /** What each step found on each host before changing it, for its undo. */
  private readonly notes = new Map<string, Notes>();
  /** Steps that marked their point of no return (`ctx.commit()`) in this run. */
  private readonly committed = new Set<string>();
  /** The steps the plan being executed has as commit steps. */
  private commitSteps = new Set<string>();

  constructor(
    private readonly input: RunInput,
    private readonly deps: EngineDeps,
  ) {}

  private emit(event: RunEvent): void {
    const safe = this.input.redactor.redactDeep(event);
    this.journal?.append(safe);
    this.deps.onEvent?.(safe);
  }

  private baseContext(): RunbookContext<unknown, unknown> {
    const { inventory, stack, runId } = this.input;
    return {
      params: this.input.params,
      facts: this.facts,
      inventory,
      stack,
      runId,
      hosts: (role) => hostsWithRole(inventory, role),
      hostNamed: (name) => findHost(inventory, name),
      now: () => this.deps.now(),
      sleep: (ms) => this.deps.sleep(ms),
    };
  }

  /**
   * Every action on a host goes through here: recorded in a dry run, compared
   * with the plan and journaled in a live one.
   */
  private async perform(
    host: Host,
    mode: Mode,
    text: string,
    run: () => Promise<CommandResult>,
    allowFail = false,
  ): Promise<CommandResult> {
    const isMutation = mode.kind === 'record' || (mode.kind === 'live' && mode.mutation);
    if (mode.kind === 'record') {
      mode.into.push(this.input.redactor.redact(text));
      return {
        host: host.name,
        command: text,
        exitCode: 0,
        signal: null,
        stdout: '',
        stderr: '',
        durationMs: 0,
      };
    }
    if (mode.kind === 'live' && mode.planned && isMutation) {
      const i = mode.counter.mutations++;
      const expected = mode.planned[i];
      const shown = this.input.redactor.redact(text);
      if (expected !== shown) {
        throw new BatonError(
          'PLAN_DRIFT',
          `step ${mode.step} on ${host.name} would run \`${shown}\` as mutation ${i + 1}, but the plan says ${
            expected === undefined ? 'nothing more' : `\`${expected}\``
          }; it was not run`,
          'The hosts changed since the plan, or the step decides from live state. Plan again and compare.',
        );
      }
    }
    if (mode.kind === 'live' && isMutation) mode.counter.started++;
    let result: CommandResult;
    try {
      result = await run();
    } catch (e) {
      if (e instanceof TransientError && !e.startedCommand && mode.kind === 'live' && isMutation) {
        mode.counter.started--;
      }
      if (mode.kind === 'live' && !(e instanceof TransientError)) {
        this.emit({
          kind: 'command',
          step: mode.step,
          host: host.name,
          phase: mode.phase,
          result: {
            command: text,
            exitCode: null,
            signal: null,
            durationMs: 0,
            stdout: '',
            stderr: errorMessage(e),
          },
        });
      }
      throw e;
    }
    if (mode.kind === 'live') {
      this.emit({
        kind: 'command',
        step: mode.step,
        host: host.name,
        phase: mode.phase,
        result: record(result, isMutation, this.input.redactor),
      });
    }
    if (mode.kind === 'live' && isMutation && mode.phase === 'apply' && this.deps.afterMutation) {
      await this.deps.afterMutation({
        step: mode.step,
        host: host.name,
        index: mode.counter.started,
        command: this.input.redactor.redact(text),
      });
    }
    if (!allowFail && (result.exitCode !== 0 || result.signal)) {
      // Redacted before the error formats it: its message joins stderr lines, which a secret may span.
      throw new CommandError(this.input.redactor.redactDeep({ ...result }));
    }
    return result;
  }

  /** One command through the host's transport, as `perform` records or runs it. */
  private command(
    host: Host,
    mode: Mode,
    command: Cmd,
    options: CommandOptions = {},
  ): Promise<CommandResult> {
    return this.perform(
      host,
      mode,
      command.text,
      () =>
        this.deps
          .transportFor(host)
          .exec(host, command.text, { ...options, secrets: this.input.redactor }),
      options.allowFail,
    );
  }

  private exec(host: Host, mode: Mode): Exec {
    return templated((command, options?: CommandOptions) =>
      this.command(host, mode, command, options),
    ) as Exec;
  }

  /** `$`: like exec, but the result stays in the engine (journal, log), out of the step's hands. */
  private mutate(host: Host, step: string, mode: Mode): Mutate {
    return templated(async (command, options: MutateOptions = {}): Promise<void> => {
      const { logOutput, ...rest } = options;
      const result = await this.command(host, mode, command, rest);
      const out = result.stdout.trim();
      if (logOutput && out && mode.kind === 'live') {
        this.emit({ kind: 'log', step, host: host.name, message: `${logOutput}: ${out}` });
      }
    }) as Mutate;
  }

  private hostArg(h: Host | string): Host {
    return typeof h === 'string' ? this.hostOf(h) : h;
  }

  private connect(host: Host | string, port: number): Promise<Duplex> {
    const h = this.hostArg(host);
    const transport = this.deps.transportFor(h);
    if (!transport.forward) {
      throw new BatonError(
        'MISSING_PREREQUISITE',
        `the transport of ${h.name} cannot open connections on the host`,
      );
    }
    return transport.forward(h, port);
  }

  private probeContext(host: Host, step: string | undefined): ProbeContext<unknown, unknown> {
    return {
      ...this.baseContext(),
      host,
      probe: this.exec(host, { kind: 'probe' }),
      on: (other) => ({ probe: this.exec(this.hostArg(other), { kind: 'probe' }) }),
      connect: (other, port) => this.connect(other, port),
      log: (message) =>
        this.emit({ kind: 'log', ...(step ? { step } : {}), host: host.name, message }),
    };
  }

  private applyContext(
    host: Host,
    step: string,
    mutate: Mode,
    probe?: Mode,
  ): ApplyContext<unknown, unknown> {
    const ctx = this.probeContext(host, step);
    return {
      ...ctx,
      ...(probe ? { probe: this.exec(host, probe) } : {}),
      $: this.mutate(host, step, mutate),
      notes: this.notes.get(key(step, host.name)) ?? {},
      note: (data) => {
        if (mutate.kind !== 'live') return;
        const k = key(step, host.name);
        this.notes.set(k, { ...this.notes.get(k), ...data });
        this.emit({ kind: 'note', step, host: host.name, data });
      },
      commit: () => {
        if (mutate.kind !== 'live' || this.committed.has(step)) return;
        if (!this.commitSteps.has(step) || !this.findStep(step).marksCommit) return;
        this.committed.add(step);
        this.emit({ kind: 'commit', step, host: host.name });
      },
      act: async (description, data, fn) => {
        // The data as compared is what fn gets, not the object it was made from.
        const compared = canonicalJson(data);
        const text = `${description} with ${compared}`;
        await this.perform(host, mutate, text, async () => {
          const started = this.deps.now().getTime();
          const detail = await fn(JSON.parse(compared) as typeof data);
          return {
            host: host.name,
            command: text,
            exitCode: 0,
            signal: null,
            stdout: typeof detail === 'string' ? detail : '',
            stderr: '',
            durationMs: this.deps.now().getTime() - started,
          };
        });
      },
      pipe: async (from, command) => {
        const source = this.hostArg(from.host);
        const text = `${source.name}: ${from.command.text} | ${host.name}: ${command.text}`;
        await this.perform(host, mutate, text, async () => {
          const piped = await this.stream(source, from.command.text, host, command.text);
          const failed = [piped.from, piped.to].find((r) => r.exitCode !== 0 || r.signal);
          return {
            ...(failed ?? piped.to),
            command: text,
            stdout: `${piped.bytes} bytes, sha256 ${piped.sha256}`,
          };
        });
      },
    };
  }

  private async stream(
    from: Host,
    fromCommand: string,
    to: Host,
    toCommand: string,
  ): Promise<PipeResult> {
    const a = this.deps.transportFor(from);
    const b = this.deps.transportFor(to);
    if (a === b && a.stream)
      return a.stream(
        { host: from, command: fromCommand },
        { host: to, command: toCommand },
        { secrets: this.input.redactor },
      );
    throw new BatonError(
      'MISSING_PREREQUISITE',
      `cannot stream from ${from.name} to ${to.name}: they are reached by different transports`,
    );
  }

  private stepTargets(step: AnyStep): Host[] {
    let hosts = this.targets.get(step.id);
    if (!hosts) {
      hosts = resolveTargets(this.input.runbook.name, step, this.baseContext());
      this.targets.set(step.id, hosts);
    }
    return hosts;
  }

  /** Gather facts, run every check, record every mutation. Changes nothing. */
  async plan(): Promise<PlanResult> {
    const { runbook } = this.input;
    if (runbook.facts) {
      const { facts: _none, ...base } = this.baseContext();
      this.facts = await this.located({ phase: 'facts' }, () =>
        runbook.facts!({
          ...base,
          probe: (h) => this.exec(this.hostArg(h), { kind: 'probe' }),
        }),
      );
    }
    const preflight: Plan['preflight'] = [];
    const steps: PlannedStep[] = [];
    for (const step of runbook.steps) {
      const planned: PlannedStep = {
        id: step.id,
        title: step.title,
        destructive: Boolean(step.destructive),
        pointOfNoReturn: isPointOfNoReturn(step),
        ...(this.locatedSync({ step: step.id, phase: 'commit' }, () =>
          commitsAt(step, this.baseContext()),
        )
          ? { commit: true }
          : {}),
        ...(step.state ? { state: step.state } : {}),
        ...(step.frozen ? { frozen: step.frozen } : {}),
        hosts: [],
      };
      steps.push(planned);
      const when = step.when
        ? this.locatedSync({ step: step.id, phase: 'when' }, () => step.when!(this.baseContext()))
        : true;
      if (when !== true) {
        planned.skipped = typeof when === 'string' ? when : 'its condition does not hold';
        continue;
      }
      const hosts = this.stepTargets(step);
      await forEachLimit(
        hosts,
        step.concurrency ?? 4,
        async (host) => {
          const conditions = await this.runCheck(step, host);
          preflight.push(...conditions.map((c) => ({ ...c, step: step.id, host: host.name })));
          const done = doneOn(conditions);
          if (done !== undefined) {
            planned.hosts.push({
              host: host.name,
              mutations: [],
              undo: [],
              done: this.input.redactor.redact(done),
            });
            return;
          }
          const mutations: string[] = [];
          const undo: string[] = [];
          const at = { step: step.id, host: host.name, planning: true };
          if (step.apply) {
            const apply = step.apply;
            await this.located({ ...at, phase: 'apply' }, () =>
              apply(this.applyContext(host, step.id, { kind: 'record', into: mutations })),
            );
          }
          if (step.undo) {
            const undoFn = step.undo;
            await this.located({ ...at, phase: 'undo' }, () =>
              undoFn(this.applyContext(host, step.id, { kind: 'record', into: undo })),
            );
          }
          planned.hosts.push({ host: host.name, mutations, undo });
        },
        () => false,
      );
      const order = hosts.map((h) => h.name);
      planned.hosts.sort((a, b) => order.indexOf(a.host) - order.indexOf(b.host));
    }
    const plan: Plan = {
      runbook: runbook.name,
      summary: runbook.summary,
      stack: this.input.stack,
      codeVersion: this.input.codeVersion,
      code: this.input.codeManifest,
      params: this.input.recordedParams,
      inventoryHash: this.input.inventoryHash,
      policyHash: this.input.policyHash,
      facts: this.input.redactor.redactDeep(this.facts ?? null),
      preflight: this.input.redactor.redactDeep(preflight),
      steps,
      ...(steps.some((s) => this.hasWork(s)) ? {} : { nothingToDo: true }),
    };
    return { plan, hash: planHash(plan) };
  }

  /** Whether running this planned step would do anything: it runs, on a host where it is not already done. */
  private hasWork(planned: PlannedStep): boolean {
    const step = this.findStep(planned.id);
    if (planned.skipped || (!step.apply && !step.verify)) return false;
    return planned.hosts.some((h) => h.done === undefined);
  }

  /** Run a runbook's own function; what it throws names the runbook, step and host. */
  private async located<T>(at: Omit<RunbookPlace, 'runbook'>, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw atPlace({ runbook: this.input.runbook.name, ...at }, e);
    }
  }

  private locatedSync<T>(at: Omit<RunbookPlace, 'runbook'>, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw atPlace({ runbook: this.input.runbook.name, ...at }, e);
    }
  }

  private async runCheck(step: AnyStep, host: Host): Promise<Condition[]> {
    if (!step.check) return [];
    try {
      return asConditions(await step.check(this.probeContext(host, step.id)));
    } catch (e) {
      return [
        {
          name: 'check could run',
          ok: false,
          expected: 'the check to complete',
          found: this.input.redactor.redact(
            isBatonError(e) ? e.message : `the check threw: ${thrownText(e)}`,
          ),
          remedy: isBatonError(e)
            ? (e.hint ?? `Make ${host.name} reachable and the check's commands runnable.`)
            : `That is runbook ${this.input.runbook.name}'s own check: fix what it names (or the check's code), then plan again.`,
        },
      ];
    }
  }

  /** Plan, then run every step for real, journaled. */
  async run(journal: Journal, start: Extract<RunEvent, { kind: 'run-start' }>): Promise<RunResult> {
    this.journal = journal;
    this.emit(start);
    let planned: PlanResult;
    try {
      planned = await this.plan();
    } catch (e) {
      return this.end('precondition-failed', this.safeState(), {
        error: errorMessage(e),
        next:
          isBatonError(e) && e.hint ? e.hint : 'Fix the cause and run again; nothing was changed.',
        code: isBatonError(e) ? e.code : 'INTERNAL',
      });
    }
    this.emit({ kind: 'planned', planHash: planned.hash, plan: planned.plan });
    this.emit({ kind: 'preflight', conditions: planned.plan.preflight });
    const approved = this.input.approved;
    if (approved && approved.hash !== planned.hash) {
      return this.end('precondition-failed', this.safeState(), {
        error: drift(
          `the plan changed since it was approved: approved ${approved.hash.slice(0, 12)}, the hosts now give ${planned.hash.slice(0, 12)}`,
          approved.plan,
          planned.plan,
        ),
        next: 'Nothing was changed, and no approval was asked for. Plan again, read what changed, and have the new plan approved.',
        planHash: planned.hash,
      });
    }
    const failures = preflightFailures(planned.plan);
    if (failures.length > 0) {
      return this.end('precondition-failed', this.safeState(), {
        error: `${failures.length} precondition(s) failed:\n${renderPreflightFailures(failures)}`,
        next: 'Nothing was changed. Fix what the failed checks name, then run again.',
        planHash: planned.hash,
      });
    }
    // Before the gate: a run that would change nothing asks nobody, and uses no approval.
    if (planned.plan.nothingToDo) {
      return this.end(
        'done',
        lastState(this.input.runbook, planned.plan) ?? 'unchanged: nothing to do',
        { planHash: planned.hash, nothingToDo: true },
      );
    }
    const gate = this.deps.gate
      ? await this.deps.gate(planned.plan, planned.hash, (e) => this.emit(e))
      : { ok: true as const, emergency: false, approvers: [], reconfirmedBy: [], replan: false };
    if (!gate.ok) {
      return this.end('precondition-failed', this.safeState(), {
        error: gate.reason,
        next: `Nothing was changed. ${gate.next}`,
        planHash: planned.hash,
      });
    }
    if (gate.replan) {
      const again = await this.plan();
      const failed = preflightFailures(again.plan);
      if (again.hash !== planned.hash || failed.length > 0) {
        return this.end('precondition-failed', this.safeState(), {
          error:
            failed.length > 0
              ? `after the hold, ${failed.length} precondition(s) failed:\n${renderPreflightFailures(failed)}`
              : drift(
                  `the hosts changed during the hold: the plan is now ${again.hash.slice(0, 12)}, not the approved ${planned.hash.slice(0, 12)}`,
                  planned.plan,
                  again.plan,
                ),
          next: 'Nothing was changed. Plan again and have the new plan approved.',
          planHash: planned.hash,
        });
      }
    }
    this.emit({
      kind: 'cleared',
      emergency: gate.emergency,
      approvers: gate.approvers,
      reconfirmedBy: gate.reconfirmedBy,
      ...(gate.clearance ?? {}),
    });
    return this.execute(planned.plan, planned.hash, { done: new Set(), started: [] });
  }

  /** Continue a run from its journal: re-verify interrupted steps, then go on or roll back. */
  async resume(journal: Journal, history: RunHistory): Promise<RunResult> {
    this.journal = journal;
    this.facts = history.plan.facts;
    for (const [k, data] of history.notes) this.notes.set(k, data);
    for (const step of history.committed) this.committed.add(step);
    const interrupted = history.started.filter(
      (s) => !history.done.has(key(s.step, s.host)) && !history.failed.has(key(s.step, s.host)),
    );
    this.emit({ kind: 'resume', operator: history.operator, pid: process.pid, interrupted });
    if (!history.cleared) {
      return this.end('precondition-failed', this.safeState(), {
        error:
          'the controller stopped before the run was cleared to start (approvals, hold or confirmation); no mutation had started',
        next: 'Nothing was changed. Run again (with fresh approvals where the policy needs them).',
      });
    }
    if (history.rollingBack) {
      return this.rollback(history.plan, history.started, history.rollbackReason, history.undone);
    }
    const commit = this.commitStarted(history.plan, history.started);
    if (commit) return this.resumeForward(history, commit);
    const failedOnResume: string[] = [];
    for (const s of interrupted) {
      const step = this.findStep(s.step);
      const host = this.hostOf(s.host);
      let conditions: Condition[] = [];
      let error: string | undefined;
      if (!step.verify && step.apply) {
        error = 'the step has no verify, so its effect cannot be checked';
      } else {
        try {
          conditions = step.verify
            ? asConditions(await step.verify(this.probeContext(host, step.id)))
            : [];
        } catch (e) {
          error = errorMessage(e);
        }
      }
      const ok = !error && conditions.every((c) => c.ok);
      this.emit({
        kind: 'outcome',
        step: step.id,
        host: host.name,
        ok,
        durationMs: 0,
        recovered: true,
        conditions,
        ...(ok ? {} : { error: error ?? failedText(conditions) }),
      });
      if (ok) history.done.add(key(step.id, host.name));
      else failedOnResume.push(`${step.id} on ${host.name}: ${error ?? failedText(conditions)}`);
    }
    if (failedOnResume.length > 0) {
      return this.rollback(
        history.plan,
        history.started,
        `interrupted work did not verify after the restart: ${failedOnResume.join('; ')}`,
        new Set(),
      );
    }
    if (history.failed.size > 0) {
      return this.rollback(
        history.plan,
        history.started,
        'a step had failed before the controller stopped',
        new Set(),
      );
    }
    return this.execute(history.plan, history.planHash, {
      done: history.done,
      started: history.started,
    });
  }

  /**
   * The first commit step past its point of no return, if any: one that has
   * started, or for a step that marks it, one that called `ctx.commit()`. Past
   * it, the run only goes forward.
   */
  private commitStarted(
    plan: Plan,
    started: Array<{ step: string; host: string }>,
  ): AnyStep | undefined {
    const planned = plan.steps.find(
      (s) =>
        s.commit &&
        (this.findStep(s.id).marksCommit
          ? this.committed.has(s.id)
          : started.some((x) => x.step === s.id)),
    );
    return planned ? this.findStep(planned.id) : undefined;
  }

  /**
   * Resume past the point of no return: whatever verifies is done, an
   * idempotent step that does not is applied again, and anything else stops
   * for a person. Nothing is undone.
   */
  private async resumeForward(history: RunHistory, commit: AnyStep): Promise<RunResult> {
    const unfinished = history.started.filter((s) => !history.done.has(key(s.step, s.host)));
    for (const s of unfinished) {
      const step = this.findStep(s.step);
      const host = this.hostOf(s.host);
      let conditions: Condition[] = [];
      let error: string | undefined;
      if (step.verify) {
        try {
          conditions = asConditions(await step.verify(this.probeContext(host, step.id)));
        } catch (e) {
          error = errorMessage(e);
        }
      } else error = 'the step has no verify, so its effect cannot be checked';
      const ok = !error && conditions.every((c) => c.ok);
      if (ok) {
        this.emit({
          kind: 'outcome',
          step: step.id,
          host: host.name,
          ok: true,
          durationMs: 0,
          recovered: true,
          conditions,
        });
        history.done.add(key(step.id, host.name));
      } else if (!step.idempotent) {
        return this.stopForward(
          history.plan,
          commit,
          `step ${step.id} on ${host.name} was interrupted or failed and does not verify (${error ?? failedText(conditions)}), and it is not safe to apply again`,
          history.done,
          history.planHash,
        );
      }
    }
    return this.execute(history.plan, history.planHash, {
      done: history.done,
      started: history.started,
    });
  }

  /** A failure past the point of no return: stop for a person, undo nothing, say how to finish. */
  private stopForward(
    plan: Plan,
    commit: AnyStep,
    reason: string,
    done: Set<string>,
    hash?: string,
  ): RunResult {
    this.emit({ kind: 'forward', step: commit.id, reason });
    const completed = plan.steps.filter(
      (p) => !p.skipped && p.state && p.hosts.every((h) => done.has(key(p.id, h.host))),
    );
    const state = completed.at(-1)?.state ?? commit.state ?? `after step ${commit.id}`;
    return this.end('needs-human', `past the point of no return: ${state}`, {
      error: reason,
      next:
        `Step ${commit.id} (${commit.title}) had started, so writes may exist on the new side: baton undoes nothing from here, since an undo would discard them. ` +
        `Fix the cause, then \`baton resume ${this.input.runId}\` to finish the run forward. ` +
        `To go back instead, finish this run and run the failback, which carries the data back.`,
      ...(hash ? { planHash: hash } : {}),
    });
  }

  private findStep(id: string): AnyStep {
    const step = this.input.runbook.steps.find((s) => s.id === id);
    if (!step) {
      throw new BatonError(
        'JOURNAL_CORRUPT',
        `the journal names step ${id}, which runbook ${this.input.runbook.name} does not have`,
        'The runbook changed since the run started; resume with the version that started it.',
      );
    }
    return step;
  }

  private hostOf(name: string): Host {
    return name === CONTROLLER.name ? CONTROLLER : findHost(this.input.inventory, name);
  }

  private async execute(
    plan: Plan,
    hash: string,
    progress: { done: Set<string>; started: Array<{ step: string; host: string }> },
  ): Promise<RunResult> {
    this.commitSteps = new Set(plan.steps.filter((s) => s.commit).map((s) => s.id));
    const { runbook } = this.input;
    const started = progress.started;
    for (const plannedStep of plan.steps) {
      if (plannedStep.skipped) continue;
      const step = this.findStep(plannedStep.id);
      // A check-only step did its work in preflight; the run has nothing to do for it.
      if (!step.apply && !step.verify) continue;
      const hosts = plannedStep.hosts.map((h) => this.hostOf(h.host));
      const pending = hosts.filter(
        (h) =>
          !progress.done.has(key(step.id, h.name)) &&
          plannedStep.hosts.find((p) => p.host === h.name)?.done === undefined,
      );
      if (pending.length === 0) continue;
      this.emit({ kind: 'step-start', step: step.id, hosts: pending.map((h) => h.name) });
      let failure: StepFailure | undefined;
      await forEachLimit(
        pending,
        step.concurrency ?? 4,
        async (host) => {
          if (!started.some((s) => s.step === step.id && s.host === host.name)) {
            started.push({ step: step.id, host: host.name });
          }
          const planned = plannedStep.hosts.find((h) => h.host === host.name)!;
          try {
            await this.applyOnHost(step, host, planned.mutations);
            progress.done.add(key(step.id, host.name));
          } catch (e) {
            failure ??=
              e instanceof StepFailure ? e : new StepFailure(step.id, host.name, errorMessage(e));
          }
        },
        () => failure !== undefined,
      );
      this.emit({ kind: 'step-end', step: step.id, ok: !failure });
      const commit = failure ? this.commitStarted(plan, started) : undefined;
      if (failure && commit) {
        return this.stopForward(
          plan,
          commit,
          `step ${failure.step} failed on ${failure.host}: ${failure.message}`,
          progress.done,
          hash,
        );
      }
      if (failure) {
        return this.rollback(
          plan,
          started,
          `step ${failure.step} failed on ${failure.host}: ${failure.message}`,
          new Set(),
          hash,
        );
      }
    }
    return this.end('done', lastState(runbook, plan) ?? 'done: every step completed and verified', {
      planHash: hash,
    });
  }

  private async applyOnHost(step: AnyStep, host: Host, planned: string[]): Promise<void> {
    const retries = step.retries ?? 3;
    for (let attempt = 1; ; attempt++) {
      const startedAt = this.deps.now().getTime();
      const counter: Counter = { mutations: 0, started: 0 };
      this.emit({ kind: 'intent', step: step.id, host: host.name, attempt, commands: planned });
      let phase: 'apply' | 'verify' = 'apply';
      try {
        if (step.apply) {
          await step.apply(
            this.applyContext(
              host,
              step.id,
              live('apply', step.id, true, counter, planned),
              live('apply', step.id, false, counter),
            ),
          );
        }
        phase = 'verify';
        const conditions = step.verify
          ? asConditions(
              await step.verify({
                ...this.probeContext(host, step.id),
                probe: this.exec(host, live('verify', step.id, false, counter)),
              }),
            )
          : [];
        const ok = conditions.every((c) => c.ok);
        this.emit({
          kind: 'outcome',
          step: step.id,
          host: host.name,
          ok,
          durationMs: this.deps.now().getTime() - startedAt,
          conditions,
          ...(ok ? {} : { error: `verify failed: ${failedText(conditions)}` }),
        });
        if (!ok)
          throw new StepFailure(step.id, host.name, `verify failed: ${failedText(conditions)}`);
        return;
      } catch (e) {
        if (e instanceof StepFailure) throw e;
        const safeToRetry =
          e instanceof TransientError && (step.idempotent || counter.started === 0);
        if (safeToRetry && attempt <= retries) {
          const delayMs = (this.deps.backoffMs ?? 500) * 2 ** (attempt - 1);
          this.emit({
            kind: 'retry',
            step: step.id,
            host: host.name,
            attempt,
            error: errorMessage(e),
            delayMs,
          });
          await this.deps.sleep(delayMs);
          continue;
        }
        const why =
          e instanceof TransientError && !safeToRetry
            ? `${errorMessage(e)} (not retried: a mutation had started and step ${step.id} is not marked idempotent)`
            : isBatonError(e)
              ? `${e.message}${e.hint ? ` (to do: ${e.hint})` : ''}`
              : `the ${phase} of runbook ${this.input.runbook.name} threw: ${thrownText(e)}`;
        this.emit({
          kind: 'outcome',
          step: step.id,
          host: host.name,
          ok: false,
          durationMs: this.deps.now().getTime() - startedAt,
          error: why,
        });
        throw new StepFailure(step.id, host.name, why);
      }
    }
  }

  /** Undo started work in reverse order; stop at a point of no return or a failed undo. */
  private async rollback(
    plan: Plan,
    started: Array<{ step: string; host: string }>,
    reason: string,
    undone: Set<string>,
    hash?: string,
  ): Promise<RunResult> {
    if (undone.size === 0) this.emit({ kind: 'rollback-start', reason });
    const steps = plan.steps.filter((s) => started.some((x) => x.step === s.id));
    for (const plannedStep of [...steps].reverse()) {
      const step = this.findStep(plannedStep.id);
      if (!step.apply) continue;
      const hosts = started
        .filter((s) => s.step === step.id)
        .map((s) => s.host)
        .reverse();
      if (!step.undo) {
        const state = step.state ?? `after step ${step.id}`;
        return this.end('needs-human', state, {
          error: reason,
          next:
            `Step ${step.id} (${step.title}) has no undo and ran on ${hosts.join(', ')}, so baton cannot roll back past it; ` +
            `everything after it was undone. The hosts are in state "${state}". ` +
            (step.recovery
              ? `To reverse it by hand: ${step.recovery}. `
              : 'Reverse it by hand if needed. ') +
            `Then record what you did with \`baton report ${this.input.runId}\` for the post-mortem.`,
          ...(hash ? { planHash: hash } : {}),
        });
      }
      for (const hostName of hosts) {
        if (undone.has(key(step.id, hostName))) continue;
        const host = this.hostOf(hostName);
        const startedAt = this.deps.now().getTime();
        this.emit({ kind: 'undo-intent', step: step.id, host: hostName });
        try {
          const counter = { mutations: 0, started: 0 };
          await step.undo(
            this.applyContext(
              host,
              step.id,
              live('undo', step.id, true, counter),
              live('undo', step.id, false, counter),
            ),
          );
          this.emit({
            kind: 'undo-outcome',
            step: step.id,
            host: hostName,
            ok: true,
            durationMs: this.deps.now().getTime() - startedAt,
          });
          undone.add(key(step.id, hostName));
        } catch (e) {
          const error = errorMessage(e);
          this.emit({
            kind: 'undo-outcome',
            step: step.id,
            host: hostName,
            ok: false,
            durationMs: this.deps.now().getTime() - startedAt,
            error,
          });
          const commands = plannedStep.hosts.find((h) => h.host === hostName)?.undo ?? [];
          return this.end(
            'needs-human',
            `partly rolled back: undo of step ${step.id} failed on ${hostName}`,
            {
              error: `${reason}; then the undo of ${step.id} on ${hostName} failed: ${error}`,
              next:
                `Inspect ${hostName}. The undo of step ${step.id} runs: ${commands.map((c) => `\`${c}\``).join('; ') || '(no commands)'}. ` +
                `Once the cause is fixed, run \`baton resume ${this.input.runId}\` to retry the rollback from there.`,
              ...(hash ? { planHash: hash } : {}),
            },
          );
        }
      }
    }
    return this.end('rolled-back', this.safeState(), {
      error: reason,
      next: `Every completed step was undone. Read \`baton report ${this.input.runId}\`, fix the cause, then plan again.`,
      ...(hash ? { planHash: hash } : {}),
    });
  }

  private safeState(): string {
    return this.input.runbook.safeState ?? 'unchanged: as before the run';
  }

  private end(
    outcome: RunOutcome,
    state: string,
    extra: {
      next?: string;
      error?: string;
      planHash?: string;
      nothingToDo?: boolean;
      code?: ErrorCode | 'INTERNAL';
    },
  ): RunResult {
    const event: RunEvent = {
      kind: 'run-end',
      outcome,
      state,
      ...(extra.next ? { next: extra.next } : {}),
      ...(extra.error ? { error: extra.error } : {}),
      ...(extra.nothingToDo ? { nothingToDo: true } : {}),
    };
    this.emit(event);
    const safe = this.input.redactor.redactDeep(event);
    return {
      runId: this.input.runId,
      outcome,
      state,
      ...(safe.next ? { next: safe.next } : {}),
      ...(safe.error ? { error: safe.error } : {}),
      ...(extra.planHash ? { planHash: extra.planHash } : {}),
      ...(extra.nothingToDo ? { nothingToDo: true } : {}),
      ...(extra.code ? { code: extra.code } : {}),
    };
  }
}

/** A function of (command, options) that can also be called as a tagged template. */
function templated<O, R>(run: (command: Cmd, options?: O) => R): (...args: unknown[]) => R {
  return (...args: unknown[]) => {
    if (isTemplateCall(args)) {
      const [strings, ...values] = args;
      return run(sh(strings, ...(values as ShellValue[])));
    }
    return run(args[0] as Cmd, args[1] as O | undefined);
  };
}

function commitsAt(step: AnyStep, ctx: RunbookContext<unknown, unknown>): boolean {
  return typeof step.commit === 'function' ? step.commit(ctx) : Boolean(step.commit);
}

function drift(headline: string, approved: Plan | undefined, now: Plan): string {
  const differences = approved ? planDifferences(approved, now) : [];
  return differences.length
    ? `${headline}:\n${differences.map((d) => `- ${d}`).join('\n')}`
    : headline;
}

function key(step: string, host: string): string {
  return `${step}\u0000${host}`;
}

function failedText(conditions: Condition[]): string {
  return conditions
    .filter((c) => !c.ok)
    .map(
      (c) =>
        `${c.name}: expected ${c.expected}, found ${c.found}${c.remedy ? ` (to do: ${c.remedy})` : ''}`,
    )
    .join('; ');
}

/**
 * What the journal keeps of a command. A read's output is not kept: reads are
 * how steps look at configuration files, and those hold passwords the
 * redactor cannot know. A failed read keeps its stderr, which says why.
 * Output is redacted whole, then its tail kept: a cut first could split a secret.
 */
function record(result: CommandResult, mutation: boolean, redactor: Redactor): CommandRecord {
  const failed = result.exitCode !== 0 || result.signal !== null;
  const tail = (text: string): string => clipTail(redactor.redact(text), OUTPUT_TAIL);
  return {
    command: redactor.redact(result.command),
    exitCode: result.exitCode,
    signal: result.signal,
    durationMs: result.durationMs,
    stdout: mutation ? tail(result.stdout) : '',
    stderr: mutation || failed ? tail(result.stderr) : '',
  };
}

function lastState(runbook: AnyRunbook, plan: Plan): string | undefined {
  const ran = plan.steps.filter((s) => !s.skipped).map((s) => s.id);
  return [...runbook.steps].reverse().find((s) => ran.includes(s.id) && s.state)?.state;
}

/** What the journal says a run did, for resume. */
export interface RunHistory {
  plan: Plan;
  planHash: string;
  operator: string;
  started: Array<{ step: string; host: string }>;
  done: Set<string>;
  failed: Set<string>;
  rollingBack: boolean;
  rollbackReason: string;
  undone: Set<string>;
  /** What steps noted per host (`step\0host`), for their undo. */
  notes: Map<string, Notes>;
  /** Steps that marked their point of no return. */
  committed: Set<string>;
  /** The gate (approvals, hold, confirmation) was passed: mutations may have started. */
  cleared: boolean;
  ended?: Extract<RunEvent, { kind: 'run-end' }>;
}

export function historyFrom(events: RunEvent[], operator: string): RunHistory | undefined {
  const planned = events.find(
    (e): e is Extract<RunEvent, { kind: 'planned' }> => e.kind === 'planned',
  );
  if (!planned) return undefined;
  const history: RunHistory = {
    plan: planned.plan,
    planHash: planned.planHash,
    operator,
    started: [],
    done: new Set(),
    failed: new Set(),
    rollingBack: false,
    rollbackReason: '',
    undone: new Set(),
    notes: new Map(),
    committed: new Set(),
    cleared: false,
  };
  for (const e of events) {
    if (
      e.kind === 'intent' &&
      !history.started.some((s) => s.step === e.step && s.host === e.host)
    ) {
      history.started.push({ step: e.step, host: e.host });
    } else if (e.kind === 'outcome') {
      const k = key(e.step, e.host);
      if (e.ok) {
        history.done.add(k);
        history.failed.delete(k);
      } else history.failed.add(k);
    } else if (e.kind === 'rollback-start') {
      history.rollingBack = true;
      history.rollbackReason = e.reason;
    } else if (e.kind === 'undo-outcome' && e.ok) {
      history.undone.add(key(e.step, e.host));
    } else if (e.kind === 'note') {
      const k = key(e.step, e.host);
      history.notes.set(k, { ...history.notes.get(k), ...e.data });
    } else if (e.kind === 'commit') {
      history.committed.add(e.step);
    } else if (e.kind === 'cleared') {
      history.cleared = true;
    } else if (e.kind === 'run-end') {
      history.ended = e;
    }
  }
  return history;
}
