/** Where baton's own files are, and where a project keeps its runs and state. */
import { join, resolve } from 'node:path';
import { packageRoot } from './version.ts';
import { RUN_INDEX_FILE } from '../approval/signing.ts';

/** baton's own package: its runbooks/, tools/ and package.json. */
export const PACKAGE_ROOT = packageRoot();

/** Where runs and local state live: $BATON_HOME, else ./.baton. */
export function batonHome(cwd = process.cwd()): string {
  return process.env.BATON_HOME ? resolve(process.env.BATON_HOME) : join(resolve(cwd), '.baton');
}

export function runsDir(cwd?: string): string {
  return join(batonHome(cwd), 'runs');
}

/** The run store's index of signed heads (signing.ts), beside the runs. */
export function runIndex(cwd?: string): string {
  return join(batonHome(cwd), RUN_INDEX_FILE);
}
