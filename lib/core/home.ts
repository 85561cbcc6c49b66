import { join, resolve } from 'node:path';

/** Where runs and local state live: $BATON_HOME, else ./.baton. */
export function batonHome(cwd = process.cwd()): string {
  return process.env.BATON_HOME ? resolve(process.env.BATON_HOME) : join(resolve(cwd), '.baton');
}
