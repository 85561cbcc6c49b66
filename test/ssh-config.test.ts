import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatonError } from '../lib/core/errors.ts';
import type { Host } from '../lib/core/inventory.ts';
import { knownHostKeys, knownHostsName, verifyKnownHost } from '../lib/transports/known-hosts.ts';
import { parseProxyJump, readSshConfig } from '../lib/transports/ssh-config.ts';
import { SshPool } from '../lib/transports/ssh.ts';
import { generateKey } from '../lib/testnet/sshd.ts';
import { findExecutable } from '../lib/transports/which.ts';
import { sshdUnavailable, startSshd, type TestSshd } from './support/sshd.ts';
import { assertPrerequisite, skipUnless } from './support/require.ts';

const ssh = findExecutable('ssh');
const noClient = ssh ? undefined : 'needs the OpenSSH client (Debian package openssh-client)';

describe.skipIf(skipUnless(noClient, 'ssh -G'))('the ssh config as `ssh -G` resolves it', () => {
  let dir: string;
  beforeAll(async () => {
    assertPrerequisite(noClient);
    dir = await mkdtemp(join(tmpdir(), 'baton-ssh-config-'));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function config(text: string): Promise<string> {
    const file = join(dir, `config-${Math.random().toString(36).slice(2)}`);
    await writeFile(file, text);
    return file;
  }

  it('takes HostName, Port, User and the IdentityFile entries that exist, with ~ and tokens expanded', async () => {
    await writeFile(join(dir, 'id_home'), '');
    await writeFile(join(dir, 'irc1.example.net-deploy.key'), '');
    const file = await config(
      [
        'Host irc1',
        '  HostName irc1.example.net',
        '  Port 2222',
        '  User deploy',
        '  IdentityFile ~/id_home',
        '  IdentityFile ~/absent',
        `  IdentityFile ${dir}/%h-%r.key`,
        '  IdentitiesOnly yes',
        '',
      ].join('\n'),
    );
    const settings = await readSshConfig('irc1', {
      ssh,
      configFile: file,
      env: { ...process.env, HOME: dir },
    });
    expect(settings).toMatchObject({
      alias: 'irc1',
      hostName: 'irc1.example.net',
      port: 2222,
      user: 'deploy',
      identityFiles: [join(dir, 'id_home'), join(dir, 'irc1.example.net-deploy.key')],
      proxyJump: [],
      identitiesOnly: true,
    });
  });

  it('lets a user and port given on the command line win over the file, as ssh does', async () => {
    const file = await config('Host irc1\n  Port 2222\n  User deploy\n');
    const settings = await readSshConfig('irc1', { ssh, configFile: file, user: 'root', port: 22 });
    expect(settings).toMatchObject({ hostName: 'irc1', port: 22, user: 'root' });
  });

  it('reads ProxyJump as hops in order, and `none` as none', async () => {
    const file = await config(
      'Host a\n  ProxyJump bastion,admin@inner:2200\nHost b\n  ProxyJump none\nHost *\n  ProxyJump outer\n',
    );
    expect((await readSshConfig('a', { ssh, configFile: file }))!.proxyJump).toEqual([
      { host: 'bastion' },
      { host: 'inner', user: 'admin', port: 2200 },
    ]);
    expect((await readSshConfig('b', { ssh, configFile: file }))!.proxyJump).toEqual([]);
    expect(parseProxyJump('ssh://u@h:23,[::1]:24,plain')).toEqual([
      { host: 'h', user: 'u', port: 23 },
      { host: '::1', port: 24 },
      { host: 'plain' },
    ]);
    expect(() => parseProxyJump('h:99999')).toThrow(/ProxyJump entry/);
  });

  it('reads IdentityAgent as a socket path, from SSH_AUTH_SOCK or $VAR, or none', async () => {
    const file = await config(
      [
        'Host path',
        `  IdentityAgent ${dir}/agent.sock`,
        'Host env',
        '  IdentityAgent SSH_AUTH_SOCK',
        'Host var',
        '  IdentityAgent $BATON_TEST_AGENT',
        'Host off',
        '  IdentityAgent none',
        '',
      ].join('\n'),
    );
    const env = { ...process.env, SSH_AUTH_SOCK: '/run/a.sock', BATON_TEST_AGENT: '/run/b.sock' };
    const agent = async (alias: string): Promise<string | null | undefined> =>
      (await readSshConfig(alias, { ssh, configFile: file, env }))!.identityAgent;
    expect(await agent('path')).toBe(join(dir, 'agent.sock'));
    expect(await agent('env')).toBe('/run/a.sock');
    expect(await agent('var')).toBe('/run/b.sock');
    expect(await agent('off')).toBeNull();
    expect(await agent('unset')).toBeUndefined();
  });

  it('has nothing to say without an OpenSSH client, and is no error', async () => {
    expect(await readSshConfig('irc1', { ssh: undefined })).toBeUndefined();
    expect(await readSshConfig('irc1', { ssh: join(dir, 'no-such-ssh') })).toBeUndefined();
  });

  it('refuses a configuration ssh itself refuses, naming the host and the file', async () => {
    const file = await config('Host irc1\n  NoSuchOption yes\n');
    const error = await readSshConfig('irc1', { ssh, configFile: file }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BatonError);
    expect((error as BatonError).code).toBe('INVALID_INPUT');
    expect((error as BatonError).message).toMatch(/ssh -G irc1.*[Bb]ad configuration option/);
    expect((error as BatonError).hint).toContain(file);
  });

  it('never passes a name that ssh would read as an option', async () => {
    await expect(readSshConfig('-oProxyCommand=touch /tmp/x', { ssh })).rejects.toThrow(
      /not a host name/,
    );
  });
});

describe.skipIf(skipUnless(noClient, 'known_hosts'))('known_hosts as OpenSSH matches it', () => {
  let dir: string;
  let key: string;
  let other: string;
  beforeAll(async () => {
    assertPrerequisite(noClient);
    dir = await mkdtemp(join(tmpdir(), 'baton-known-hosts-'));
    await generateKey(join(dir, 'k1'), 'k1');
    await generateKey(join(dir, 'k2'), 'k2');
    key = (await readFile(join(dir, 'k1.pub'), 'utf8')).trim();
    other = (await readFile(join(dir, 'k2.pub'), 'utf8')).trim();
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  const blob = (line: string): Buffer => Buffer.from(line.split(' ')[1]!, 'base64');

  it('finds a host by name, by [name]:port off port 22, and by wildcard, but not where negated', async () => {
    const file = join(dir, 'plain');
    await writeFile(
      file,
      [
        `# a comment`,
        `bastion.example.net,10.0.0.1 ${key}`,
        `[inner.example.net]:2222 ${key}`,
        `*.lab.example.net,!secret.lab.example.net ${key}`,
        '',
      ].join('\n'),
    );
    const known = (name: string, port = 22): string =>
      verifyKnownHost(knownHostKeys([file], knownHostsName(name, port)), blob(key)).kind;
    expect(known('bastion.example.net')).toBe('known');
    expect(known('10.0.0.1')).toBe('known');
    expect(known('inner.example.net', 2222)).toBe('known');
    expect(known('inner.example.net')).toBe('unknown');
    expect(known('box.lab.example.net')).toBe('known');
    expect(known('secret.lab.example.net')).toBe('unknown');
  });

  it('finds a host under a hashed name, as ssh-keygen -H writes it', async () => {
    const file = join(dir, 'hashed');
    await writeFile(file, `[bastion.example.net]:2222 ${key}\n`);
    execFileSync('ssh-keygen', ['-q', '-H', '-f', file], { stdio: 'ignore' });
    expect(await readFile(file, 'utf8')).toMatch(/^\|1\|/);
    const keys = knownHostKeys([file], '[bastion.example.net]:2222');
    expect(keys).toHaveLength(1);
    expect(verifyKnownHost(keys, blob(key))).toEqual({ kind: 'known' });
    expect(knownHostKeys([file], 'bastion.example.net')).toEqual([]);
  });

  it('calls another key for a known host changed, and a @revoked key revoked', async () => {
    const file = join(dir, 'changed');
    await writeFile(file, `bastion ${key}\n@revoked * ${other}\n@cert-authority * ${other}\n`);
    const keys = knownHostKeys([file, join(dir, 'absent')], 'bastion');
    expect(verifyKnownHost(keys, blob(other))).toMatchObject({
      kind: 'revoked',
      source: `${file}:2`,
    });
    const changed = verifyKnownHost(knownHostKeys([file], 'bastion').slice(0, 1), blob(other));
    expect(changed).toMatchObject({ kind: 'changed', known: [{ source: `${file}:1` }] });
  });
});

const missing = sshdUnavailable() ?? noClient;

describe.skipIf(skipUnless(missing, 'SshPool with an ssh config against real sshds'))(
  'SshPool reaches hosts as the ssh config says',
  () => {
    let target: TestSshd;
    let jump: TestSshd;
    let jump2: TestSshd;
    let closed: TestSshd;
    let dir: string;
    let configFile: string;
    let knownHosts: string;
    let pool: SshPool;
    const pools: SshPool[] = [];

    const hostKeyLine = async (sshd: TestSshd): Promise<string> =>
      `[127.0.0.1]:${sshd.port} ${(await readFile(join(sshd.dir, 'host_ed25519.pub'), 'utf8')).trim()}`;

    const block = (alias: string, sshd: TestSshd, extra: string[] = []): string =>
      [
        `Host ${alias}`,
        '  HostName 127.0.0.1',
        `  Port ${sshd.port}`,
        '  User root',
        `  IdentityFile ${sshd.identityFile}`,
        ...extra.map((l) => `  ${l}`),
      ].join('\n');

    /** An inventory entry that names only the alias and the pinned key: the rest is the config's. */
    const host = (name: string, address: string, ssh: Partial<NonNullable<Host['ssh']>> = {}) =>
      ({
        name,
        roles: [],
        address,
        connection: 'ssh',
        ssh: { hostKeys: [target.hostKeyFingerprint], ...ssh },
      }) satisfies Host;

    const newPool = (options: ConstructorParameters<typeof SshPool>[0] = {}): SshPool => {
      const p = new SshPool({ routes: [], sshConfigFile: configFile, ...options });
      pools.push(p);
      return p;
    };

    /** The process that holds the controller's end of the target's connection, from $SSH_CONNECTION. */
    const peerOf = (sshConnection: string): number => {
      const port = sshConnection.trim().split(' ')[1]!;
      const out = execFileSync('ss', ['-Htnp', 'state', 'established', 'sport', '=', `:${port}`]);
      return Number(/pid=(\d+)/.exec(out.toString())?.[1]);
    };

    beforeAll(async () => {
      assertPrerequisite(missing);
      [target, jump, jump2, closed] = await Promise.all([
        startSshd(),
        startSshd(),
        startSshd(),
        startSshd({ extraConfig: ['AllowTcpForwarding no'] }),
      ]);
      dir = await mkdtemp(join(tmpdir(), 'baton-ssh-config-'));
      knownHosts = join(dir, 'known_hosts');
      await writeFile(
        knownHosts,
        (await Promise.all([jump, jump2, closed].map(hostKeyLine))).join('\n') + '\n',
      );
      configFile = join(dir, 'config');
      await writeFile(
        configFile,
        [
          block('baton-target', target),
          [
            'Host baton-wrong',
            '  HostName 127.0.0.1',
            '  Port 1',
            '  User nobody',
            `  IdentityFile ${jump.identityFile}`,
          ].join('\n'),
          block('baton-jump', jump),
          block('baton-jump2', jump2),
          block('baton-closed', closed),
          block('baton-unknown-jump', target),
          block('via-jump', target, ['ProxyJump baton-jump']),
          block('via-chain', target, ['ProxyJump baton-jump,baton-jump2']),
          block('via-unknown', target, ['ProxyJump baton-unknown-jump']),
          block('via-closed', target, ['ProxyJump baton-closed']),
          'Host *',
          `  UserKnownHostsFile ${knownHosts}`,
          '  GlobalKnownHostsFile /dev/null',
          '  IdentityAgent none',
          '',
        ].join('\n'),
      );
      pool = newPool();
    });

    afterAll(async () => {
      await Promise.all(pools.map((p) => p.close()));
      await Promise.all([target, jump, jump2, closed].map((s) => s?.stop()));
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('reaches a Host alias at its HostName and Port, as its User, with its IdentityFile', async () => {
      const result = await pool.exec(
        host('direct', 'baton-target'),
        'whoami; echo $SSH_CONNECTION',
      );
      expect(result.exitCode).toBe(0);
      const [user, connection] = result.stdout.trim().split('\n');
      expect(user).toBe('root');
      expect(connection).toMatch(
        new RegExp(`^127\\.0\\.0\\.1 \\d+ 127\\.0\\.0\\.1 ${target.port}$`),
      );
      expect(peerOf(connection!)).toBe(process.pid);
    });

    it("lets the inventory's user, port and identity win over the ssh config's", async () => {
      const explicit = host('explicit', 'baton-wrong', {
        user: 'root',
        port: target.port,
        identityFile: target.identityFile,
      });
      expect((await pool.exec(explicit, 'whoami')).stdout).toBe('root\n');
      // Left to the config, the same alias goes to port 1.
      const error = await pool.exec(host('wrong', 'baton-wrong'), 'true').catch((e: unknown) => e);
      expect((error as Error).message).toMatch(/nobody@wrong \(127\.0\.0\.1:1\)/);
    });

    it('reads the ssh config once per host for the life of the pool', async () => {
      const log = join(dir, 'ssh-calls');
      const wrapper = join(dir, 'ssh-wrapper');
      await writeFile(wrapper, `#!/bin/sh\necho "$*" >> ${log}\nexec ${ssh} "$@"\n`);
      await chmod(wrapper, 0o755);
      const counted = newPool({ sshClient: wrapper });
      const h = host('counted', 'baton-target');
      await counted.exec(h, 'true');
      await counted.drop(h);
      await counted.exec(h, 'true');
      await counted.exec(h, 'true');
      const calls = (await readFile(log, 'utf8')).trim().split('\n');
      expect(calls).toEqual([`-G -F ${configFile} -- baton-target`]);
    });

    it('reaches a host by the inventory alone when no OpenSSH client is installed, without error', async () => {
      const bare = newPool({ sshClient: join(dir, 'no-such-ssh') });
      const inventoryOnly = host('bare', '127.0.0.1', {
        user: 'root',
        port: target.port,
        identityFile: target.identityFile,
      });
      expect((await bare.exec(inventoryOnly, 'echo ok')).stdout).toBe('ok\n');
    });

    it('connects through a ProxyJump host whose key known_hosts holds', async () => {
      const before = jump.sessionPids().length;
      const result = await pool.exec(host('jumped', 'via-jump'), 'echo $SSH_CONNECTION');
      expect(result.exitCode).toBe(0);
      expect(jump.sessionPids().length).toBe(before + 1);
      // The target's peer is a session of the jump host's sshd, not this process.
      expect(jump.sessionOf(peerOf(result.stdout))).toBeTypeOf('number');
    });

    it('connects through a chain of jump hosts, first to last', async () => {
      const result = await pool.exec(host('chained', 'via-chain'), 'echo $SSH_CONNECTION');
      expect(result.exitCode).toBe(0);
      expect(jump2.sessionOf(peerOf(result.stdout))).toBeTypeOf('number');
      const intoJump2 = execFileSync('ss', [
        '-Htnp',
        'state',
        'established',
        'dport',
        '=',
        `:${jump2.port}`,
      ]).toString();
      const owners = [...intoJump2.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
      expect(owners.some((pid) => jump.sessionOf(pid) !== undefined)).toBe(true);
    });

    it('still holds the host itself to the pinned key when it is behind a jump host', async () => {
      const other = jump.hostKeyFingerprint;
      const error = await pool
        .exec(host('pinned', 'via-jump', { hostKeys: [other] }), 'true')
        .catch((e: unknown) => e);
      expect((error as BatonError).code).toBe('HOSTKEY_MISMATCH');
      expect((error as BatonError).message).toContain(target.hostKeyFingerprint);
      expect((error as BatonError).message).toMatch(/pinned \(127\.0\.0\.1:\d+ via baton-jump\)/);
    });

    it('refuses a jump host known_hosts does not know, naming it and saying what to do', async () => {
      const canary = join(target.dir, 'never');
      const error = await pool
        .exec(host('unknown', 'via-unknown'), `touch ${canary}`)
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BatonError);
      expect((error as BatonError).code).toBe('HOSTKEY_UNKNOWN');
      const message = (error as BatonError).message;
      expect(message).toContain('jump host root@baton-unknown-jump');
      expect(message).toContain(`[127.0.0.1]:${target.port}`);
      expect(message).toContain(target.hostKeyFingerprint);
      expect(message).toContain(knownHosts);
      expect((error as BatonError).hint).toMatch(/known_hosts.*never trusts a key on first use/);
      expect(existsSync(canary)).toBe(false);
    });

    it('refuses a jump host whose key is not the one known_hosts holds', async () => {
      const changed = join(dir, 'known_hosts.changed');
      const wrongKey = (await hostKeyLine(target)).replace(String(target.port), String(jump.port));
      await writeFile(changed, `${wrongKey}\n`);
      const file = join(dir, 'config.changed');
      await writeFile(
        file,
        [
          block('via-jump', target, ['ProxyJump baton-jump']),
          block('baton-jump', jump),
          'Host *',
          `  UserKnownHostsFile ${changed}`,
          '  IdentityAgent none',
          '',
        ].join('\n'),
      );
      const error = await newPool({ sshConfigFile: file })
        .exec(host('changed', 'via-jump'), 'true')
        .catch((e: unknown) => e);
      expect((error as BatonError).code).toBe('HOSTKEY_MISMATCH');
      const message = (error as BatonError).message;
      expect(message).toContain(`it presented host key ${jump.hostKeyFingerprint}`);
      expect(message).toContain(`${target.hostKeyFingerprint} (${changed}:1)`);
      expect((error as BatonError).hint).toMatch(/ssh-keygen -R/);
    });

    it('says which jump host does not allow TCP forwarding', async () => {
      const error = await pool.exec(host('closed', 'via-closed'), 'true').catch((e: unknown) => e);
      expect((error as BatonError).code).toBe('PRECONDITION_FAILED');
      expect((error as BatonError).message).toMatch(
        /jump host root@baton-closed .* would not open a connection to 127\.0\.0\.1:\d+/,
      );
      expect((error as BatonError).hint).toMatch(/AllowTcpForwarding/);
    });

    describe('with an ssh-agent', () => {
      let agent: ChildProcess;
      let socket: string;
      beforeAll(async () => {
        socket = join(dir, 'agent.sock');
        agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
        for (let i = 0; i < 200 && !existsSync(socket); i++)
          await new Promise((r) => setTimeout(r, 25));
        execFileSync('ssh-add', ['-q', target.identityFile], {
          env: { ...process.env, SSH_AUTH_SOCK: socket },
          stdio: 'ignore',
        });
      });
      afterAll(() => {
        agent?.kill();
      });

      const agentConfig = async (name: string, lines: string[]): Promise<string> => {
        const file = join(dir, name);
        await writeFile(
          file,
          [
            'Host baton-agent',
            '  HostName 127.0.0.1',
            `  Port ${target.port}`,
            '  User root',
            `  IdentityAgent ${socket}`,
            ...lines.map((l) => `  ${l}`),
            '',
          ].join('\n'),
        );
        return file;
      };

      it('logs in with a key of the agent IdentityAgent names', async () => {
        const file = await agentConfig('config.agent', [`IdentityFile ${dir}/absent`]);
        const result = await newPool({ sshConfigFile: file }).exec(
          host('agent', 'baton-agent'),
          'whoami',
        );
        expect(result.stdout).toBe('root\n');
      });

      it('offers only the agent keys of the IdentityFile entries with IdentitiesOnly', async () => {
        const file = await agentConfig('config.only', [
          `IdentityFile ${jump.identityFile}`,
          'IdentitiesOnly yes',
        ]);
        const error = await newPool({ sshConfigFile: file })
          .exec(host('only', 'baton-agent'), 'true')
          .catch((e: unknown) => e);
        expect((error as BatonError).code).toBe('PRECONDITION_FAILED');
        expect((error as BatonError).message).toMatch(/login to root@only .* was refused/);
        expect((error as BatonError).hint).toContain(jump.identityFile);
      });
    });
  },
);
