/** Where the audit keeps what it must remember between runs: `.baton/audit/` (or `$BATON_HOME/audit/`). */
import { join, resolve } from 'node:path';

export interface AuditPaths {
  dir: string;
  /** Disk measurements, one JSON object a line, for growth rates. */
  history: string;
  /** Failures alerted, repeats, escalations and acknowledgements. */
  alerts: string;
  /** The last audit's results, for `audit ack` and the status page. */
  last: string;
}

export function auditPaths(cwd = process.cwd(), env = process.env): AuditPaths {
  const dir = join(resolve(cwd, env['BATON_HOME'] || '.baton'), 'audit');
  return {
    dir,
    history: join(dir, 'history.jsonl'),
    alerts: join(dir, 'alerts.json'),
    last: join(dir, 'last.json'),
  };
}
