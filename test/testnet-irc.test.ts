import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprint, parseAthemeDb, type AthemeDb } from '../lib/integrations/atheme/db.ts';
import type { CommandRunner } from '../lib/integrations/dns/command.ts';
import { parseTsigKey, Rfc2136Provider } from '../lib/integrations/dns/rfc2136.ts';
import { verifyAnswer } from '../lib/integrations/dns/verify.ts';
import { BatonError } from '../lib/core/errors.ts';
import { findHost, type Host, type Inventory } from '../lib/core/inventory.ts';
import { IrcClient, withIrcClient } from '../lib/integrations/irc/client.ts';
import {
  verifyIdentify,
  verifyServiceTrust,
  verifyTopicPropagation,
} from '../lib/integrations/irc/verify.ts';
import { sh as shell } from '../lib/core/shell.ts';
import type { SshPool } from '../lib/transports/ssh.ts';
import { registerTestnetCommands } from '../lib/testnet/cli.ts';
import * as testnet from '../lib/testnet/index.ts';
import { backupAtheme } from '../lib/testnet/irc-backup.ts';
import { askService, connectIrc, ircEndpoint, waitForLinks } from '../lib/testnet/irc-seed.ts';
import { parseLease } from '../lib/core/lease.ts';
import {
  ATHEME,
  BACKUP,
  INSPIRCD,
  IRC_CLIENT_PORT,
  IRC_DNS,
  IRCD_HOSTS,
  KNOT,
  LEASE_FQDN,
  LEASE_RECORD,
  OPERATOR_ACCOUNT,
  SEED,
  SERVICES_SERVER,
  ircSecretPaths,
  ircServerName,
  readIrcSecrets,
  type IrcSecrets,
} from '../lib/testnet/irc.ts';
import { testnetPaths } from '../lib/testnet/state.ts';
import { assertPrerequisite, skipUnless } from './support/require.ts';
import { rewriteLease } from './support/lease.ts';

const missing =
  process.getuid?.() !== 0
    ? 'needs root (namespaces, veths, mounts)'
    : ['/usr/sbin/inspircd', '/usr/bin/atheme-services', '/usr/sbin/knotd', '/usr/bin/dig']
        .filter((f) => !existsSync(f))
        .map((f) => `needs ${f} (see debian-packages.txt)`)[0];

const home = mkdtempSync(join(tmpdir(), 'baton-testnet-irc-'));

describe.skipIf(skipUnless(missing, 'the irc testnet'))('the irc testnet', () => {
  let pool: SshPool;
  let inv: Inventory;
  let secrets: IrcSecrets;
  const upLog: string[] = [];
  const host = (name: string): Host => findHost(inv, name);
  const sh = (name: string, command: string, timeoutMs = 30_000) =>
    pool.exec(host(name), command, { timeoutMs });
  /** dig, knsupdate ... on a testnet host, as a runbook's DNS step runs them. */
  const on =
    (name: string): CommandRunner =>
    async (cmd, options = {}) =>
      pool.exec(host(name), cmd.text, {
        ...(options.input !== undefined ? { input: options.input } : {}),
        timeoutMs: options.timeoutMs ?? 20_000,
      });
  const readDb = async (name: string, path: string): Promise<AthemeDb> => {
    const out = await sh(name, `base64 -w0 ${path}`);
    expect(out.exitCode, out.stderr).toBe(0);
    return parseAthemeDb(Buffer.from(out.stdout, 'base64'), { file: path });
  };
  const tsig = (): Rfc2136Provider =>
    new Rfc2136Provider({
      zone: IRC_DNS.zone,
      server: { address: KNOT.address, port: KNOT.port },
      tsig: parseTsigKey(readFileSync(ircSecretPaths().tsigKey, 'utf8')),
      run: on('paralysis'),
    });

  beforeAll(async () => {
    assertPrerequisite(missing);
    process.env.BATON_HOME = home;
    const result = await testnet.up({ topology: 'irc', log: (l) => upLog.push(l) });
    console.log(
      `testnet up --topology irc (5 hosts, provisioned and seeded): ${result.durationMs} ms`,
    );
    inv = result.inventory;
    secrets = readIrcSecrets();
    pool = testnet.testnetPool({ readyTimeoutMs: 10_000, keepaliveIntervalMs: 2_000 });
  }, 300_000);

  afterAll(async () => {
    await pool?.close();
    if (existsSync(join(home, 'testnet'))) await testnet.down();
    rmSync(home, { recursive: true, force: true });
  });

  it('runs inspircd on every ircd, atheme on nebula only and knot on ns1, each as its own user', async () => {
    const s = await testnet.status();
    expect(Object.fromEntries(s.hosts.map((h) => [h.name, h.services]))).toEqual({
      paralysis: [{ name: 'inspircd', state: 'active' }],
      nebula: [
        { name: 'inspircd', state: 'active' },
        { name: 'atheme', state: 'active' },
      ],
      emergency1: [
        { name: 'inspircd', state: 'active' },
        { name: 'atheme', state: 'inactive' },
      ],
      ns1: [{ name: 'knot', state: 'active' }],
      vault: [],
    });
    const user = (name: string, unit: string) =>
      sh(name, `ps -o user= -p $(systemctl show -p MainPID --value ${unit})`);
    for (const h of IRCD_HOSTS) expect((await user(h, 'inspircd')).stdout).toBe('irc\n');
    expect((await user('nebula', 'atheme')).stdout).toBe('atheme\n');
    expect((await user('ns1', 'knot')).stdout).toBe('knot\n');
    expect((await sh('nebula', 'systemctl is-enabled atheme')).stdout).toBe('enabled\n');
    expect(
      (
        await sh(
          'emergency1',
          `systemctl is-enabled atheme; test -e ${ATHEME.db} && echo db || echo no-db`,
        )
      ).stdout,
    ).toBe('disabled\nno-db\n');
    const confs = await Promise.all(
      ['nebula', 'emergency1'].map(
        async (h) => (await sh(h, `sha256sum < ${ATHEME.config}`)).stdout,
      ),
    );
    expect(confs[0]).toBe(confs[1]);
  });

  it('forwards a connection to a service on a host’s loopback through that host’s ssh connection', async () => {
    const stream: Duplex = await pool.forward(host('emergency1'), IRC_CLIENT_PORT);
    const first = await new Promise<string>((resolve) => {
      stream.once('data', (d: Buffer) => resolve(d.toString()));
      stream.write('NICK fwd\r\nUSER fwd 0 * :x\r\n');
    });
    stream.destroy();
    expect(first).toMatch(/^:emergency1\.irc\.test /);
    const refused = await pool.forward(host('emergency1'), 6999).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(BatonError);
    expect((refused as BatonError).code).toBe('PRECONDITION_FAILED');
    expect((refused as Error).message).toMatch(/emergency1.*127\.0\.0\.1:6999/);
    await expect(pool.forward(host('emergency1'), 0)).rejects.toThrow(/not a TCP port/);
  });

  it('registers an IrcClient over SshPool.forward on each ircd, which names itself', async () => {
    for (const h of IRCD_HOSTS) {
      const client = await IrcClient.connect({
        host: host(h).address,
        port: IRC_CLIENT_PORT,
        nick: `reg${h.slice(0, 4)}`,
        label: h,
        connect: () => pool.forward(host(h), IRC_CLIENT_PORT),
      });
      expect(client.serverName).toBe(ircServerName(h));
      await client.quit();
    }
  });

  it('links the three ircds and services as one network: LINKS everywhere, a message across the hub', async () => {
    for (const h of IRCD_HOSTS) {
      await withIrcClient(
        {
          host: h,
          port: IRC_CLIENT_PORT,
          nick: `links${h.slice(0, 3)}`,
          connect: () => pool.forward(host(h), IRC_CLIENT_PORT),
        },
        async (client) => {
          const links = await client.request('LINKS', (m) => m.command === '365', {
            keep: (m) => m.command === '364',
          });
          expect(
            links
              .filter((m) => m.command === '364')
              .map((m) => m.params[1])
              .sort(),
          ).toEqual([...IRCD_HOSTS.map(ircServerName), SERVICES_SERVER].sort());
        },
      );
    }
    const [from, to] = await Promise.all([
      connectIrc(pool, host('emergency1'), 'crosser'),
      connectIrc(pool, host('nebula'), 'receiver'),
    ]);
    try {
      // A new nick reaches the other servers a moment after its own server welcomed it.
      for (let tries = 0; ; tries++) {
        const whois = await from.request('WHOIS receiver', (m) => m.command === '318', {
          keep: (m) => m.command === '311',
        });
        if (whois.some((m) => m.command === '311') || tries >= 20) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      const got = to.waitFor((m) => m.command === 'PRIVMSG' && m.source === 'crosser');
      from.privmsg('receiver', 'over paralysis');
      expect((await got).params[1]).toBe('over paralysis');
    } finally {
      await Promise.all([from.quit(), to.quit()]);
    }
  });

  it('trusts services on every ircd (U-line), and alice identifies through each of them', async () => {
    const trust = await Promise.all(
      IRCD_HOSTS.map((h) => verifyServiceTrust(ircEndpoint(pool, host(h)), SERVICES_SERVER)),
    );
    expect(trust.map((t) => [t.host, t.trusted, t.server, t.condition.ok])).toEqual(
      IRCD_HOSTS.map((h) => [h, true, SERVICES_SERVER, true]),
    );
    const alice = secrets.passwords['alice']!;
    const proofs = await Promise.all(
      IRCD_HOSTS.map((h) => verifyIdentify(ircEndpoint(pool, host(h)), 'alice', alice)),
    );
    expect(proofs.map((p) => [p.ok, p.via])).toEqual(IRCD_HOSTS.map(() => [true, '900']));
    const wrong = await verifyIdentify(ircEndpoint(pool, host('paralysis')), 'alice', 'not-it');
    expect(wrong.ok).toBe(false);
  });

  it('carries a ChanServ topic to every server', async () => {
    const proof = await verifyTopicPropagation({
      setter: ircEndpoint(pool, host('emergency1')),
      observers: IRCD_HOSTS.map((h) => ircEndpoint(pool, host(h))),
      channel: '#lobby',
      account: 'alice',
      password: secrets.passwords['alice']!,
    });
    expect(proof.observers.map((o) => [o.host, o.ok])).toEqual(IRCD_HOSTS.map((h) => [h, true]));
    // Put the seeded topic back, so the data stays as provisioned.
    const restored = await verifyTopicPropagation({
      setter: ircEndpoint(pool, host('nebula')),
      observers: [ircEndpoint(pool, host('paralysis'))],
      channel: '#lobby',
      account: 'alice',
      password: secrets.passwords['alice']!,
      topic: SEED.channels.find((c) => c.name === '#lobby')!.topic,
    });
    expect(restored.ok).toBe(true);
  });

  it('lets batonops use OperServ: READONLY ON and OFF, UPDATE', async () => {
    const client = await connectIrc(pool, host('paralysis'), 'opsprobe');
    const pw = secrets.passwords[OPERATOR_ACCOUNT]!;
    try {
      await askService(client, 'NickServ', `IDENTIFY ${OPERATOR_ACCOUNT} ${pw}`, /identified/i, {
        secrets: [pw],
      });
      const on = await askService(client, 'OperServ', 'READONLY ON', /readonly/i);
      const update = await askService(client, 'OperServ', 'UPDATE', /UPDATE completed/i);
      const off = await askService(client, 'OperServ', 'READONLY OFF', /readonly|normal/i);
      console.log(`OperServ says: "${on}" / "${update}" / "${off}"`);
      expect(on).toMatch(/now running in readonly mode/);
      expect(off).not.toMatch(/now running in readonly mode/);
    } finally {
      await client.quit();
    }
    const plain = await connectIrc(pool, host('paralysis'), 'nobody1');
    try {
      await expect(askService(plain, 'OperServ', 'UPDATE', /completed/i)).rejects.toThrow(
        /refused|did not answer/,
      );
    } finally {
      await plain.quit();
    }
  });

  it('serves irc.test from Knot on 192.0.2.53: the inventory’s records, with their TTLs', async () => {
    expect(inv.dns).toEqual(IRC_DNS);
    for (const r of IRC_DNS.records) {
      const name = `${r.name}.${IRC_DNS.zone}`;
      const answer = await verifyAnswer(IRC_DNS.servers, name, r.type, r.value, {
        run: on('paralysis'),
      });
      expect(answer.answers.map((a) => [a.ok, a.values, a.ttl])).toEqual([
        [true, [r.value], r.ttl],
      ]);
    }
    const dig = await sh('vault', `dig +norec +short @${KNOT.address} TXT ${LEASE_FQDN}`);
    expect(dig.stdout).toMatch(
      /^"holder=nebula gen=\d+ expires=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"\n$/,
    );
    const soa = await sh('vault', `dig +norec +noall +answer @${KNOT.address} irc.test NS`);
    expect(soa.stdout).toMatch(/^irc\.test\.\s+3600\s+IN\s+NS\s+ns1\.irc\.test\.$/m);
  });

  it('takes a TSIG-signed update and refuses an unsigned one', async () => {
    const provider = tsig();
    const set = await provider.setTarget('probe', 'A', '192.0.2.99', 60);
    expect(set).toEqual({ values: ['192.0.2.99'], ttl: 60 });
    const unsigned = await sh(
      'paralysis',
      `printf 'server ${KNOT.address}\\nzone irc.test.\\nupdate add probe.irc.test. 60 A 192.0.2.98\\nsend\\n' | knsupdate`,
    );
    expect(unsigned.exitCode).not.toBe(0);
    expect(unsigned.stdout + unsigned.stderr).toMatch(/NOTAUTH|REFUSED/);
    expect(await provider.readRecord('probe', 'A')).toEqual({ values: ['192.0.2.99'], ttl: 60 });
    const key = parseTsigKey(readFileSync(ircSecretPaths().tsigKey, 'utf8'));
    const removed = await on('paralysis')(shell`knsupdate`, {
      input: `server ${KNOT.address}\nzone irc.test.\nkey ${key.algorithm}:${key.name} ${key.secret}\nupdate delete probe.irc.test. A\nsend\n`,
    });
    expect(removed.exitCode, removed.stderr).toBe(0);
    expect(await provider.readRecord('probe', 'A')).toEqual({ values: [], ttl: 0 });
  });

  it('refuses to start atheme on emergency1 unless the DNS lease names it', async () => {
    const start = async (): Promise<{ code: number | null; log: string; active: string }> => {
      await sh('emergency1', ': > /var/log/units/atheme.log');
      const r = await sh('emergency1', 'systemctl start atheme');
      const log = (await sh('emergency1', 'cat /var/log/units/atheme.log')).stdout;
      const active = (await sh('emergency1', 'systemctl is-active atheme')).stdout.trim();
      return { code: r.exitCode, log, active };
    };
    const held = await start();
    expect(held).toMatchObject({ code: 1, active: 'failed' });
    expect(held.log).toContain(
      `lease-check: refusing to start atheme on emergency1: the services lease ${LEASE_FQDN} is held by nebula`,
    );

    await testnet.fault('partition', ['emergency1', 'ns1']);
    try {
      const cut = await start();
      expect(cut).toMatchObject({ code: 1, active: 'failed' });
      expect(cut.log).toMatch(/refusing to start atheme on emergency1: cannot ask 192\.0\.2\.53/);
    } finally {
      await testnet.heal('partition', ['emergency1', 'ns1']);
    }

    // Moved by compare-and-set to emergency1 at the next generation; nebula's watchdog stops nebula's atheme.
    const provider = tsig();
    const { before: lease0 } = await rewriteLease(provider, LEASE_RECORD, (now) => ({
      holder: 'emergency1',
      gen: now.gen + 1,
    }));
    try {
      const granted = await start();
      expect(granted).toMatchObject({ code: 0, active: 'active' });
      expect(granted.log).toContain('lease-check: emergency1 holds the services lease');
    } finally {
      // Back to the provisioned state: stopped, no services.db of its own, the lease on nebula.
      await sh(
        'emergency1',
        `systemctl stop atheme; systemctl reset-failed atheme; rm -f ${ATHEME.db}`,
      );
      await rewriteLease(provider, LEASE_RECORD, () => ({ holder: 'nebula', gen: lease0.gen + 2 }));
      await sh('nebula', 'systemctl start atheme');
    }
    expect(parseLease((await provider.readRecord(LEASE_RECORD, 'TXT')).values[0]!)).toMatchObject({
      holder: 'nebula',
      gen: lease0.gen + 2,
    });
    expect(
      (await sh('emergency1', `systemctl is-active atheme; ls ${ATHEME.dataDir}`)).stdout,
    ).toBe('inactive\n');
    await waitForLinks(pool, inv, [SERVICES_SERVER]);
  });

  it('holds the seeded accounts, nicks and channels in services.db on nebula and in the backup on vault', async () => {
    const db = await readDb('nebula', ATHEME.db);
    expect(db.accounts.map((a) => a.name).sort()).toEqual(['alice', 'batonops', 'bob', 'carol']);
    expect(db.nicks.map((n) => `${n.nick}:${n.account}`).sort()).toEqual([
      'alice:alice',
      'alice_away:alice',
      'batonops:batonops',
      'bob:bob',
      'carol:carol',
    ]);
    expect(db.channels.map((c) => [c.name, c.founder, c.topic]).sort()).toEqual(
      SEED.channels.map((c) => [c.name, c.founder, c.topic]).sort(),
    );
    const listing = await sh('vault', `cd ${BACKUP.dir} && ls && sha256sum -c *.sha256`);
    expect(listing.exitCode, listing.stderr).toBe(0);
    const backups = listing.stdout
      .split('\n')
      .filter((l) => /^services\.db\.\d{8}T\d{6}Z$/.test(l));
    expect(backups).toHaveLength(1);
    expect(listing.stdout).toContain(`${backups[0]}: OK`);
    const copy = await readDb('vault', `${BACKUP.dir}/${backups[0]}`);
    expect(fingerprint(copy)).toEqual(fingerprint(db));

    const another = await backupAtheme(pool, inv);
    expect(another.path).toMatch(/^\/srv\/backup\/atheme\/services\.db\.\d{8}T\d{6}Z(\.\d+)?$/);
    const check = await sh(
      'vault',
      `cd ${BACKUP.dir} && sha256sum -c ${another.path.split('/').pop()}.sha256`,
    );
    expect(check.exitCode, check.stdout + check.stderr).toBe(0);
    expect(fingerprint(await readDb('vault', another.path))).toEqual(fingerprint(db));
  });

  it('masks and unmasks units as systemd does', async () => {
    const out = await sh(
      'emergency1',
      `systemctl mask atheme; echo "rc=$?"
systemctl mask inspircd; systemctl is-enabled inspircd; echo "rc=$?"
systemctl start inspircd; echo "rc=$?"
systemctl enable inspircd; echo "rc=$?"
systemctl show -p LoadState --value inspircd; systemctl is-active inspircd
systemctl unmask inspircd; systemctl is-enabled inspircd; systemctl start inspircd; echo "rc=$?"`,
    );
    expect(out.stdout).toBe(
      [
        'rc=1',
        'Created symlink /etc/systemd/system/inspircd.service -> /dev/null.',
        'masked',
        'rc=1',
        'rc=1',
        'rc=1',
        'masked',
        'active',
        'Removed "/etc/systemd/system/inspircd.service".',
        'enabled',
        'rc=0',
        '',
      ].join('\n'),
    );
    expect(out.stderr).toContain(
      'Failed to mask unit: File /etc/systemd/system/atheme.service already exists.',
    );
    expect(out.stderr).toContain('Unit inspircd.service is masked.');
    expect(out.stderr).toContain(
      'Failed to enable unit: Unit file /etc/systemd/system/inspircd.service is masked.',
    );
  });

  it('is idempotent: up again changes nothing and keeps the data', async () => {
    const snapshot = async () => ({
      pids: await Promise.all(
        [...IRCD_HOSTS.map((h) => [h, 'inspircd']), ['nebula', 'atheme'], ['ns1', 'knot']].map(
          async ([h, unit]) => (await sh(h!, `systemctl show -p MainPID --value ${unit}`)).stdout,
        ),
      ),
      db: fingerprint(await readDb('nebula', ATHEME.db)),
      // The zone as up writes it: every record but the lease (and the serial) its holder renews.
      zone: (
        await sh(
          'vault',
          `for n in irc.test:NS ns1.irc.test:A ${IRC_DNS.records.map((r) => `${r.name}.irc.test:${r.type}`).join(' ')}; do dig +norec +short @${KNOT.address} \${n%:*} \${n#*:}; done`,
        )
      ).stdout,
      files: (
        await sh(
          'nebula',
          `sha256sum ${INSPIRCD.config} ${INSPIRCD.servicesLink} ${ATHEME.config} ${ATHEME.unitFile} ${ATHEME.leaseCheck}`,
        )
      ).stdout,
    });
    const before = await snapshot();
    expect(before.zone.split('\n')).toEqual(
      expect.arrayContaining([`ns1.${IRC_DNS.zone}.`, KNOT.address, '192.0.2.11', '192.0.2.12']),
    );
    const again = await testnet.up({ topology: 'irc', log: (l) => upLog.push(l) });
    expect(again.changed).toBe(false);
    expect(again.inventory).toEqual(inv);
    expect(await snapshot()).toEqual(before);
    expect(readIrcSecrets()).toEqual(secrets);
  });

  it('keeps its secrets in 0600 files and out of every output and log', async () => {
    const files = ircSecretPaths();
    expect(statSync(files.dir).mode & 0o777).toBe(0o700);
    for (const f of readdirSync(files.dir)) {
      expect(statSync(join(files.dir, f)).mode & 0o777, f).toBe(0o600);
    }
    expect(readFileSync(files.tsigKey, 'utf8')).toMatch(
      /^hmac-sha256:baton-update:[A-Za-z0-9+/]+=*\n$/,
    );
    const values = [
      parseTsigKey(secrets.tsigKey).secret,
      ...Object.values(secrets.passwords),
      secrets.serverLinkPassword,
      secrets.servicesLinkPassword,
    ];
    expect(new Set(values).size).toBe(7);
    const lines: string[] = [];
    const cli = new Command('baton').exitOverride();
    registerTestnetCommands(cli, { out: (l) => lines.push(l), json: () => false });
    await cli.parseAsync(['node', 'baton', 'testnet', 'status']);
    await cli.parseAsync(['node', 'baton', 'testnet', 'status', '--json']);
    await cli.parseAsync(['node', 'baton', 'testnet', 'up', '--json']);
    const paths = testnetPaths();
    const local = readdirSync(paths.dir, { recursive: true, encoding: 'utf8' })
      .map((f) => join(paths.dir, f))
      // Not the secrets themselves, the hosts' disks (read over ssh below) or namespace files.
      .filter((f) => !f.startsWith(files.dir) && !/\/(hosts|ns)\//.test(f) && !f.endsWith('.sock'))
      .filter((f) => statSync(f).isFile())
      .map((f) => readFileSync(f, 'utf8'));
    const hostLogs = await Promise.all(
      inv.hosts.map(
        async (h) => (await sh(h.name, 'find /var/log -type f -exec cat {} +', 60_000)).stdout,
      ),
    );
    const everything = [...upLog, ...lines, ...local, ...hostLogs].join('\n');
    expect(hostLogs.join('').length).toBeGreaterThan(1000);
    for (const v of values) expect(everything.includes(v)).toBe(false);
  });

  it('down leaves no namespace, process or file of the irc network behind', async () => {
    const paths = testnetPaths();
    const pids = await Promise.all(
      [...IRCD_HOSTS.map((h) => [h, 'inspircd']), ['nebula', 'atheme'], ['ns1', 'knot']].map(
        async ([h, unit]) =>
          Number((await sh(h!, `systemctl show -p MainPID --value ${unit}`)).stdout),
      ),
    );
    expect(pids.every((p) => p > 0)).toBe(true);
    await pool.close();
    await testnet.down();
    // A killed process may linger as a zombie for a moment until it is reaped.
    const alive = (pid: number): boolean => {
      try {
        return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      } catch {
        return false;
      }
    };
    for (const pid of pids) expect(alive(pid), String(pid)).toBe(false);
    expect(readdirSync('/run/netns').filter((n) => n.startsWith(`baton-${paths.id}-`))).toEqual([]);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(home);
    expect(existsSync(paths.dir)).toBe(false);
    const leftovers = execFileSync('ps', ['-eo', 'args'])
      .toString()
      .split('\n')
      .filter((l) => l.includes(home));
    expect(leftovers).toEqual([]);
  });
});
