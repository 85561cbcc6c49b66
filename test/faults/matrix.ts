/**
 * The fault matrix: for every step boundary of `handover` and `failover`
 * (once the step's intent is journaled, before its outcome), each fault a bad
 * night brings. A case starts the run as an operator does (the CLI in its own
 * process), injects the fault when the step begins, heals it once the run has
 * ended, resumes a run that stopped for a person, and then checks from
 * outside baton, with real clients: exactly one services instance, linked
 * and trusted by every ircd; DNS and the lease name it; it holds every
 * account of before the freeze and the one registered during the run; the
 * journal verifies and the report tells what happened.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { checkAthemeDb } from '../../lib/integrations/atheme/db.ts';
import type { RunEvent } from '../../lib/core/events.ts';
import { findHost, type Inventory } from '../../lib/core/inventory.ts';
import { readJournal } from '../../lib/engine/journal.ts';
import { buildReport, renderMarkdown } from '../../lib/app/report.ts';
import { planRunbook } from '../../lib/app/runs.ts';
import { loadRunbook } from '../../lib/app/registry.ts';
import type { SshPool } from '../../lib/transports/ssh.ts';
import { trustFrom } from '../../lib/steps/irc.ts';
import * as testnet from '../../lib/testnet/index.ts';
import { backupAtheme } from '../../lib/testnet/irc-backup.ts';
import { OPERATOR_ACCOUNT, readIrcSecrets, SERVICES_SERVER } from '../../lib/testnet/irc.ts';
import { askService, connectIrc } from '../../lib/testnet/irc-seed.ts';
import { rehearsalParams } from '../../lib/testnet/rehearsal.ts';

export const FAULTS = [
  'kill',
  'primary-down',
  'standby-down',
  'partition',
  'disk-full',
  'dns-refuse',
  'corrupt-byte',
  'slow',
] as const;
export type Fault = (typeof FAULTS)[number];

export const RUNBOOKS = ['handover', 'failover'] as const;
export type MatrixRunbook = (typeof RUNBOOKS)[number];

export interface Case {
  runbook: MatrixRunbook;
  step: string;
  fault: Fault;
}

export interface CaseResult extends Case {
  ok: boolean;
  /** The outcomes of the run and of each resume, in order. */
  outcomes: string[];
  /** Where services ended up. */
  on: string;
  failures: string[];
  durationMs: number;
  runId?: string;
  /** A failed case's run report (markdown), to read why. */
  report?: string;
}

export interface MatrixEnv {
  home: string;
  bin: string;
  pool: SshPool;
  inventory: Inventory;
  log?: (line: string) => void;
  /** emergency1's services-link.conf as the testnet made it. */
  standbyLink?: string;
}

const DB = '/var/lib/atheme/services.db';
const LINK = '/etc/inspircd/services-link.conf';
const PRIMARY = 'nebula';
const STANDBY = 'emergency1';
const ADDRESS: Record<string, string> = { nebula: '192.0.2.12', emergency1: '192.0.2.13' };

/** The steps of a runbook as planned on the testnet right now (skipped ones left out). */
export async function matrixSteps(env: MatrixEnv, runbook: MatrixRunbook): Promise<string[]> {
  if (runbook === 'failover') await testnet.fault('host-down', [PRIMARY]);
  try {
    const { runbook: rb } = await loadRunbook(runbook);
    const { plan } = await planRunbook({
      runbook,
      stack: 'local',
      params: rehearsalParams(rb, []),
      cwd: env.home,
    });
    // A step that only checks did its work in preflight: the run has no boundary there.
    const runs = new Set(rb.steps.filter((s) => s.apply || s.verify).map((s) => s.id));
    return plan.steps.filter((s) => !s.skipped && runs.has(s.id)).map((s) => s.id);
  } finally {
    if (runbook === 'failover') await healAll(env);
  }
}

/** Every (step, fault) of a runbook. */
export function allCases(runbook: MatrixRunbook, steps: string[]): Case[] {
  return steps.flatMap((step) => FAULTS.map((fault) => ({ runbook, step, fault })));
}

/** A fixed sample: every fault at least once and every step at least once, spread evenly. */
export function sampleCases(runbook: MatrixRunbook, steps: string[], offset = 0): Case[] {
  return steps.map((step, i) => ({
    runbook,
    step,
    fault: FAULTS[(i + offset) % FAULTS.length]!,
  }));
}

async function on(env: MatrixEnv, host: string, command: string): Promise<string> {
  const r = await env.pool.exec(findHost(env.inventory, host), command, { timeoutMs: 60_000 });
  return r.stdout;
}

async function activeOn(env: MatrixEnv, host: string): Promise<boolean> {
  try {
    return (await on(env, host, 'systemctl is-active atheme || true')).trim() === 'active';
  } catch {
    return false;
  }
}

async function dig(env: MatrixEnv, name: string, type: string): Promise<string> {
  return (await on(env, 'ns1', `dig +norec +short @192.0.2.53 ${name} ${type}`)).trim();
}

/** Ask a service through paralysis with a raw client; `identify` as the services operator first. */
async function ask(
  env: MatrixEnv,
  service: string,
  text: string,
  expect: RegExp,
  options: { identify?: boolean; nick?: string } = {},
): Promise<string> {
  const secrets = readIrcSecrets();
  const client = await connectIrc(env.pool, findHost(env.inventory, 'paralysis'), options.nick);
  try {
    if (options.identify) {
      const pw = secrets.passwords[OPERATOR_ACCOUNT]!;
      await askService(client, 'NickServ', `IDENTIFY ${OPERATOR_ACCOUNT} ${pw}`, /identified/i, {
        secrets: [pw],
      });
    }
    return await askService(client, service, text, expect, { timeoutMs: 10_000 });
  } finally {
    client.quit();
  }
}

/**
 * What the data holds, record by record, without what changes by itself (last
 * logins, last uses): one changed byte in an account shows here.
 */
async function recordsOn(env: MatrixEnv, host: string): Promise<string[]> {
  const text = await on(env, host, `cat ${DB}`);
  const check = checkAthemeDb(text);
  if (!check.ok) throw new Error(`${host}'s services.db does not load: ${check.fault.message}`);
  return text
    .split('\n')
    .map((l) => l.split(' '))
    .flatMap((f) =>
      f[0] === 'MU'
        ? [['MU', f[1], f[2], f[3], f[4], f[5]].join(' ')]
        : f[0] === 'MN'
          ? [['MN', f[1], f[2], f[3]].join(' ')]
          : f[0] === 'MC'
            ? [['MC', f[1], f[2]].join(' ')]
            : f[0] === 'CA'
              ? [['CA', f[1], f[2], f[3]].join(' ')]
              : [],
    )
    .sort();
}

const accountOf = (record: string): string | undefined =>
  record.startsWith('MU ') ? record.split(' ')[2] : undefined;

async function healAll(env: MatrixEnv): Promise<void> {
  await testnet.heal().catch(() => []);
  await on(env, 'ns1', 'nft delete table inet baton-matrix 2>/dev/null; true').catch(() => '');
  // A host that came back boots its enabled units; give it the time to.
  await new Promise((r) => setTimeout(r, 2_000));
}

/**
 * Services on the primary, writable, DNS and the lease naming it: where every
 * case starts. A case that failed may have left services down: they are
 * started where the lease says (as a person would), then handed back.
 */
export async function baseline(env: MatrixEnv): Promise<void> {
  await healAll(env);
  // emergency1's ircd as the testnet made it (no services link, so that the link step runs and is
  // the point of no return), read before the first case.
  env.standbyLink ??= await on(env, STANDBY, `cat ${LINK}`);
  let [one, two] = [await activeOn(env, PRIMARY), await activeOn(env, STANDBY)];
  if (!one && !two) {
    const holder = /holder=([a-z0-9-]+)/.exec(
      await dig(env, '_lease.services.irc.test', 'TXT'),
    )?.[1];
    if (holder === PRIMARY || holder === STANDBY) {
      await on(env, holder, 'systemctl reset-failed atheme; systemctl start atheme; true');
      for (const until = Date.now() + 30_000; Date.now() < until && !(await activeOn(env, holder));)
        await new Promise((r) => setTimeout(r, 1_000));
    }
    [one, two] = [await activeOn(env, PRIMARY), await activeOn(env, STANDBY)];
  }
  if (one && !two) {
    await ask(env, 'OperServ', 'READONLY OFF', /read-?only/i, { identify: true }).catch(() => '');
    await standbyAsMade(env);
    return;
  }
  const r = await cli(env, [
    'run',
    'failback',
    '--stack',
    'local',
    '--yes',
    '--json',
    ...(await paramsFor(env, 'failback')),
  ]);
  if (!(await activeOn(env, PRIMARY)) || (await activeOn(env, STANDBY)))
    throw new Error(
      `cannot bring the testnet back to its baseline: failback said ${r.out.slice(-400)}`,
    );
  await standbyAsMade(env);
}

/** The standby's services link as the testnet made it, once services are back on the primary. */
async function standbyAsMade(env: MatrixEnv): Promise<void> {
  if (env.standbyLink === undefined) return;
  const now = await on(env, STANDBY, `cat ${LINK}`);
  if (now === env.standbyLink) return;
  const r = await env.pool.exec(
    findHost(env.inventory, STANDBY),
    `cat > ${LINK} && rm -f ${LINK}.before && systemctl reload inspircd`,
    { input: env.standbyLink, timeoutMs: 30_000 },
  );
  if (r.exitCode !== 0) throw new Error(`cannot restore ${STANDBY}'s ${LINK}: ${r.stderr}`);
}

/** What CI runs (and `npm run faults -- --sample`): every step of both runbooks once, the faults in turn. */
export function ciSample(steps: Record<MatrixRunbook, string[]>): Case[] {
  return [
    ...sampleCases('handover', steps.handover),
    ...sampleCases('failover', steps.failover, 3),
  ];
}

/**
 * A case that throws (the harness could not look) is a case that failed. After
 * a failed case the testnet is brought back to its baseline, or built again
 * when that is not possible, so that one failure does not fail every case after it.
 */
export async function runCaseSafely(env: MatrixEnv, c: Case): Promise<CaseResult> {
  const started = Date.now();
  let result: CaseResult;
  try {
    result = await runCase(env, c);
  } catch (e) {
    env.log?.(`${c.runbook} ${c.step} ${c.fault}: FAILED: ${String(e)}`);
    result = {
      ...c,
      ok: false,
      outcomes: [],
      on: '?',
      failures: [String(e)],
      durationMs: Date.now() - started,
    };
  }
  if (!result.ok) await restore(env);
  return result;
}

async function restore(env: MatrixEnv): Promise<void> {
  try {
    await baseline(env);
  } catch (e) {
    env.log?.(`  the testnet is built again: ${String(e).slice(0, 300)}`);
    await env.pool.close();
    await testnet.down();
    env.inventory = (await testnet.up({ topology: 'irc' })).inventory;
    env.pool = testnet.testnetPool({ readyTimeoutMs: 20_000 });
  }
}

async function paramsFor(env: MatrixEnv, runbook: string): Promise<string[]> {
  const { runbook: rb } = await loadRunbook(runbook);
  return rehearsalParams(rb, []).flatMap((p) => ['--param', p]);
}

function cli(env: MatrixEnv, args: string[]): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, [env.bin, ...args], {
    cwd: env.home,
    env: { ...process.env, BATON_HOME: env.home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return exited(child);
}

function exited(child: ReturnType<typeof spawn>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => resolve({ code, out }));
  });
}

function events(dir: string): RunEvent[] {
  try {
    return readJournal(dir).records.map((r) => r.event);
  } catch {
    // Read between a record and its head: the next look sees both.
    return [];
  }
}

async function inject(env: MatrixEnv, fault: Fault, c: Case): Promise<void> {
  switch (fault) {
    case 'kill':
      return;
    case 'primary-down':
      if (c.runbook === 'handover') await testnet.fault('host-down', [PRIMARY]);
      return;
    case 'standby-down':
      await testnet.fault('host-down', [STANDBY]);
      return;
    case 'partition':
      await testnet.fault('partition', [PRIMARY, STANDBY]);
      return;
    case 'disk-full':
      await testnet.fault('disk-full', [STANDBY], { path: '/var/lib/atheme' });
      return;
    case 'dns-refuse':
      // DNS UPDATE (opcode 5) dropped on the authoritative server; queries still answered.
      await on(
        env,
        'ns1',
        `nft add table inet baton-matrix && nft add chain inet baton-matrix input '{ type filter hook input priority 0; }' && nft add rule inet baton-matrix input udp dport 53 '@th,80,8 & 0x78 == 0x28' drop && nft add rule inet baton-matrix input tcp dport 53 drop`,
      );
      return;
    case 'corrupt-byte':
      // One byte of the data changes wherever it is on its way.
      for (const [host, glob] of [
        [PRIMARY, `${DB}.handover`],
        [STANDBY, `${DB}.incoming`],
        [STANDBY, DB],
      ] as const) {
        await on(
          env,
          host,
          `for f in ${glob}; do [ -s "$f" ] || continue; n=$(( $(stat -c %s "$f") / 2 )); b=$(dd if="$f" bs=1 skip=$n count=1 2>/dev/null | od -An -tu1 | tr -d ' '); printf "\\\\$(printf %o $(( (b + 1) % 256 )))" | dd of="$f" bs=1 seek=$n conv=notrunc 2>/dev/null; done; true`,
        ).catch(() => '');
      }
      return;
    case 'slow':
      await testnet.fault('slow', [STANDBY], { delayMs: 100 });
      return;
  }
}

/** Take away the injected fault alone (a failover's dead primary stays dead until the end). */
async function healInjected(env: MatrixEnv, c: Case): Promise<void> {
  const kind: Record<Fault, [string, string[]] | undefined> = {
    kill: undefined,
    'primary-down': c.runbook === 'handover' ? ['host-down', [PRIMARY]] : undefined,
    'standby-down': ['host-down', [STANDBY]],
    partition: ['partition', [PRIMARY, STANDBY]],
    'disk-full': ['disk-full', [STANDBY]],
    'dns-refuse': undefined,
    'corrupt-byte': undefined,
    slow: ['slow', [STANDBY]],
  };
  const k = kind[c.fault];
  if (k) await testnet.heal(k[0], k[1]).catch(() => []);
  if (c.fault === 'dns-refuse')
    await on(env, 'ns1', 'nft delete table inet baton-matrix 2>/dev/null; true').catch(() => '');
  await new Promise((r) => setTimeout(r, 2_000));
}

/** Run one case and check what holds afterwards, from outside. */
export async function runCase(env: MatrixEnv, c: Case): Promise<CaseResult> {
  const started = Date.now();
  const failures: string[] = [];
  const outcomes: string[] = [];
  const log = env.log ?? (() => undefined);
  const phase = (what: string): void =>
    log(`  ${what} at ${((Date.now() - started) / 1000).toFixed(1)} s`);
  await baseline(env);
  phase('baseline');
  if (c.runbook === 'failover') {
    await ask(env, 'OperServ', 'UPDATE', /UPDATE completed/i, { identify: true });
    await backupAtheme(env.pool, env.inventory, PRIMARY);
  }
  const before = await recordsOn(env, PRIMARY);
  if (c.runbook === 'failover') await testnet.fault('host-down', [PRIMARY]);

  const runs = join(env.home, 'runs');
  const earlier = existsSync(runs) ? readdirSync(runs) : [];
  const child = spawn(
    process.execPath,
    [
      env.bin,
      'run',
      c.runbook,
      '--stack',
      'local',
      '--yes',
      '--json',
      ...(await paramsFor(env, c.runbook)),
    ],
    {
      cwd: env.home,
      env: { ...process.env, BATON_HOME: env.home },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const ended = exited(child);
  let runId: string | undefined;
  let reached = false;
  const until = Date.now() + 240_000;
  for (;;) {
    runId ??= (existsSync(runs) ? readdirSync(runs) : []).find((r) => !earlier.includes(r));
    const seen = runId ? events(join(runs, runId)) : [];
    if (seen.some((e) => e.kind === 'intent' && e.step === c.step)) {
      reached = true;
      break;
    }
    if (seen.some((e) => e.kind === 'run-end') || child.exitCode !== null) break;
    if (Date.now() > until) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  let written: string | undefined;
  if (reached) {
    if (c.fault === 'kill') child.kill('SIGKILL');
    else await inject(env, c.fault, c);
    // A user writes while the run goes on: it must not be lost, whatever happens next.
    if (c.runbook === 'handover') {
      const nick = `w${c.step.replace(/[^a-z]/g, '').slice(0, 6)}${FAULTS.indexOf(c.fault)}`;
      const said = await ask(
        env,
        'NickServ',
        `REGISTER ${nick}pw1 ${nick}@example.org`,
        /registered|./i,
        {
          nick,
        },
      ).catch((e: unknown) => `not answered: ${String(e)}`);
      if (/is now registered/i.test(said)) written = nick;
      // NickServ's answer repeats the password: say only whether the write was taken.
      log(`  ${nick}: ${written ? 'registered' : 'not registered (services were not answering)'}`);
    }
  } else {
    failures.push(`the run never reached step ${c.step}`);
    child.kill('SIGKILL');
  }
  phase(reached ? `fault at ${c.step}` : 'no fault');
  const first = await ended;
  phase('run ended');
  outcomes.push(outcomeOf(first.out) ?? (c.fault === 'kill' ? 'killed' : `exit ${first.code}`));
  await healInjected(env, c);
  // After the fault is gone, a run that stopped (or was killed) is taken up again.
  for (let i = 0; i < 2 && runId && /killed|needs-human|exit/.test(outcomes.at(-1)!); i++) {
    const r = await cli(env, ['resume', runId, '--json']);
    outcomes.push(outcomeOf(r.out) ?? `resume exit ${r.code}: ${r.out.trim().split('\n').at(-1)}`);
  }
  phase('resumed');
  // The failover's own starting fault goes last: the old primary returns and must stay fenced.
  if (c.runbook === 'failover') await healAll(env);
  // A run still stopped for a person keeps the stack locked: that is a failure, and the lock is
  // broken (as a person would, with baton unlock) so that the next case can run.
  if (runId && /killed|needs-human|exit/.test(outcomes.at(-1)!)) {
    failures.push(`the run is still stopped after the fault was healed: ${outcomes.at(-1)}`);
    const start = events(join(runs, runId)).find((e) => e.kind === 'run-start');
    const lockId = start?.kind === 'run-start' ? start.lock?.lockId : undefined;
    if (lockId) await cli(env, ['unlock', 'local', lockId]);
  }

  // Services come up again where the lease says, once their host is back: give them the time.
  let on1 = false;
  let on2 = false;
  for (const until = Date.now() + 45_000; Date.now() < until;) {
    [on1, on2] = [await activeOn(env, PRIMARY), await activeOn(env, STANDBY)];
    if (on1 || on2) break;
    await new Promise((r) => setTimeout(r, 1_000));
  }
  phase('services found');
  const where = on1 && on2 ? 'both' : on1 ? PRIMARY : on2 ? STANDBY : 'none';
  if (where === 'both') failures.push('services run on nebula and emergency1 at once');
  if (where === 'none') failures.push('services run nowhere');
  if (where === PRIMARY || where === STANDBY) {
    const ircds = env.inventory.hosts.filter((h) => h.roles.includes('ircd'));
    const reach = {
      connect: (h: string | { name: string }, port: number) =>
        env.pool.forward(findHost(env.inventory, typeof h === 'string' ? h : h.name), port),
    };
    // A host that came back relinks its ircd and services in a few seconds: wait for them.
    let trust = await trustFrom(reach, ircds, 6667, SERVICES_SERVER);
    for (const until = Date.now() + 60_000; trust.some((t) => !t.trusted) && Date.now() < until;) {
      await new Promise((r) => setTimeout(r, 2_000));
      trust = await trustFrom(reach, ircds, 6667, SERVICES_SERVER);
    }
    for (const t of trust)
      if (!t.trusted)
        failures.push(`${t.host} does not see trusted services: ${t.condition.found}`);
    const a = await dig(env, 'services.irc.test', 'A');
    if (a !== ADDRESS[where])
      failures.push(`DNS names ${a || 'nothing'}, services run on ${where}`);
    const lease = await dig(env, '_lease.services.irc.test', 'TXT');
    if (!lease.includes(where))
      failures.push(`the lease says ${lease || 'nothing'}, services run on ${where}`);
    await ask(env, 'OperServ', 'READONLY OFF', /read-?only/i, { identify: true }).catch(() => '');
    await ask(env, 'OperServ', 'UPDATE', /UPDATE completed/i, { identify: true }).catch(
      (e: unknown) => failures.push(`services on ${where} would not save: ${String(e)}`),
    );
    const now = await recordsOn(env, where).catch((e: unknown) => {
      failures.push(String(e));
      return [] as string[];
    });
    const lost = before.filter((r) => !now.includes(r));
    if (lost.length)
      failures.push(
        `records lost or changed: ${lost.slice(0, 3).join(' | ')}${lost.length > 3 ? ` and ${lost.length - 3} more` : ''}`,
      );
    if (written && !now.some((r) => accountOf(r) === written))
      failures.push(`the account ${written} registered during the run was lost`);
  }
  let report: string | undefined;
  if (runId) {
    try {
      const read = readJournal(join(runs, runId));
      report = renderMarkdown(buildReport(read));
      const end = read.records.map((r) => r.event).findLast((e) => e.kind === 'run-end');
      if (!end) failures.push('the journal has no end');
      else if (!report.includes(end.outcome))
        failures.push('the report does not say how the run ended');
    } catch (e) {
      failures.push(`the journal does not verify: ${String(e)}`);
    }
  }
  const result: CaseResult = {
    ...c,
    ok: failures.length === 0,
    outcomes,
    on: where,
    failures,
    durationMs: Date.now() - started,
    ...(runId ? { runId } : {}),
    ...(failures.length && report ? { report } : {}),
  };
  log(
    `${c.runbook} ${c.step} ${c.fault}: ${result.ok ? 'ok' : 'FAILED'} (${outcomes.join(' → ')}; services on ${where})${failures.length ? `: ${failures.join('; ')}` : ''}`,
  );
  return result;
}

function outcomeOf(out: string): string | undefined {
  return /"outcome":\s*"([a-z-]+)"/.exec(out)?.[1];
}
