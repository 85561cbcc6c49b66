/**
 * The one place that maps errors and outcomes to exit codes: 0 done (or
 * nothing to do), 1 failed and left in a safe state (or an audit failed),
 * 2 invalid input, 3 needs a human. Every command's failure, and a plan's or
 * a run's, goes through failureOf or runResultJson here.
 */
import { CommanderError } from 'commander';
import { DEBUG_ENV } from '../core/env.ts';
import { isBatonError, thrownText, type ErrorCode } from '../core/errors.ts';
import type { RunOutcome } from '../core/events.ts';
import type { RunResult } from '../engine/engine.ts';

export const EXIT = { done: 0, failed: 1, invalid: 2, needsHuman: 3 } as const;

export function exitCodeFor(code: ErrorCode): number {
  switch (code) {
    case 'INVALID_INPUT':
    case 'CODE_CHANGED':
      return EXIT.invalid;
    case 'NEEDS_HUMAN':
    case 'RUN_LOCKED':
    case 'STACK_LOCKED':
      return EXIT.needsHuman;
    default:
      return EXIT.failed;
  }
}

/**
 * What `--json` prints for a failure, and nothing else on stdout; a failed
 * run's result and a plan whose preconditions fail carry the same fields
 * beside their own.
 */
export interface JsonFailure {
  error: string;
  /** An ErrorCode, or INTERNAL for an error baton did not expect. */
  code: ErrorCode | 'INTERNAL';
  exitCode: number;
  /** What to do next. */
  hint?: string;
}

const OUTCOME_CODE: Record<Exclude<RunOutcome, 'done'>, ErrorCode> = {
  'precondition-failed': 'PRECONDITION_FAILED',
  'rolled-back': 'STEP_FAILED',
  'needs-human': 'NEEDS_HUMAN',
};

export function failureOf(e: unknown): JsonFailure {
  if (e instanceof CommanderError) {
    return {
      error: e.message.replace(/^error: /, ''),
      code: 'INVALID_INPUT',
      exitCode: EXIT.invalid,
      hint: 'Add --help for usage and examples.',
    };
  }
  if (isBatonError(e)) {
    return {
      error: e.message,
      code: e.code,
      exitCode: exitCodeFor(e.code),
      ...(e.hint ? { hint: e.hint } : {}),
    };
  }
  return {
    error: `baton stopped on an error it did not expect: ${thrownText(e)}`,
    code: 'INTERNAL',
    exitCode: EXIT.failed,
    hint: `That is a bug in baton. Run it again with ${DEBUG_ENV}=1 for the stack trace, and report both.`,
  };
}

/** A run's result as --json prints it: its exit code, and a failure's code and hint. */
export function runResultJson(result: RunResult): RunResult & Partial<JsonFailure> {
  const exitCode = exitCodeOfResult(result);
  if (result.outcome === 'done') return { ...result, exitCode };
  return {
    ...result,
    exitCode,
    code: result.code ?? OUTCOME_CODE[result.outcome],
    ...(result.next ? { hint: result.next } : {}),
  };
}

/**
 * A run's exit code. A run stopped by an error before any change ends as
 * `baton plan` ends on that error: bad input found while gathering facts is
 * exit 2 from both, a refused host key exit 1 from both.
 */
export function exitCodeOfResult(result: RunResult): number {
  if (result.outcome === 'precondition-failed' && result.code && result.code !== 'INTERNAL')
    return exitCodeFor(result.code);
  return exitCodeForOutcome(result.outcome);
}

/** The stack, and the stacks of its causes where they are not in it already. */
export function stackOf(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  let text = e.stack ?? `${e.name}: ${e.message}`;
  if (e.cause !== undefined && !text.includes('caused by:'))
    text += `\ncaused by: ${stackOf(e.cause)}`;
  return text;
}

/**
 * Whether the arguments ask for --json, before commander has parsed them: a
 * usage error must be printed as JSON too. Words after `--` are a host's command.
 */
export function jsonRequested(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).includes('--json');
}

function exitCodeForOutcome(outcome: RunOutcome): number {
  switch (outcome) {
    case 'done':
      return EXIT.done;
    case 'rolled-back':
    case 'precondition-failed':
      return EXIT.failed;
    case 'needs-human':
      return EXIT.needsHuman;
  }
}

/** Thrown by a command's action to end with an exit code once its output is written. */
export class Exit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

export const EXIT_CODES_HELP = `
Exit codes:
  0  done, or nothing to do (every step already done or skipped)
  1  failed, and left in a safe state (rolled back, or stopped before any change); an audit failed
  2  invalid input (nothing was run)
  3  needs a human: the hosts are in a named state the output and the journal describe
With --json, a failure prints one object on stdout: { error, code, exitCode, hint? }.`;
