/**
 * A lease that fences, on the irc testnet, checked from outside baton: the
 * hosts' own consoles (nsenter, not ssh: a host whose link is down is still
 * there), systemctl on them, dig against Knot, a raw IRC client.
 */
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rfc2136Provider, parseTsigKey } from '../../lib/integrations/dns/rfc2136.ts';
import type { CommandRunner } from '../../lib/integrations/dns/command.ts';
import type { RunResult } from '../../lib/engine/engine.ts';
import { findHost, type Inventory } from '../../lib/core/inventory.ts';
import { parseLease, type Lease } from '../../lib/core/lease.ts';
import { rewriteLease } from '../support/lease.ts';
import { startRun } from '../../lib/app/runs.ts';
import { loadRunbook } from '../../lib/app/registry.ts';
import type { SshPool } from '../../lib/transports/ssh.ts';
import * as testnet from '../../lib/testnet/index.ts';
import {
  ircSecretPaths,
  KNOT,
  LEASE,
  LEASE_FQDN,
  LEASE_RECORD,
  SERVICES_SERVER,
} from '../../lib/testnet/irc.ts';
import { connectIrc } from '../../lib/testnet/irc-seed.ts';
import { rehearsalParams } from '../../lib/testnet/rehearsal.ts';
import { testnetPaths } from '../../lib/testnet/state.ts';
import { inHostArgv, sys } from '../../lib/testnet/system.ts';
import { assertPrerequisite, skipUnless } from '../support/require.ts';

const missing = process.getuid?.() !== 0 ? 'needs root (the testnet)' : undefined;
const home = mkdtempSync(join(tmpdir(), 'baton-lease-fence-'));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe.skipIf(skipUnless(missing, 'the lease on the testnet'))('a lease that fences', () => {
  let pool: SshPool;
  let inv: Inventory;

  /** A command on the host's console (its namespaces), as a person at its keyboard would run it. */
  const consoleOf = async (host: string, script: string): Promise<string> =>
    (
      await sys(inHostArgv(testnetPaths().hostNsFiles(host), script), {
        nothrow: true,
        timeoutMs: 30_000,
      })
    ).stdout.trim();
  const active = (host: string, unit = 'atheme'): Promise<string> =>
    consoleOf(host, `/usr/local/sbin/systemctl is-active ${unit}`);
  const leaseNow = async (): Promise<Lease | undefined> => {
    const answer = await consoleOf('ns1', `dig +norec +short @${KNOT.address} TXT ${LEASE_FQDN}`);
    return parseLease(answer.replace(/^"|"$/g, ''));
  };
  const onNs1: CommandRunner = async (cmd, options) => {
    const r = await pool.exec(findHost(inv, 'ns1'), cmd.text, {
      timeoutMs: options?.timeoutMs ?? 15_000,
      ...(options?.input ? { input: options.input } : {}),
    });
    return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr };
  };
  const dns = (key = ircSecretPaths().tsigKey): Rfc2136Provider =>
    new Rfc2136Provider({
      zone: 'irc.test',
      server: { address: KNOT.address, port: KNOT.port },
      tsig: parseTsigKey(readFileSync(key, 'utf8')),
      run: onNs1,
    });
  const run = async (runbook: string, deps = {}): Promise<RunResult> => {
    const { runbook: rb } = await loadRunbook(runbook);
    return startRun({ runbook, stack: 'local', params: rehearsalParams(rb, []), cwd: home, deps });
  };
  /** The servers paralysis links, as a raw client sees them (LINKS). */
  const links = async (via: string): Promise<string[]> => {
    const client = await connectIrc(pool, findHost(inv, via));
    try {
      const replies = await client.request('LINKS', (m) => m.command === '365', {
        keep: (m) => m.command === '364',
        timeoutMs: 15_000,
      });
      return replies.filter((m) => m.command === '364').map((m) => m.params[1]!);
    } finally {
      await client.quit();
    }
  };

  beforeAll(async () => {
    assertPrerequisite(missing);
    process.env.BATON_HOME = home;
    inv = (await testnet.up({ topology: 'irc' })).inventory;
    pool = testnet.testnetPool({ readyTimeoutMs: 20_000 });
  }, 900_000);

  afterAll(async () => {
    await pool?.close();
    if (existsSync(join(home, 'testnet'))) await testnet.down();
    delete process.env.BATON_HOME;
    rmSync(home, { recursive: true, force: true });
  });

  it('gives the services hosts a key that may update the lease and nothing else', async () => {
    for (const h of ['nebula', 'emergency1'])
      expect([h, await active(h, LEASE.watchdogUnit)]).toEqual([h, 'active']);
    const script = (record: string, value: string): string => {
      const key = readFileSync(ircSecretPaths().leaseTsigKey, 'utf8').trim().split(':');
      return `server ${KNOT.address}\nzone irc.test.\nkey ${key[0]}:${key[1]} ${key[2]}\nupdate add ${record} 60 TXT "${value}"\nsend\n`;
    };
    const other = await pool.exec(findHost(inv, 'nebula'), 'knsupdate', {
      input: script('services.irc.test.', 'hijacked'),
    });
    expect(other.exitCode).not.toBe(0);
    expect(other.stdout + other.stderr).toMatch(/NOTAUTH|REFUSED|BADKEY/);
    expect(await consoleOf('ns1', `dig +norec +short @${KNOT.address} TXT services.irc.test`)).toBe(
      '',
    );
    // The holder's watchdog keeps its lease renewed.
    const lease = await leaseNow();
    expect(lease?.holder).toBe('nebula');
    expect(lease!.expires!.getTime()).toBeGreaterThan(Date.now());
  });

  it('a lease moved by another writer since the plan is not overwritten: the run stops and rolls back, naming the holder', async () => {
    const planned = (await leaseNow())!;
    expect(planned.holder).toBe('nebula');
    let moved: string | undefined;
    const result = await run('handover', {
      afterMutation: async (at: { step: string }) => {
        if (at.step !== 'install' || moved) return;
        // Another writer (a person, another controller) bumps the generation, still naming nebula.
        ({ written: moved } = await rewriteLease(dns(), LEASE_RECORD, () => ({
          holder: 'nebula',
          gen: planned.gen + 5,
        })));
      },
    });
    expect(moved).toBeDefined();
    expect([result.outcome, result.error]).toEqual(['rolled-back', expect.any(String)]);
    expect(result.error).toContain(
      `the lease ${LEASE_RECORD} is not where the plan found it: expected held by nebula (gen ${planned.gen}), now held by nebula (gen ${planned.gen + 5}`,
    );
    // The last writer did not win: the lease keeps the other writer's generation; services are back on nebula.
    const now = (await leaseNow())!;
    expect([now.holder, now.gen]).toEqual(['nebula', planned.gen + 5]);
    expect(await active('nebula')).toBe('active');
    expect(await active('emergency1')).not.toBe('active');
  }, 400_000);
  it('a partitioned old primary stops its own services before its lease runs out and never relinks as a second instance', async () => {
    const before = (await leaseNow())!;
    expect(before.holder).toBe('nebula');
    await testnet.fault('link-down', ['nebula']);
    const cutAt = Date.now();
    let stoppedAfter: number | undefined;
    const both: number[] = [];
    let result: RunResult;
    try {
      let settled = false;
      const failover = run('failover').finally(() => (settled = true));
      // Cut off, not dead: nebula's atheme runs on at first, linked to its own ircd.
      expect(await active('nebula')).toBe('active');
      // Watched from the consoles until the failover ends: when nebula stops, and whether a
      // sample ever finds atheme active on both hosts.
      while (!settled && Date.now() - cutAt < 120_000) {
        const [n, e] = await Promise.all([active('nebula'), active('emergency1')]);
        if (n !== 'active' && stoppedAfter === undefined) stoppedAfter = Date.now() - cutAt;
        if (n === 'active' && e === 'active') both.push(Date.now() - cutAt);
        await sleep(250);
      }
      console.log(`nebula's atheme stopped itself ${stoppedAfter} ms after its link went down`);
      result = await failover;
    } finally {
      await testnet.heal('link-down', ['nebula']);
    }
    expect(stoppedAfter).toBeDefined();
    expect(both).toEqual([]);
    // The watchdog's promise (contrib/lease/lease-watchdog): the holder fences itself before
    // its lease runs out. Its last renewal came before the cut, so the lease it holds ends
    // at most LEASE_SECONDS after it; the samples only add to the time measured.
    expect(stoppedAfter!).toBeLessThan(LEASE.leaseSeconds * 1000);
    expect(result.error).toBeUndefined();
    expect(result.outcome).toBe('done');
    expect(await consoleOf('nebula', 'cat /var/log/units/baton-lease-watchdog.log')).toMatch(
      new RegExp(
        `stopping atheme: the lease could not be read and renewed for \\d+ s, longer than the grace of ${LEASE.graceSeconds} s`,
      ),
    );
    const after = (await leaseNow())!;
    expect([after.holder, after.gen]).toEqual(['emergency1', before.gen + 1]);
    expect(await consoleOf('ns1', `dig +norec +short @${KNOT.address} A services.irc.test`)).toBe(
      '192.0.2.13',
    );

    // Healed: nebula's ircd rejoins the network; its atheme stays down, and one instance is linked.
    const until = Date.now() + 60_000;
    while (!(await links('paralysis')).includes('nebula.irc.test') && Date.now() < until)
      await sleep(1_000);
    for (let i = 0; i < 5; i++) {
      expect(await active('nebula')).not.toBe('active');
      expect(await active('emergency1')).toBe('active');
      await sleep(2_000);
    }
    for (const via of ['paralysis', 'nebula']) {
      const seen = await links(via);
      expect([via, seen.filter((s) => s === SERVICES_SERVER).length]).toEqual([via, 1]);
      expect(seen).toContain('nebula.irc.test');
    }
    // nebula has seen the new generation, and its lease check refuses a start by hand.
    expect(await consoleOf('nebula', `cat ${LEASE.genFile}`)).toBe(String(before.gen + 1));
    const start = await consoleOf(
      'nebula',
      '/usr/local/sbin/systemctl start atheme 2>&1; tail -n 1 /var/log/units/atheme.log',
    );
    expect(start).toContain(
      `lease-check: refusing to start atheme on nebula: the services lease ${LEASE_FQDN} is held by emergency1 (gen ${before.gen + 1}`,
    );
    expect(await active('nebula')).not.toBe('active');
  }, 400_000);
});
