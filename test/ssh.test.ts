import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatonError, TransientError } from '../lib/core/errors.ts';
import { CommandError, type ExecOptions } from '../lib/core/exec.ts';
import { Redactor } from '../lib/core/redact.ts';
import { sh } from '../lib/core/shell.ts';
import { CommandTimeoutError, SshPool, fingerprint, remote } from '../lib/transports/ssh.ts';
import { everyCommandLine } from './support/argv.ts';
import { freePort, sshdUnavailable, startSshd, type TestSshd } from './support/sshd.ts';
import { assertPrerequisite, skipUnless } from './support/require.ts';

const missing = sshdUnavailable();

const hostile = [
  '; rm -rf /',
  "it's",
  '"double"',
  "'; touch CANARY; '",
  '$(touch CANARY)',
  '"$(touch CANARY)"',
  '`touch CANARY`',
  '\ntouch CANARY\n',
  '&& touch CANARY',
  '| touch CANARY',
  '> CANARY',
  '${IFS}touch${IFS}CANARY',
  'tab\there',
  'ünïcødé ✓ 🚀',
  '\\',
  '',
  '-n',
  '*',
];

/** Quotes, dollar signs, backslashes and a newline, with plain chunks that betray any part of it. */
const SECRET = `Rw5'"$HOME\\n$(id)\`w\`\nTs2' \\'`;
const CHUNKS = ['Rw5', 'Ts2'];
const traces = (text: string): string[] => CHUNKS.filter((c) => text.includes(c));

function secrets(): Redactor {
  const r = new Redactor();
  r.add('pw', SECRET);
  return r;
}

describe.skipIf(skipUnless(missing, 'ssh against a real sshd'))(
  'SshPool against a real OpenSSH sshd',
  () => {
    let sshd: TestSshd;
    let pool: SshPool;

    beforeAll(async () => {
      assertPrerequisite(missing);
      sshd = await startSshd();
      pool = new SshPool();
    });

    afterAll(async () => {
      await pool?.close();
      await sshd?.stop();
    });

    it('computes fingerprints exactly as ssh-keygen -lf prints them', async () => {
      const pub = (await readFile(join(sshd.dir, 'host_ed25519.pub'), 'utf8')).split(' ')[1]!;
      expect(fingerprint(Buffer.from(pub, 'base64'))).toBe(sshd.hostKeyFingerprint);
      expect(sshd.hostKeyFingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    });

    it('accepts the pinned host key and runs a command', async () => {
      const result = await pool.exec(sshd.host(), 'echo ok; echo warn >&2');
      expect(result).toMatchObject({
        host: 'local',
        exitCode: 0,
        signal: null,
        stdout: 'ok\n',
        stderr: 'warn\n',
      });
    });

    it('reports exit status and signals as results, not errors', async () => {
      const $r = remote(pool, sshd.host());
      expect(await $r`exit 3`).toMatchObject({ exitCode: 3, signal: null });
      expect(await $r`kill -TERM $$`).toMatchObject({ exitCode: null, signal: 'SIGTERM' });
      expect(await $r`kill -KILL $$`).toMatchObject({ exitCode: null, signal: 'SIGKILL' });
      await expect($r.with({ check: true })`exit 1`).rejects.toBeInstanceOf(CommandError);
    });

    it.each(hostile)('round-trips %j through the remote template unchanged', async (value) => {
      const canary = join(sshd.dir, 'CANARY');
      const $r = remote(pool, sshd.host());
      const result = await $r`cd ${sshd.dir} && printf '%s' ${value}`;
      expect(result.stdout).toBe(value);
      expect(result.exitCode).toBe(0);
      expect(existsSync(canary)).toBe(false);
    });

    it('quotes arrays item by item and executes none of them', async () => {
      const $r = remote(pool, sshd.host());
      const result = await $r`cd ${sshd.dir} && printf '<%s>' ${hostile}`;
      expect(result.stdout).toBe(hostile.map((v) => `<${v}>`).join(''));
      expect((await $r`ls ${sshd.dir}`).stdout).not.toContain('CANARY');
    });

    it('feeds stdin from a string, a Buffer and a stream', async () => {
      const host = sshd.host();
      expect((await pool.exec(host, 'cat', { input: 'hello\n' })).stdout).toBe('hello\n');
      const blob = randomBytes(3 * 1024 * 1024);
      const digest = createHash('sha256').update(blob).digest('hex');
      expect((await pool.exec(host, 'sha256sum', { input: blob })).stdout).toContain(digest);
      const chunks = Array.from({ length: 48 }, (_, i) =>
        blob.subarray(i * 65536, (i + 1) * 65536),
      );
      const streamed = await pool.exec(host, 'sha256sum', { input: Readable.from(chunks) });
      expect(streamed.stdout).toContain(digest);
    });

    it('keeps at most maxBufferBytes of output in the result, and says what it cut', async () => {
      const small = new SshPool({ maxBufferBytes: 1000 });
      try {
        let seen = 0;
        const result = await small.exec(sshd.host(), "head -c 5000 /dev/zero | tr '\\0' a", {
          onStdout: (c) => (seen += c.length),
        });
        expect(seen).toBe(5000);
        expect(result.stdout).toBe(
          'a'.repeat(1000) + '\n[baton: 4000 more bytes of output not kept]\n',
        );
      } finally {
        await small.close();
      }
    });

    it('streams output as it arrives', async () => {
      const seen: string[] = [];
      const result = await pool.exec(sshd.host(), 'echo one; sleep 0.2; echo two >&2', {
        onStdout: (c) => seen.push(`out:${c.toString().trim()}`),
        onStderr: (c) => seen.push(`err:${c.toString().trim()}`),
      });
      expect(seen).toEqual(['out:one', 'err:two']);
      expect(result.stdout).toBe('one\n');
    });

    it('multiplexes many concurrent commands over one connection', async () => {
      const host = sshd.host('many');
      const results = await Promise.all(
        Array.from({ length: 24 }, (_, i) => pool.exec(host, `echo ${i}`)),
      );
      expect(results.map((r) => r.stdout.trim())).toEqual(
        Array.from({ length: 24 }, (_, i) => String(i)),
      );
      // One connection for `local` from earlier tests, one for `many`.
      expect(sshd.sessionPids()).toHaveLength(2);
    });

    it('leaves no listeners behind after many calls', async () => {
      const warnings: Error[] = [];
      const onWarning = (w: Error): number => warnings.push(w);
      process.on('warning', onWarning);
      try {
        const host = sshd.host();
        for (let i = 0; i < 40; i++) await pool.exec(host, 'true', { timeoutMs: 5_000 });
      } finally {
        process.off('warning', onWarning);
      }
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
    });

    it('gives up on a command that outlives its timeout and says its effect is unknown', async () => {
      const started = Date.now();
      const error = await pool
        .exec(sshd.host(), 'sleep 3', { timeoutMs: 300 })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CommandTimeoutError);
      expect((error as CommandTimeoutError).startedCommand).toBe(true);
      expect((error as Error).message).toContain('did not finish within 300 ms');
      expect(Date.now() - started).toBeLessThan(2_000);
      expect((await pool.exec(sshd.host(), 'echo still usable')).exitCode).toBe(0);
    });

    it('counts a stream as started once its destination ran, even when the source was refused a session', async () => {
      const one = await startSshd({ maxSessions: 1 });
      const single = new SshPool({ identityFile: one.identityFile });
      const target = join(one.dir, 'written-by-the-destination');
      try {
        const error = await single
          .stream(
            { host: one.host(), command: 'echo data' },
            { host: one.host(), command: `cat > ${target}` },
          )
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(TransientError);
        expect((error as TransientError).startedCommand).toBe(true);
        // The destination's exec was accepted: whether it got as far as truncating its file is
        // unknown, so the engine must not treat the stream as not started and run it again.
        expect((error as Error).message).toContain(`\`cat > ${target}\` had already started`);
      } finally {
        await single.close();
        await one.stop();
      }
    });

    it('kills a timed-out command with every process it started before it reports the timeout', async () => {
      const error = await pool
        .exec(sshd.host(), 'sleep 3173 & (sleep 3174; echo late) & setsid sleep 3175 & wait', {
          timeoutMs: 500,
        })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CommandTimeoutError);
      expect((error as Error).message).toContain('every process it started is gone');
      // Checked from outside, the moment the error arrives: nothing of it runs on.
      expect(everyCommandLine()).not.toMatch(/sleep 317[345]/);
    });

    it('reports a connection killed mid-command as dropped mid-command, then reconnects', async () => {
      const host = sshd.host('victim');
      await pool.exec(host, 'true');
      let printed!: (pid: number) => void;
      const shell = new Promise<number>((resolve) => (printed = resolve));
      const running = pool
        .exec(host, 'echo $$; exec sleep 31.5', { onStdout: (c) => printed(Number(c.toString())) })
        .catch((e: unknown) => e);
      const pid = await shell;
      const victim = sshd.sessionOf(pid);
      expect(victim).toBeTypeOf('number');
      process.kill(victim!, 'SIGKILL');
      const error = await running;
      expect(error).toBeInstanceOf(TransientError);
      expect((error as TransientError).startedCommand).toBe(true);
      expect((error as Error).message).toMatch(/dropped mid-command.*unknown/);
      expect((await pool.exec(host, 'echo back')).stdout).toBe('back\n');
      process.kill(pid, 'SIGKILL');
    });

    it('never dials a documentation address (RFC 5737) without a route that serves it', async () => {
      const direct = new SshPool({ routes: [] });
      try {
        const error = await direct
          .exec(sshd.host('testnet-like', {}), 'true')
          .then(() => undefined)
          .catch((e: unknown) => e);
        expect(error).toBeUndefined();
        const doc = { ...sshd.host('doc'), address: '192.0.2.44' };
        const refused = await direct.exec(doc, 'true').catch((e: unknown) => e);
        expect((refused as BatonError).code).toBe('PRECONDITION_FAILED');
        expect((refused as Error).message).toMatch(/documentation address/);
      } finally {
        await direct.close();
      }
    });

    it('reports a refused connection as failed before the command started', async () => {
      const closedPort = await freePort();
      const error = await pool
        .exec(sshd.host('nowhere', { port: closedPort }), 'touch /never')
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TransientError);
      expect((error as TransientError).startedCommand).toBe(false);
      expect((error as Error).message).toMatch(/ECONNREFUSED.*did not start.*safe to retry/);
    });

    it('times out a server that never answers the handshake, before the command started', async () => {
      const stalled = new SshPool({ readyTimeoutMs: 800 });
      process.kill(sshd.pid, 'SIGSTOP');
      try {
        const error = await stalled.exec(sshd.host('stalled'), 'true').catch((e: unknown) => e);
        expect(error).toBeInstanceOf(TransientError);
        expect((error as TransientError).startedCommand).toBe(false);
        expect((error as Error).message).toMatch(/handshake.*did not start/);
      } finally {
        process.kill(sshd.pid, 'SIGCONT');
        await stalled.close();
      }
    });

    it('round-trips a file through SFTP put and get, with its mode', async () => {
      const blob = randomBytes(5 * 1024 * 1024 + 17);
      const digest = createHash('sha256').update(blob).digest('hex');
      const remotePath = join(sshd.dir, 'upload.bin');
      const put = await pool.put(sshd.host(), blob, remotePath, { mode: 0o600 });
      expect(put).toMatchObject({ bytes: blob.length, sha256: digest });
      const onHost = await remote(
        pool,
        sshd.host(),
      )`sha256sum ${remotePath}; stat -c %a ${remotePath}`;
      expect(onHost.stdout).toBe(`${digest}  ${remotePath}\n600\n`);
      const localPath = join(sshd.dir, 'download.bin');
      const got = await pool.get(sshd.host(), remotePath, localPath);
      expect(got).toMatchObject({ bytes: blob.length, sha256: digest });
      expect(
        createHash('sha256')
          .update(await readFile(localPath))
          .digest('hex'),
      ).toBe(digest);
      await expect(pool.get(sshd.host(), join(sshd.dir, 'absent'), localPath)).rejects.toThrow(
        /SFTP download .*absent failed/,
      );
    });

    it('streams 1 GiB host to host with a matching sha256 on the receiving host', async () => {
      const source = sshd.host('source');
      const sink = sshd.host('sink');
      const blob = join(sshd.dir, 'blob');
      const made = await remote(
        pool,
        source,
      )`head -c 1073741824 /dev/urandom > ${blob} && sha256sum < ${blob}`;
      expect(made.exitCode).toBe(0);
      const sourceSum = made.stdout.split(' ')[0]!;
      const result = await pool.stream(
        { host: source, command: `cat ${blob}` },
        { host: sink, command: 'sha256sum' },
      );
      await rm(blob);
      const mib = result.bytes / 2 ** 20;
      console.log(
        `1 GiB host-to-host stream: ${result.durationMs} ms, ${Math.round(mib / (result.durationMs / 1000))} MiB/s`,
      );
      expect(result.bytes).toBe(2 ** 30);
      expect(result.from.exitCode).toBe(0);
      expect(result.to.exitCode).toBe(0);
      expect(result.sha256).toBe(sourceSum);
      expect(result.to.stdout.split(' ')[0]).toBe(sourceSum);
      // The controller never held the stream: far less than 1 GiB of memory in use.
      expect(process.memoryUsage().rss).toBeLessThan(512 * 2 ** 20);
    }, 180_000);

    it('ends the source when the destination stops reading, like a shell pipeline', async () => {
      const result = await pool.stream(
        { host: sshd.host('source'), command: 'yes' },
        { host: sshd.host('sink'), command: 'head -c 5' },
      );
      expect(result.to).toMatchObject({ exitCode: 0, stdout: 'y\ny\ny' });
      expect(result.bytes).toBeGreaterThanOrEqual(5);
      await expect
        .poll(async () => (await pool.exec(sshd.host(), 'pgrep -x yes || true')).stdout)
        .toBe('');
    });

    /** Run `command` on the host until it prints `started`; every command line on the machine then. */
    async function whileRunning(
      command: string,
      options: ExecOptions,
    ): Promise<{ listing: string; stdout: string; shown: string }> {
      let listing = '';
      let printed = '';
      const result = await pool.exec(sshd.host(), command, {
        ...options,
        onStdout: (chunk) => {
          printed += chunk.toString();
          if (!listing && printed.includes('started')) listing = everyCommandLine();
        },
      });
      expect(result.exitCode).toBe(0);
      expect(listing, 'the command never said it started').not.toBe('');
      return { listing, stdout: result.stdout, shown: result.command };
    }

    it('keeps a command holding a secret out of every argv on the host and the controller, and runs it', async () => {
      const file = join(sshd.dir, 'secret-out');
      const command = sh`printf '%s' ${SECRET} > ${file}; echo started; sleep 1; cat`.text;
      const seen = await whileRunning(command, { secrets: secrets(), input: 'stdin too\n' });
      expect(seen.listing).toContain('__baton_n');
      expect(traces(seen.listing)).toEqual([]);
      expect(seen.stdout).toBe('started\nstdin too\n');
      expect(seen.shown).toContain("'[redacted:pw]'");
      expect(await readFile(file, 'utf8')).toBe(SECRET);
    });

    it('shows the same command in ps when it is not told the secrets: the check above can see', async () => {
      const command = sh`: ${SECRET}; echo started; sleep 1; :`.text;
      expect(traces((await whileRunning(command, {})).listing)).toEqual(CHUNKS);
    });

    it('streams host to host into a command holding a secret, which shows in no argv', async () => {
      const got = join(sshd.dir, 'streamed');
      let listing = '';
      const streaming = pool.stream(
        { host: sshd.host('source'), command: sh`printf '%s' ${SECRET}`.text },
        {
          host: sshd.host('sink'),
          command: sh`cat > ${got}; printf '%s' ${SECRET} >> ${got}; sleep 1`.text,
        },
        { secrets: secrets() },
      );
      await expect
        .poll(async () => (await stat(got).catch(() => undefined))?.size)
        .toBe(2 * Buffer.byteLength(SECRET));
      listing = everyCommandLine();
      const result = await streaming;
      expect([result.from.exitCode, result.to.exitCode]).toEqual([0, 0]);
      expect(listing).toContain('__baton_n');
      expect(traces(listing)).toEqual([]);
      expect(await readFile(got, 'utf8')).toBe(SECRET + SECRET);
      expect(traces(result.from.command + result.to.command)).toEqual([]);
    });

    it('names a command holding a secret only redacted, also where a message clips it', async () => {
      const command = sh`sleep 3; : ${'x'.repeat(140)} ${SECRET}`.text;
      const error = await pool
        .exec(sshd.host(), command, { timeoutMs: 300, secrets: secrets() })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CommandTimeoutError);
      const message = (error as Error).message;
      expect(message).toMatch(/\.\.\.` did not finish within 300 ms/);
      expect(traces(message)).toEqual([]);
      expect(message).not.toMatch(/\[redacted:?[a-z]*`/);
    });

    it('keeps no beginning of a secret that the output limit cut', async () => {
      const bounded = new SshPool({ maxBufferBytes: 20 });
      try {
        const result = await bounded.exec(
          sshd.host(),
          sh`printf '%s' ${'x'.repeat(15) + SECRET}`.text,
          {
            secrets: secrets(),
          },
        );
        expect(result.stdout).toMatch(/^x{15}\[redacted:pw\]\n\[baton: \d+ more bytes/);
      } finally {
        await bounded.close();
      }
    });

    it('refuses a changed host key, naming the host and both fingerprints', async () => {
      const pinned = sshd.hostKeyFingerprint;
      const presented = await sshd.rekey();
      const fresh = new SshPool();
      try {
        const error = await fresh
          .exec(sshd.host('rebuilt', { hostKeys: [pinned] }), 'touch /never')
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(BatonError);
        expect((error as BatonError).code).toBe('HOSTKEY_MISMATCH');
        const message = (error as BatonError).message;
        expect(message).toContain('rebuilt');
        expect(message).toContain(pinned);
        expect(message).toContain(presented);
        expect((error as BatonError).hint).toMatch(/ssh\.hostKeys/);

        const unknown = await fresh
          .exec(sshd.host('unpinned', { hostKeys: [] }), 'true')
          .catch((e: unknown) => e);
        expect((unknown as BatonError).code).toBe('HOSTKEY_UNKNOWN');
        expect((unknown as BatonError).message).toContain(presented);

        const ok = await fresh.exec(
          sshd.host('rebuilt', { hostKeys: [pinned, presented] }),
          'echo ok',
        );
        expect(ok.stdout).toBe('ok\n');
      } finally {
        await fresh.close();
      }
      expect((await stat(sshd.dir)).isDirectory()).toBe(true);
    });
  },
);
