/**
 * baton as an operator gets it: `npm pack` of this repository (the build runs
 * through prepack), installed with zod into a fresh project outside the
 * repository. The package test and bench/startup.ts share it.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const REPO = resolve(import.meta.dirname, '..', '..');

export interface Installed {
  /** The operator's project: package.json, node_modules/baton-runbooks, runbooks/. */
  project: string;
  /** node_modules/.bin/baton of the project. */
  bin: string;
  /** The packed tarball. */
  tarball: string;
  version: string;
}

/** The environment of an operator's shell: npm's script variables (npm_package_*, …) taken out. */
export function operatorEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')),
  );
  return { ...env, ...extra };
}

function npm(args: string[], cwd: string): SpawnSyncReturns<string> {
  const r = spawnSync('npm', args, {
    cwd,
    env: operatorEnv(),
    encoding: 'utf8',
    timeout: 170_000,
  });
  if (r.status !== 0)
    throw new Error(`npm ${args.join(' ')} in ${cwd} exited ${r.status}:\n${r.stdout}${r.stderr}`);
  return r;
}

/** Packs the repository into a temporary directory and returns the tarball. */
export function pack(): string {
  const dest = mkdtempSync(join(tmpdir(), 'baton-tarball-'));
  npm(['pack', '--pack-destination', dest, '--silent'], REPO);
  const [tgz] = readdirSync(dest).filter((f) => f.endsWith('.tgz'));
  if (!tgz) throw new Error(`npm pack wrote no tarball in ${dest}`);
  return join(dest, tgz);
}

/** A fresh project (outside the repository) with the tarball and zod installed, from npm's cache where it can. */
export function install(tarball = pack()): Installed {
  const root = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
    version: string;
    devDependencies: Record<string, string>;
  };
  const project = mkdtempSync(join(tmpdir(), 'baton-installed-'));
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({ name: 'ops', version: '1.0.0', private: true, type: 'module' }, null, 2) +
      '\n',
  );
  npm(
    [
      'install',
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      tarball,
      `zod@${root.devDependencies.zod}`,
    ],
    project,
  );
  return {
    project,
    bin: join(project, 'node_modules', '.bin', 'baton'),
    tarball,
    version: root.version,
  };
}

/** An install made before (by `install()`), found again from its project directory. */
export function installed(project: string): Installed {
  const pkg = JSON.parse(
    readFileSync(join(project, 'node_modules', 'baton-runbooks', 'package.json'), 'utf8'),
  ) as { version: string };
  return {
    project,
    bin: join(project, 'node_modules', '.bin', 'baton'),
    tarball: '',
    version: pkg.version,
  };
}
