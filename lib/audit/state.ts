/** Where the audit keeps what it must remember between runs: `.baton/audit/` (or `$BATON_HOME/audit/`). */
import { join } from 'node:path';
import { projectOf, type ProjectRef } from '../core/project.ts';

export interface AuditPaths {
  dir: string;
  /** Disk measurements, one JSON object a line, for growth rates. */
  history: string;
  /** Failures alerted, repeats, escalations and acknowledgements. */
  alerts: string;
  /** The last audit's results, for `audit ack` and the status page. */
  last: string;
}

/** `at`: the project, or a directory to find it from (core/project.ts). */
export function auditPaths(at: ProjectRef = process.cwd(), env = process.env): AuditPaths {
  const dir = join(projectOf(at, env).home, 'audit');
  return {
    dir,
    history: join(dir, 'history.jsonl'),
    alerts: join(dir, 'alerts.json'),
    last: join(dir, 'last.json'),
  };
}
