/** Runs commands on the controller itself, through zx, for hosts with `connection: local`. */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { PassThrough, Readable } from 'node:stream';
import { $ } from 'zx/core';
import {
  COMMAND_TAG,
  delivery,
  reapScript,
  type CommandResult,
  type ExecOptions,
  type PipeEnd,
  type PipeResult,
  type Transport,
} from '../core/exec.ts';
import type { Host } from '../core/inventory.ts';

/** The command's stdin, behind its own text when that goes on stdin too. */
function stdinOf(frame: Buffer | undefined, input: ExecOptions['input']): ExecOptions['input'] {
  if (!frame) return input;
  if (input === undefined) return frame;
  if (typeof input === 'string' || Buffer.isBuffer(input)) {
    return Buffer.concat([frame, Buffer.from(input)]);
  }
  return Readable.from(
    (async function* (): AsyncGenerator<Buffer> {
      yield frame;
      for await (const chunk of input) yield Buffer.from(chunk as Buffer);
    })(),
  );
}

export function localTransport(): Transport {
  const transport: Transport = {
    async exec(host: Host, command: string, options: ExecOptions = {}): Promise<CommandResult> {
      const started = performance.now();
      const sent = delivery(command, options.secrets);
      const input = stdinOf(sent.frame, options.input);
      // Cut short, the command is killed with every process it started (they carry its tag).
      const tag = options.timeoutMs || options.signal ? randomBytes(8).toString('hex') : undefined;
      let cut: string | undefined;
      let reaping: Promise<void> | undefined;
      const reap = (why: string): void => {
        if (reaping || !tag) return;
        reaping = new Promise<void>((resolve) => {
          execFile('sh', ['-c', reapScript(tag)], { timeout: 15_000 }, (_e, stdout) => {
            const said = String(stdout).trim();
            cut = `${why}; ${said === 'gone' ? 'every process it started is gone' : `some of its processes survived the kill: ${said}`}`;
            resolve();
          });
        });
      };
      const proc = $({
        nothrow: true,
        quiet: true,
        verbose: false,
        ...(tag ? { env: { ...process.env, [COMMAND_TAG]: tag } } : {}),
        ...(typeof input === 'string' || Buffer.isBuffer(input) ? { input } : {}),
      })`sh -c ${sent.argv}`;
      const timer = options.timeoutMs
        ? setTimeout(() => reap(`killed after ${options.timeoutMs} ms`), options.timeoutMs)
        : undefined;
      const onAbort = (): void => reap('aborted');
      if (options.signal?.aborted) onAbort();
      else options.signal?.addEventListener('abort', onAbort, { once: true });
      if (input && typeof input !== 'string' && !Buffer.isBuffer(input)) input.pipe(proc.stdin);
      if (options.onStdout) proc.stdout.on('data', options.onStdout);
      if (options.onStderr) proc.stderr.on('data', options.onStderr);
      let out;
      try {
        out = await proc;
        await reaping;
      } finally {
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
      }
      return {
        host: host.name,
        command: sent.shown,
        exitCode: cut ? null : out.exitCode,
        signal: cut ? (out.signal ?? 'SIGKILL') : out.signal,
        stdout: out.stdout,
        stderr: cut
          ? `${out.stderr}${out.stderr && !out.stderr.endsWith('\n') ? '\n' : ''}${cut}\n`
          : out.stderr,
        durationMs: Math.round(performance.now() - started),
      };
    },
    async stream(from: PipeEnd, to: PipeEnd, options = {}): Promise<PipeResult> {
      const started = performance.now();
      const pass = new PassThrough();
      const hash = createHash('sha256');
      let bytes = 0;
      const secrets = options.secrets ? { secrets: options.secrets } : {};
      const receiving = transport.exec(to.host, to.command, { input: pass, ...secrets });
      const sending = transport
        .exec(from.host, from.command, {
          ...secrets,
          onStdout: (chunk) => {
            hash.update(chunk);
            bytes += chunk.length;
            pass.write(chunk);
          },
        })
        .finally(() => pass.end());
      const [fromResult, toResult] = await Promise.all([sending, receiving]);
      return {
        from: { ...fromResult, stdout: '' },
        to: toResult,
        bytes,
        sha256: hash.digest('hex'),
        durationMs: Math.round(performance.now() - started),
      };
    },
    forward(_host, port): Promise<Duplex> {
      return new Promise((resolve, reject) => {
        const socket = connect({ host: '127.0.0.1', port });
        socket.once('connect', () => {
          socket.off('error', reject);
          resolve(socket);
        });
        socket.once('error', reject);
      });
    },
    async close() {},
  };
  return transport;
}
