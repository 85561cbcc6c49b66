/** The testnet's command line, topologies and safety rails: no root, no namespaces needed. */
import { createApp } from '../lib/app/app.ts';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { BatonError } from '../lib/core/errors.ts';
import { type Host } from '../lib/core/inventory.ts';
import { SshPool } from '../lib/transports/ssh.ts';
import { registerTestnetCommands } from '../lib/testnet/cli.ts';
import { testnetRoute } from '../lib/testnet/stack.ts';
import { testnetPaths } from '../lib/testnet/state.ts';
import {
  inTestnetRange,
  ircTopology,
  validateTopology,
  type Topology,
} from '../lib/testnet/topology.ts';

function program(): {
  run: (...argv: string[]) => Promise<string[]>;
  help: (...argv: string[]) => string;
} {
  const make = (): { p: Command; lines: string[] } => {
    const lines: string[] = [];
    const p = new Command('baton').exitOverride().configureOutput({
      writeOut: (s) => lines.push(s),
      writeErr: (s) => lines.push(s),
    });
    registerTestnetCommands(p, { out: (l) => lines.push(l), json: () => false });
    return { p, lines };
  };
  return {
    async run(...argv) {
      const { p, lines } = make();
      await p.parseAsync(['node', 'baton', ...argv]);
      return lines;
    },
    help(...argv) {
      const { p, lines } = make();
      try {
        p.parse(['node', 'baton', ...argv, '--help']);
      } catch {
        // commander exits after help.
      }
      return lines.join('');
    },
  };
}

describe('baton testnet (command line)', () => {
  const home = mkdtempSync(join(tmpdir(), 'baton-testnet-cli-'));
  const previousHome = process.env.BATON_HOME;
  process.env.BATON_HOME = home;
  afterAll(() => {
    if (previousHome === undefined) delete process.env.BATON_HOME;
    else process.env.BATON_HOME = previousHome;
    rmSync(home, { recursive: true, force: true });
  });

  it('lists its subcommands, each with examples in its help', () => {
    const cli = program();
    const top = cli.help('testnet');
    for (const sub of ['up', 'down', 'status', 'exec', 'fault', 'heal']) expect(top).toContain(sub);
    for (const sub of ['up', 'down', 'status', 'exec', 'fault', 'heal']) {
      expect(cli.help('testnet', sub)).toMatch(/Examples?:\n  sudo npx baton testnet/);
    }
    expect(cli.help('testnet', 'fault')).toContain('host-down HOST');
  });

  it('says there is no testnet rather than failing obscurely', async () => {
    expect(await program().run('testnet', 'status')).toEqual([
      `no testnet is up in ${join(home, 'testnet')}`,
    ]);
    await expect(createApp().inventory('local')).rejects.toThrow(
      /stack local is the local testnet, and none is up/,
    );
  });

  it('never connects to a 192.0.2.0/24 address directly when no testnet is up', async () => {
    const pool = new SshPool({ routes: [testnetRoute] });
    const host: Host = {
      name: 'ghost',
      roles: [],
      address: '192.0.2.77',
      connection: 'ssh',
      ssh: { user: 'root', port: 22, hostKeys: [], identityFile: '/dev/null' },
    };
    try {
      const error = await pool.exec(host, 'true').catch((e: unknown) => e);
      expect((error as BatonError).code).toBe('PRECONDITION_FAILED');
      expect((error as Error).message).toContain('no testnet is up');
    } finally {
      await pool.close();
    }
  });

  it('refuses to start without root, saying so, and creates nothing', async () => {
    if (process.getuid?.() !== 0) {
      await expect(program().run('testnet', 'up')).rejects.toMatchObject({ code: 'NOT_ROOT' });
      return;
    }
    // As root, the CLI is run as nobody (setpriv, util-linux) in a directory of its own.
    const cwd = mkdtempSync(join(tmpdir(), 'baton-nobody-'));
    try {
      execFileSync('chown', ['65534:65534', cwd]);
      const bin = fileURLToPath(new URL('../bin/baton.js', import.meta.url));
      let out = '';
      let status = 0;
      try {
        execFileSync(
          'setpriv',
          [
            '--reuid=65534',
            '--regid=65534',
            '--clear-groups',
            process.execPath,
            bin,
            'testnet',
            'up',
            '--json',
          ],
          { cwd, encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: cwd } },
        );
      } catch (e) {
        const err = e as { status: number; stdout: string };
        status = err.status;
        out = err.stdout;
      }
      expect(status).toBe(1);
      expect(JSON.parse(out)).toMatchObject({ code: 'NOT_ROOT', exitCode: 1 });
      expect(readdirSync(cwd).filter((f) => f !== '.cache')).toEqual([]);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('names namespaces after the state directory, so testnets never collide', () => {
    const a = testnetPaths('/srv/a', {});
    const b = testnetPaths('/srv/b', {});
    expect(a.dir).toBe('/srv/a/.baton/testnet');
    expect(a.id).not.toBe(b.id);
    expect(a.hostNs('nebula')).toBe(`baton-${a.id}-nebula`);
    expect(testnetPaths('/x', { BATON_HOME: '/var/tmp/b' }).dir).toBe('/var/tmp/b/testnet');
    const deep = testnetPaths('/' + 'd'.repeat(120), {});
    expect(deep.relaySocket).toBe(`/run/baton-testnet-${deep.id}.sock`);
  });
});

describe('topologies', () => {
  it('the reference topology irc mirrors incident 003', () => {
    validateTopology(ircTopology);
    const byName = Object.fromEntries(ircTopology.hosts.map((h) => [h.name, h]));
    expect(Object.keys(byName)).toEqual(['paralysis', 'nebula', 'emergency1', 'ns1', 'vault']);
    for (const ircd of ['paralysis', 'nebula', 'emergency1'])
      expect(byName[ircd]!.roles).toContain('ircd');
    expect(byName['nebula']!.roles).toEqual(['ircd', 'services', 'primary']);
    expect(byName['emergency1']!.roles).toContain('standby');
    expect(byName['ns1']!.roles).toEqual(['dns']);
    expect(byName['vault']!.roles).toEqual(['backup']);
    for (const h of ircTopology.hosts) {
      expect(inTestnetRange(h.address)).toBe(true);
      for (const s of h.services) expect(s.user).not.toBe('root');
    }
  });

  it.each([
    [
      'a root service',
      {
        name: 'x',
        address: '192.0.2.9',
        roles: [],
        services: [{ name: 's', user: 'root', dirs: [], dataDir: '/var/lib/s' }],
      },
      /own user/,
    ],
    [
      'an address off the testnet',
      { name: 'x', address: '10.0.0.9', roles: [], services: [] },
      /not in 192\.0\.2\.2-192\.0\.2\.254/,
    ],
    [
      'the relay’s address',
      { name: 'x', address: '192.0.2.1', roles: [], services: [] },
      /not in 192\.0\.2\.2/,
    ],
    [
      'a name too long for an interface',
      { name: 'averyveryverylongname', address: '192.0.2.9', roles: [], services: [] },
      /1-12 lowercase/,
    ],
  ])('rejects %s', (_what, host, message) => {
    const t: Topology = { name: 't', description: '', hosts: [host] };
    expect(() => validateTopology(t)).toThrow(message);
  });

  it('ships a systemctl that a POSIX sh parses', () => {
    const script = fileURLToPath(new URL('../lib/testnet/systemctl.sh', import.meta.url));
    execFileSync('sh', ['-n', script]);
  });
});
