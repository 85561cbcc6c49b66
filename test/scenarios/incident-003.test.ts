/**
 * Incident 003 on the testnet. Each of its failures is injected and the
 * handover must stop in preflight, naming the cause and the host, with the
 * primary untouched; then the happy paths: handover and failback keep every
 * account and channel, and a failover after nebula is cut off brings services
 * up on emergency1 while nebula, when it returns, does not start a second
 * instance.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkAthemeDb } from '../../lib/integrations/atheme/db.ts';
import type { RunResult } from '../../lib/engine/engine.ts';
import { findHost, type Inventory } from '../../lib/core/inventory.ts';
import { planRunbook, startRun } from '../../lib/app/runs.ts';
import { loadRunbook } from '../../lib/app/registry.ts';
import type { SshPool } from '../../lib/transports/ssh.ts';
import * as testnet from '../../lib/testnet/index.ts';
import { ircSecretPaths, SERVICES_SERVER } from '../../lib/testnet/irc.ts';
import { rehearsalParams } from '../../lib/testnet/rehearsal.ts';
import { assertPrerequisite, skipUnless } from '../support/require.ts';

const missing = process.getuid?.() !== 0 ? 'needs root (the testnet)' : undefined;
const home = mkdtempSync(join(tmpdir(), 'baton-incident-003-'));
const DB = '/var/lib/atheme/services.db';

describe.skipIf(skipUnless(missing, 'incident 003 on the testnet'))(
  'incident 003, rehearsed',
  () => {
    let pool: SshPool;
    let inv: Inventory;

    const on = async (host: string, command: string, input?: string): Promise<string> => {
      const r = await pool.exec(findHost(inv, host), command, {
        timeoutMs: 60_000,
        ...(input ? { input } : {}),
      });
      if (r.exitCode !== 0)
        throw new Error(`on ${host}: ${command}: exit ${r.exitCode}: ${r.stderr}`);
      return r.stdout;
    };
    const active = async (host: string): Promise<string> =>
      (
        await pool.exec(findHost(inv, host), 'systemctl is-active atheme', { timeoutMs: 20_000 })
      ).stdout.trim();
    const dbOn = async (host: string) => {
      const check = checkAthemeDb(await on(host, `cat ${DB}`));
      if (!check.ok) throw new Error(`${host}: ${check.fault.message}`);
      return check;
    };
    const sha = async (host: string): Promise<string> =>
      (await on(host, `sha256sum ${DB}`)).slice(0, 64);
    const run = async (runbook: string, extra: string[] = []): Promise<RunResult> => {
      const { runbook: rb } = await loadRunbook(runbook);
      return startRun({
        runbook,
        stack: 'local',
        params: [...rehearsalParams(rb, extra), ...extra],
        cwd: home,
      });
    };
    const tsig = (): string => execFileSync('cat', [ircSecretPaths().tsigKey]).toString().trim();
    const dnsUpdate = async (lines: string): Promise<void> => {
      const [alg, name, secret] = tsig().split(':');
      await on(
        'ns1',
        'knsupdate',
        `server 192.0.2.53 53\nzone irc.test.\nkey ${alg}:${name} ${secret}\n${lines}\nsend\n`,
      );
    };
    const dig = async (name: string, type: string): Promise<string> =>
      (await on('ns1', `dig +norec +noall +answer @192.0.2.53 ${name} ${type}`)).trim();

    /** The primary as the scenario found it: services running there, the db byte for byte. */
    async function expectPrimaryUntouched(shaBefore: string): Promise<void> {
      expect(await active('nebula')).toBe('active');
      expect(await active('emergency1')).not.toBe('active');
      expect(await sha('nebula')).toBe(shaBefore);
    }

    async function expectPreflightStop(result: RunResult, ...named: string[]): Promise<void> {
      expect(result.outcome).toBe('precondition-failed');
      expect(result.state).toBe(
        'unchanged: services run on the primary, writable, and DNS names it',
      );
      for (const n of named) expect(result.error).toContain(n);
    }

    beforeAll(async () => {
      assertPrerequisite(missing);
      process.env.BATON_HOME = home;
      const started = performance.now();
      inv = (await testnet.up({ topology: 'irc' })).inventory;
      console.log(`testnet up with the irc network: ${Math.round(performance.now() - started)} ms`);
      pool = testnet.testnetPool({ readyTimeoutMs: 20_000 });
    }, 900_000);

    afterAll(async () => {
      await pool?.close();
      if (existsSync(join(home, 'testnet'))) await testnet.down();
      delete process.env.BATON_HOME;
      rmSync(home, { recursive: true, force: true });
    });

    describe('failures stop in preflight, with the primary untouched', () => {
      it('a dynamically linked services binary whose library exists only on nebula', async () => {
        const build = mkdtempSync(join(tmpdir(), 'baton-dyn-'));
        writeFileSync(join(build, 'svc.c'), 'int svc_ok(void) { return 0; }\n');
        writeFileSync(
          join(build, 'main.c'),
          'extern int svc_ok(void);\nint main(void) { return svc_ok(); }\n',
        );
        execFileSync('gcc', [
          '-shared',
          '-fPIC',
          '-Wl,-soname,libbatonsvc.so.1',
          '-o',
          join(build, 'libbatonsvc.so.1'),
          join(build, 'svc.c'),
        ]);
        execFileSync('ln', ['-s', 'libbatonsvc.so.1', join(build, 'libbatonsvc.so')]);
        execFileSync('gcc', [
          '-o',
          join(build, 'atheme-services'),
          join(build, 'main.c'),
          `-L${build}`,
          '-lbatonsvc',
          '-Wl,-rpath,/srv/atheme/lib',
        ]);
        for (const h of ['nebula', 'emergency1']) {
          await on(h, 'mkdir -p /srv/atheme/bin /srv/atheme/lib');
          await pool.put(
            findHost(inv, h),
            join(build, 'atheme-services'),
            '/srv/atheme/bin/atheme-services',
            { mode: 0o755 },
          );
        }
        await pool.put(
          findHost(inv, 'nebula'),
          join(build, 'libbatonsvc.so.1'),
          '/srv/atheme/lib/libbatonsvc.so.1',
          { mode: 0o644 },
        );
        // The binary runs where it was built for...
        expect(
          (await pool.exec(findHost(inv, 'nebula'), '/srv/atheme/bin/atheme-services')).exitCode,
        ).toBe(0);
        const before = await sha('nebula');
        const result = await run('handover', ['binary=/srv/atheme/bin/atheme-services']);
        await expectPreflightStop(result, 'libbatonsvc.so.1', 'emergency1');
        await expectPrimaryUntouched(before);
        // ...and really would not start on the standby.
        const there = await pool.exec(
          findHost(inv, 'emergency1'),
          '/srv/atheme/bin/atheme-services',
        );
        expect(there.exitCode).toBe(127);
        expect(there.stderr).toContain('libbatonsvc.so.1');
        rmSync(build, { recursive: true, force: true });
      });

      it('a corrupt record in services.db', async () => {
        const original = await on('nebula', `cat ${DB}`);
        await on('nebula', `cp -p ${DB} /root/services.db.good`);
        const lines = original.split('\n');
        const mu = lines.findIndex((l) => l.startsWith('MU ') && l.split(' ')[2] === 'bob');
        const fields = lines[mu]!.split(' ');
        fields[5] = 'BROKEN';
        lines[mu] = fields.join(' ');
        await on('nebula', `cat > ${DB}`, lines.join('\n'));
        const before = await sha('nebula');
        const result = await run('handover');
        await expectPreflightStop(
          result,
          `needed int at file ${DB} line ${mu + 1} token`,
          'nebula',
        );
        await expectPrimaryUntouched(before);
        await on('nebula', `cp -p /root/services.db.good ${DB}`);
      });

      it('a peer ircd without the U-line', async () => {
        await on('paralysis', 'cp -p /etc/inspircd/inspircd.conf /root/inspircd.conf.good');
        await on(
          'paralysis',
          `sed -i '/<uline server="${SERVICES_SERVER}"/d' /etc/inspircd/inspircd.conf && systemctl reload inspircd`,
        );
        const before = await sha('nebula');
        const result = await run('handover');
        await expectPreflightStop(result, `paralysis U-lines ${SERVICES_SERVER}`);
        expect(result.error).not.toContain(`nebula U-lines ${SERVICES_SERVER}: expected`);
        await expectPrimaryUntouched(before);
        await on(
          'paralysis',
          'cp -p /root/inspircd.conf.good /etc/inspircd/inspircd.conf && systemctl reload inspircd',
        );
      });

      it('a DNS TTL of a day', async () => {
        await dnsUpdate(
          'update delete services.irc.test. A\nupdate add services.irc.test. 86400 A 192.0.2.12',
        );
        expect(await dig('services.irc.test', 'A')).toMatch(/86400\s+IN\s+A\s+192\.0\.2\.12/);
        const before = await sha('nebula');
        const result = await run('handover');
        await expectPreflightStop(result, 'TTL of services.irc.test', 'found 86400 s');
        await expectPrimaryUntouched(before);
        await dnsUpdate(
          'update delete services.irc.test. A\nupdate add services.irc.test. 300 A 192.0.2.12',
        );
      });

      it('a standby disk too small', async () => {
        await testnet.fault('disk-full', ['emergency1'], { path: '/var/lib/atheme' });
        try {
          const before = await sha('nebula');
          const result = await run('handover');
          await expectPreflightStop(result, 'free space on emergency1');
          await expectPrimaryUntouched(before);
        } finally {
          await testnet.heal('disk-full', ['emergency1']);
        }
      });
    });

    describe('the happy paths', () => {
      let fingerprint: string;

      it('a dry run of the handover lists every change and makes none', async () => {
        const before = await sha('nebula');
        const { runbook } = await loadRunbook('handover');
        const { plan } = await planRunbook({
          runbook: 'handover',
          stack: 'local',
          params: rehearsalParams(runbook, []),
          cwd: home,
        });
        const ids = plan.steps.filter((s) => !s.skipped).map((s) => s.id);
        expect(ids).toEqual(
          expect.arrayContaining([
            'freeze',
            'snapshot',
            'stop-primary',
            'transfer',
            'lease',
            'fence',
            'start-standby',
            'prove',
            'cut-dns',
          ]),
        );
        expect(plan.preflight.filter((c) => !c.ok)).toEqual([]);
        await expectPrimaryUntouched(before);
      });

      it('handover keeps every account and channel, fences nebula and cuts DNS', async () => {
        fingerprint = (await dbOn('nebula')).fingerprint.sha256;
        const result = await run('handover');
        expect(result.error).toBeUndefined();
        expect(result.outcome).toBe('done');
        expect(await active('emergency1')).toBe('active');
        expect(await active('nebula')).not.toBe('active');
        expect((await on('nebula', 'systemctl is-enabled atheme || true')).trim()).toBe('disabled');
        expect((await dbOn('emergency1')).fingerprint.sha256).toBe(fingerprint);
        expect(await dig('services.irc.test', 'A')).toContain('192.0.2.13');
        expect(await dig('_lease.services.irc.test', 'TXT')).toContain('"holder=emergency1 gen=');
      }, 300_000);

      it('failback carries back what changed on the standby', async () => {
        const before = await dbOn('emergency1');
        const result = await run('failback');
        expect(result.error).toBeUndefined();
        expect(result.outcome).toBe('done');
        expect(await active('nebula')).toBe('active');
        expect(await active('emergency1')).not.toBe('active');
        expect((await dbOn('nebula')).fingerprint.sha256).toBe(before.fingerprint.sha256);
        expect(before.fingerprint.sha256).toBe(fingerprint);
        expect(await dig('services.irc.test', 'A')).toContain('192.0.2.12');
      }, 300_000);

      it('failover after nebula is cut off; nebula returns and does not start services', async () => {
        await testnet.fault('host-down', ['nebula']);
        try {
          const result = await run('failover');
          expect(result.error).toBeUndefined();
          expect(result.outcome).toBe('done');
          expect(await active('emergency1')).toBe('active');
          expect((await dbOn('emergency1')).fingerprint.sha256).toBe(fingerprint);
          expect(await dig('services.irc.test', 'A')).toContain('192.0.2.13');
        } finally {
          await testnet.heal('host-down', ['nebula']);
        }
        // nebula is back and boots its enabled units; its lease check must refuse atheme.
        const until = Date.now() + 30_000;
        while (Date.now() < until && (await active('nebula')) === 'activating')
          await new Promise((r) => setTimeout(r, 500));
        expect(await active('nebula')).not.toBe('active');
        expect(await on('nebula', 'systemctl status atheme || true')).toMatch(/lease/i);
        expect(await active('emergency1')).toBe('active');
      }, 300_000);

      it('leaves no secret in any journal', async () => {
        const { readdirSync, readFileSync } = await import('node:fs');
        const paths = ircSecretPaths();
        const secrets = Object.entries(paths)
          .filter(([key, path]) => key !== 'dir' && existsSync(path))
          .map(([, path]) => readFileSync(path, 'utf8').trim());
        expect(secrets.length).toBeGreaterThanOrEqual(5);
        const runs = join(home, 'runs');
        const text = readdirSync(runs)
          .map((r) => readFileSync(join(runs, r, 'journal.jsonl'), 'utf8'))
          .join('\n');
        expect(text.length).toBeGreaterThan(10_000);
        for (const s of secrets) expect(text.includes(s)).toBe(false);
      });
    });
  },
);
