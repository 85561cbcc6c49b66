/**
 * One primary and every byte, tried the way a second controller, a killed
 * process, a dropped connection and a changed host key would try it, on the
 * irc testnet, and checked from outside baton: systemctl on the hosts, the
 * services.db on disk, a raw IRC session, dig.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkAthemeDb } from '../../lib/integrations/atheme/db.ts';
import type { RunResult } from '../../lib/engine/engine.ts';
import type { RunEvent } from '../../lib/core/events.ts';
import { TransientError } from '../../lib/core/errors.ts';
import { findHost, type Inventory } from '../../lib/core/inventory.ts';
import { readJournal } from '../../lib/engine/journal.ts';
import { planRunbook, startRun } from '../../lib/app/runs.ts';
import { loadRunbook } from '../../lib/app/registry.ts';
import { buildReport } from '../../lib/app/report.ts';
import { runDir } from '../../lib/app/run-store.ts';
import type { SshPool } from '../../lib/transports/ssh.ts';
import * as testnet from '../../lib/testnet/index.ts';
import { readIrcSecrets, OPERATOR_ACCOUNT } from '../../lib/testnet/irc.ts';
import { askService, connectIrc } from '../../lib/testnet/irc-seed.ts';
import { rehearsalParams } from '../../lib/testnet/rehearsal.ts';
import { readState, testnetPaths } from '../../lib/testnet/state.ts';
import { ROOT } from '../helpers.ts';
import { allOf, dropConnections, failAt, idempotentSteps } from '../support/idempotence.ts';
import { assertPrerequisite, skipUnless } from '../support/require.ts';

const missing = process.getuid?.() !== 0 ? 'needs root (the testnet)' : undefined;
const home = mkdtempSync(join(tmpdir(), 'baton-one-primary-'));
const BATON = join(ROOT, 'bin', 'baton.js');
const DB = '/var/lib/atheme/services.db';
const LINK = '/etc/inspircd/services-link.conf';
/** BATON_FULL_MATRIX kills at every step past the point of no return; CI at the first and the last (the matrix sample kills at others). */
const KILL_AT = process.env.BATON_FULL_MATRIX
  ? [
      'writable',
      'prove',
      'irc-health-build',
      'irc-health-ship',
      'irc-health-prove',
      'cut-dns',
      'unfreeze',
    ]
  : ['writable', 'unfreeze'];

/** The journal of a run that is still writing it: a read between a record and its head is retried. */
function readWhileWritten(dir: string): RunEvent[] {
  try {
    return readJournal(dir).records.map((r) => r.event);
  } catch {
    return [];
  }
}

describe.skipIf(skipUnless(missing, 'one primary on the testnet'))(
  'one primary and every byte',
  () => {
    let pool: SshPool;
    let inv: Inventory;
    let params: string[];
    let originalLink: string;

    const on = async (host: string, command: string): Promise<string> => {
      const r = await pool.exec(findHost(inv, host), command, { timeoutMs: 60_000 });
      if (r.exitCode !== 0)
        throw new Error(`on ${host}: ${command}: exit ${r.exitCode}: ${r.stderr}`);
      return r.stdout;
    };
    const active = async (host: string): Promise<string> =>
      (
        await pool.exec(findHost(inv, host), 'systemctl is-active atheme', { timeoutMs: 20_000 })
      ).stdout.trim();
    const dig = async (name: string, type: string): Promise<string> =>
      (await on('ns1', `dig +norec +short @192.0.2.53 ${name} ${type}`)).trim();
    const accounts = async (host: string): Promise<string[]> => {
      const check = checkAthemeDb(await on(host, `cat ${DB}`));
      if (!check.ok) throw new Error(`${host}: ${check.fault.message}`);
      return (await on(host, `cat ${DB}`))
        .split('\n')
        .filter((l) => l.startsWith('MU '))
        .map((l) => l.split(' ')[2]!);
    };
    /** The run's CLI in its own process, as an operator starts it. */
    const cli = (args: string[], env: Record<string, string> = {}): ReturnType<typeof spawn> =>
      spawn(process.execPath, [BATON, ...args], {
        cwd: env.BATON_HOME ?? home,
        env: { ...process.env, BATON_HOME: home, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    const exited = (
      child: ReturnType<typeof spawn>,
    ): Promise<{ code: number | null; out: string }> =>
      new Promise((resolve) => {
        let out = '';
        child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
        child.once('exit', (code) => resolve({ code, out }));
      });
    const run = async (runbook: string, deps = {}): Promise<RunResult> => {
      const { runbook: rb } = await loadRunbook(runbook);
      return startRun({
        runbook,
        stack: 'local',
        params: rehearsalParams(rb, []),
        cwd: home,
        deps,
      });
    };
    const runsNow = (): string[] =>
      existsSync(join(home, 'runs')) ? readdirSync(join(home, 'runs')).sort() : [];
    /** Ask services, through paralysis (not the services host's own ircd), with a raw client. */
    const services = async (
      service: string,
      lines: Array<[string, RegExp]>,
      identify = false,
    ): Promise<string[]> => {
      const secrets = readIrcSecrets();
      const client = await connectIrc(pool, findHost(inv, 'paralysis'));
      try {
        const said: string[] = [];
        if (identify) {
          const pw = secrets.passwords[OPERATOR_ACCOUNT]!;
          await askService(
            client,
            'NickServ',
            `IDENTIFY ${OPERATOR_ACCOUNT} ${pw}`,
            /identified/i,
            {
              secrets: [pw],
            },
          );
        }
        for (const [text, expect] of lines)
          said.push(await askService(client, service, text, expect, { refuse: /^\b$/ }));
        return said;
      } finally {
        client.quit();
      }
    };
    const expectServicesOn = async (host: 'nebula' | 'emergency1'): Promise<void> => {
      const other = host === 'nebula' ? 'emergency1' : 'nebula';
      expect(await active(host)).toBe('active');
      expect(await active(other)).not.toBe('active');
      const address = host === 'nebula' ? '192.0.2.12' : '192.0.2.13';
      expect(await dig('services.irc.test', 'A')).toBe(address);
      expect(await dig('_lease.services.irc.test', 'TXT')).toMatch(
        new RegExp(`^"holder=${host} gen=\\d+ expires=\\S+Z"$`),
      );
    };

    beforeAll(async () => {
      assertPrerequisite(missing);
      process.env.BATON_HOME = home;
      inv = (await testnet.up({ topology: 'irc' })).inventory;
      pool = testnet.testnetPool({ readyTimeoutMs: 20_000 });
      originalLink = await on('emergency1', `cat ${LINK}`);
      params = rehearsalParams((await loadRunbook('handover')).runbook, []).flatMap((p) => [
        '--param',
        p,
      ]);
    }, 900_000);

    afterAll(async () => {
      await pool?.close();
      if (existsSync(join(home, 'testnet'))) await testnet.down();
      delete process.env.BATON_HOME;
      rmSync(home, { recursive: true, force: true });
    });

    it('a link step whose connection drops after it wrote keeps the first backup, and the handover goes on', async () => {
      const original = (await on('emergency1', `sha256sum ${LINK}`)).slice(0, 64);
      let dropped = false;
      const result = await run('handover', {
        afterMutation: (at: { step: string; index: number; host: string }) => {
          if (at.step === 'link' && at.index === 2 && !dropped) {
            dropped = true;
            throw new TransientError(at.host, 'connection dropped (injected)', true);
          }
        },
      });
      expect(dropped).toBe(true);
      expect(result.error).toBeUndefined();
      expect(result.outcome).toBe('done');
      expect((await on('emergency1', `sha256sum ${LINK}.before`)).slice(0, 64)).toBe(original);
      expect(await on('emergency1', `cat ${LINK}`)).toContain('<link name="services.irc.test"');
      await expectServicesOn('emergency1');
      const back = await run('failback');
      expect(back.outcome).toBe('done');
      await expectServicesOn('nebula');
    }, 300_000);

    it('a second controller on the same stack is refused, naming the first, and one instance runs', async () => {
      const second = mkdtempSync(join(tmpdir(), 'baton-second-controller-'));
      try {
        const earlier = runsNow();
        const first = cli(['run', 'handover', '--stack', 'local', '--yes', ...params]);
        const firstDone = exited(first);
        const until = Date.now() + 60_000;
        let firstRun: string | undefined;
        while (!(firstRun = runsNow().find((r) => !earlier.includes(r))) && Date.now() < until)
          await new Promise((r) => setTimeout(r, 100));
        await new Promise((r) => setTimeout(r, 1_000));
        const other = await exited(
          cli(['run', 'handover', '--stack', 'local', '--yes', ...params], {
            BATON_HOME: second,
            BATON_TESTNET: join(home, 'testnet'),
          }),
        );
        expect(other.code).toBe(3);
        expect(other.out).toContain(`stack local is locked by run ${firstRun}`);
        expect(existsSync(join(second, 'runs'))).toBe(false);
        const done = await firstDone;
        expect(done.out).toContain(': done');
        expect(done.code).toBe(0);
        await expectServicesOn('emergency1');
        expect((await run('failback')).outcome).toBe('done');
        await expectServicesOn('nebula');
      } finally {
        rmSync(second, { recursive: true, force: true });
      }
    }, 300_000);

    for (const step of KILL_AT) {
      it(`a controller killed at ${step}, past the point of no return, resumes forward and keeps an account registered meanwhile`, async () => {
        const before = runsNow();
        const child = cli(['run', 'handover', '--stack', 'local', '--yes', ...params]);
        const gone = exited(child);
        const until = Date.now() + 120_000;
        let runId: string | undefined;
        for (;;) {
          runId = runsNow().find((r) => !before.includes(r));
          const events = runId ? readWhileWritten(join(home, 'runs', runId)) : [];
          if (events.some((e) => e.kind === 'intent' && e.step === step)) break;
          if (events.some((e) => e.kind === 'run-end')) {
            child.kill('SIGKILL');
            throw new Error(`the run ended before ${step}`);
          }
          if (Date.now() > until) {
            child.kill('SIGKILL');
            throw new Error(`the run never reached ${step}`);
          }
          await new Promise((r) => setTimeout(r, 25));
        }
        child.kill('SIGKILL');
        await gone;
        // Past the link, services on emergency1 answer users: one registers.
        const nick = `late${step.replace(/[^a-z]/g, '').slice(0, 8)}`;
        const client = await connectIrc(pool, findHost(inv, 'paralysis'), nick);
        try {
          await askService(
            client,
            'NickServ',
            `REGISTER ${nick}pw1 ${nick}@example.org`,
            /registered/i,
          );
        } finally {
          client.quit();
        }

        const resumed = spawnSync(process.execPath, [BATON, 'resume', runId!, '--json'], {
          cwd: home,
          env: { ...process.env, BATON_HOME: home },
          encoding: 'utf8',
        });
        expect(resumed.stdout + resumed.stderr).toContain('"outcome": "done"');
        expect(resumed.status).toBe(0);
        await expectServicesOn('emergency1');
        const events = readJournal(join(home, 'runs', runId!)).records.map((r) => r.event);
        expect(events.filter((e) => e.kind === 'undo-intent')).toEqual([]);
        // Writable now: a forced save must hold the account registered in between.
        await services('OperServ', [['UPDATE', /UPDATE completed/i]], true);
        expect(await accounts('emergency1')).toContain(nick);

        const back = await run('failback');
        expect(back.outcome).toBe('done');
        await expectServicesOn('nebula');
        expect(await accounts('nebula')).toContain(nick);
      }, 400_000);
    }

    /** What a rollback must give back, read on the hosts themselves. */
    const outside = async (): Promise<Record<string, string>> => {
      const fp = (text: string): string => {
        const check = checkAthemeDb(text);
        return check.ok ? check.fingerprint.sha256 : `does not load: ${check.fault.message}`;
      };
      return {
        nebulaDb: fp(await on('nebula', `cat ${DB}`)),
        nebulaUnit: `${await active('nebula')} ${(await on('nebula', 'systemctl is-enabled atheme || true')).trim()}`,
        emergency1Db: (await on('emergency1', `sha256sum ${DB} 2>/dev/null || echo none`)).slice(
          0,
          64,
        ),
        emergency1Unit: `${await active('emergency1')} ${(await on('emergency1', 'systemctl is-enabled atheme || true')).trim()}`,
        emergency1Link: (await on('emergency1', `sha256sum ${LINK}`)).slice(0, 64),
        leftovers:
          (
            await on(
              'nebula',
              `ls ${DB}.handover* 2>/dev/null; ls /etc/atheme/start.env 2>/dev/null; true`,
            )
          ).trim() +
          (
            await on('emergency1', `ls ${DB}.incoming* /etc/atheme/start.env 2>/dev/null; true`)
          ).trim(),
        a: await dig('services.irc.test', 'A'),
        // The lease's generation only grows and its holder renews it: what must come back is the holder.
        lease:
          /holder=([a-z0-9-]+)/.exec(await dig('_lease.services.irc.test', 'TXT'))?.[1] ?? 'none',
      };
    };

    /** emergency1's ircd as the testnet made it, without the services link: the link is then the point of no return. */
    const withoutServicesLink = async (): Promise<void> => {
      const r = await pool.exec(
        findHost(inv, 'emergency1'),
        `cat > ${LINK} && rm -f ${LINK}.before && systemctl reload inspircd`,
        {
          input: originalLink,
          timeoutMs: 30_000,
        },
      );
      expect(r.exitCode, r.stderr).toBe(0);
    };

    for (const when of ['first', 'last'] as const) {
      it(`every idempotent step before the point of no return holds when its connection drops after its ${when} mutation, and a rollback through them gives nebula back`, async () => {
        await withoutServicesLink();
        const before = await outside();
        const { runbook: rb } = await loadRunbook('handover');
        const { plan } = await planRunbook({
          runbook: 'handover',
          stack: 'local',
          params: rehearsalParams(rb, []),
          cwd: home,
        });
        const commitAt = plan.steps.findIndex((p) => p.commit && !p.skipped);
        const steps = idempotentSteps(rb, plan).filter(
          (id) => plan.steps.findIndex((p) => p.id === id) < commitAt,
        );
        expect(steps).toEqual(
          expect.arrayContaining(['freeze', 'save', 'snapshot', 'transfer', 'lease', 'fence']),
        );
        const drops = dropConnections(plan, steps, when);
        const result = await run('handover', {
          afterMutation: allOf(drops.afterMutation, failAt('start-standby')),
          backoffMs: 10,
        });
        expect(result.outcome, `${result.error} / ${result.next}`).toBe('rolled-back');
        expect(drops.dropped).toEqual(
          steps.map((id) => `${id} on ${plan.steps.find((p) => p.id === id)!.hosts[0]!.host}`),
        );
        const after = await outside();
        // Scratch files of earlier runs may be gone (this run wrote over them); none is new.
        expect({ ...after, leftovers: '' }).toEqual({ ...before, leftovers: '' });
        for (const f of after.leftovers!.split(/\s+/).filter(Boolean))
          expect(before.leftovers).toContain(f);
        // And writable again: this run's freeze was lifted.
        const [said] = await services('OperServ', [['READONLY ON', /read-?only/i]], true);
        expect(said).toMatch(/now running in read-?only mode/i);
        await services('OperServ', [['READONLY OFF', /read-?only/i]], true);
      }, 300_000);
    }

    it('every idempotent step of a handover and its failback holds when applied twice, and both complete', async () => {
      const fingerprint = checkAthemeDb(await on('nebula', `cat ${DB}`));
      const { runbook: rb } = await loadRunbook('handover');
      const { plan } = await planRunbook({
        runbook: 'handover',
        stack: 'local',
        params: rehearsalParams(rb, []),
        cwd: home,
      });
      const drops = dropConnections(plan, idempotentSteps(rb, plan), 'last');
      const result = await run('handover', { afterMutation: drops.afterMutation, backoffMs: 10 });
      expect(result.outcome, result.error).toBe('done');
      // Users' writes were refused from the freeze until the new primary was writable, no longer.
      const frozen = buildReport(readJournal(runDir(result.runId, home))).frozen!;
      expect(frozen).toMatchObject({ endedBy: 'step' });
      expect(frozen.steps[0]!.step).toBe('freeze');
      expect(frozen.steps.at(-1)!.step).toBe('writable');
      expect(frozen.steps.map((s) => s.step)).not.toContain('prove');
      expect(drops.dropped).toEqual(
        expect.arrayContaining(['cut-dns on controller', 'unfreeze on emergency1']),
      );
      await expectServicesOn('emergency1');
      const moved = checkAthemeDb(await on('emergency1', `cat ${DB}`));
      expect(moved.ok && fingerprint.ok && moved.fingerprint.sha256).toBe(
        fingerprint.ok && fingerprint.fingerprint.sha256,
      );
      const { runbook: fb } = await loadRunbook('failback');
      const { plan: back } = await planRunbook({
        runbook: 'failback',
        stack: 'local',
        params: rehearsalParams(fb, []),
        cwd: home,
      });
      const again = dropConnections(back, idempotentSteps(fb, back), 'first');
      const returned = await run('failback', { afterMutation: again.afterMutation, backoffMs: 10 });
      expect(returned.outcome, returned.error).toBe('done');
      expect(again.dropped.length).toBeGreaterThan(5);
      await expectServicesOn('nebula');
    }, 400_000);

    it('a failover refuses an empty and a half-empty copy, naming what they lack, and starts from the complete one', async () => {
      const dir = '/srv/backup/atheme';
      const newest = (
        await on('vault', `ls -t ${dir}/services.db.* | grep -v sha256 | head -n 1`)
      ).trim();
      const empty = `${dir}/services.db.29990101T000002Z`;
      const half = `${dir}/services.db.29990101T000001Z`;
      // A backup cut at a record boundary: the first half of it, its sha256 made of what is left.
      await on(
        'vault',
        `: > ${empty} && sha256sum ${empty} > ${empty}.sha256 && head -n $(( $(wc -l < ${newest}) / 2 )) ${newest} > ${half} && sha256sum ${half} > ${half}.sha256 && touch ${half} && sleep 1 && touch ${empty}`,
      );
      await testnet.fault('host-down', ['nebula']);
      try {
        const { runbook: rb } = await loadRunbook('failover');
        const { plan } = await planRunbook({
          runbook: 'failover',
          stack: 'local',
          params: rehearsalParams(rb, []),
          cwd: home,
        });
        const facts = plan.facts as { copy?: { path: string }; rejectedCopies?: string[] };
        // The complete copy chosen: the newest backup, or the standby's own, never the cut ones.
        expect([newest, DB]).toContain(facts.copy?.path);
        expect(facts.rejectedCopies).toEqual(
          expect.arrayContaining([
            `vault:${empty}: empty (0 bytes): nothing to start from`,
            expect.stringContaining(`vault:${half}: `),
          ]),
        );
      } finally {
        await testnet.heal('host-down', ['nebula']);
        await on('vault', `rm -f ${empty} ${empty}.sha256 ${half} ${half}.sha256`);
      }
      for (
        const until = Date.now() + 45_000;
        Date.now() < until && (await active('nebula')) !== 'active';
      )
        await new Promise((r) => setTimeout(r, 1_000));
      await expectServicesOn('nebula');
    }, 180_000);

    it('a freeze someone else set stops the handover, and its undo leaves that freeze in place', async () => {
      // Services that just came back take a few seconds to link: wait until they answer.
      for (let i = 0; ; i++) {
        try {
          await services('OperServ', [['READONLY OFF', /read-?only/i]], true);
          break;
        } catch (e) {
          if (i >= 4) throw e;
        }
      }
      await services('OperServ', [['READONLY ON', /read-?only/i]], true);
      try {
        const result = await run('handover');
        expect(result.outcome).toBe('rolled-back');
        expect(result.error).toContain('were already read-only before this run froze them');
        await expectServicesOn('nebula');
        const [said] = await services('OperServ', [['READONLY ON', /read-?only/i]], true);
        expect(said).toMatch(/already enabled/i);
      } finally {
        await services('OperServ', [['READONLY OFF', /read-?only/i]], true);
      }
    }, 300_000);

    it('a failover stops when the primary answers with another host key, instead of calling it down', async () => {
      // nebula "was rebuilt": a new host key, while the inventory pins the old one.
      const key = '/etc/ssh/ssh_host_ed25519_key';
      const sshd = readState(testnetPaths())!.hosts['nebula']!.sshdPid!;
      await on('nebula', `cp -p ${key} ${key}.orig && cp -p ${key}.pub ${key}.pub.orig`);
      await on('nebula', `rm -f ${key} ${key}.pub && ssh-keygen -q -t ed25519 -N '' -f ${key}`);
      process.kill(sshd, 'SIGHUP');
      try {
        await new Promise((r) => setTimeout(r, 1_000));
        const { runbook: rb } = await loadRunbook('failover');
        const result = await startRun({
          runbook: 'failover',
          stack: 'local',
          params: rehearsalParams(rb, []),
          cwd: home,
        });
        expect(result.outcome).toBe('precondition-failed');
        expect(result.error).toContain('nebula answers but cannot be used, so it is not "down"');
        expect(result.error).toContain('presented host key');
      } finally {
        await on('nebula', `mv -f ${key}.orig ${key} && mv -f ${key}.pub.orig ${key}.pub`);
        process.kill(sshd, 'SIGHUP');
        await new Promise((r) => setTimeout(r, 1_000));
      }
      await expectServicesOn('nebula');
    }, 120_000);
  },
);
