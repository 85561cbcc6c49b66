/**
 * The project an operator runs baton in, found as git finds a repository and
 * npm a package: from the current directory upwards. Its root holds the
 * runbooks, the policy and infra/; its home ($BATON_HOME, else `.baton/` in
 * the root) the runs, locks, saved stacks and local state.
 */
import { statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { HOME_ENV } from './env.ts';

/** What makes a directory a project's root, strongest first. */
export const PROJECT_MARKERS = {
  /** Written by the operator: the policy file, or a runbooks/ directory. */
  project: ['baton.policy.json', 'runbooks/'],
  /** Left by baton: a baton home made by runs here before. */
  home: ['.baton/'],
} as const;

export interface Project {
  /** Where baton was started: paths the operator gives are relative to it. */
  readonly cwd: string;
  /** The project root: runbooks/, baton.policy.json, the approvers file, audit configs, infra/. */
  readonly root: string;
  /** The baton home: runs, the run index, approvals used, locks, saved stacks, testnet and audit state. */
  readonly home: string;
}

/** A directory to find the project from, or the project already found. */
export type ProjectRef = string | Project;

function kind(path: string): 'dir' | 'file' | undefined {
  try {
    return statSync(path).isDirectory() ? 'dir' : 'file';
  } catch {
    return undefined;
  }
}

function holds(dir: string, markers: readonly string[]): boolean {
  return markers.some((m) =>
    m.endsWith('/') ? kind(join(dir, m)) === 'dir' : kind(join(dir, m)) !== undefined,
  );
}

/**
 * A directory anyone may create files in (/tmp: world-writable, or sticky):
 * a marker there says nothing about whose project it is.
 */
function shared(dir: string): boolean {
  try {
    return (statSync(dir).mode & 0o1002) !== 0;
  } catch {
    return false;
  }
}

/**
 * The directories the search looks at: `cwd`, then each parent, up to and
 * including the top of a git checkout (a directory holding `.git`) or the
 * filesystem root, and never into a shared directory. The completion scripts
 * (completion.ts) walk the same way.
 */
function searched(cwd: string): string[] {
  const dirs: string[] = [];
  for (let dir = cwd; ;) {
    dirs.push(dir);
    if (kind(join(dir, '.git'))) return dirs;
    const parent = dirname(dir);
    if (parent === dir || shared(parent)) return dirs;
    dir = parent;
  }
}

/**
 * The project root for `cwd`: the nearest directory, from `cwd` upwards, that
 * holds `baton.policy.json` or a `runbooks/` directory; failing that, the
 * nearest that holds a `.baton/` directory; failing that, `cwd` itself. The
 * search ends at the top of a git checkout and at the filesystem root, and
 * does not enter a shared directory such as /tmp (world-writable or sticky).
 */
export function findProjectRoot(cwd: string = process.cwd()): string {
  const start = resolve(cwd);
  const dirs = searched(start);
  return (
    dirs.find((d) => holds(d, PROJECT_MARKERS.project)) ??
    dirs.find((d) => holds(d, PROJECT_MARKERS.home)) ??
    start
  );
}

/** The project for `cwd`: its root, and its home ($BATON_HOME, relative to `cwd`; else `<root>/.baton`). */
export function findProject(cwd: string = process.cwd(), env = process.env): Project {
  const start = resolve(cwd);
  const root = findProjectRoot(start);
  const home = env[HOME_ENV] ? resolve(start, env[HOME_ENV]) : join(root, '.baton');
  return { cwd: start, root, home };
}

export function projectOf(ref: ProjectRef = process.cwd(), env = process.env): Project {
  return typeof ref === 'string' ? findProject(ref, env) : ref;
}
