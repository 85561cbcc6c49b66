/**
 * Runbooks as typed data: `defineRunbook` and the step contract. Types flow
 * from the params schema and the facts a runbook gathers into every step.
 */
import type { z } from 'zod';
import type { Duplex } from 'node:stream';
import type { CommandResult, ExecOptions } from './exec.ts';
import type { Host, Inventory } from './inventory.ts';
import type { Cmd, ShellValue } from './shell.ts';

export interface CommandOptions extends ExecOptions {
  /** Return the result of a non-zero exit instead of throwing CommandError. */
  allowFail?: boolean;
}

/** Run a command: `exec(sh\`…\`, opts)` or as a tag, `exec\`df -k ${dir}\``. */
export interface Exec {
  (command: Cmd, options?: CommandOptions): Promise<CommandResult>;
  (strings: TemplateStringsArray, ...values: ShellValue[]): Promise<CommandResult>;
}

/** One precondition or postcondition, as the operator will read it. */
export interface Condition {
  name: string;
  ok: boolean;
  expected: string;
  found: string;
  /** What to do when it fails. */
  remedy?: string;
  /** Shown in the plan even when it holds: something a person must know before saying yes. */
  notice?: boolean;
  /** The host already is as the step would leave it (see `alreadyDone`). */
  alreadyDone?: boolean;
}

export function condition(
  name: string,
  ok: boolean,
  detail: { expected: string; found: string; remedy?: string },
): Condition {
  return { name, ok, ...detail };
}

/**
 * A check's answer when the host already is as the step would leave it: the
 * plan shows the step as done there, with no mutations, and the run does not
 * apply it there. A run whose every step is done or skipped has nothing to do:
 * it says so and changes nothing. Other conditions of the same check must hold too.
 */
export function alreadyDone(name: string, found: string): Condition {
  return { name, ok: true, expected: 'work left for this step', found, alreadyDone: true };
}

export interface RunbookContext<P, F> {
  readonly params: P;
  readonly facts: F;
  readonly inventory: Inventory;
  readonly stack: string;
  readonly runId: string;
  /** Hosts with a role, in inventory order. */
  hosts(role: string): Host[];
  hostNamed(name: string): Host;
  /** The engine's clock (injected in tests). */
  now(): Date;
  /** Wait, through the engine (a dry run never waits inside `act`, which it does not run). */
  sleep(ms: number): Promise<void>;
}

export interface FactsContext<P> extends Omit<RunbookContext<P, never>, 'facts'> {
  /** Read-only command on any host; runs in every mode. */
  probe(host: Host | string): Exec;
}

export interface ProbeContext<P, F> extends RunbookContext<P, F> {
  /** The host this invocation works on. */
  readonly host: Host;
  /** Read-only command on this host; runs for real in every mode. */
  readonly probe: Exec;
  /** Read-only commands on another host (verify from every peer). */
  on(host: Host | string): { probe: Exec };
  /** A TCP connection to a port on a host's own loopback (an ircd's client port), through its transport. */
  connect(host: Host | string, port: number): Promise<Duplex>;
  log(message: string): void;
}

export interface MutateOptions extends Omit<CommandOptions, 'onStdout' | 'onStderr'> {
  /** Show the command's output in the run's log after this label (a live run has output; a plan has none). */
  logOutput?: string;
}

/**
 * Run a mutation. It yields nothing: in a plan it is recorded, not run, so any
 * result would be invented, and code branching on it would plan one thing and
 * run another. What a step needs to know, it reads with `probe`.
 */
export interface Mutate {
  (command: Cmd, options?: MutateOptions): Promise<void>;
  (strings: TemplateStringsArray, ...values: ShellValue[]): Promise<void>;
}

/** JSON data, compared between the plan and the run as canonical JSON. */
export type ActData =
  string | number | boolean | null | readonly ActData[] | { readonly [key: string]: ActData };

export interface ApplyContext<P, F> extends ProbeContext<P, F> {
  /** A mutation on this host: recorded and printed in a dry run, executed otherwise. */
  readonly $: Mutate;
  /**
   * A mutation that is not a shell command (an IRC command to services, a DNS
   * API call). `description` and `data` are what the plan shows, the run
   * compares and the journal records; `fn` runs only in a live run and is given
   * the data that was compared. Its string result is journaled as output.
   */
  act<D extends ActData>(
    description: string,
    data: D,
    fn: (data: D) => Promise<string | void>,
  ): Promise<void>;
  /**
   * Record what this step found on this host before changing it (journaled, kept
   * across a resume), so that its undo reverts only what this run did.
   */
  note(data: Notes): void;
  /** What this step noted on this host so far in the run. */
  readonly notes: Readonly<Notes>;
  /**
   * The point of no return, inside a step declared with `marksCommit`: call it
   * right before the mutation after which writes may exist on the new side
   * (journaled first). A failure before it still rolls back.
   */
  commit(): void;
  /** A mutation on this host fed by a read-only command on another: data flows host to host. */
  pipe(from: { host: Host | string; command: Cmd }, command: Cmd): Promise<void>;
}

export type CheckResult = Condition | Condition[] | void;

export type Notes = Record<string, string | number | boolean>;

export type Targets<P, F> =
  | 'controller'
  | { role: string }
  | { hosts: string[] }
  | ((ctx: RunbookContext<P, F>) => Array<Host | string>);

export interface StepDef<P, F> {
  /** Stable identifier, used in journals and `--from`. */
  id: string;
  title: string;
  targets: Targets<P, F>;
  /** Hosts worked on at once; default 4. */
  concurrency?: number;
  /** Deletes or overwrites data: declared, printed in the plan, confirmed before a run. */
  destructive?: boolean;
  /** Safe to apply again when a connection dropped mid-command. */
  idempotent?: boolean;
  /**
   * Once this step has started, writes may exist on the new side (a primary that
   * accepts writes): from then on the run only goes forward. A failure stops for
   * a person and a resume finishes the run; nothing is undone, because an undo
   * would discard those writes. A function decides it at plan time, from the facts.
   */
  commit?: boolean | ((ctx: RunbookContext<P, F>) => boolean);
  /**
   * The commit step passes its point of no return where its apply calls
   * `ctx.commit()`, not as it starts: checks and preparations before that call
   * that fail still roll back.
   */
  marksCommit?: boolean;
  /**
   * Where the interval in which users' writes are refused begins (the step
   * that freezes them) or ends (the step after which they are taken again).
   * The report measures that interval, step by step; nothing else changes.
   */
  frozen?: 'begins' | 'ends';
  /** Retries for transient (connection) failures; default 3. */
  retries?: number;
  /** Name of the state the hosts are in once this step has completed. */
  state?: string;
  /** What an operator does by hand if this step must be reversed and has no undo. */
  recovery?: string;
  /** Skip the step unless this returns true; a string is the reason it is skipped (decided at plan time, shown in the plan). */
  when?: (ctx: RunbookContext<P, F>) => boolean | string;
  check?: (ctx: ProbeContext<P, F>) => Promise<CheckResult>;
  apply?: (ctx: ApplyContext<P, F>) => Promise<void>;
  verify?: (ctx: ProbeContext<P, F>) => Promise<CheckResult>;
  undo?: (ctx: ApplyContext<P, F>) => Promise<void>;
}

export interface RunbookDef<S extends z.ZodObject, F> {
  name: string;
  summary: string;
  params: S;
  /** Stack used when none is given (only for runbooks that are safe anywhere, like the demo). */
  defaultStack?: string;
  /** Name of the state when every completed step was undone. */
  safeState?: string;
  /** Facts gathered before any check; stored in the journal so a resume sees the same. */
  facts?: (ctx: FactsContext<z.output<S>>) => Promise<F>;
  steps: Array<StepDef<z.output<S>, F>>;
}

export interface Runbook<S extends z.ZodObject = z.ZodObject, F = unknown> extends RunbookDef<
  S,
  F
> {
  readonly kind: 'baton.runbook';
}

// The engine works on runbooks of any params and facts.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyRunbook = Runbook<any, any>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyStep = StepDef<any, any>;

export function defineRunbook<S extends z.ZodObject, F = Record<string, never>>(
  def: RunbookDef<S, F>,
): Runbook<S, F> {
  const ids = new Set<string>();
  for (const step of def.steps) {
    if (ids.has(step.id)) throw new Error(`runbook ${def.name}: step id ${step.id} is used twice`);
    ids.add(step.id);
    if (step.undo && !step.apply)
      throw new Error(`runbook ${def.name}: step ${step.id} has undo but no apply`);
  }
  return { ...def, kind: 'baton.runbook' };
}

/** A step that mutates but cannot be undone. */
export function isPointOfNoReturn(step: AnyStep): boolean {
  return Boolean(step.apply) && !step.undo;
}
