/**
 * The code a run executes, as one hash: every file the runbook and baton's
 * runner import, transitively (static `import`/`export … from`, `import 'x'`,
 * `import('literal')`, `require('literal')`), the version of every package
 * they import from node_modules, baton's version and the lockfiles. Plans,
 * approvals and resumes bind to it; the manifest says which file changed.
 *
 * Packages in node_modules count by name and version, not by content: the
 * lockfile pins what is installed, and walking node_modules would hash
 * megabytes on every plan. baton itself is walked wherever it is installed.
 */
import { createHash } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';

/** Entry name → sha256 of the file (or a package's version), e.g. `baton:lib/engine/engine.ts`. */
export type CodeManifest = Record<string, string>;

export interface CodeVersion {
  hash: string;
  manifest: CodeManifest;
}

/** How the graph reads the disk; tests swap it to see a changed file without writing one. */
export interface CodeReader {
  /** The file's bytes, or undefined when there is no such file. */
  read(path: string): Buffer | undefined;
  realpath(path: string): string;
}

export const diskReader: CodeReader = {
  read(path) {
    try {
      return readFileSync(path);
    } catch {
      return undefined;
    }
  },
  realpath(path) {
    try {
      return realpathSync(path);
    } catch {
      return path;
    }
  },
};

export interface CodeVersionInput {
  /** The modules that run: the runbook, and baton's runner. */
  entries: string[];
  /** baton's package directory. */
  batonRoot: string;
  batonVersion: string;
  /** The operator's project (its lockfile counts); default: the nearest package.json above the first entry. */
  projectRoot?: string;
  reader?: CodeReader;
}

const SCANNED = /\.(ts|tsx|mts|cts|js|mjs|cjs)$/;
const LOCKFILES = ['package-lock.json', 'npm-shrinkwrap.json', 'yarn.lock', 'pnpm-lock.yaml'];
const BUILTINS = new Set(builtinModules);

export function codeVersion(input: CodeVersionInput): CodeVersion {
  const reader = input.reader ?? diskReader;
  const batonRoot = reader.realpath(input.batonRoot);
  const first = input.entries[0];
  const projectRoot = reader.realpath(
    input.projectRoot ?? (first ? projectRootOf(first, reader) : batonRoot),
  );
  const manifest: CodeManifest = { 'baton-version': input.batonVersion };
  const label = (file: string): string =>
    within(batonRoot, file) && !within(join(batonRoot, 'node_modules'), file)
      ? `baton:${slash(relative(batonRoot, file))}`
      : `project:${slash(relative(projectRoot, file))}`;

  const seen = new Set<string>();
  const queue = input.entries.map((e) => reader.realpath(resolve(e)));
  while (queue.length > 0) {
    const file = queue.shift()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const bytes = reader.read(file);
    if (!bytes) {
      manifest[label(file)] = 'missing';
      continue;
    }
    manifest[label(file)] = sha256(bytes);
    if (!SCANNED.test(file)) continue;
    for (const spec of importSpecifiers(bytes.toString('utf8'))) {
      const target = resolveSpecifier(spec, file, batonRoot, reader);
      if (target.kind === 'file') queue.push(target.path);
      else if (target.kind === 'package') manifest[`package:${target.name}`] = target.version;
      else if (target.kind === 'unresolved')
        manifest[`unresolved:${label(file)}:${spec}`] = 'missing';
    }
  }
  for (const [name, root] of [
    ['baton', batonRoot],
    ['project', projectRoot],
  ] as const) {
    if (name === 'project' && root === batonRoot) continue;
    for (const lock of LOCKFILES) {
      const bytes = reader.read(join(root, lock));
      if (bytes) manifest[`lockfile:${name}:${lock}`] = sha256(bytes);
    }
  }
  const sorted = Object.fromEntries(
    Object.keys(manifest)
      .sort()
      .map((k) => [k, manifest[k]!]),
  );
  return { hash: manifestHash(sorted), manifest: sorted };
}

/** The hash a manifest stands for: its entries in a stable order. */
export function manifestHash(manifest: CodeManifest): string {
  const lines = Object.keys(manifest)
    .sort()
    .map((name) => `${name}\t${manifest[name]}\n`);
  return sha256(Buffer.from(`baton code v1\n${lines.join('')}`));
}

export interface CodeChange {
  name: string;
  was?: string;
  now?: string;
}

/** What differs between two manifests, by entry name. */
export function codeChanges(was: CodeManifest, now: CodeManifest): CodeChange[] {
  const names = [...new Set([...Object.keys(was), ...Object.keys(now)])].sort();
  return names
    .filter((n) => was[n] !== now[n])
    .map((name) => ({
      name,
      ...(was[name] !== undefined ? { was: was[name] } : {}),
      ...(now[name] !== undefined ? { now: now[name] } : {}),
    }));
}

/** `baton:lib/steps/services.ts (changed), package:zod (4.1.0 → 4.2.0)`. */
export function describeCodeChanges(changes: CodeChange[]): string {
  return changes
    .map((c) => {
      if (c.was === undefined) return `${c.name} (new)`;
      if (c.now === undefined) return `${c.name} (no longer used)`;
      if (c.name.startsWith('package:') || c.name === 'baton-version')
        return `${c.name} (${c.was} → ${c.now})`;
      return `${c.name} (changed)`;
    })
    .join(', ');
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function slash(path: string): string {
  return sep === '/' ? path : path.split(sep).join('/');
}

function within(dir: string, file: string): boolean {
  const rel = relative(dir, file);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

function projectRootOf(file: string, reader: CodeReader): string {
  let dir = dirname(resolve(file));
  for (;;) {
    if (reader.read(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) return dirname(resolve(file));
    dir = up;
  }
}

type Target =
  | { kind: 'file'; path: string }
  | { kind: 'package'; name: string; version: string }
  | { kind: 'builtin' }
  | { kind: 'unresolved' };

const EXTENSIONS = ['.ts', '.tsx', '.mts', '.js', '.mjs', '.cjs', '.json'];

function resolveFile(base: string, reader: CodeReader): string | undefined {
  const candidates = [base];
  const js = /\.(m|c)?js$/.exec(base);
  if (js) candidates.push(base.slice(0, -js[0].length) + `.${js[1] ?? ''}ts`);
  candidates.push(...EXTENSIONS.map((e) => base + e));
  candidates.push(...EXTENSIONS.map((e) => join(base, 'index' + e)));
  const found = candidates.find((c) => reader.read(c) !== undefined);
  return found ? reader.realpath(found) : undefined;
}

function resolveSpecifier(
  spec: string,
  from: string,
  batonRoot: string,
  reader: CodeReader,
): Target {
  if (spec.startsWith('node:') || BUILTINS.has(spec) || BUILTINS.has(spec.split('/')[0]!))
    return { kind: 'builtin' };
  if (spec.startsWith('file://')) spec = new URL(spec).pathname;
  if (spec.startsWith('.') || isAbsolute(spec)) {
    const path = resolveFile(resolve(dirname(from), spec), reader);
    return path ? { kind: 'file', path } : { kind: 'unresolved' };
  }
  if (spec.startsWith('#')) return resolveImportsField(spec, from, batonRoot, reader);
  const parts = spec.split('/');
  const name = spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
  const subpath = parts.slice(spec.startsWith('@') ? 2 : 1).join('/');
  for (let dir = dirname(from); ; dir = dirname(dir)) {
    const pkgDir = join(dir, 'node_modules', name);
    const pkg = reader.read(join(pkgDir, 'package.json'));
    if (pkg) {
      if (reader.realpath(pkgDir) === batonRoot) {
        const exported = exportedPath(pkg, subpath);
        const path =
          exported !== undefined
            ? resolveFile(join(batonRoot, exported), reader)
            : subpath
              ? resolveFile(join(batonRoot, subpath), reader)
              : undefined;
        return path ? { kind: 'file', path } : { kind: 'unresolved' };
      }
      const version = (JSON.parse(pkg.toString('utf8')) as { version?: string }).version;
      return { kind: 'package', name, version: version ?? 'unversioned' };
    }
    if (dirname(dir) === dir) return { kind: 'package', name, version: 'not installed' };
  }
}

/** `baton-runbooks/steps` through baton's `exports` (exact subpaths, as baton's package.json has them). */
function exportedPath(pkg: Buffer, subpath: string): string | undefined {
  const exports = (JSON.parse(pkg.toString('utf8')) as { exports?: unknown }).exports;
  if (exports === undefined || exports === null) return undefined;
  const key = subpath ? `./${subpath}` : '.';
  if (typeof exports === 'string' || Array.isArray(exports))
    return key === '.' ? conditionalTarget(exports) : undefined;
  const map = exports as Record<string, unknown>;
  if (!Object.keys(map).some((k) => k.startsWith('.')))
    return key === '.' ? conditionalTarget(map) : undefined;
  return key in map ? conditionalTarget(map[key]) : undefined;
}

/** `#lib/x` through the nearest package.json's `imports`, as Node resolves it. */
function resolveImportsField(
  spec: string,
  from: string,
  batonRoot: string,
  reader: CodeReader,
): Target {
  for (let dir = dirname(from); ; dir = dirname(dir)) {
    const pkg = reader.read(join(dir, 'package.json'));
    if (pkg) {
      const imports = (JSON.parse(pkg.toString('utf8')) as { imports?: Record<string, unknown> })
        .imports;
      for (const [pattern, target] of Object.entries(imports ?? {})) {
        const star = pattern.indexOf('*');
        const match =
          star < 0
            ? pattern === spec
              ? ''
              : undefined
            : spec.startsWith(pattern.slice(0, star)) && spec.endsWith(pattern.slice(star + 1))
              ? spec.slice(star, spec.length - (pattern.length - star - 1))
              : undefined;
        if (match === undefined) continue;
        const chosen = conditionalTarget(target);
        if (!chosen) return { kind: 'unresolved' };
        const replaced = chosen.replace('*', match);
        return replaced.startsWith('./')
          ? resolveSpecifier(join(dir, replaced), from, batonRoot, reader)
          : resolveSpecifier(replaced, from, batonRoot, reader);
      }
      return { kind: 'unresolved' };
    }
    if (dirname(dir) === dir) return { kind: 'unresolved' };
  }
}

function conditionalTarget(target: unknown): string | undefined {
  if (typeof target === 'string') return target;
  if (Array.isArray(target)) return target.map(conditionalTarget).find(Boolean);
  if (target && typeof target === 'object') {
    const t = target as Record<string, unknown>;
    for (const c of ['node', 'import', 'default']) if (c in t) return conditionalTarget(t[c]);
  }
  return undefined;
}

const REGEX_BEFORE = new Set('(,=:[!&|?{};+-*%<>~^'.split(''));
const REGEX_AFTER_WORDS = new Set([
  'return',
  'typeof',
  'instanceof',
  'in',
  'of',
  'new',
  'delete',
  'void',
  'throw',
  'case',
  'do',
  'else',
  'yield',
  'await',
]);

/**
 * The module specifiers a source file imports. Comments, regular expressions
 * and the text of strings are taken out first, so an import written in a
 * comment or a string does not count, and one after a `"` in a regex does.
 */
export function importSpecifiers(source: string): string[] {
  const strings: string[] = [];
  let i = 0;
  const n = source.length;

  const readQuoted = (quote: string): string => {
    let text = '';
    i++;
    while (i < n && source[i] !== quote && source[i] !== '\n') {
      if (source[i] === '\\') {
        text += source[i + 1] ?? '';
        i += 2;
      } else text += source[i++];
    }
    i++;
    return text;
  };

  const code = (untilBrace: boolean): string => {
    let out = '';
    let depth = 0;
    while (i < n) {
      const c = source[i]!;
      const next = source[i + 1];
      if (c === '/' && next === '/') {
        while (i < n && source[i] !== '\n') i++;
      } else if (c === '/' && next === '*') {
        const end = source.indexOf('*/', i + 2);
        i = end < 0 ? n : end + 2;
        out += ' ';
      } else if (c === "'" || c === '"') {
        strings.push(readQuoted(c));
        out += `"${strings.length - 1}"`;
      } else if (c === '`') {
        i++;
        let text = '';
        let plain = true;
        while (i < n && source[i] !== '`') {
          if (source[i] === '\\') {
            text += source[i + 1] ?? '';
            i += 2;
          } else if (source[i] === '$' && source[i + 1] === '{') {
            i += 2;
            plain = false;
            out += code(true);
          } else text += source[i++];
        }
        i++;
        strings.push(plain ? text : '');
        out += `"${strings.length - 1}"`;
      } else if (c === '/' && regexAllowed(out)) {
        i++;
        let inClass = false;
        while (i < n && source[i] !== '\n') {
          const r = source[i]!;
          if (r === '\\') i++;
          else if (r === '[') inClass = true;
          else if (r === ']') inClass = false;
          else if (r === '/' && !inClass) break;
          i++;
        }
        i++;
        while (i < n && /[a-z]/i.test(source[i]!)) i++;
        out += '0';
      } else if (untilBrace && c === '{') {
        depth++;
        out += c;
        i++;
      } else if (untilBrace && c === '}') {
        i++;
        if (depth === 0) return out + ' ';
        depth--;
        out += c;
      } else {
        out += c;
        i++;
      }
    }
    return out;
  };

  const text = code(false);
  const specs: string[] = [];
  const patterns = [
    /\b(?:import|export)\b[^"`;()]*?\bfrom\s*"(\d+)"/g,
    /\bimport\s*"(\d+)"/g,
    /\bimport\s*\(\s*"(\d+)"\s*[,)]/g,
    /\brequire\s*\(\s*"(\d+)"\s*\)/g,
  ];
  for (const pattern of patterns) {
    for (const m of text.matchAll(pattern)) {
      const spec = strings[Number(m[1])];
      if (spec) specs.push(spec);
    }
  }
  return [...new Set(specs)];
}

function regexAllowed(before: string): boolean {
  const trimmed = before.trimEnd();
  if (trimmed === '') return true;
  const last = trimmed.at(-1)!;
  if (REGEX_BEFORE.has(last)) return true;
  const word = /[A-Za-z_$][\w$]*$/.exec(trimmed)?.[0];
  return word !== undefined && REGEX_AFTER_WORDS.has(word);
}
