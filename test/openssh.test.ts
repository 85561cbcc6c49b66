import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatonError, TransientError } from '../lib/core/errors.ts';
import type { Host } from '../lib/core/inventory.ts';
import { Redactor } from '../lib/core/redact.ts';
import { sh } from '../lib/core/shell.ts';
import { CommandTimeoutError, SshPool } from '../lib/transports/ssh.ts';
import { findExecutable } from '../lib/transports/which.ts';
import { everyCommandLine } from './support/argv.ts';
import { sshdUnavailable, startSshd, type TestSshd } from './support/sshd.ts';
import { assertPrerequisite, skipUnless } from './support/require.ts';

const ssh = findExecutable('ssh');
const missing =
  sshdUnavailable() ?? (ssh ? undefined : 'needs the OpenSSH client (openssh-client)');

/** An unencrypted OpenSSH private key file of type sk-ssh-ed25519@openssh.com, for no real authenticator. */
function securityKeyFile(comment: string): string {
  const u32 = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const str = (v: Buffer | string): Buffer => {
    const b = Buffer.from(v);
    return Buffer.concat([u32(b.length), b]);
  };
  const type = 'sk-ssh-ed25519@openssh.com';
  const pk = randomBytes(32);
  const check = randomBytes(4);
  const pub = Buffer.concat([str(type), str(pk), str('ssh:')]);
  let secret = Buffer.concat([
    check,
    check,
    str(type),
    str(pk),
    str('ssh:'),
    Buffer.from([0x01]),
    str(randomBytes(64)),
    str(''),
    str(comment),
  ]);
  const pad: number[] = [];
  for (let i = 1; (secret.length + pad.length) % 8; i++) pad.push(i);
  secret = Buffer.concat([secret, Buffer.from(pad)]);
  const body = Buffer.concat([
    Buffer.from('openssh-key-v1\0'),
    str('none'),
    str('none'),
    str(''),
    u32(1),
    str(pub),
    str(secret),
  ]);
  const lines = body
    .toString('base64')
    .match(/.{1,70}/g)!
    .join('\n');
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${lines}\n-----END OPENSSH PRIVATE KEY-----\n`;
}

const SECRET = `Pq7'"$(id)\`x\`\nZk4`;
const CHUNKS = ['Pq7', 'Zk4'];

describe.skipIf(skipUnless(missing, 'the OpenSSH client transport against real sshds'))(
  'SshPool through the OpenSSH client, for hosts ssh2 cannot log in to',
  () => {
    let target: TestSshd;
    let jump: TestSshd;
    let dir: string;
    let configFile: string;
    let skKey: string;
    let pool: SshPool;
    let notices: string[];
    const pools: SshPool[] = [];

    const host = (name: string, address: string, ssh: Partial<NonNullable<Host['ssh']>> = {}) =>
      ({
        name,
        roles: [],
        address,
        connection: 'ssh',
        ssh: { hostKeys: [target.hostKeyFingerprint], ...ssh },
      }) satisfies Host;
    const proxied = (name = 'proxied'): Host => host(name, 'baton-proxied');

    const newPool = (options: ConstructorParameters<typeof SshPool>[0] = {}): SshPool => {
      const p = new SshPool({ routes: [], sshConfigFile: configFile, ...options });
      pools.push(p);
      return p;
    };

    beforeAll(async () => {
      assertPrerequisite(missing);
      [target, jump] = await Promise.all([startSshd(), startSshd()]);
      dir = await mkdtemp(join(tmpdir(), 'baton-openssh-'));
      skKey = join(dir, 'id_ed25519_sk');
      await writeFile(skKey, securityKeyFile('baton-test-sk'), { mode: 0o600 });
      const jumpKey = (await readFile(join(jump.dir, 'host_ed25519.pub'), 'utf8')).trim();
      await writeFile(join(dir, 'known_hosts'), `[127.0.0.1]:${jump.port} ${jumpKey}\n`);
      configFile = join(dir, 'config');
      const toTarget = ['  HostName 127.0.0.1', `  Port ${target.port}`, '  User root'];
      await writeFile(
        configFile,
        [
          'Host baton-proxied',
          ...toTarget,
          `  IdentityFile ${target.identityFile}`,
          `  ProxyCommand ${ssh} -F ${join(dir, 'config')} -W %h:%p baton-jump`,
          'Host baton-jump',
          '  HostName 127.0.0.1',
          `  Port ${jump.port}`,
          '  User root',
          `  IdentityFile ${jump.identityFile}`,
          'Host baton-sk',
          ...toTarget,
          `  IdentityFile ${skKey}`,
          `  IdentityFile ${target.identityFile}`,
          'Host baton-sk-jumped',
          ...toTarget,
          `  IdentityFile ${skKey}`,
          `  IdentityFile ${target.identityFile}`,
          '  ProxyJump baton-jump',
          'Host baton-sk-unknown-jump',
          ...toTarget,
          `  IdentityFile ${skKey}`,
          `  IdentityFile ${target.identityFile}`,
          '  ProxyJump baton-jump-unknown',
          'Host baton-jump-unknown',
          '  HostName 127.0.0.1',
          `  Port ${jump.port}`,
          '  User root',
          `  IdentityFile ${jump.identityFile}`,
          '  UserKnownHostsFile /dev/null',
          // What an operator may have for interactive use; baton still refuses the unknown key.
          '  StrictHostKeyChecking no',
          'Host *',
          `  UserKnownHostsFile ${join(dir, 'known_hosts')}`,
          '  GlobalKnownHostsFile /dev/null',
          '  IdentityAgent none',
          '',
        ].join('\n'),
      );
      notices = [];
      pool = newPool({ notice: (m) => notices.push(m) });
    });

    afterAll(async () => {
      await Promise.all(pools.map((p) => p.close()));
      await Promise.all([target, jump].map((s) => s?.stop()));
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('the crafted security key is one OpenSSH reads as such', () => {
      const pub = execFileSync('ssh-keygen', ['-y', '-f', skKey]).toString();
      expect(pub).toMatch(/^sk-ssh-ed25519@openssh\.com AAAA/);
    });

    it('runs commands over one OpenSSH login, with results as values, and says why once', async () => {
      const before = target.sessionPids().length;
      const h = proxied();
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => pool.exec(h, `echo ${i}; echo warn >&2; exit ${i}`)),
      );
      expect(results.map((r) => [r.stdout, r.stderr, r.exitCode, r.signal])).toEqual(
        Array.from({ length: 8 }, (_, i) => [`${i}\n`, 'warn\n', i, null]),
      );
      expect((await pool.exec(h, 'exit 255')).exitCode).toBe(255);
      expect((await pool.exec(h, 'cat', { input: 'fed\n' })).stdout).toBe('fed\n');
      expect(target.sessionPids().length).toBe(before + 1);
      expect(notices).toHaveLength(1);
      expect(notices[0]).toMatch(
        /^proxied: the ssh config reaches baton-proxied through ProxyCommand, .*OpenSSH client \(.*ssh\) instead$/,
      );
    });

    it("holds the host to the inventory's pinned key, not known_hosts", async () => {
      const mismatch = await pool
        .exec(host('repinned', 'baton-proxied', { hostKeys: [jump.hostKeyFingerprint] }), 'true')
        .catch((e: unknown) => e);
      expect((mismatch as BatonError).code).toBe('HOSTKEY_MISMATCH');
      expect((mismatch as BatonError).message).toContain(
        `it presented host key ${target.hostKeyFingerprint}, but the inventory pins ${jump.hostKeyFingerprint}`,
      );
      const unknown = await pool
        .exec(host('unpinned', 'baton-proxied', { hostKeys: [] }), 'true')
        .catch((e: unknown) => e);
      expect((unknown as BatonError).code).toBe('HOSTKEY_UNKNOWN');
      expect((unknown as BatonError).hint).toMatch(/ssh\.hostKeys/);
    });

    it('puts a file with its mode and gets it back, and says when a path is wrong', async () => {
      const remote = join(target.dir, 'put via openssh');
      const blob = randomBytes(300_000);
      const put = await pool.put(proxied(), blob, remote, { mode: 0o640 });
      expect(put.sha256).toBe(createHash('sha256').update(blob).digest('hex'));
      expect((await pool.exec(proxied(), sh`stat -c %a ${remote}`.text)).stdout).toBe('640\n');
      const local = join(dir, 'got');
      const got = await pool.get(proxied(), remote, local);
      expect(got).toMatchObject({ bytes: blob.length, sha256: put.sha256 });
      expect((await readFile(local)).equals(blob)).toBe(true);
      const error = await pool
        .get(proxied(), join(target.dir, 'absent'), join(dir, 'absent'))
        .catch((e: unknown) => e);
      expect((error as BatonError).code).toBe('COMMAND_FAILED');
      expect((error as BatonError).message).toMatch(/download .*absent failed: .*No such file/);
      expect(existsSync(join(dir, 'absent'))).toBe(false);
    });

    it('streams from a host over the OpenSSH client to one over ssh2, with a matching sha256', async () => {
      const result = await pool.stream(
        { host: proxied(), command: 'head -c 5000000 /dev/urandom' },
        { host: target.host('direct'), command: 'sha256sum' },
      );
      expect(result.bytes).toBe(5_000_000);
      expect(result.to.stdout.split(' ')[0]).toBe(result.sha256);
    });

    it("forwards to a service on the host's loopback, and reports a refused port on the stream", async () => {
      const server: Server = createServer((s) => s.pipe(s));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      try {
        const port = (server.address() as { port: number }).port;
        const stream = await pool.forward(proxied(), port);
        const echoed = new Promise<string>((resolve) =>
          stream.once('data', (c) => resolve(String(c))),
        );
        stream.write('ping');
        expect(await echoed).toBe('ping');
        stream.end();
        const closedPort = await new Promise<number>((resolve) => {
          const probe = createServer();
          probe.listen(0, '127.0.0.1', () => {
            const p = (probe.address() as { port: number }).port;
            probe.close(() => resolve(p));
          });
        });
        const refused: Duplex = await pool.forward(proxied(), closedPort);
        const error = await new Promise<unknown>((resolve) => {
          refused.once('error', resolve);
          refused.resume();
        });
        expect((error as BatonError).code).toBe('PRECONDITION_FAILED');
        expect((error as BatonError).message).toContain(`127.0.0.1:${closedPort}`);
      } finally {
        server.close();
      }
    });

    it('kills a timed-out command with every process it started', async () => {
      const error = await pool
        .exec(proxied(), 'sleep 3171 & sleep 3172', { timeoutMs: 500 })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CommandTimeoutError);
      expect((error as Error).message).toContain('every process it started is gone');
      expect(everyCommandLine()).not.toMatch(/sleep 317[12]/);
    });

    it('keeps a command holding a secret out of every argv, on the controller too', async () => {
      const secrets = new Redactor();
      secrets.add('pw', SECRET);
      const file = join(target.dir, 'secret');
      let listing = '';
      const result = await pool.exec(
        proxied(),
        sh`printf '%s' ${SECRET} > ${file}; echo started; sleep 1`.text,
        {
          secrets,
          onStdout: () => {
            listing ||= everyCommandLine();
          },
        },
      );
      expect(result.exitCode).toBe(0);
      expect(listing).toContain('ControlMaster=no');
      expect(CHUNKS.filter((c) => listing.includes(c))).toEqual([]);
      expect(await readFile(file, 'utf8')).toBe(SECRET);
    });

    it('reports a connection killed mid-command as dropped, then logs in again', async () => {
      const h = proxied('victim');
      await pool.exec(h, 'true');
      let printed!: (pid: number) => void;
      const shell = new Promise<number>((resolve) => (printed = resolve));
      const running = pool
        .exec(h, 'echo $$; exec sleep 31.7', { onStdout: (c) => printed(Number(c.toString())) })
        .catch((e: unknown) => e);
      const pid = await shell;
      process.kill(target.sessionOf(pid)!, 'SIGKILL');
      const error = await running;
      expect(error).toBeInstanceOf(TransientError);
      expect((error as TransientError).startedCommand).toBe(true);
      expect((error as Error).message).toMatch(/dropped mid-command.*unknown/);
      expect((await pool.exec(h, 'echo back')).stdout).toBe('back\n');
      process.kill(pid, 'SIGKILL');
    });

    it('takes a host with a security-key identity to the OpenSSH client, which tries the next identity', async () => {
      const said: string[] = [];
      const skPool = newPool({ notice: (m) => said.push(m) });
      const h = host('fido', 'baton-sk');
      expect((await skPool.exec(h, 'echo one')).stdout).toBe('one\n');
      expect((await skPool.exec(h, 'echo two')).stdout).toBe('two\n');
      expect(said).toEqual([
        expect.stringMatching(
          new RegExp(
            `^fido: the identity ${skKey} is a security key \\(sk-ssh-ed25519@openssh\\.com\\), which baton's built-in ssh client cannot sign with; reaching it through the OpenSSH client .* instead; touch the security key when it blinks$`,
          ),
        ),
      ]);
    });

    it('lets the OpenSSH client do the ProxyJump, and refuses a jump host known_hosts does not know', async () => {
      const before = jump.sessionPids().length;
      const quiet = newPool({ notice: () => undefined });
      const result = await quiet.exec(host('fido-jumped', 'baton-sk-jumped'), 'echo via');
      expect(result.stdout).toBe('via\n');
      expect(jump.sessionPids().length).toBe(before + 1);
      const canary = join(target.dir, 'never-openssh');
      const error = await quiet
        .exec(host('fido-unknown', 'baton-sk-unknown-jump'), `touch ${canary}`)
        .catch((e: unknown) => e);
      expect((error as BatonError).code).toBe('HOSTKEY_UNKNOWN');
      expect((error as BatonError).message).toMatch(
        /refusing a jump host on the way to root@fido-unknown .*via baton-jump-unknown.*Host key verification failed/,
      );
      expect((error as BatonError).hint).toMatch(/known_hosts/);
      expect(existsSync(canary)).toBe(false);
    });

    it('refuses a security-key identity without an OpenSSH client, saying what to do', async () => {
      const bare = newPool({ sshClient: join(dir, 'no-such-ssh') });
      const error = await bare
        .exec(
          host('fido-bare', '127.0.0.1', { user: 'root', port: target.port, identityFile: skKey }),
          'true',
        )
        .catch((e: unknown) => e);
      expect((error as BatonError).code).toBe('MISSING_PREREQUISITE');
      expect((error as BatonError).message).toContain(
        `the identity ${skKey} is a security key (sk-ssh-ed25519@openssh.com)`,
      );
      expect((error as BatonError).message).toContain('no OpenSSH client (ssh) is installed');
      expect((error as BatonError).hint).toMatch(/openssh-client/);
    });

    it('ends its OpenSSH client processes when the pool closes', async () => {
      const masters = (): number =>
        (
          execFileSync('ps', ['-o', 'args=', '--ppid', String(process.pid)])
            .toString()
            .match(/ControlMaster=yes/g) ?? []
        ).length;
      const before = masters();
      const own = newPool();
      await own.exec(proxied('closing'), 'true');
      expect(masters()).toBe(before + 1);
      await own.close();
      expect(masters()).toBe(before);
    });
  },
);
