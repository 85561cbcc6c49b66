/** Builders for the engine's tests: a scratch workspace with a stack of local hosts. */
import { createHash } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import type { Io } from '../lib/app/io.ts';
import type { Inventory } from '../lib/core/inventory.ts';

export const ROOT = resolve(import.meta.dirname, '..');
export const ORDERED = join(ROOT, 'test', 'fixtures', 'ordered.ts');
export const ORDERED_PONR = join(ROOT, 'test', 'fixtures', 'ordered-ponr.ts');
export const ORDERED_COMMIT = join(ROOT, 'test', 'fixtures', 'ordered-commit.ts');
export const ORDERED_MARKED = join(ROOT, 'test', 'fixtures', 'ordered-marked.ts');

export interface Workspace {
  /** The controller's working directory: holds .baton/ */
  cwd: string;
  /** Where the fixture runbook's hosts keep their files. */
  data: string;
  log(): string[];
}

export function localNodes(names: string[] = ['a', 'b']): Inventory {
  return {
    stack: 'nodes',
    hosts: names.map((name) => ({
      name,
      roles: ['node'],
      address: 'localhost',
      connection: 'local' as const,
    })),
  };
}

export function workspace(hosts: string[] = ['a', 'b']): Workspace {
  const cwd = mkdtempSync(join(tmpdir(), 'baton-test-'));
  const data = join(cwd, 'data');
  mkdirSync(data);
  mkdirSync(join(cwd, '.baton', 'stacks'), { recursive: true });
  writeFileSync(
    join(cwd, '.baton', 'stacks', 'nodes.json'),
    JSON.stringify({ inventory: localNodes(hosts) }),
  );
  // The fixture stack is directories on this machine; its repository's policy asks no approvals
  // (the approval tests write their own).
  writeFileSync(
    join(cwd, 'baton.policy.json'),
    JSON.stringify({ stacks: { nodes: { approvers: 0 } } }),
  );
  return {
    cwd,
    data,
    log() {
      try {
        return readFileSync(join(data, 'log'), 'utf8').trim().split('\n').filter(Boolean);
      } catch {
        return [];
      }
    },
  };
}

/** Take a run's lines out of the run store's index, as whoever can write the store can. */
export function forgetInIndex(cwd: string, runId: string): void {
  const index = join(cwd, '.baton', 'runs-index.jsonl');
  const kept = readFileSync(index, 'utf8')
    .split('\n')
    .filter((l) => l.trim() && (JSON.parse(l) as { runId: string }).runId !== runId);
  writeFileSync(index, kept.map((l) => l + '\n').join(''));
}

/** sha256 over every path, mode and content below dir: equal trees hash equally. */
export function treeHash(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = statSync(p);
      h.update(`${relative(dir, p)}\0${st.mode}\0`);
      if (st.isDirectory()) walk(p);
      else h.update(readFileSync(p));
    }
  };
  walk(dir);
  return h.digest('hex');
}

/** Every file's text below dir, for looking for secrets. */
export function allText(dir: string): string {
  let out = '';
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out += readFileSync(p, 'utf8') + '\n';
    }
  };
  walk(dir);
  return out;
}

export interface CapturedIo extends Io {
  stdout: string[];
  stderr: string[];
  text(): string;
}

export function captureIo(answers: string[] = []): CapturedIo {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return {
    stdout,
    stderr,
    out: (t) => void stdout.push(t),
    err: (t) => void stderr.push(t),
    stdoutIsTTY: false,
    stdinIsTTY: false,
    ask: async () => answers.shift() ?? '',
    text: () => [...stdout, ...stderr].join('\n'),
  };
}

/** Run `fn` with the process in `dir` (the CLI resolves its paths from there). */
export async function inDir<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const before = process.cwd();
  process.chdir(dir);
  try {
    return await fn();
  } finally {
    process.chdir(before);
  }
}

/** Poll `cond` until it holds, failing after `ms`. */
export async function waitFor(what: string, cond: () => boolean, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
