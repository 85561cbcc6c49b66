/** The runbooks a project and baton know, each loaded once, with the hash of the code it runs. */
import { existsSync } from 'node:fs';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  codeVersion,
  type CodeManifest,
  type CodeReader,
  type CodeVersion,
} from '../core/code-version.ts';
import { BatonError, InvalidInputError, thrownText } from '../core/errors.ts';
import type { AnyRunbook } from '../core/runbook.ts';
import { batonVersion } from '../core/package-root.ts';
import { projectOf, type Project, type ProjectRef } from '../core/project.ts';
import { importModule, runbookCandidates, runbookNames } from './load-module.ts';
import { PACKAGE_ROOT } from './paths.ts';

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
    batonVersion: batonVersion(),
    ...(reader ? { reader } : {}),
  });
}

/**
 * A runbook by name (the project's runbooks/NAME.ts, then baton's own
 * runbooks/) or by path (relative to where baton was started).
 */
export async function loadRunbook(
  ref: string,
  at: ProjectRef = process.cwd(),
): Promise<LoadedRunbook> {
  const candidates = runbookCandidates(ref, projectOf(at));
  const file = candidates.find((f) => existsSync(f));
  if (!file) {
    throw new InvalidInputError(
      `no runbook ${ref}`,
      `Looked for ${candidates.join(' and ')}. \`baton runbooks\` lists the runbooks baton knows.`,
    );
  }
  let mod: { default?: AnyRunbook };
  try {
    mod = (await importModule(file)) as typeof mod;
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
  return runbookNames(projectOf(at));
}

/** Loads each runbook once per process: a plan and its run see the same module and the same code hash. */
export class RunbookRegistry {
  private readonly loaded = new Map<string, Promise<LoadedRunbook>>();
  private readonly project: Project;
  constructor(at: ProjectRef) {
    this.project = projectOf(at);
  }

  load(ref: string): Promise<LoadedRunbook> {
    // A path is its own key (however it was written); a name is looked up the same way each time.
    const candidates = runbookCandidates(ref, this.project);
    const key = candidates.length === 1 ? candidates[0]! : ref;
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
