/**
 * How long the installed CLI takes to start: `baton --version` of the package
 * as an operator installs it (npm pack, then npm install into a fresh
 * project, as test/package.test.ts does), against `node -e 0` as the floor;
 * and how much the install weighs on disk.
 *
 *   npx tsx bench/startup.ts [RUNS] [--install DIR] [--imports]
 *
 * --install DIR reuses a project made before (the path it printed); --imports
 * also times each import of dist/lib/app/cli.js alone, in a fresh node each,
 * and names the heavy packages it brings in.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { importSpecifiers } from '../lib/core/code-version.ts';
import { install, installed, operatorEnv, REPO, type Installed } from '../test/support/package.ts';

const HEAVY = ['zod', 'zx', 'ssh2', 'commander', 'tsx'];

interface Stats {
  medianMs: number;
  p90Ms: number;
  minMs: number;
  maxMs: number;
}

function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
  const round = (n: number): number => Math.round(n * 10) / 10;
  return {
    medianMs: round(
      s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2,
    ),
    p90Ms: round(at(0.9)),
    minMs: round(s[0]!),
    maxMs: round(s.at(-1)!),
  };
}

function timed(cmd: string, args: string[], cwd: string): number {
  const start = performance.now();
  const r = spawnSync(cmd, args, { cwd, env: operatorEnv(), encoding: 'utf8' });
  const ms = performance.now() - start;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}

function du(path: string, apparent = false): number {
  const r = spawnSync(
    'du',
    ['-s', apparent ? '--apparent-size' : '', '-B1', path].filter(Boolean),
    {
      encoding: 'utf8',
    },
  );
  return Number(r.stdout.split('\t')[0]);
}

/** Each import of cli.js alone: its median import time, and the heavy packages it loads. */
function importCosts(pkg: Installed): { module: string; medianMs: number; loads: string[] }[] {
  const cli = join(pkg.project, 'node_modules', 'baton-runbooks', 'dist', 'lib', 'app', 'cli.js');
  const trace = join(pkg.project, 'bench-trace.txt');
  const hooks = join(pkg.project, 'bench-trace-hooks.mjs');
  const preload = join(pkg.project, 'bench-trace.mjs');
  writeFileSync(
    hooks,
    `import { appendFileSync } from 'node:fs';
export async function resolve(s, c, next) {
  const r = await next(s, c);
  appendFileSync(process.env.BENCH_TRACE, r.url + '\\n');
  return r;
}
`,
  );
  writeFileSync(
    preload,
    "import { register } from 'node:module';\nregister('./bench-trace-hooks.mjs', import.meta.url);\n",
  );
  const modules = [
    ...importSpecifiers(readFileSync(cli, 'utf8'))
      .filter((s) => !s.startsWith('node:'))
      .map((s) => (s.startsWith('.') ? pathToFileURL(join(dirname(cli), s)).href : s)),
    pathToFileURL(cli).href,
  ];
  return modules.map((spec) => {
    const script = `const t = performance.now(); await import(${JSON.stringify(spec)}); process.stdout.write(String(performance.now() - t));`;
    const samples: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        cwd: pkg.project,
        env: operatorEnv(),
        encoding: 'utf8',
      });
      samples.push(Number(r.stdout));
    }
    writeFileSync(trace, '');
    spawnSync(
      process.execPath,
      [
        '--import',
        pathToFileURL(preload).href,
        '--input-type=module',
        '-e',
        `await import(${JSON.stringify(spec)});`,
      ],
      { cwd: pkg.project, env: operatorEnv({ BENCH_TRACE: trace }), encoding: 'utf8' },
    );
    const urls = readFileSync(trace, 'utf8');
    const loads = HEAVY.filter((p) => urls.includes(`/node_modules/${p}/`));
    const module = spec.includes('/dist/lib/')
      ? spec.slice(spec.indexOf('/dist/lib/') + '/dist/lib/'.length)
      : spec;
    return { module, medianMs: stats(samples).medianMs, loads };
  });
}

function main(): void {
  const args = process.argv.slice(2);
  const at = args.indexOf('--install');
  const reuse = at >= 0 ? args[at + 1] : undefined;
  const runs = Number(args.find((a) => /^\d+$/.test(a)) ?? process.env.RUNS ?? 20);
  const pkg = reuse ? installed(reuse) : install();
  console.log(`baton-runbooks ${pkg.version} installed in ${pkg.project}`);

  const baton: number[] = [];
  const floor: number[] = [];
  for (let i = 0; i < runs + 2; i++) {
    const b = timed(pkg.bin, ['--version'], pkg.project);
    const n = timed(process.execPath, ['-e', '0'], pkg.project);
    if (i < 2) continue; // warm-up: the page cache, not baton
    baton.push(b);
    floor.push(n);
  }
  const b = stats(baton);
  const n = stats(floor);
  const ratio = {
    median: Math.round((b.medianMs / n.medianMs) * 100) / 100,
    p90: Math.round((b.p90Ms / n.p90Ms) * 100) / 100,
  };
  const modules = join(pkg.project, 'node_modules');
  const size = {
    nodeModulesBytes: du(modules),
    nodeModulesApparentBytes: du(modules, true),
    batonBytes: du(join(modules, 'baton-runbooks')),
    batonApparentBytes: du(join(modules, 'baton-runbooks'), true),
  };
  const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

  console.log(`\n${runs} runs each, after 2 warm-up runs\n`);
  console.log('| command          | median ms | p90 ms | min ms | max ms | ÷ node -e 0 (median) |');
  console.log('| ---------------- | --------: | -----: | -----: | -----: | -------------------: |');
  console.log(
    `| baton --version  | ${b.medianMs} | ${b.p90Ms} | ${b.minMs} | ${b.maxMs} | ${ratio.median} |`,
  );
  console.log(`| node -e 0        | ${n.medianMs} | ${n.p90Ms} | ${n.minMs} | ${n.maxMs} | 1 |`);
  console.log(
    `\ninstalled: node_modules ${mib(size.nodeModulesBytes)} on disk (${mib(size.nodeModulesApparentBytes)} apparent), baton-runbooks itself ${mib(size.batonBytes)}`,
  );

  const imports = args.includes('--imports') ? importCosts(pkg) : undefined;
  if (imports) {
    console.log('\neach import of dist/lib/app/cli.js alone (median of 5, ms), and what it loads:');
    for (const i of imports)
      console.log(
        `  ${i.module.padEnd(32)} ${String(i.medianMs).padStart(7)}  ${i.loads.join(' ')}`,
      );
  }

  const date = new Date().toISOString().slice(0, 10);
  const file = join(REPO, 'bench', 'results', `startup-${date}.json`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(
    file,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        version: pkg.version,
        runs,
        baton: {
          command: 'baton --version',
          ...b,
          samplesMs: baton.map((s) => Math.round(s * 10) / 10),
        },
        floor: { command: 'node -e 0', ...n, samplesMs: floor.map((s) => Math.round(s * 10) / 10) },
        ratio,
        size,
        ...(imports ? { imports } : {}),
        environment: {
          node: process.version,
          cpus: cpus().length,
          load: loadavg().map((l) => Math.round(l * 100) / 100),
        },
      },
      null,
      2,
    ) + '\n',
  );
  console.log(`\nwrote ${file}`);
}

main();
