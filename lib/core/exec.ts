/**
 * The contract between the engine and whatever runs commands on a host: the
 * local transport (zx) here, ssh in ssh.ts. Results are values; the error
 * carries the same fields.
 */
import type { Duplex, Readable } from 'node:stream';
import { BatonError } from './errors.ts';
import type { Host } from './inventory.ts';
import type { Redactor } from './redact.ts';
import { scriptFrame, STDIN_SCRIPT } from './shell.ts';

export interface ExecOptions {
  /** Bytes for the command's stdin (secrets go here, never into argv). */
  input?: string | Buffer | Readable;
  /**
   * The run's secrets. A command holding one never appears in an argv, local
   * or remote: it goes on stdin behind `STDIN_SCRIPT` (lib/core/shell.ts). What the
   * transport says about such a command (results, errors) is redacted.
   */
  secrets?: Redactor;
  timeoutMs?: number;
  signal?: AbortSignal;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
}

export interface CommandResult {
  host: string;
  command: string;
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  durationMs: number;
}

export class CommandError extends BatonError implements CommandResult {
  readonly host: string;
  readonly command: string;
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly durationMs: number;

  constructor(result: CommandResult) {
    const how = result.signal ? `was killed by ${result.signal}` : `exited ${result.exitCode}`;
    const detail = result.stderr.trim().split('\n').slice(-3).join(' | ');
    super(
      'COMMAND_FAILED',
      `on ${result.host}: \`${result.command}\` ${how}${detail ? `: ${detail}` : ''}`,
    );
    this.name = 'CommandError';
    this.host = result.host;
    this.command = result.command;
    this.exitCode = result.exitCode;
    this.signal = result.signal;
    this.stdout = result.stdout;
    this.stderr = result.stderr;
    this.durationMs = result.durationMs;
  }
}

export interface PipeEnd {
  host: Host;
  command: string;
}

export interface PipeResult {
  from: CommandResult;
  to: CommandResult;
  /** Bytes that passed from source to destination, and their sha256 (hex). */
  bytes: number;
  sha256: string;
  durationMs: number;
}

/** Runs commands on hosts. Never throws for a non-zero exit; throws TransientError for connection failures. */
export interface Transport {
  exec(host: Host, command: string, options?: ExecOptions): Promise<CommandResult>;
  /** Stdout of a command on one host into stdin of a command on another, never held whole. */
  stream?(
    from: PipeEnd,
    to: PipeEnd,
    options?: { timeoutMs?: number; secrets?: Redactor },
  ): Promise<PipeResult>;
  /** A TCP connection to `port` on the host's own loopback, as a process on the host would open it. */
  forward?(host: Host, port: number): Promise<Duplex>;
  close(): Promise<void>;
}

/** How a transport sends a command: as it is, or, when it holds a secret, framed on stdin. */
export interface Delivery {
  /** What goes in the argv (`sh -c` locally, the ssh exec request remotely). */
  argv: string;
  /** The command as results and messages show it. */
  shown: string;
  /** Bytes to send on stdin ahead of the command's own input. */
  frame?: Buffer;
}

export function delivery(command: string, secrets: Redactor | undefined): Delivery {
  if (!secrets?.holds(command)) return { argv: command, shown: command };
  return { argv: STDIN_SCRIPT, shown: secrets.redact(command), frame: scriptFrame(command) };
}

/**
 * Every process a command starts inherits this variable, set to a tag of its
 * own: a command past its timeout is found by it and killed, children and
 * all, before anything else runs (OpenSSH refuses signal requests for root
 * sessions, and a killed shell leaves its children running).
 */
export const COMMAND_TAG = 'BATON_CMD';

export function taggedCommand(argv: string, tag: string): string {
  return `${COMMAND_TAG}=${tag}; export ${COMMAND_TAG}; ${argv}`;
}

/**
 * POSIX sh that kills every process carrying the tag and prints `gone` once
 * none is left, or `left: PIDS` when some survived five rounds.
 */
export function reapScript(tag: string): string {
  if (!/^[0-9a-f]{16}$/.test(tag)) throw new Error(`not a command tag: ${tag}`);
  return String.raw`t=${COMMAND_TAG}=${tag}
tagged() {
  for e in /proc/[0-9]*/environ; do
    p=${'${e#/proc/}'}; p=${'${p%/environ}'}
    [ "$p" = "$$" ] && continue
    { tr '\0' '\n' < "$e"; } 2>/dev/null | grep -qxF "$t" && printf '%s ' "$p"
  done
}
for round in 1 2 3 4 5; do
  found=$(tagged)
  [ -z "$found" ] && { echo gone; exit 0; }
  kill -9 $found 2>/dev/null
  sleep 0.2
done
echo "left: $(tagged)"
exit 1`;
}
