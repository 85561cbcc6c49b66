/**
 * `npm run faults`: the fault matrix on a testnet of its own. Each run writes
 * its results as JSON under test/faults/results/ (with the commit it ran on),
 * and docs/reliability.md is rendered from the latest result of every case
 * across those files, so the whole matrix can be run in shards.
 *   sudo npm run faults                             # every case
 *   sudo npm run faults -- --shard 2/4              # every fourth case, from the second
 *   sudo npm run faults -- --sample                 # the CI sample (--shard works here too)
 *   sudo npm run faults -- --failed                 # again, every case whose latest result failed
 *   sudo npm run faults -- handover cut-dns kill    # one case (not written to the page)
 * `--runbook handover|failover` keeps the cases of one runbook; `--results FILE`
 * writes the results there instead, and leaves the page alone (the CI test).
 */
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as testnet from '../../lib/testnet/index.ts';
import {
  allCases,
  ciSample,
  FAULTS,
  matrixSteps,
  runCaseSafely,
  RUNBOOKS,
  type Case,
  type CaseResult,
  type Fault,
  type MatrixRunbook,
} from './matrix.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const RESULTS = join(ROOT, 'test', 'faults', 'results');
const args = process.argv.slice(2);

interface ResultsFile {
  at: string;
  commit: string;
  args: string[];
  steps: Record<string, string[]>;
  results: CaseResult[];
}

const shard = args.includes('--shard') ? args[args.indexOf('--shard') + 1] : undefined;
const [index, count] = (shard ?? '1/1').split('/').map(Number) as [number, number];
if (!(Number.isInteger(index) && Number.isInteger(count) && index >= 1 && index <= count)) {
  console.error(`--shard ${shard}: give it as i/n with 1 <= i <= n, e.g. --shard 2/4`);
  process.exit(2);
}
const option = (name: string): string | undefined =>
  args.includes(name) ? args[args.indexOf(name) + 1] : undefined;
const only = option('--runbook');
if (only !== undefined && !(RUNBOOKS as readonly string[]).includes(only)) {
  console.error(`--runbook ${only}: the matrix has the runbooks ${RUNBOOKS.join(', ')}`);
  process.exit(2);
}
const runbooks = RUNBOOKS.filter((rb) => only === undefined || rb === only);
const resultsFile = option('--results');
const one = args.length === 3 && !args[0]!.startsWith('--');
if (one && !(RUNBOOKS as readonly string[]).includes(args[0]!)) {
  console.error(`${args[0]}: the matrix has the runbooks ${RUNBOOKS.join(', ')}`);
  process.exit(2);
}
if (one && !(FAULTS as readonly string[]).includes(args[2]!)) {
  console.error(`${args[2]}: the faults are ${FAULTS.join(', ')}`);
  process.exit(2);
}

const commit = (() => {
  const git = (...a: string[]): string =>
    execFileSync('git', a, { cwd: ROOT, encoding: 'utf8' }).trim();
  try {
    return `${git('rev-parse', '--short', 'HEAD')}${git('status', '--porcelain', '--', 'lib', 'runbooks', 'bin', 'contrib', 'test/faults') ? '+changes' : ''}`;
  } catch {
    return 'unknown';
  }
})();

const home = mkdtempSync(join(tmpdir(), 'baton-faults-'));
process.env.BATON_HOME = home;
const { inventory } = await testnet.up({ topology: 'irc' });
const env = {
  home,
  bin: join(ROOT, 'bin', 'baton.js'),
  pool: testnet.testnetPool({ readyTimeoutMs: 20_000 }),
  inventory,
  log: console.log,
};
const results: CaseResult[] = [];
const steps: Record<string, string[]> = {};
try {
  for (const rb of one ? [args[0] as MatrixRunbook] : runbooks)
    steps[rb] = await matrixSteps(env, rb);
  let cases: Case[];
  if (one) {
    if (!steps[args[0]!]!.includes(args[1]!))
      throw new Error(`${args[0]} has no step ${args[1]}: ${steps[args[0]!]!.join(', ')}`);
    cases = [{ runbook: args[0] as MatrixRunbook, step: args[1]!, fault: args[2] as Fault }];
  } else {
    const all = args.includes('--sample')
      ? ciSample({ handover: steps.handover ?? [], failover: steps.failover ?? [] })
      : args.includes('--failed')
        ? [...latestResults().values()]
            .filter(
              (r) => !r.ok && runbooks.includes(r.runbook) && steps[r.runbook]?.includes(r.step),
            )
            .map(({ runbook, step, fault }) => ({ runbook, step, fault }))
        : runbooks.flatMap((rb) => allCases(rb, steps[rb]!));
    cases = all.filter((_, i) => i % count === index - 1);
  }
  console.log(`${cases.length} cases on ${commit}`);
  for (const c of cases) results.push(await runCaseSafely(env, c));
} finally {
  await env.pool.close();
  await testnet.down();
  rmSync(home, { recursive: true, force: true });
}

const at = new Date().toISOString();
const file: ResultsFile = { at, commit, args, steps, results };
if (resultsFile) writeFileSync(resultsFile, JSON.stringify(file, null, 2) + '\n');
else {
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(
    join(RESULTS, `${at.replace(/[:.]/g, '-')}.json`),
    JSON.stringify(file, null, 2) + '\n',
  );
  if (!one) {
    const page = join(ROOT, 'docs', 'reliability.md');
    writeFileSync(page, render());
    // The page as the repository's formatter leaves it, so that a format check passes.
    execFileSync(join(ROOT, 'node_modules', '.bin', 'prettier'), ['--write', page], {
      stdio: 'ignore',
    });
  }
}
const failed = results.filter((r) => !r.ok);
console.log(`${results.length - failed.length} passed, ${failed.length} failed`);
process.exit(failed.length ? 1 : 0);

function resultFiles(): ResultsFile[] {
  if (!existsSync(RESULTS)) return [];
  return readdirSync(RESULTS)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(join(RESULTS, f), 'utf8')) as ResultsFile);
}

/** The latest result of every case, across the results files. */
function latestResults(
  files = resultFiles(),
): Map<string, CaseResult & { at: string; commit: string }> {
  const latest = new Map<string, CaseResult & { at: string; commit: string }>();
  for (const f of files)
    for (const r of f.results)
      latest.set(`${r.runbook} ${r.step} ${r.fault}`, { ...r, at: f.at, commit: f.commit ?? '?' });
  return latest;
}

/** The page: its introduction as written, then the latest result of every case of the current steps. */
function render(): string {
  const files = resultFiles();
  const latest = latestResults(files);
  // The steps of a runbook this run did not plan are those the newest file that has them planned.
  const planned: Record<string, string[]> = {};
  for (const f of files) Object.assign(planned, f.steps ?? {});
  Object.assign(planned, steps);
  const shown = [...latest.values()].filter((r) => planned[r.runbook]?.includes(r.step));
  const intro = readFileSync(join(ROOT, 'docs', 'reliability.md'), 'utf8').split(
    '<!-- matrix -->',
  )[0]!;
  const table = (rb: MatrixRunbook): string => {
    const rows = (planned[rb] ?? []).map((step) => {
      const cells = FAULTS.map((f) => {
        const r = latest.get(`${rb} ${step} ${f}`);
        return r ? `${r.ok ? 'ok' : '**FAILED**'} ${r.outcomes.join('→')}, on ${r.on}` : 'not run';
      });
      return `| ${step} | ${cells.join(' | ')} |`;
    });
    return [
      `### ${rb}`,
      '',
      `| step | ${FAULTS.join(' | ')} |`,
      `|${' --- |'.repeat(FAULTS.length + 1)}`,
      ...rows,
    ].join('\n');
  };
  const all = RUNBOOKS.reduce((n, rb) => n + (planned[rb]?.length ?? 0) * FAULTS.length, 0);
  const failures = shown
    .filter((r) => !r.ok)
    .map(
      (r) => `- ${r.runbook} ${r.step} ${r.fault} (${r.at}, ${r.commit}): ${r.failures.join('; ')}`,
    );
  const commits = [...new Set(shown.map((r) => r.commit))];
  const dates = shown.map((r) => r.at).sort();
  return [
    intro.trimEnd(),
    '',
    '<!-- matrix -->',
    '',
    `The latest result of each case: ${shown.length} of ${all} cases run, ${shown.length - failures.length} held, ${failures.length} failed; run between ${dates[0]?.slice(0, 16) ?? '-'} and ${dates.at(-1)?.slice(0, 16) ?? '-'} UTC on ${commits.join(', ') || '-'}. Each cell: the outcome of the run (→ each resume after the fault was healed) and where services ended up.`,
    '',
    ...RUNBOOKS.map(table).flatMap((t) => [t, '']),
    ...(failures.length ? ['### Cases that failed', '', ...failures, ''] : []),
  ].join('\n');
}
