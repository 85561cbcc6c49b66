/** Where baton's own files are, and where a project keeps its runs and state. */
import { join } from 'node:path';
import { packageRoot } from './version.ts';
import { RUN_INDEX_FILE } from '../approval/signing.ts';
import { projectOf, type ProjectRef } from '../core/project.ts';

export { findProject, findProjectRoot, type Project, type ProjectRef } from '../core/project.ts';

/** baton's own package: its runbooks/, tools/ and package.json. */
export const PACKAGE_ROOT = packageRoot();

/** Where runs and local state live: $BATON_HOME, else `.baton/` in the project root (core/project.ts). */
export function batonHome(at: ProjectRef = process.cwd(), env = process.env): string {
  return projectOf(at, env).home;
}

export function runsDir(at?: ProjectRef): string {
  return join(batonHome(at), 'runs');
}

/** The run store's index of signed heads (signing.ts), beside the runs. */
export function runIndex(at?: ProjectRef): string {
  return join(batonHome(at), RUN_INDEX_FILE);
}
