/**
 * Running the DNS tools (dig, knsupdate, nsupdate). The runner is a dependency
 * so a step can run them on another host through its transport; by default
 * they run on the controller through zx. Secrets go on stdin, never in argv.
 */
import { $ } from 'zx/core';
import type { Cmd } from '../../core/shell.ts';

export interface ToolResult {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

export interface ToolOptions {
  /** Bytes for stdin: where update scripts and their TSIG key go. */
  input?: string;
  timeoutMs?: number;
}

export type CommandRunner = (command: Cmd, options?: ToolOptions) => Promise<ToolResult>;

/** Runs a command line on the controller with `sh -c`. */
export const localRunner: CommandRunner = async (command, options = {}) => {
  const out = await $({
    nothrow: true,
    quiet: true,
    verbose: false,
    ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}),
    input: options.input ?? '',
  })`sh -c ${command.text}`;
  return { exitCode: out.exitCode, stdout: out.stdout, stderr: out.stderr };
};
