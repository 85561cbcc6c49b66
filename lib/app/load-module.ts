/**
 * Finding and importing runbooks. The project's runbooks are TypeScript
 * (runbooks/NAME.ts under the working directory); baton's own are its sources
 * in a checkout and compiled JavaScript in the installed package
 * (dist/runbooks/NAME.js).
 */
import { existsSync, readdirSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { batonFile, isCompiled } from '../core/package-root.ts';
import type { Project } from '../core/project.ts';

/** A directory of runbooks and the extensions a runbook file has there. */
export interface RunbookDir {
  dir: string;
  extensions: string[];
}

/** baton's own runbooks: the sources in a checkout, the build in the package. */
export function builtinRunbooks(): RunbookDir {
  return isCompiled()
    ? { dir: batonFile('dist', 'runbooks'), extensions: ['.js'] }
    : { dir: batonFile('runbooks'), extensions: ['.ts'] };
}

/** Where a runbook is looked for by name, first wins: the project's runbooks/, then baton's. */
export function runbookDirs(project: Project): RunbookDir[] {
  return [{ dir: join(project.root, 'runbooks'), extensions: ['.ts'] }, builtinRunbooks()];
}

/**
 * The files `ref` may be: itself when it is a path (relative to where baton
 * was started), else NAME in each runbook directory.
 */
export function runbookCandidates(ref: string, project: Project): string[] {
  if (ref.includes('/') || /\.(ts|js|mjs)$/.test(ref))
    return [isAbsolute(ref) ? ref : resolve(project.cwd, ref)];
  return runbookDirs(project).flatMap(({ dir, extensions }) =>
    extensions.map((e) => join(dir, ref + e)),
  );
}

/** The names of every runbook in the runbook directories, sorted, each once. */
export function runbookNames(project: Project): string[] {
  const names = new Set<string>();
  for (const { dir, extensions } of runbookDirs(project)) {
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir)) {
      if (/\.(test|d)\.ts$/.test(f)) continue;
      const ext = extensions.find((e) => f.endsWith(e));
      if (ext) names.add(f.slice(0, -ext.length));
    }
  }
  return [...names].sort();
}

let typescript: Promise<void> | undefined;

/**
 * Import a runbook (or any module) by path. A TypeScript file loaded by the
 * compiled package first registers tsx, once, process-wide, so that the
 * runbook's `baton-runbooks` is the one running: tsx's `tsImport` would load
 * baton again beside it, and an InvalidInputError the runbook throws would be
 * another class than baton's (a runbook error, exit 1, instead of exit 2).
 * From the sources, TypeScript already loads.
 */
export async function importModule(file: string): Promise<unknown> {
  if (/\.[cm]?tsx?$/.test(file) && isCompiled()) {
    typescript ??= import('tsx/esm/api').then(({ register }) => {
      register();
    });
    await typescript;
  }
  return import(pathToFileURL(file).href);
}
