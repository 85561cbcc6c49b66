/** Where baton's own files are, and where a project keeps its runs and state. */
import { join } from 'node:path';
import { batonHome } from '../core/home.ts';
import { packageRoot } from '../core/package-root.ts';
import { RUN_INDEX_FILE } from '../approval/signing.ts';

/** baton's own package: its runbooks/, tools/ and package.json. */
export const PACKAGE_ROOT = packageRoot();

export function runsDir(cwd?: string): string {
  return join(batonHome(cwd), 'runs');
}

/** The run store's index of signed heads (signing.ts), beside the runs. */
export function runIndex(cwd?: string): string {
  return join(batonHome(cwd), RUN_INDEX_FILE);
}
