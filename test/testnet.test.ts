import { createApp } from '../lib/app/app.ts';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatonError, TransientError } from '../lib/core/errors.ts';
import { findHost, parseInventory, type Host, type Inventory } from '../lib/core/inventory.ts';
import { remote, type SshPool } from '../lib/transports/ssh.ts';
import { registerTestnetCommands } from '../lib/testnet/cli.ts';
import * as testnet from '../lib/testnet/index.ts';
import { testnetPaths } from '../lib/testnet/state.ts';
import { ircTopology } from '../lib/testnet/topology.ts';
import { assertPrerequisite, skipUnless } from './support/require.ts';

const missing =
  process.getuid?.() !== 0
    ? 'needs root (namespaces, veths, mounts)'
    : !existsSync('/usr/bin/apt-get') && !existsSync('/usr/sbin/sshd')
      ? 'needs a Debian machine (apt-get) or openssh-server installed'
      : undefined;

const home = mkdtempSync(join(tmpdir(), 'baton-testnet-'));

/** The machine's own network namespace, which the testnet must never touch. */
function rootSnapshot(): { links: string; routes: string } {
  return {
    links: execFileSync('ip', ['-o', 'link', 'show'])
      .toString()
      .replace(/ state \S+/g, ''),
    routes: execFileSync('ip', ['route', 'show', 'table', 'all']).toString(),
  };
}

describe.skipIf(skipUnless(missing, 'the local testnet'))('the local testnet', () => {
  let pool: SshPool;
  let inv: Inventory;
  let before: ReturnType<typeof rootSnapshot>;
  const host = (name: string): Host => findHost(inv, name);
  const sh = (name: string, command: string, timeoutMs = 20_000) =>
    pool.exec(host(name), command, { timeoutMs });
  const ping = async (from: string, to: string, count = 3): Promise<number> => {
    const out = await sh(from, `ping -n -q -c ${count} -i 0.1 -W 1 ${to} || true`);
    const m = /([\d.]+)% packet loss/.exec(out.stdout);
    if (!m) throw new Error(`no ping summary from ${from}: ${out.stdout}${out.stderr}`);
    return Number(m[1]);
  };
  const rtt = async (from: string, to: string): Promise<number> => {
    const out = await sh(from, `ping -n -q -c 5 -i 0.1 -W 2 ${to}`);
    return Number(/= [\d.]+\/([\d.]+)\//.exec(out.stdout)![1]);
  };

  beforeAll(async () => {
    assertPrerequisite(missing);
    process.env.BATON_HOME = home;
    before = rootSnapshot();
    const started = performance.now();
    const result = await testnet.up({ topology: 'irc' });
    console.log(`testnet up (irc, 5 hosts): ${Math.round(performance.now() - started)} ms`);
    inv = result.inventory;
    pool = testnet.testnetPool({ readyTimeoutMs: 10_000, keepaliveIntervalMs: 2_000 });
  }, 600_000);

  afterAll(async () => {
    await pool?.close();
    if (existsSync(join(home, 'testnet'))) await testnet.down();
    rmSync(home, { recursive: true, force: true });
  });

  it('shows every reference host in status with sshd running and reachable over ssh', async () => {
    const s = await testnet.status();
    expect(s.up).toBe(true);
    expect(s.relay).toBe('running');
    expect(s.hosts.map((h) => [h.name, h.address, h.roles, h.sshd, h.reachable])).toEqual(
      ircTopology.hosts.map((h) => [h.name, h.address, h.roles, 'running', true]),
    );
    const nebula = s.hosts.find((h) => h.name === 'nebula')!;
    expect(nebula.roles).toEqual(['ircd', 'services', 'primary']);
    expect(nebula.services.map((x) => x.name)).toEqual(['inspircd', 'atheme']);
    expect(s.hosts.find((h) => h.name === 'emergency1')!.roles).toContain('standby');
  });

  it('writes an inventory that --stack local loads, with the hosts’ real host keys pinned', async () => {
    const loaded = await createApp().inventory('local');
    expect(loaded).toEqual(inv);
    expect(
      parseInventory(
        JSON.parse(readFileSync(join(home, 'testnet', 'inventory.json'), 'utf8')),
        'x',
      ),
    ).toEqual(inv);
    for (const h of inv.hosts) {
      const printed = await sh(h.name, 'ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub');
      expect(printed.stdout.split(' ')[1]).toBe(h.ssh!.hostKeys[0]);
      expect(h.ssh).toMatchObject({ user: 'root', port: 22 });
    }
  });

  it('runs commands on each host, which has its own hostname, address and private directories', async () => {
    for (const h of ircTopology.hosts) {
      const out = await testnet.exec(
        h.name,
        [
          'sh',
          '-c',
          'hostname; ip -4 -o addr show dev eth0 | awk "{print \\$4}"; cat /etc/hostname',
        ],
        { pool },
      );
      expect(out.stdout).toBe(`${h.name}\n${h.address}/24\n${h.name}\n`);
    }
    await sh('nebula', 'echo nebula-only > /etc/atheme/marker && echo data > /srv/marker');
    expect(
      (await sh('emergency1', 'cat /etc/atheme/marker /srv/marker 2>&1; true')).stdout,
    ).toMatch(/No such file/);
    expect(existsSync('/etc/atheme/marker')).toBe(false);
    expect(existsSync('/srv/marker')).toBe(false);
    const users = await sh('nebula', 'stat -c %U /var/lib/atheme /var/lib/inspircd; id -u irc');
    expect(users.stdout).toBe('atheme\nirc\n39\n');
    expect((await sh('ns1', 'stat -c %G /var/lib/knot')).stdout).toBe('knot\n');
  });

  it('gives hosts no default route and nothing outside 192.0.2.0/24, and leaves the machine’s network alone', async () => {
    for (const h of ircTopology.hosts) {
      expect(
        (await sh(h.name, 'ip -4 route show table all | grep -v "^local\\|^broadcast"')).stdout,
      ).toBe('192.0.2.0/24 dev eth0 proto kernel scope link src ' + h.address + ' \n');
      const out = await sh(h.name, 'ip route get 198.51.100.7; ping -n -c 1 -W 1 203.0.113.9');
      expect(out.exitCode).not.toBe(0);
      expect(out.stderr).toMatch(/Network is unreachable/);
    }
    const paths = testnetPaths();
    const swRoutes = execFileSync('ip', ['-n', paths.switchNs, '-4', 'route', 'show']).toString();
    expect(swRoutes).toBe('192.0.2.0/24 dev br0 proto kernel scope link src 192.0.2.1 \n');
    expect(
      execFileSync('ip', [
        'netns',
        'exec',
        paths.switchNs,
        'sysctl',
        '-n',
        'net.ipv4.ip_forward',
      ]).toString(),
    ).toBe('0\n');
    const now = rootSnapshot();
    expect(now.links).toBe(before.links);
    expect(now.routes).toBe(before.routes);
  });

  it('is idempotent: up on a running testnet changes nothing', async () => {
    const pids = JSON.parse(readFileSync(join(home, 'testnet', 'state.json'), 'utf8')) as object;
    const again = await testnet.up({ topology: 'irc' });
    expect(again.changed).toBe(false);
    expect(again.inventory).toEqual(inv);
    expect(JSON.parse(readFileSync(join(home, 'testnet', 'state.json'), 'utf8'))).toEqual(pids);
    await expect(testnet.up({ topology: 'solo' })).rejects.toThrow(/runs topology irc/);
  });

  it('answers status and exec on the command line, as JSON', async () => {
    const cli = async (...argv: string[]): Promise<unknown> => {
      const lines: string[] = [];
      const p = new Command('baton').exitOverride();
      registerTestnetCommands(p, { out: (l) => lines.push(l), json: () => true });
      await p.parseAsync(['node', 'baton', 'testnet', ...argv]);
      return JSON.parse(lines.join('\n'));
    };
    const s = (await cli('status')) as testnet.TestnetStatus;
    expect(s.hosts.map((h) => h.reachable)).toEqual([true, true, true, true, true]);
    expect(await cli('exec', 'ns1', '--', 'hostname;', 'echo', '$((6*7))')).toMatchObject({
      host: 'ns1',
      stdout: 'ns1\n42\n',
      exitCode: 0,
    });
  });

  it('relays TCP from the controller only into 192.0.2.0/24', async () => {
    const sock = await testnet.dial('192.0.2.12', 22);
    sock.resume();
    const banner = await new Promise<string>((r) =>
      sock.once('data', (d: Buffer) => r(d.toString())),
    );
    sock.destroy();
    expect(banner).toMatch(/^SSH-2\.0-OpenSSH/);
    await expect(testnet.dial('127.0.0.1', 22)).rejects.toThrow(/only 192\.0\.2\.0\/24/);
    await expect(testnet.dial('192.0.2.12', 9)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('accepts the pinned host key and refuses a changed one, naming both fingerprints', async () => {
    const real = host('vault');
    const other = host('nebula').ssh!.hostKeys[0]!;
    const forged = { ...real, ssh: { ...real.ssh!, hostKeys: [other] } };
    const fresh = testnet.testnetPool();
    try {
      const error = await fresh.exec(forged, 'touch /tmp/never').catch((e: unknown) => e);
      expect((error as BatonError).code).toBe('HOSTKEY_MISMATCH');
      expect((error as Error).message).toContain(other);
      expect((error as Error).message).toContain(real.ssh!.hostKeys[0]);
      expect((await fresh.exec(real, 'test -e /tmp/never; echo $?')).stdout).toBe('1\n');
    } finally {
      await fresh.close();
    }
  });

  it('round-trips hostile strings through the remote template on a testnet host, executing none', async () => {
    const hostile = [
      '; touch /tmp/CANARY',
      "'; touch /tmp/CANARY; '",
      '$(touch /tmp/CANARY)',
      '`touch /tmp/CANARY`',
      '\ntouch /tmp/CANARY',
      'ünïcødé ✓',
      '"',
      '\\',
    ];
    const $r = remote(pool, host('paralysis'));
    for (const value of hostile) expect((await $r`printf '%s' ${value}`).stdout).toBe(value);
    expect((await $r`printf '<%s>' ${hostile}`).stdout).toBe(hostile.map((v) => `<${v}>`).join(''));
    expect((await $r`ls /tmp`).stdout).not.toContain('CANARY');
  });

  it('reports a connection dropped mid-command as such, and reconnects', async () => {
    const killer = testnet.testnetPool();
    try {
      let shellPid!: (pid: string) => void;
      const printed = new Promise<string>((r) => (shellPid = r));
      const call = pool
        .exec(host('paralysis'), 'echo $$; exec sleep 31.7', {
          onStdout: (c) => shellPid(c.toString().trim()),
        })
        .catch((e: unknown) => e);
      const pid = await printed;
      // The session's sshd is the parent of the command's shell; the pid
      // namespace is the machine's, so go by that exact pid, never by name.
      const kill = await killer.exec(
        host('paralysis'),
        `pp=$(ps -o ppid= -p ${pid} | tr -d ' '); [ "$(ps -o comm= -p "$pp")" = sshd ] && kill -9 "$pp"`,
      );
      expect(kill.exitCode, kill.stderr).toBe(0);
      const error = await call;
      expect(error, String(error)).toBeInstanceOf(TransientError);
      expect((error as TransientError).startedCommand).toBe(true);
      expect((error as Error).message).toMatch(/dropped mid-command/);
      expect((await sh('paralysis', 'echo again')).stdout).toBe('again\n');
      await sh('paralysis', `kill ${pid} 2>/dev/null || true`);
    } finally {
      await killer.close();
    }
  });

  it('keeps the exit status of commands that exit at once, which can arrive with the exec reply', async () => {
    const results: (number | null)[] = [];
    for (let round = 0; round < 10; round++) {
      const fresh = testnet.testnetPool();
      try {
        await Promise.all(
          inv.hosts.map(async (h) => {
            for (let i = 0; i < 5; i++) results.push((await fresh.exec(h, 'true')).exitCode);
          }),
        );
      } finally {
        await fresh.close();
      }
    }
    expect(results).toEqual(results.map(() => 0));
  });

  it('moves files with SFTP and streams 1 GiB host to host with a matching sha256 on the receiving host', async () => {
    const put = await pool.put(
      host('vault'),
      Buffer.from('backup manifest\n'),
      '/srv/backup/manifest',
      { mode: 0o640 },
    );
    expect(
      (await sh('vault', 'cat /srv/backup/manifest; stat -c %a /srv/backup/manifest')).stdout,
    ).toBe('backup manifest\n640\n');
    expect(put.bytes).toBe(16);
    const made = await sh(
      'paralysis',
      'head -c 1073741824 /dev/urandom > /tmp/blob && sha256sum < /tmp/blob',
      120_000,
    );
    const sourceSum = made.stdout.split(' ')[0]!;
    const result = await pool.stream(
      { host: host('paralysis'), command: 'cat /tmp/blob' },
      { host: host('vault'), command: 'tee /srv/backup/blob | sha256sum' },
    );
    console.log(
      `1 GiB paralysis -> vault through the controller: ${result.durationMs} ms, ${Math.round(1024 / (result.durationMs / 1000))} MiB/s`,
    );
    expect(result.bytes).toBe(2 ** 30);
    expect([result.from.exitCode, result.to.exitCode]).toEqual([0, 0]);
    expect(result.to.stdout.split(' ')[0]).toBe(sourceSum);
    expect(result.sha256).toBe(sourceSum);
    expect((await sh('vault', 'sha256sum < /srv/backup/blob', 60_000)).stdout.split(' ')[0]).toBe(
      sourceSum,
    );
    await sh('paralysis', 'rm /tmp/blob');
    await sh('vault', 'rm /srv/backup/blob');
  }, 300_000);

  it('starts, reloads and stops services as their own users with systemctl', async () => {
    await sh(
      'emergency1',
      `cat > /etc/systemd/system/beacon.service <<'EOF'
[Service]
User=irc
Group=irc
ExecStart=/bin/sh -c 'trap "echo reloaded" HUP; echo up as $(id -un); while :; do sleep 0.1; done'
ExecReload=/bin/kill -HUP $MAINPID
EOF
systemctl start beacon`,
    );
    expect(
      (
        await sh(
          'emergency1',
          'systemctl is-active beacon; ps -o user= -p $(systemctl show -p MainPID --value beacon)',
        )
      ).stdout,
    ).toBe('active\nirc\n');
    await sh('emergency1', 'systemctl reload beacon && sleep 0.5');
    expect((await sh('emergency1', 'cat /var/log/units/beacon.log')).stdout).toBe(
      'up as irc\nreloaded\n',
    );
    // The pid namespace is the machine's: look at the unit's own process, not by name.
    const stopped = await sh(
      'emergency1',
      'p=$(systemctl show -p MainPID --value beacon); systemctl stop beacon; systemctl is-active beacon; kill -0 $p 2>/dev/null && echo alive || echo gone',
    );
    expect(stopped.stdout).toBe('inactive\ngone\n');
  });

  describe('faults', () => {
    it('partition: two hosts lose each other, everyone else still reaches both, and it heals', async () => {
      await testnet.fault('partition', ['nebula', 'emergency1']);
      expect(await ping('nebula', '192.0.2.13')).toBe(100);
      expect(await ping('emergency1', '192.0.2.12')).toBe(100);
      expect(await ping('nebula', '192.0.2.11')).toBe(0);
      expect(await ping('paralysis', '192.0.2.13')).toBe(0);
      expect((await sh('emergency1', 'echo controller still reaches it')).exitCode).toBe(0);
      await testnet.heal('partition', ['nebula', 'emergency1']);
      expect(await ping('nebula', '192.0.2.13')).toBe(0);
    });

    it('link-down: the host is cut off but keeps running, and comes back when healed', async () => {
      await sh('vault', 'nohup sleep 300 >/dev/null 2>&1 & echo $! > /root/sleeper');
      await testnet.fault('link-down', ['vault']);
      expect(await ping('nebula', '192.0.2.20')).toBe(100);
      const error = await pool
        .exec(host('vault'), 'true', { timeoutMs: 5_000 })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BatonError);
      await pool.drop(host('vault'));
      const other = testnet.testnetPool({ readyTimeoutMs: 2_000 });
      const fresh = await other.exec(host('vault'), 'true').catch((e: unknown) => e);
      await other.close();
      expect(fresh).toBeInstanceOf(TransientError);
      expect((fresh as TransientError).startedCommand).toBe(false);
      await testnet.heal('link-down', ['vault']);
      expect(await ping('nebula', '192.0.2.20')).toBe(0);
      expect((await sh('vault', 'kill -0 $(cat /root/sleeper) && echo survived')).stdout).toBe(
        'survived\n',
      );
    });

    it('slow: delay and loss on a host’s link are measured by ping, and heal', async () => {
      const base = await rtt('nebula', '192.0.2.11');
      expect(base).toBeLessThan(20);
      const f = await testnet.fault('slow', ['paralysis'], { delayMs: 100 });
      expect(['netem', 'delay-line']).toContain(f.mechanism);
      const slow = await rtt('nebula', '192.0.2.11');
      expect(slow).toBeGreaterThanOrEqual(195);
      expect(slow).toBeLessThan(400);
      const t = performance.now();
      await sh('paralysis', 'true');
      expect(performance.now() - t).toBeGreaterThanOrEqual(200);
      await testnet.heal('slow', ['paralysis']);
      expect(await rtt('nebula', '192.0.2.11')).toBeLessThan(20);

      await testnet.fault('slow', ['paralysis'], { delayMs: 1, lossPercent: 30 });
      const loss = await ping('nebula', '192.0.2.11', 40);
      // 30% each way: about half of the echo round trips are lost.
      expect(loss).toBeGreaterThan(20);
      expect(loss).toBeLessThan(85);
      await testnet.heal('slow');
      expect(await ping('nebula', '192.0.2.11', 10)).toBe(0);
    });

    it('disk-full: writes under a service’s data directory fail with ENOSPC, data stays readable, and it heals', async () => {
      await sh(
        'nebula',
        'echo "DBV 12" > /var/lib/atheme/services.db && chown atheme:atheme /var/lib/atheme/services.db',
      );
      await testnet.fault('disk-full', ['nebula'], { path: '/var/lib/atheme' });
      const full = await sh(
        'nebula',
        'setpriv --reuid=atheme --regid=atheme --clear-groups dd if=/dev/zero of=/var/lib/atheme/services.db.new bs=4k count=64',
      );
      expect(full.exitCode).not.toBe(0);
      expect(full.stderr).toMatch(/No space left on device/);
      expect((await sh('nebula', 'cat /var/lib/atheme/services.db')).stdout).toBe('DBV 12\n');
      expect(
        (
          await sh(
            'nebula',
            'dd if=/dev/zero of=/var/lib/inspircd/x bs=4k count=64 && rm /var/lib/inspircd/x',
          )
        ).exitCode,
      ).toBe(0);
      await testnet.heal('disk-full', ['nebula']);
      const healed = await sh(
        'nebula',
        'rm -f /var/lib/atheme/services.db.new; dd if=/dev/zero of=/var/lib/atheme/big bs=1M count=8 && rm /var/lib/atheme/big && cat /var/lib/atheme/services.db && ls -A /var/lib/atheme',
      );
      expect(healed.exitCode).toBe(0);
      expect(healed.stdout).toBe('DBV 12\nservices.db\n');
    });

    it('host-down: every process dies and the link drops; healed, the host boots its enabled units', async () => {
      await sh(
        'nebula',
        `printf '[Service]\\nUser=irc\\nExecStart=/bin/sleep 1000\\n' > /etc/systemd/system/keeper.service
printf '[Service]\\nUser=irc\\nExecStart=/bin/sleep 1001\\n' > /etc/systemd/system/transient.service
systemctl enable --now keeper && systemctl start transient && touch /run/before-reboot`,
      );
      await testnet.fault('host-down', ['nebula']);
      const paths = testnetPaths();
      expect(execFileSync('ip', ['netns', 'pids', paths.hostNs('nebula')]).toString()).toBe('');
      expect(await ping('paralysis', '192.0.2.12')).toBe(100);
      await pool.drop(host('nebula'));
      const error = await pool.exec(host('nebula'), 'true').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TransientError);
      expect((error as TransientError).startedCommand).toBe(false);
      const s = await testnet.status();
      expect(s.hosts.find((h) => h.name === 'nebula')).toMatchObject({
        sshd: 'stopped',
        reachable: false,
        faults: ['host-down'],
      });
      expect(s.hosts.find((h) => h.name === 'paralysis')).toMatchObject({
        sshd: 'running',
        reachable: true,
      });
      // up on a testnet with a host down leaves it down.
      expect((await testnet.up()).changed).toBe(false);

      await testnet.heal('host-down', ['nebula']);
      const after = await sh(
        'nebula',
        'systemctl is-active keeper transient; ls /run/before-reboot 2>&1; cat /etc/atheme/marker',
      );
      expect(after.stdout).toMatch(/^active\ninactive\nls: cannot access/);
      expect(after.stdout).toContain('nebula-only');
      expect(await ping('paralysis', '192.0.2.12')).toBe(0);
      await sh('nebula', 'systemctl disable --now keeper');
    });

    it('host-down --graceful: processes get SIGTERM and time to finish first', async () => {
      await sh(
        'vault',
        `nohup sh -c 'trap "echo clean > /srv/backup/shutdown; exit 0" TERM; while :; do sleep 0.1; done' >/dev/null 2>&1 &`,
      );
      await testnet.fault('host-down', ['vault'], { graceful: true });
      await pool.drop(host('vault'));
      await testnet.heal('host-down', ['vault']);
      expect((await sh('vault', 'cat /srv/backup/shutdown')).stdout).toBe('clean\n');
    });

    it('refuses unknown kinds and hosts, and healing what is not broken', async () => {
      await expect(testnet.fault('meteor', ['nebula'])).rejects.toThrow(
        /unknown fault kind meteor/,
      );
      await expect(testnet.fault('link-down', ['atlantis'])).rejects.toThrow(
        /no host named atlantis/,
      );
      await expect(testnet.fault('partition', ['nebula'])).rejects.toThrow(/at least two hosts/);
      await expect(testnet.heal('link-down', ['nebula'])).rejects.toThrow(/no link-down fault/);
      expect(await testnet.heal()).toEqual([]);
    });
  });

  it('says clearly that it needs root', () => {
    const run = spawnSync(
      'setpriv',
      [
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        process.execPath,
        fileURLToPath(new URL('../bin/baton.js', import.meta.url)),
        'testnet',
        'up',
      ],
      { env: { ...process.env, HOME: '/tmp', BATON_HOME: join(home, 'nobody') }, encoding: 'utf8' },
    );
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/testnet up needs root/);
  });

  it('down removes every namespace, mount, process, veth and file it made, and nothing else', async () => {
    const paths = testnetPaths();
    const ours = (): string[] =>
      readdirSync('/run/netns').filter((n) => n.startsWith(`baton-${paths.id}-`));
    expect(ours()).toHaveLength(6);
    const sshdPids = Object.values(
      (
        JSON.parse(readFileSync(paths.stateFile, 'utf8')) as {
          hosts: Record<string, { sshdPid: number }>;
        }
      ).hosts,
    ).map((h) => h.sshdPid);
    await pool.close();
    const result = await testnet.down();
    expect(result.namespaces).toHaveLength(6);
    expect(ours()).toEqual([]);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(home);
    for (const pid of sshdPids) expect(existsSync(`/proc/${pid}`)).toBe(false);
    const leftovers = execFileSync('ps', ['-eo', 'args'])
      .toString()
      .split('\n')
      .filter((l) => l.includes(home));
    expect(leftovers).toEqual([]);
    expect(existsSync(paths.dir)).toBe(false);
    const after = rootSnapshot();
    expect(after.links).toBe(before.links);
    expect(after.routes).toBe(before.routes);
    expect(await testnet.down()).toMatchObject({ namespaces: [] });
  });
});
