/**
 * Fan-out benchmark: the same one-line change on every testnet host, made
 * by baton's engine (a full run: plan, apply, verify, journal) and by plain
 * OpenSSH `ssh` in parallel, in the same process, round after round. Reports
 * medians, p90s and the ratio baton/ssh; never asserts absolute times.
 *
 *   sudo npx tsx bench/fanout.ts [ROUNDS]      (ROUNDS 1-20, default 10)
 *
 * Everything goes through the testnet's relay: the controller never opens a
 * connection to 192.0.2.0/24 itself (this machine's own network may use it).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Host, Inventory } from '../lib/core/inventory.ts';
import { planRunbook, startRun } from '../lib/app/runs.ts';
import * as testnet from '../lib/testnet/index.ts';
import { testnetPaths } from '../lib/testnet/state.ts';

const BENCH = import.meta.dirname;
const RUNBOOK = join(BENCH, 'fanout-runbook.ts');
const PROXY = join(BENCH, 'relay-proxy.mjs');
const TOPOLOGY = 'irc';
const DIR = '/srv/baton-bench';
const MAX_ROUNDS = 20;
const ROUND_TIMEOUT_MS = 60_000;
const SSH_TIMEOUT_MS = 30_000;
/** The whole benchmark, testnet up included; past it, tear down and exit. */
const OVERALL_TIMEOUT_MS = 15 * 60_000;

type Approach = 'baton run' | 'baton plan' | 'ssh';
const APPROACHES: Approach[] = ['baton run', 'baton plan', 'ssh'];

interface Stats {
  rounds: number;
  medianMs: number;
  p90Ms: number;
  minMs: number;
  maxMs: number;
  meanMs: number;
}

function parseRounds(arg: string | undefined): number {
  const n = Number(arg ?? process.env.ROUNDS ?? 10);
  if (!Number.isInteger(n) || n < 1 || n > MAX_ROUNDS) {
    throw new Error(`rounds must be an integer from 1 to ${MAX_ROUNDS}, not ${arg}`);
  }
  return n;
}

/** Nearest-rank percentile of sorted samples. */
function percentile(sorted: number[], p: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

function median(sorted: number[]): number {
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const r = (x: number): number => Math.round(x * 10) / 10;
  return {
    rounds: s.length,
    medianMs: r(median(s)),
    p90Ms: r(percentile(s, 90)),
    minMs: r(s[0]!),
    maxMs: r(s[s.length - 1]!),
    meanMs: r(s.reduce((a, b) => a + b, 0) / s.length),
  };
}

function withTimeout<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/**
 * known_hosts from the hosts' public keys, each checked against the
 * fingerprint the inventory pins, so OpenSSH verifies exactly what baton does.
 */
function writeKnownHosts(inv: Inventory, file: string): void {
  const paths = testnetPaths();
  const lines = inv.hosts.map((h) => {
    const pub = join(paths.hostDir(h.name), 'ssh', 'ssh_host_ed25519_key.pub');
    const lf = spawnSync('ssh-keygen', ['-lf', pub], { encoding: 'utf8' });
    const fingerprint = lf.stdout.split(' ')[1];
    if (lf.status !== 0 || !fingerprint || !h.ssh?.hostKeys.includes(fingerprint)) {
      throw new Error(`${h.name}: ${pub} does not match the pinned host key (${lf.stderr})`);
    }
    const [type, key] = readFileSync(pub, 'utf8').trim().split(/\s+/);
    return `${h.address} ${type} ${key}`;
  });
  writeFileSync(file, lines.join('\n') + '\n', { mode: 0o600 });
}

function sshArgs(h: Host, knownHosts: string, relaySocket: string): string[] {
  const identity = h.ssh?.identityFile;
  if (!identity) throw new Error(`${h.name} has no identity file in the inventory`);
  return [
    '-F',
    '/dev/null',
    '-o',
    'BatchMode=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-i',
    identity,
    '-o',
    `UserKnownHostsFile=${knownHosts}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'ConnectTimeout=10',
    '-o',
    `ProxyCommand=${process.execPath} ${PROXY} ${relaySocket} %h %p`,
    '-p',
    String(h.ssh?.port ?? 22),
    '-l',
    h.ssh?.user ?? 'root',
    h.address,
  ];
}

/** One command per host, all hosts at once: the change and its check, like a person would type it. */
function sshOnce(args: string[], command: string, expect: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', [...args, command], {
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: SSH_TIMEOUT_MS,
      killSignal: 'SIGKILL',
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0 && out.trim() === expect) resolve();
      else reject(new Error(`ssh exited ${code ?? signal}: ${err.trim() || out.trim()}`));
    });
  });
}

/** Median wall time of starting a bare `node`: the cost each ssh connection pays for its ProxyCommand. */
function nodeStartupMs(): number {
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    spawnSync(process.execPath, ['-e', '0']);
    samples.push(performance.now() - t);
  }
  return Math.round(median(samples.sort((a, b) => a - b)) * 10) / 10;
}

async function main(): Promise<void> {
  const rounds = parseRounds(process.argv[2]);
  if (process.getuid?.() !== 0) throw new Error('run as root: the testnet needs namespaces');
  const home = mkdtempSync(join(tmpdir(), 'baton-bench-'));
  process.env.BATON_HOME = home;
  let tornDown = false;
  const teardown = async (): Promise<void> => {
    if (tornDown) return;
    tornDown = true;
    try {
      await testnet.down();
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    console.error(`${signal}: tearing the testnet down`);
    void teardown().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const overall = setTimeout(() => {
    console.error(`the benchmark took longer than ${OVERALL_TIMEOUT_MS / 60_000} min; stopping`);
    void teardown().finally(() => process.exit(2));
  }, OVERALL_TIMEOUT_MS);
  overall.unref();

  try {
    console.error(`testnet up (topology ${TOPOLOGY}) in ${home} …`);
    const upResult = await testnet.up({ topology: TOPOLOGY });
    const inv = upResult.inventory;
    const relaySocket = testnetPaths().relaySocket;
    const knownHosts = join(home, 'known_hosts');
    writeKnownHosts(inv, knownHosts);
    const hostArgs = inv.hosts.map((h) => sshArgs(h, knownHosts, relaySocket));
    console.error(
      `${inv.hosts.length} hosts up in ${(upResult.durationMs / 1000).toFixed(1)} s; ${rounds} rounds`,
    );

    const runOne = async (approach: Approach, label: string): Promise<number> => {
      const value = `${approach.replace(' ', '-')}-${label}`;
      const started = performance.now();
      if (approach === 'ssh') {
        const command = `mkdir -p ${DIR} && echo ${value} > ${DIR}/fanout && cat ${DIR}/fanout`;
        await Promise.all(hostArgs.map((a) => sshOnce(a, command, value)));
      } else if (approach === 'baton run') {
        const done = await startRun({
          runbook: RUNBOOK,
          stack: 'local',
          params: [`dir=${DIR}`, `value=${value}`],
          cwd: home,
        });
        if (done.outcome !== 'done') throw new Error(`baton run: ${done.outcome}: ${done.error}`);
      } else {
        const { plan } = await planRunbook({
          runbook: RUNBOOK,
          stack: 'local',
          params: [`dir=${DIR}`, `value=${value}`],
          cwd: home,
        });
        const hosts = plan.steps[0]?.hosts.length ?? 0;
        if (hosts !== inv.hosts.length) throw new Error(`baton plan covered ${hosts} hosts`);
      }
      return performance.now() - started;
    };

    // One warm-up round of each (module loading, JIT), not counted.
    for (const a of APPROACHES) await withTimeout(`warm-up ${a}`, ROUND_TIMEOUT_MS, runOne(a, 'w'));
    // Cross-check: what baton wrote is on every host, as plain ssh reads it.
    await withTimeout('cross-check', ROUND_TIMEOUT_MS, runOne('baton run', 'x'));
    await Promise.all(hostArgs.map((a) => sshOnce(a, `cat ${DIR}/fanout`, 'baton-run-x')));

    const samples: Record<Approach, number[]> = { 'baton run': [], 'baton plan': [], ssh: [] };
    for (let r = 0; r < rounds; r++) {
      // Rotate the order, so no approach always runs first after a pause.
      const order = APPROACHES.map((_, i) => APPROACHES[(i + r) % APPROACHES.length]!);
      for (const a of order) {
        const ms = await withTimeout(`${a} round ${r + 1}`, ROUND_TIMEOUT_MS, runOne(a, `r${r}`));
        samples[a].push(ms);
      }
      process.stderr.write(`round ${r + 1}/${rounds}\r`);
    }
    process.stderr.write('\n');

    const result = Object.fromEntries(APPROACHES.map((a) => [a, stats(samples[a])])) as Record<
      Approach,
      Stats
    >;
    const ratio = (a: Approach, key: 'medianMs' | 'p90Ms'): number =>
      Math.round((result[a][key] / result.ssh[key]) * 1000) / 1000;
    const ratios = {
      'baton run / ssh (median)': ratio('baton run', 'medianMs'),
      'baton run / ssh (p90)': ratio('baton run', 'p90Ms'),
      'baton plan / ssh (median)': ratio('baton plan', 'medianMs'),
      'baton plan / ssh (p90)': ratio('baton plan', 'p90Ms'),
    };

    const rows = APPROACHES.map((a) => ({
      approach: a,
      'median ms': result[a].medianMs,
      'p90 ms': result[a].p90Ms,
      'min ms': result[a].minMs,
      'max ms': result[a].maxMs,
      '÷ ssh (median)': ratio(a, 'medianMs'),
    }));
    console.log(`\n${inv.hosts.length} hosts, ${rounds} rounds (wall time of one round)`);
    console.table(rows);
    for (const [k, v] of Object.entries(ratios)) console.log(`${k}: ${v}`);

    const ssh = spawnSync('ssh', ['-V'], { encoding: 'utf8' });
    const date = new Date().toISOString().slice(0, 10);
    const out = join(BENCH, 'results', `fanout-${date}.json`);
    mkdirSync(join(BENCH, 'results'), { recursive: true });
    const report = {
      benchmark: 'fanout',
      date: new Date().toISOString(),
      topology: TOPOLOGY,
      hosts: inv.hosts.map((h) => h.name),
      rounds,
      environment: {
        node: process.version,
        openssh: ssh.stderr.trim(),
        cpus: cpus().length,
        loadavg: loadavg().map((x) => Math.round(x * 100) / 100),
        nodeStartupMs: nodeStartupMs(),
      },
      approaches: {
        'baton run':
          'startRun: plan (one check per host), then one apply and one verify per host, journal; fresh ssh connections each round',
        'baton plan': 'planRunbook: dry run; one read-only check per host, changes nothing',
        ssh: 'one `ssh host "mkdir && echo > f && cat f"` per host, all at once, ProxyCommand through the relay',
      },
      stats: result,
      ratios,
      samplesMs: Object.fromEntries(
        APPROACHES.map((a) => [a, samples[a].map((x) => Math.round(x * 10) / 10)]),
      ),
    };
    writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
    console.log(`\nwrote ${out}`);
  } finally {
    clearTimeout(overall);
    console.error('testnet down …');
    await teardown();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e instanceof Error ? (e.stack ?? e.message) : e);
    process.exit(1);
  },
);
