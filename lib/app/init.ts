/**
 * `baton init`: an operator's repository, scaffolded: an example runbook, a
 * Pulumi project exporting an inventory, the policy and an approvers file,
 * .gitignore and package.json. What to write is decided first, then written;
 * a file that exists is kept byte for byte (only .gitignore is appended to).
 */
import {
  appendFileSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { InvalidInputError } from '../core/errors.ts';
import { batonVersion, packageRoot } from '../core/package-root.ts';

/** baton's scaffold, shipped with it: files copied as they are, but for `__name__`. */
export const TEMPLATES = join(packageRoot(), 'templates', 'init');

/** The Pulumi packages of infra/, at the versions baton's own infra/ is tested with (Node 20: @pulumi/pulumi 3.248.0). */
export const INFRA_PACKAGES: Readonly<Record<string, string>> = {
  '@pulumi/azure-native': '3.28.0',
  '@pulumi/linode': '5.1.1',
  '@pulumi/policy': '1.21.0',
  '@pulumi/pulumi': '3.248.0',
  '@pulumi/tls': '5.6.1',
};

/** Lines .gitignore must have: the baton home, and the packages package.json installs. */
const IGNORED = ['.baton/', 'node_modules/'];

export type InitAction = 'create' | 'append' | 'keep';

export interface InitEntry {
  /** Relative to the directory initialised. */
  path: string;
  action: InitAction;
  /** What is written: the whole file, or the lines appended. */
  content: string;
  /** Why a file is kept, or what was appended. */
  note?: string;
}

export interface InitPlan {
  dir: string;
  entries: InitEntry[];
}

export interface InitResult {
  dir: string;
  created: string[];
  /** Files that existed and had lines added (.gitignore). */
  updated: string[];
  /** Files that existed and were left as they are. */
  skipped: string[];
  /** What the operator may want to do about a kept file. */
  notes: Record<string, string>;
}

interface PackageJson {
  version?: string;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

function batonPackage(): PackageJson {
  return JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as PackageJson;
}

/** The version range baton itself declares for a package it uses. */
function declared(pkg: PackageJson, name: string): string {
  const range =
    pkg.dependencies?.[name] ?? pkg.peerDependencies?.[name] ?? pkg.devDependencies?.[name];
  if (!range) throw new Error(`baton's package.json declares no ${name}`);
  return range;
}

/** A Pulumi project or npm package name from a directory's name. */
function projectName(dir: string): string {
  const name = basename(dir)
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[-._]+|[-._]+$/g, '');
  return name || 'ops';
}

const json = (data: unknown): string => JSON.stringify(data, null, 2) + '\n';

export interface ScaffoldFile {
  path: string;
  content: string;
  /** What to fix by hand in the file that exists already and is kept, if anything. */
  whenKept?: (existing: string) => string | undefined;
}

/** An operator's own package.json needs ESM and the two packages a runbook imports. */
function packageJsonLacks(dependencies: Record<string, string>) {
  return (existing: string): string | undefined => {
    let data: { type?: string } & PackageJson = {};
    try {
      data = JSON.parse(existing) as typeof data;
    } catch {
      // Not JSON: say what it needs, all of it.
    }
    const missing = Object.entries(dependencies).filter(
      ([n]) => !data.dependencies?.[n] && !data.devDependencies?.[n],
    );
    const needs = [
      ...(data.type === 'module' ? [] : ['"type": "module"']),
      ...missing.map(([n, v]) => `${n} ${v} in its dependencies`),
    ];
    return needs.length ? `it needs ${needs.join(', ')}` : undefined;
  };
}

/** What `baton init` writes, each file's whole content. */
export function scaffold(dir: string): ScaffoldFile[] {
  const name = projectName(dir);
  const pkg = batonPackage();
  const template = (path: string): string =>
    readFileSync(join(TEMPLATES, path), 'utf8').replaceAll('__name__', name);
  const dependencies = { 'baton-runbooks': batonVersion(), zod: declared(pkg, 'zod') };
  return [
    { path: 'runbooks/example.ts', content: template('runbooks/example.ts') },
    { path: 'baton.policy.json', content: template('baton.policy.json') },
    { path: 'approvers', content: template('approvers') },
    {
      path: 'package.json',
      content: json({
        name,
        private: true,
        type: 'module',
        dependencies,
      }),
      whenKept: packageJsonLacks(dependencies),
    },
    {
      path: 'infra/package.json',
      content: json({
        name: `${name}-infra`,
        private: true,
        type: 'module',
        main: 'index.ts',
        dependencies: { ...INFRA_PACKAGES, tsx: declared(pkg, 'tsx') },
        overrides: { '@pulumi/pulumi': INFRA_PACKAGES['@pulumi/pulumi'] },
      }),
    },
    { path: 'infra/Pulumi.yaml', content: template('infra/Pulumi.yaml') },
    { path: 'infra/index.ts', content: template('infra/index.ts') },
    { path: '.gitignore', content: IGNORED.join('\n') + '\n' },
  ];
}

/** A file itself is looked at as it is (a symlink is never written through); a directory may be a link to one. */
function kindOf(path: string, follow = false): 'file' | 'dir' | 'other' | undefined {
  try {
    const st = follow ? statSync(path) : lstatSync(path);
    return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : 'other';
  } catch {
    return undefined;
  }
}

/** Whether a line of .gitignore already ignores what `line` does. */
function ignores(text: string, line: string): boolean {
  const bare = line.replace(/\/$/, '');
  return text
    .split('\n')
    .map((l) => l.trim())
    .some((l) => [bare, `${bare}/`, `/${bare}`, `/${bare}/`].includes(l));
}

/** Decide every file's fate before writing any: a path in the way stops it all, exit 2. */
export function planInit(target: string): InitPlan {
  const dir = resolve(target);
  const at = kindOf(dir, true);
  if (at !== undefined && at !== 'dir')
    throw new InvalidInputError(`${dir} exists and is not a directory`, 'Name a directory.');
  const entries: InitEntry[] = [];
  const inTheWay: string[] = [];
  for (const file of scaffold(dir)) {
    const path = join(dir, file.path);
    for (let up = dirname(file.path); up !== '.'; up = dirname(up)) {
      // A link to nowhere is in the way too: mkdir cannot go through it.
      const k = kindOf(join(dir, up), true) ?? kindOf(join(dir, up));
      if (k !== undefined && k !== 'dir') inTheWay.push(up);
    }
    const k = kindOf(path);
    if (k === undefined) {
      entries.push({ path: file.path, action: 'create', content: file.content });
    } else if (file.path === '.gitignore' && k === 'file') {
      const text = readFileSync(path, 'utf8');
      const missing = IGNORED.filter((l) => !ignores(text, l));
      if (missing.length === 0) entries.push({ path: file.path, action: 'keep', content: '' });
      else
        entries.push({
          path: file.path,
          action: 'append',
          content: (text === '' || text.endsWith('\n') ? '' : '\n') + missing.join('\n') + '\n',
          note: `added ${missing.join(', ')}`,
        });
    } else {
      const note = k === 'file' ? file.whenKept?.(readFileSync(path, 'utf8')) : undefined;
      entries.push({ path: file.path, action: 'keep', content: '', ...(note ? { note } : {}) });
    }
  }
  if (inTheWay.length > 0) {
    const names = [...new Set(inTheWay)].sort();
    throw new InvalidInputError(
      `baton init would write inside ${names.join(', ')} in ${dir}, which ${names.length === 1 ? 'is not a directory' : 'are not directories'}`,
      'Move it away, or init another directory; nothing was written.',
    );
  }
  return { dir, entries };
}

/** Write what the plan says: new files exclusively (never over one made meanwhile), lines appended. */
export function applyInit(plan: InitPlan): InitResult {
  const result: InitResult = { dir: plan.dir, created: [], updated: [], skipped: [], notes: {} };
  for (const entry of plan.entries) {
    const path = join(plan.dir, entry.path);
    if (entry.note) result.notes[entry.path] = entry.note;
    if (entry.action === 'keep') {
      result.skipped.push(entry.path);
      continue;
    }
    if (entry.action === 'append') {
      appendFileSync(path, entry.content);
      result.updated.push(entry.path);
      continue;
    }
    mkdirSync(dirname(path), { recursive: true });
    try {
      writeFileSync(path, entry.content, { flag: 'wx', mode: 0o644 });
      result.created.push(entry.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      result.skipped.push(entry.path);
    }
  }
  return result;
}

export function initProject(target: string): InitResult {
  return applyInit(planInit(target));
}
