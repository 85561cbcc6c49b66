/**
 * `npm run faults`: the whole fault matrix on a testnet of its own, written
 * to docs/reliability.md and bench-style JSON under test/faults/results/.
 *   sudo npm run faults                       # every case
 *   sudo npm run faults -- --sample           # the CI sample
 *   sudo npm run faults -- handover cut-dns kill   # one case
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as testnet from '../../lib/testnet/index.ts';
import '../../lib/testnet/stack.ts';
import {
  allCases,
  FAULTS,
  matrixSteps,
  runCaseSafely,
  RUNBOOKS,
  sampleCases,
  type Case,
  type CaseResult,
  type Fault,
  type MatrixRunbook,
} from './matrix.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const args = process.argv.slice(2);
const home = mkdtempSync(join(tmpdir(), 'baton-faults-'));
process.env.BATON_HOME = home;

const { inventory } = await testnet.up({ topology: 'irc' });
const pool = testnet.testnetPool({ readyTimeoutMs: 20_000 });
const env = { home, bin: join(ROOT, 'bin', 'baton.js'), pool, inventory, log: console.log };
const results: CaseResult[] = [];
const steps: Record<string, string[]> = {};
try {
  for (const rb of RUNBOOKS) steps[rb] = await matrixSteps(env, rb);
  let cases: Case[];
  if (args.length === 3) {
    cases = [{ runbook: args[0] as MatrixRunbook, step: args[1]!, fault: args[2] as Fault }];
  } else if (args.includes('--sample')) {
    cases = [
      ...sampleCases('handover', steps.handover!),
      ...sampleCases('failover', steps.failover!, 3),
    ];
  } else cases = RUNBOOKS.flatMap((rb) => allCases(rb, steps[rb]!));
  console.log(`${cases.length} cases`);
  for (const c of cases) results.push(await runCaseSafely(env, c));
} finally {
  await pool.close();
  await testnet.down();
  rmSync(home, { recursive: true, force: true });
}

const stamp = new Date().toISOString();
mkdirSync(join(ROOT, 'test', 'faults', 'results'), { recursive: true });
const file = join(ROOT, 'test', 'faults', 'results', `${stamp.replace(/[:.]/g, '-')}.json`);
writeFileSync(file, JSON.stringify({ at: stamp, args, results }, null, 2) + '\n');
if (args.length !== 3) writeFileSync(join(ROOT, 'docs', 'reliability.md'), render(stamp, results));
const failed = results.filter((r) => !r.ok);
console.log(`${results.length - failed.length} passed, ${failed.length} failed`);
process.exit(failed.length ? 1 : 0);

function render(at: string, all: CaseResult[]): string {
  const intro = readFileSync(join(ROOT, 'docs', 'reliability.md'), 'utf8').split(
    '<!-- matrix -->',
  )[0]!;
  const table = (rb: MatrixRunbook): string => {
    const rows = steps[rb]!.map((step) => {
      const cells = FAULTS.map((f) => {
        const r = all.find((x) => x.runbook === rb && x.step === step && x.fault === f);
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
  const failures = all
    .filter((r) => !r.ok)
    .map((r) => `- ${r.runbook} ${r.step} ${r.fault}: ${r.failures.join('; ')}`);
  return [
    intro.trimEnd(),
    '',
    '<!-- matrix -->',
    '',
    `Run of ${at}: ${all.length} cases, ${all.length - failures.length} held, ${failures.length} failed. Each cell: the outcome of the run (→ each resume after the fault was healed) and where services ended up.`,
    '',
    ...RUNBOOKS.map(table).flatMap((t) => [t, '']),
    ...(failures.length ? ['### Cases that failed', '', ...failures, ''] : []),
  ].join('\n');
}
