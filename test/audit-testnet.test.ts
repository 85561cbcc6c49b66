/**
 * `baton audit` against the irc testnet: every check passes on the healthy
 * network, and fails with the right evidence when its incident is injected
 * for real on the hosts. No secret appears in anything the audit writes.
 */
import { createApp } from '../lib/app/app.ts';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAudit, type AuditReport } from '../lib/audit/audit.ts';
import type { CheckResult } from '../lib/audit/check.ts';
import { isReported, registerAuditCommands } from '../lib/audit/cli.ts';
import { parseAuditConfig } from '../lib/audit/config.ts';
import { auditPaths } from '../lib/audit/state.ts';
import {
  ensureTestnetLuks,
  testnetAuditConfigInput,
  testnetLuksPassphraseFile,
} from '../lib/audit/testnet.ts';
import { isBatonError } from '../lib/core/errors.ts';
import { findHost, type Inventory } from '../lib/core/inventory.ts';
import type { SshPool } from '../lib/transports/ssh.ts';
import { sh } from '../lib/core/shell.ts';
import * as testnet from '../lib/testnet/index.ts';
import { readIrcSecrets } from '../lib/testnet/irc.ts';
import type { Transports } from '../lib/transports/index.ts';
import { countColor, readPng } from './support/audit.ts';
import { assertPrerequisite, skipUnless } from './support/require.ts';

const has = (bin: string): boolean =>
  spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0 ||
  existsSync(`/usr/sbin/${bin}`) ||
  existsSync(`/sbin/${bin}`);

const missing =
  process.getuid?.() !== 0
    ? 'needs root (the testnet: namespaces, veths, mounts)'
    : !has('cryptsetup')
      ? 'needs cryptsetup (Debian package cryptsetup) for the passphrase check'
      : !has('chromium')
        ? 'needs Debian chromium for the status page'
        : !has('atheme-services') || !has('inspircd')
          ? 'needs the irc testnet packages (debian-packages.txt)'
          : undefined;

const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const FAIL_RED: [number, number, number] = [207, 34, 46];
const PASS_GREEN: [number, number, number] = [26, 127, 55];

describe.skipIf(skipUnless(missing, 'baton audit on the irc testnet'))(
  'baton audit on the irc testnet',
  () => {
    const home = mkdtempSync(join(tmpdir(), 'baton-audit-net-'));
    const outputs: string[] = [];
    let pool: SshPool;
    let inv: Inventory;
    let transports: Transports;
    let cwd: string;
    const run = async (host: string, command: string): Promise<string> => {
      const r = await pool.exec(findHost(inv, host), command, { timeoutMs: 60_000 });
      if (r.exitCode !== 0)
        throw new Error(`${host}: ${command}: exit ${r.exitCode}: ${r.stderr.trim()}`);
      return r.stdout;
    };

    /** `baton audit …` as the command line runs it: exit code and what it printed. */
    const cli = async (...args: string[]): Promise<{ code: number; out: string; err: string }> => {
      const out: string[] = [];
      const err: string[] = [];
      const program = new Command('baton').exitOverride();
      program.configureOutput({ writeOut: (s) => out.push(s), writeErr: (s) => err.push(s) });
      registerAuditCommands(program, {
        out: (l) => out.push(l),
        err: (l) => err.push(l),
        json: () => false,
        app: createApp(),
      });
      let code = 0;
      try {
        await program.parseAsync(args, { from: 'user' });
      } catch (e) {
        if (isReported(e)) code = 1;
        else if (isBatonError(e)) {
          code = e.code === 'INVALID_INPUT' ? 2 : 1;
          err.push(`error: ${e.message}`);
        } else throw e;
      }
      const result = { code, out: out.join('\n'), err: err.join('\n') };
      outputs.push(result.out, result.err);
      return result;
    };

    const auditOnly = async (only: string[], now?: () => Date): Promise<AuditReport> => {
      const report = await runAudit({
        config: parseAuditConfig(testnetAuditConfigInput(), 'the irc testnet', inv),
        inventory: inv,
        transports,
        only,
        ...(now ? { now } : {}),
      });
      outputs.push(JSON.stringify(report));
      return report;
    };
    const check = (report: AuditReport, id: string): CheckResult => {
      const c = report.checks.find((x) => x.id === id);
      if (!c) throw new Error(`no check ${id} in ${report.checks.map((x) => x.id).join(', ')}`);
      return c;
    };

    const newestBackup = async (): Promise<string> =>
      (
        await run(
          'vault',
          'ls -1 /srv/backup/atheme/services.db.* | grep -v sha256 | sort | tail -n 1',
        )
      ).trim();

    beforeAll(async () => {
      assertPrerequisite(missing);
      process.env.BATON_HOME = home;
      cwd = process.cwd();
      process.chdir(home);
      const started = performance.now();
      inv = (await testnet.up({ topology: 'irc' })).inventory;
      console.log(`testnet up (irc): ${Math.round(performance.now() - started)} ms`);
      pool = testnet.testnetPool({ readyTimeoutMs: 10_000, keepaliveIntervalMs: 2_000 });
      transports = { transportFor: () => pool, close: async () => undefined };
      expect(await ensureTestnetLuks(inv, transports)).toBe(true);
      expect(await ensureTestnetLuks(inv, transports)).toBe(false);
    }, 600_000);

    afterAll(async () => {
      await pool?.close();
      if (cwd) process.chdir(cwd);
      if (existsSync(join(home, 'testnet'))) await testnet.down();
      rmSync(home, { recursive: true, force: true });
    });

    it('passes every check on the healthy network, from the command line, with a status page', async () => {
      const started = performance.now();
      const page = join(home, 'healthy.html');
      const r = await cli('audit', '--stack', 'local', '--html', page);
      const ms = Math.round(performance.now() - started);
      console.log(`audit of the healthy testnet (12 checks): ${ms} ms\n${r.out}`);
      expect(r.code).toBe(0);
      // The hosts' disks are this machine's: a nearly full one would warn, rightly.
      expect(r.out).toMatch(/12 checks: \d+ pass, \d+ warn, 0 fail/);
      for (const id of [
        'backup-freshness:atheme',
        'backup-content:atheme',
        'passphrase:vault-backup',
        'standby-copy:atheme',
        'standby-binary:atheme',
        'trust:atheme',
        'dns-ttl:atheme',
      ])
        expect(r.out).toMatch(new RegExp(`  pass  ${id.replace(/[/.]/g, '\\$&')} `));
      expect(r.out).toMatch(/  (pass|WARN)  disk:vault:\/srv\/backup /);
      const printed = await cli('audit', '--stack', 'local', '--print-config');
      expect(JSON.parse(printed.out).encryptedDevices[0]).toMatchObject({
        host: 'vault',
        device: '/srv/crypt/backup.luks',
        passphrase: `@file:${testnetLuksPassphraseFile()}`,
      });
      expect((await cli('audit')).code).toBe(2);
      const json = await cli('audit', '--stack', 'local', '--json', '--verbose');
      const report = JSON.parse(json.out) as AuditReport & { exitCode: number };
      expect(report.exitCode).toBe(0);
      expect(check(report, 'backup-content:atheme').evidence.join('\n')).toMatch(
        /services\.db: restored and parses as Atheme reads it: 4 accounts, 5 nicks, 2 channels/,
      );
      expect(check(report, 'trust:atheme').evidence).toContain(
        'paralysis: live: NickServ answered SQUERY',
      );
      expect(check(report, 'dns-ttl:atheme').evidence).toContain(
        'services.irc.test A 192.0.2.12 at ns1 (192.0.2.53 via ns1): TTL 300 s (max 300 s)',
      );
      // The test restore's scratch directory is gone again.
      expect((await run('vault', 'ls /var/tmp')).trim()).not.toMatch(/baton-audit-restore/);
      const png = await screenshot(page);
      expect(countColor(png, FAIL_RED)).toBe(0);
      expect(countColor(png, PASS_GREEN)).toBeGreaterThan(5_000);
    });

    it('fails backup freshness when the newest backup is 3 days old (incident 004)', async () => {
      const newest = await newestBackup();
      const mtime = (await run('vault', sh`stat -c %Y ${newest}`.text)).trim();
      await run('vault', sh`touch -d '3 days ago' ${newest}`.text);
      try {
        const c = check(await auditOnly(['backup-freshness']), 'backup-freshness:atheme');
        console.log(c.evidence.join('\n'));
        expect(c.verdict).toBe('fail');
        expect(c.summary).toBe('newest backup 3 d old (policy every 24 h)');
        expect(c.evidence[0]).toMatch(
          new RegExp(`^newest backup: vault:${newest}, modified .*, 3 d old by vault's clock`),
        );
      } finally {
        await run('vault', sh`touch -d ${`@${mtime}`} ${newest}`.text);
      }
      expect(check(await auditOnly(['backup-freshness']), 'backup-freshness:atheme').verdict).toBe(
        'pass',
      );
    });

    it('fails backup content when the newest backup has no services.db in it (incidents 000, 001)', async () => {
      const empty = '/srv/backup/atheme/services.db.29990101T000000Z';
      await run(
        'vault',
        sh`: > ${empty} && cd /srv/backup/atheme && sha256sum services.db.29990101T000000Z > services.db.29990101T000000Z.sha256`
          .text,
      );
      try {
        const report = await auditOnly(['backup-']);
        console.log(check(report, 'backup-content:atheme').evidence.join('\n'));
        expect(check(report, 'backup-freshness:atheme').verdict).toBe('pass');
        const c = check(report, 'backup-content:atheme');
        expect(c.verdict).toBe('fail');
        expect(c.summary).toBe(
          'services.db.29990101T000000Z: services.db: empty (0 bytes) in the backup',
        );
      } finally {
        await run('vault', sh`rm -f ${empty} ${`${empty}.sha256`}`.text);
      }
      // The same lesson with a whole-host archive that left the database out.
      await run('vault', 'mkdir -p /srv/backup/full');
      const tarOf = async (name: string, paths: string[]): Promise<void> => {
        const r = await pool.stream(
          { host: findHost(inv, 'nebula'), command: sh`tar -cf - -C / ${paths}`.text },
          { host: findHost(inv, 'vault'), command: sh`cat > ${`/srv/backup/full/${name}`}`.text },
        );
        expect(r.to.exitCode).toBe(0);
      };
      const input = testnetAuditConfigInput();
      const config = parseAuditConfig(
        {
          ...input,
          services: {
            full: {
              backup: {
                host: 'vault',
                dir: '/srv/backup/full',
                pattern: 'nebula.*.tar',
                format: 'tar',
                interval: '24h',
                items: [
                  {
                    name: 'services.db',
                    path: 'var/lib/atheme/services.db',
                    kind: 'atheme-db',
                    live: { host: 'nebula', path: '/var/lib/atheme/services.db' },
                  },
                  { name: '/etc/atheme', path: 'etc/atheme', kind: 'dir' },
                ],
              },
            },
          },
        },
        'test',
        inv,
      );
      try {
        await tarOf('nebula.1.tar', ['etc/atheme', 'var/lib/atheme/services.db']);
        let c = check(
          await runAudit({ config, inventory: inv, transports, only: ['backup-content'] }),
          'backup-content:full',
        );
        expect(c.verdict).toBe('pass');
        await run('vault', 'sleep 1');
        await tarOf('nebula.2.tar', ['etc/atheme']);
        const report = await runAudit({
          config,
          inventory: inv,
          transports,
          only: ['backup-content'],
        });
        outputs.push(JSON.stringify(report));
        c = check(report, 'backup-content:full');
        console.log(c.evidence.join('\n'));
        expect(c.verdict).toBe('fail');
        expect(c.summary).toBe(
          'nebula.2.tar: services.db: missing: not in the backup (var/lib/atheme/services.db)',
        );
        expect(c.evidence.join('\n')).toMatch(/\/etc\/atheme: \d+ files, [\d.]+ KiB restored/);
      } finally {
        await run('vault', 'rm -rf /srv/backup/full');
      }
    });

    it('fails the passphrase check when the passphrase on file no longer opens the container (incident 000)', async () => {
      const file = testnetLuksPassphraseFile();
      const right = readFileSync(file, 'utf8');
      writeFileSync(file, 'changed-during-maintenance-2010\n', { mode: 0o600 });
      try {
        const c = check(await auditOnly(['passphrase']), 'passphrase:vault-backup');
        console.log(c.evidence.join('\n'));
        expect(c.verdict).toBe('fail');
        expect(c.summary).toBe('the passphrase on file does NOT open vault:/srv/crypt/backup.luks');
        expect(c.evidence).toEqual([
          'vault:/srv/crypt/backup.luks: LUKS2, 1 key slot in use (0)',
          `cryptsetup open --test-passphrase: no key slot opens with the passphrase from @file:${file} (exit 2)`,
        ]);
        rmSync(file);
        const gone = check(await auditOnly(['passphrase']), 'passphrase:vault-backup');
        expect(gone.verdict).toBe('fail');
        expect(gone.evidence[1]).toBe(`passphrase on file @file:${file}: ${file} does not exist`);
      } finally {
        writeFileSync(file, right, { mode: 0o600 });
      }
      const ok = check(await auditOnly(['passphrase']), 'passphrase:vault-backup');
      expect(ok.verdict).toBe('pass');
      expect(ok.evidence[1]).toMatch(/^cryptsetup open --test-passphrase: key slot 0 unlocked/);
    });

    it('fails disk headroom when a file grows fast enough to fill the disk in hours, and names it (incident 002)', async () => {
      await run(
        'nebula',
        'mkdir -p /var/log/retry && mount -t tmpfs -o size=64m baton-audit-test /var/log/retry',
      );
      const input = testnetAuditConfigInput();
      const config = parseAuditConfig(
        { ...input, filesystems: [{ host: 'nebula', path: '/var/log/retry' }] },
        'test',
        inv,
      );
      const paths = auditPaths();
      let clock = Date.now();
      const measure = async (): Promise<CheckResult> => {
        const report = await runAudit({
          config,
          inventory: inv,
          transports,
          only: ['disk'],
          paths,
          now: () => new Date(clock),
        });
        outputs.push(JSON.stringify(report));
        return check(report, 'disk:nebula:/var/log/retry');
      };
      try {
        const first = await measure();
        expect(first.verdict).toBe('pass');
        await run(
          'nebula',
          'dd if=/dev/zero of=/var/log/retry/retry.log bs=1M count=40 status=none',
        );
        // The second look an hour later (the timer's period), by the audit's clock.
        clock += 3_600_000;
        const second = await measure();
        console.log(second.evidence.join('\n'));
        expect(second.verdict).toBe('fail');
        expect(second.evidence[0]).toMatch(
          /^nebula:\/var\/log\/retry \(baton-audit-test on \/var\/log\/retry\): 24\.0 MiB free of 64\.0 MiB \(37\.5 %\)/,
        );
        expect(second.evidence[1]).toMatch(
          /^growth rate: grew 40\.0 MiB in 1 h \(960\.0 MiB\/day\): full in 36 min/,
        );
        expect(second.evidence[2]).toMatch(
          /^biggest recently grown file: \/var\/log\/retry\/retry\.log, 40\.0 MiB/,
        );
        expect(second.summary).toBe(
          '24.0 MiB free (37.5 %), full in 36 min; growing: /var/log/retry/retry.log',
        );
        const history = readFileSync(paths.history, 'utf8').trim().split('\n');
        expect(history.filter((l) => l.includes('/var/log/retry'))).toHaveLength(2);
      } finally {
        await run('nebula', 'umount /var/log/retry && rmdir /var/log/retry');
      }
      // The testnet's disk-full fault: the backup filesystem is full now.
      await testnet.fault('disk-full', ['vault'], { path: '/srv/backup' });
      try {
        const c = check(await auditOnly(['disk:vault']), 'disk:vault:/srv/backup');
        console.log(c.evidence.join('\n'));
        expect(c.verdict).toBe('fail');
        expect(c.evidence[0]).toMatch(
          /^vault:\/srv\/backup \(baton-disk-full on \/srv\/backup\): 0 B free of .* \(0\.0 %\)/,
        );
        expect(c.evidence.join('\n')).toContain(
          'biggest recently grown file: /srv/backup/.baton-disk-full',
        );
      } finally {
        await testnet.heal('disk-full', ['vault']);
      }
    });

    it('fails the lease guard when the lease watchdog on emergency1 is stopped, naming the host', async () => {
      expect(check(await auditOnly(['lease-guard']), 'lease-guard:atheme').verdict).toBe('pass');
      await run('emergency1', 'systemctl stop baton-lease-watchdog');
      try {
        const c = check(await auditOnly(['lease-guard']), 'lease-guard:atheme');
        expect(c.verdict).toBe('fail');
        expect(c.summary).toBe('emergency1 is not guarded by the lease');
        expect(c.evidence).toContain(
          'emergency1: baton-lease-watchdog is inactive: nothing stops services when the lease is lost',
        );
      } finally {
        await run('emergency1', 'systemctl start baton-lease-watchdog');
      }
    });

    it('fails standby readiness when the copy a failover would start from is 3 days old (incident 003)', async () => {
      const healthy = check(await auditOnly(['standby-copy']), 'standby-copy:atheme');
      expect(healthy.verdict).toBe('pass');
      // A copy the standby's sync job put there three days ago, and a newer backup damaged since.
      const copied = await pool.stream(
        { host: findHost(inv, 'nebula'), command: 'cat /var/lib/atheme/services.db' },
        { host: findHost(inv, 'emergency1'), command: 'cat > /var/lib/atheme/services.db' },
      );
      expect(copied.to.exitCode).toBe(0);
      await run('emergency1', "touch -d '3 days ago' /var/lib/atheme/services.db");
      const newest = await newestBackup();
      await run('vault', sh`cp -p ${newest} /root/kept && echo 'MU garbage' >> ${newest}`.text);
      try {
        const c = check(await auditOnly(['standby-copy']), 'standby-copy:atheme');
        console.log(c.evidence.join('\n'));
        expect(c.verdict).toBe('fail');
        expect(c.summary).toBe('newest usable copy is 3 d old: a failover now loses up to 3 d');
        expect(c.evidence[0]).toMatch(
          /^newest usable copy: emergency1:\/var\/lib\/atheme\/services\.db, modified .*, 3 d old by emergency1's clock \(4 accounts, 2 channels\)$/,
        );
        expect(c.evidence).toContain(`refused: vault:${newest}: does not match its .sha256`);
        expect(c.evidence).toContain(
          'against the primary nebula:/var/lib/atheme/services.db: the live data holds the same accounts, nicks and channels',
        );
      } finally {
        await run('vault', sh`cp -p /root/kept ${newest} && rm -f /root/kept`.text);
        await run('emergency1', 'rm -f /var/lib/atheme/services.db');
      }
    });

    it('fails trust when paralysis loses its U-line, on the page in Chromium and through alerts; ack stops the repeats (incident 003)', async () => {
      const conf = '/etc/inspircd/inspircd.conf';
      await run('paralysis', `cp -p ${conf} /root/inspircd.conf.kept`);
      await run(
        'paralysis',
        `sed -i '/<uline server="services.irc.test"/d' ${conf} && systemctl reload inspircd`,
      );
      const alerts = join(home, 'alerts.txt');
      const page = join(home, 'failing.html');
      try {
        // The rehash is asynchronous: wait until paralysis itself refuses services.
        for (let i = 0; i < 40; i++) {
          const t = check(await auditOnly(['trust']), 'trust:atheme');
          if (t.evidence.some((l) => l.startsWith('paralysis: live: 408'))) break;
          await new Promise((r) => setTimeout(r, 250));
        }
        const r = await cli(
          'audit',
          '--stack',
          'local',
          '--html',
          page,
          '--alert-command',
          `cat >> ${alerts}`,
        );
        console.log(r.out);
        expect(r.code).toBe(1);
        expect(r.out).toContain('  FAIL  trust:atheme ');
        expect(r.out).toContain('paralysis does not trust services.irc.test');
        expect(r.out).toMatch(
          /- paralysis: no <uline server="services.irc.test"> in \/etc\/inspircd\/inspircd.conf, \/etc\/inspircd\/services-link.conf/,
        );
        expect(r.out).toContain(
          '- paralysis: live: 408 NickServ :No such service: paralysis has no U-line for services.irc.test',
        );
        expect(r.out).toContain('- nebula: live: NickServ answered SQUERY');
        expect(r.out).toContain('Alerts: 1 sent through the alert command');
        expect(readFileSync(alerts, 'utf8')).toContain(
          'FAIL trust:atheme: paralysis does not trust',
        );

        const dom = dumpDom(page);
        expect(dom).toMatch(/<html[^>]*data-verdict="fail"/);
        expect(dom).toMatch(
          /<section class="check fail" id="check-trust-atheme" data-verdict="fail" data-check="trust:atheme">/,
        );
        expect(dom).toContain('FAIL: 1 check FAILING');
        expect(dom).toMatch(/Measured <time data-age="" datetime="[^"]+">\d+ s ago<\/time>/);
        const png = await screenshot(page);
        expect(countColor(png, FAIL_RED)).toBeGreaterThan(5_000);

        const ack = await cli(
          'audit',
          'ack',
          'trust:atheme',
          '--by',
          'alice',
          '--note',
          'restoring',
        );
        expect(ack.code).toBe(0);
        expect(ack.out).toMatch(/^acknowledged trust:atheme \(failing since .*\) as alice/);
        const again = await cli(
          'audit',
          '--stack',
          'local',
          '--only',
          'trust',
          '--alert-command',
          `cat >> ${alerts}`,
        );
        expect(again.code).toBe(1);
        expect(again.out).toContain('Alerts: trust:atheme not repeated now: acknowledged by alice');
      } finally {
        await run(
          'paralysis',
          `cp -p /root/inspircd.conf.kept ${conf} && rm -f /root/inspircd.conf.kept && systemctl reload inspircd`,
        );
      }
      let trust: CheckResult | undefined;
      for (let i = 0; i < 20; i++) {
        trust = check(await auditOnly(['trust']), 'trust:atheme');
        if (trust.verdict === 'pass') break;
        await new Promise((r) => setTimeout(r, 500));
      }
      expect(trust!.verdict).toBe('pass');
      const resolved = await cli(
        'audit',
        '--stack',
        'local',
        '--only',
        'trust',
        '--alert-command',
        `cat >> ${alerts}`,
      );
      expect(resolved.code).toBe(0);
      expect(readFileSync(alerts, 'utf8')).toContain('RESOLVED trust:atheme');
      outputs.push(readFileSync(alerts, 'utf8'), readFileSync(page, 'utf8'));
    });

    it('fails, with the reason, a check whose host is unreachable', async () => {
      await testnet.fault('link-down', ['vault']);
      try {
        const started = performance.now();
        const c = check(await auditOnly(['backup-freshness']), 'backup-freshness:atheme');
        console.log(
          `unreachable vault: ${Math.round(performance.now() - started)} ms: ${c.evidence[0]}`,
        );
        expect(c.verdict).toBe('fail');
        expect(c.summary).toBe('could not reach vault: the check could not look');
        expect(c.evidence[0]).toMatch(/^unreachable: /);
      } finally {
        await testnet.heal('link-down', ['vault']);
        await pool.drop(findHost(inv, 'vault'));
      }
    });

    it('keeps every secret out of its output, JSON, page, history, state and alerts', () => {
      const secrets = readIrcSecrets();
      const values = [
        readFileSync(testnetLuksPassphraseFile(), 'utf8').trim(),
        'changed-during-maintenance-2010',
        secrets.tsigKey,
        secrets.tsigSecret,
        secrets.serverLinkPassword,
        secrets.servicesLinkPassword,
        ...Object.values(secrets.passwords),
      ];
      const dir = auditPaths().dir;
      const files = readdirSync(dir).map((f) => readFileSync(join(dir, f), 'utf8'));
      const pages = readdirSync(home)
        .filter((f) => f.endsWith('.html') || f.endsWith('.txt'))
        .map((f) => readFileSync(join(home, f), 'utf8'));
      const everything = [...outputs, ...files, ...pages];
      expect(files.length).toBeGreaterThanOrEqual(3);
      expect(everything.join('\n').length).toBeGreaterThan(10_000);
      for (const value of values) {
        expect(value.length).toBeGreaterThan(8);
        for (const text of everything) expect(text.includes(value)).toBe(false);
      }
    });

    function chromium(args: string[]): string {
      const profile = mkdtempSync(join(tmpdir(), 'baton-chromium-'));
      try {
        return execFileSync(
          'chromium',
          [...CHROMIUM_FLAGS, `--user-data-dir=${profile}`, ...args],
          { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 },
        );
      } finally {
        rmSync(profile, { recursive: true, force: true });
      }
    }

    function dumpDom(page: string): string {
      return chromium(['--dump-dom', `file://${page}`]);
    }

    async function screenshot(page: string): Promise<ReturnType<typeof readPng>> {
      const png = `${page}.png`;
      chromium([`--screenshot=${png}`, '--window-size=1100,1400', `file://${page}`]);
      return readPng(readFileSync(png));
    }
  },
);
