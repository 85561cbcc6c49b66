/**
 * Every error baton raises on purpose. Each has a string `code`; only the CLI
 * maps codes to exit codes (see `exitCodeFor` in cli.ts and the README).
 */
export type ErrorCode =
  | 'INVALID_INPUT'
  | 'PRECONDITION_FAILED'
  | 'STEP_FAILED'
  | 'COMMAND_FAILED'
  | 'TRANSIENT'
  | 'TIMEOUT'
  | 'HOSTKEY_MISMATCH'
  | 'HOSTKEY_UNKNOWN'
  | 'JOURNAL_CORRUPT'
  /** The chain holds, and what must be signed is not (yet). */
  | 'JOURNAL_UNVERIFIED'
  | 'RUN_LOCKED'
  | 'STACK_LOCKED'
  | 'PLAN_DRIFT'
  | 'CODE_CHANGED'
  | 'NEEDS_HUMAN'
  | 'NOT_ROOT'
  | 'MISSING_PREREQUISITE'
  | 'APPROVAL_REFUSED'
  | 'ELF_INVALID'
  | 'DB_CORRUPT'
  | 'IRC_FAILED'
  | 'AUDIT_FAILED'
  | 'RUNBOOK_ERROR';

export class BatonError extends Error {
  readonly code: ErrorCode;
  /** What the operator should do next, in one or two sentences. */
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, hint?: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'BatonError';
    this.code = code;
    this.hint = hint;
  }
}

export class InvalidInputError extends BatonError {
  constructor(message: string, hint?: string) {
    super('INVALID_INPUT', message, hint);
    this.name = 'InvalidInputError';
  }
}

/** A connection-level failure (reset, refused, timed out) that may succeed on retry. */
export class TransientError extends BatonError {
  readonly host: string;
  /** True when the command had started: its effect on the host is unknown. */
  readonly startedCommand: boolean;
  constructor(host: string, message: string, startedCommand: boolean, options?: ErrorOptions) {
    super(
      'TRANSIENT',
      message,
      'Check that the host is reachable; baton retries such failures where it is safe.',
      options,
    );
    this.name = 'TransientError';
    this.host = host;
    this.startedCommand = startedCommand;
  }
}

export class JournalCorruptError extends BatonError {
  constructor(message: string, hint?: string) {
    super(
      'JOURNAL_CORRUPT',
      message,
      hint ??
        'Do not resume from this journal. Keep a copy for the post-mortem and inspect the hosts by hand.',
    );
    this.name = 'JournalCorruptError';
  }
}

/** Where in a runbook its own code was running. */
export interface RunbookPlace {
  runbook: string;
  /** The runbook's function that threw. */
  phase: 'facts' | 'targets' | 'when' | 'commit' | 'check' | 'apply' | 'verify' | 'undo';
  step?: string;
  host?: string;
  /** The apply or undo was being recorded for the plan, not run. */
  planning?: boolean;
}

export function describePlace(at: RunbookPlace): string {
  const phase = `its ${at.phase}`;
  return `runbook ${at.runbook}${at.step ? `, step ${at.step}` : ''}${at.host ? ` on ${at.host}` : ''}, ${phase}${at.planning ? ' (while planning)' : ''}`;
}

/**
 * The runbook's own code threw, while planning, something that is not a baton
 * error: a bug (a TypeError), or an `Error` it raised itself. The message says
 * where; the original stays as `cause`, and its stack is appended to this
 * one's, so that redacting this error redacts both.
 */
export class RunbookError extends BatonError {
  readonly place: RunbookPlace;
  constructor(place: RunbookPlace, cause: unknown) {
    super(
      'RUNBOOK_ERROR',
      `${describePlace(place)} threw: ${thrownText(cause)}`,
      "That is the runbook's own code, before any change: fix what it names (or the runbook), then plan again. BATON_DEBUG=1 shows where it was thrown.",
      { cause },
    );
    this.name = 'RunbookError';
    this.place = place;
    if (cause instanceof Error && cause.stack) this.stack += `\ncaused by: ${cause.stack}`;
  }
}

/**
 * An error from a runbook's code, with the place it came from in its message.
 * A baton error keeps its code and hint (a failed probe is still
 * COMMAND_FAILED); anything else becomes a RunbookError.
 */
export function atPlace(place: RunbookPlace, e: unknown): BatonError {
  if (e instanceof RunbookError) return e;
  if (!isBatonError(e)) return new RunbookError(place, e);
  const located = new BatonError(e.code, `${describePlace(place)}: ${e.message}`, e.hint, {
    cause: e,
  });
  if (e.stack) located.stack += `\ncaused by: ${e.stack}`;
  return located;
}

/** A thrown value as a person reads it: `TypeError: x is undefined`, or an Error's message. */
export function thrownText(e: unknown): string {
  if (e instanceof Error)
    return e.name && e.name !== 'Error' ? `${e.name}: ${e.message}` : e.message;
  return String(e);
}

export function isBatonError(e: unknown): e is BatonError {
  return e instanceof BatonError;
}

export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
