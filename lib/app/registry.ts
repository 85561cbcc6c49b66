/** The runbooks a project and baton know, each loaded once, with the hash of the code it runs. */
import { existsSync, readdirSync } from 'node:fs';
import { extname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  codeVersion,
  type CodeManifest,
  type CodeReader,
  type CodeVersion,
} from '../core/code-version.ts';
import { BatonError, InvalidInputError, thrownText } from '../core/errors.ts';
import type { AnyRunbook } from '../core/runbook.ts';
import { projectOf, type Project, type ProjectRef } from '../core/project.ts';
import { PACKAGE_ROOT } from './paths.ts';
import { version } from './version.ts';

/** baton's runner: the module whose import graph, with the runbook's, is the code a run executes. */
const RUNNER = fileURLToPath(
  new URL(`./runs${extname(fileURLToPath(import.meta.url))}`, import.meta.url),
);

export interface LoadedRunbook {
  runbook: AnyRunbook;
  file: string;
  /** Hash of the code that runs (see code-version.ts): approvals and resumes bind to it. */
  codeVersion: string;
  /** What `codeVersion` covers, file by file, so a refusal can name the file that changed. */
  codeManifest: CodeManifest;
}

/** The code a run of this runbook executes: its module graph and baton's runner (this module's). */
export function runbookCode(file: string, reader?: CodeReader): CodeVersion {
  return codeVersion({
    entries: [file, RUNNER],
    batonRoot: PACKAGE_ROOT,
    batonVersion: version(),
    ...(reader ? { reader } : {}),
  });
}

const isPath = (ref: string): boolean => ref.includes('/') || /\.(ts|js|mjs)$/.test(ref);

/**
 * A runbook by name (the project's runbooks/NAME.ts, then baton's own
 * runbooks/) or by path (relative to where baton was started).
 */
export async function loadRunbook(
  ref: string,
  at: ProjectRef = process.cwd(),
): Promise<LoadedRunbook> {
  const project = projectOf(at);
  const candidates = isPath(ref)
    ? [isAbsolute(ref) ? ref : resolve(project.cwd, ref)]
    : [join(project.root, 'runbooks', `${ref}.ts`), join(PACKAGE_ROOT, 'runbooks', `${ref}.ts`)];
  const file = candidates.find((f) => existsSync(f));
  if (!file) {
    throw new InvalidInputError(
      `no runbook ${ref}`,
      `Looked for ${candidates.join(' and ')}. \`baton runbooks\` lists the runbooks baton knows.`,
    );
  }
  let mod: { default?: AnyRunbook };
  try {
    mod = (await import(pathToFileURL(file).href)) as typeof mod;
  } catch (e) {
    throw new BatonError(
      'INVALID_INPUT',
      `${file === ref ? file : `runbook ${ref} (${file})`} could not be loaded: ${thrownText(e)}`,
      'Fix the runbook file; nothing was run. BATON_DEBUG=1 shows where it failed.',
      { cause: e },
    );
  }
  const runbook = mod.default;
  if (!runbook || runbook.kind !== 'baton.runbook') {
    throw new InvalidInputError(`${file} does not export a runbook as default (use defineRunbook)`);
  }
  const code = runbookCode(file);
  return { runbook, file, codeVersion: code.hash, codeManifest: code.manifest };
}

export function listRunbooks(at: ProjectRef = process.cwd()): string[] {
  const names = new Set<string>();
  for (const dir of [join(projectOf(at).root, 'runbooks'), join(PACKAGE_ROOT, 'runbooks')]) {
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir))
      if (f.endsWith('.ts') && !f.endsWith('.test.ts')) names.add(f.slice(0, -3));
  }
  return [...names].sort();
}

/** Loads each runbook once per process: a plan and its run see the same module and the same code hash. */
export class RunbookRegistry {
  private readonly loaded = new Map<string, Promise<LoadedRunbook>>();
  private readonly project: Project;
  constructor(at: ProjectRef) {
    this.project = projectOf(at);
  }

  load(ref: string): Promise<LoadedRunbook> {
    const key = isPath(ref) ? resolve(this.project.cwd, ref) : ref;
    let p = this.loaded.get(key);
    if (!p) {
      p = loadRunbook(ref, this.project);
      // A failed load is not kept: the operator fixes the file and asks again.
      p.catch(() => this.loaded.delete(key));
      this.loaded.set(key, p);
    }
    return p;
  }

  list(): string[] {
    return listRunbooks(this.project);
  }
}
