import { projectOf, type ProjectRef } from './project.ts';

/** Where runs and local state live: $BATON_HOME, else `.baton/` in the project root (project.ts). */
export function batonHome(at: ProjectRef = process.cwd(), env = process.env): string {
  return projectOf(at, env).home;
}
