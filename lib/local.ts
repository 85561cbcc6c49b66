/** Runs commands on the controller itself, through zx, for hosts with `connection: local`. */
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { PassThrough } from 'node:stream';
import { $ } from 'zx';
import type { CommandResult, ExecOptions, PipeEnd, PipeResult, Transport } from './exec.ts';
import type { Host } from './inventory.ts';

export function localTransport(): Transport {
  const transport: Transport = {
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
    async stream(from: PipeEnd, to: PipeEnd): Promise<PipeResult> {
      const started = performance.now();
      const pass = new PassThrough();
      const hash = createHash('sha256');
      let bytes = 0;
      const receiving = transport.exec(to.host, to.command, { input: pass });
      const sending = transport
        .exec(from.host, from.command, {
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
