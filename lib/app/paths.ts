/** Where baton's own files are, and where a project keeps its runs and state. */
import { join } from 'node:path';
import { packageRoot } from '../core/package-root.ts';
import { RUN_INDEX_FILE } from '../approval/signing.ts';
import { batonHome } from '../core/home.ts';
import type { ProjectRef } from '../core/project.ts';

/** baton's own package: its runbooks/, tools/ and package.json. */
export const PACKAGE_ROOT = packageRoot();

export function runsDir(at?: ProjectRef): string {
  return join(batonHome(at), 'runs');
}

/** The run store's index of signed heads (signing.ts), beside the runs. */
export function runIndex(at?: ProjectRef): string {
  return join(batonHome(at), RUN_INDEX_FILE);
}
