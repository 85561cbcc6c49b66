/** Runs commands on the controller itself, through zx, for hosts with `connection: local`. */
import { $ } from 'zx';
import type { CommandResult, ExecOptions, Transport } from './exec.ts';
import type { Host } from './inventory.ts';

export function localTransport(): Transport {
  return {
    async exec(host: Host, command: string, options: ExecOptions = {}): Promise<CommandResult> {
      const started = performance.now();
      const proc = $({
        nothrow: true,
        quiet: true,
        verbose: false,
        ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
        ...(typeof options.input === 'string' || Buffer.isBuffer(options.input)
          ? { input: options.input }
          : {}),
      })`sh -c ${command}`;
      if (options.input && typeof options.input !== 'string' && !Buffer.isBuffer(options.input)) {
        options.input.pipe(proc.stdin);
      }
      if (options.onStdout) proc.stdout.on('data', options.onStdout);
      if (options.onStderr) proc.stderr.on('data', options.onStderr);
      const out = await proc;
      return {
        host: host.name,
        command,
        exitCode: out.exitCode,
        signal: out.signal,
        stdout: out.stdout,
        stderr: out.stderr,
        durationMs: Math.round(performance.now() - started),
      };
    },
    async close() {},
  };
}
