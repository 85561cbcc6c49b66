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
  | 'AUDIT_FAILED';

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

export function isBatonError(e: unknown): e is BatonError {
  return e instanceof BatonError;
}

export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
