/** `baton audit` and `baton audit ack`: the incidents' lessons, checked from the command line. */
import type { Command } from 'commander';
import { BatonError } from '../core/errors.ts';
import type { App } from '../app/app.ts';

/**
 * Thrown after the results are printed when a check failed: exit 1. It has
 * been reported in full, so the entry point should only map its code (see
 * `isReported`) and print nothing more.
 */
export class AuditFailedError extends BatonError {
  readonly reported = true;
  readonly failed: string[];
  constructor(failed: string[]) {
    super(
      'AUDIT_FAILED',
      `the audit failed: ${failed.join(', ')}`,
      'Read the evidence and remedy of each failed check above.',
    );
    this.name = 'AuditFailedError';
    this.failed = failed;
  }
}

/** Whether an error has already been reported to the operator (an audit that failed). */
export function isReported(e: unknown): boolean {
  return e instanceof AuditFailedError;
}

export interface AuditIo {
  out(line: string): void;
  err(line: string): void;
  json(): boolean;
  /** Where the stack's inventory and the transports to its hosts come from. */
  app: App;
}

export interface AuditOptions {
  stack?: string;
  config?: string;
  json?: boolean;
  html?: string;
  only: string[];
  verbose?: boolean;
  printConfig?: boolean;
  alertCommand?: string;
  escalateCommand?: string;
  escalateAfter?: string;
  escalationContact?: string;
  repeat?: string;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/**
 * Add `audit` and `audit ack` to the baton program. When a check fails the
 * action prints the results, then throws AuditFailedError (code
 * AUDIT_FAILED, exit 1 through exitCodeFor): the entry point should return
 * that code without printing the error again, e.g.
 * `if (isReported(e)) return exitCodeFor(e.code)` before its own reporting.
 */
export function registerAuditCommands(program: Command, io: AuditIo): void {
  const audit = program
    .command('audit')
    .description(
      "Check the incidents' lessons on a stack: backups fresh and restorable, passphrases that open their disks, disk headroom, standby readiness.",
    )
    .option('--stack <name>', 'the hosts to audit: a Pulumi stack, a saved outputs file, local')
    .option(
      '--config <file>',
      'the audit config (default baton.audit.<stack>.json, else baton.audit.json; stack local has a built-in one)',
    )
    .option('--json', 'machine-readable output on stdout')
    .option('--html <file>', 'also write a self-contained status page to this file')
    .option(
      '--only <check>',
      'run only checks with this id, id prefix or kind; repeatable',
      collect,
      [],
    )
    .option('--verbose', 'show the evidence of passing checks too')
    .option(
      '--print-config',
      'print the audit config in effect (references, never secret values) and run nothing',
    )
    .option(
      '--alert-command <cmd>',
      'run this (sh -c) with the failures on stdin; repeats until acknowledged',
    )
    .option(
      '--escalate-command <cmd>',
      'also run this for failures unacknowledged after --escalate-after alerts',
    )
    .option('--escalate-after <n>', 'alerts before a failure escalates (default 3)')
    .option('--escalation-contact <who>', 'named in escalated alerts')
    .option('--repeat <duration>', 'first pause between repeats, doubling up to 8h (default 1h)')
    .addHelpText(
      'after',
      `
Examples:
  npx baton audit --stack local                        the local irc testnet, with its built-in config
  npx baton audit --stack production --html status/index.html
  npx baton audit --stack production --json --only backup-freshness
  npx baton audit --stack production --alert-command 'mail -s "baton audit" ops@example.org' \\
      --escalate-command '/usr/local/bin/page-oncall' --escalate-after 3
  npx baton audit ack backup-freshness:atheme --note "job re-enabled, backup running"

Exit codes: 0 every check passed (warnings allowed), 1 a check failed, 2 invalid input.
The audit config is described in docs/audit.md; state is kept in .baton/audit/.`,
    )
    .action(async (o: AuditOptions) => (await import('./command.ts')).audit(o, io));

  audit
    .command('ack <check-id>')
    .description('Acknowledge a failing check: its alerts stop repeating until it passes again.')
    .option('--by <name>', 'who acknowledges (default the login name)')
    .option('--note <text>', 'what is being done about it')
    .option('--json', 'machine-readable output on stdout')
    .addHelpText(
      'after',
      `
Examples:
  npx baton audit ack backup-freshness:atheme
  npx baton audit ack disk:vault:/srv/backup --by alice --note "rotating the retry log"`,
    )
    .action(async (id: string, o: { by?: string; note?: string; json?: boolean }) =>
      (await import('./command.ts')).ack(id, o, io),
    );
}
