/** `baton audit` and `baton audit ack`: the incidents' lessons, checked from the command line. */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { BatonError, InvalidInputError } from '../core/errors.ts';
import { loadInventory } from '../core/inventory.ts';
import { runsDir } from '../app/runs.ts';
import { LOCAL_STACK } from '../testnet/stack.ts';
import { defaultTransports } from '../transports/index.ts';
import { acknowledge, alertFailures, type AlertOutcome } from './alert.ts';
import { runAudit, type AuditReport } from './audit.ts';
import { alertSchema, findAuditConfigFile, readAuditConfig, type AuditConfig } from './config.ts';
import { parseDuration } from './duration.ts';
import { renderHtml } from './html.ts';
import { renderTable } from './render.ts';
import { auditPaths } from './state.ts';
import { ensureTestnetLuks, testnetAuditConfig } from './testnet.ts';

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
}

interface AuditOptions {
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

/** The report of the last audit in this directory, if any. */
export function readLastReport(file = auditPaths().last): AuditReport | undefined {
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as AuditReport;
  } catch {
    return undefined;
  }
}

function writeAtomically(file: string, text: string): void {
  mkdirSync(dirname(file), { recursive: true });
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, text, { mode: 0o644 });
  renameSync(temp, file);
}

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
    .action(async (o: AuditOptions) => {
      const json = io.json() || Boolean(o.json);
      if (!o.stack)
        throw new InvalidInputError(
          'name the stack to audit: baton audit --stack NAME',
          'For the local testnet: baton audit --stack local.',
        );
      const stack = o.stack;
      const inventory = await loadInventory(stack);
      const file = findAuditConfigFile(stack, o.config);
      let config: AuditConfig;
      const transports = defaultTransports();
      try {
        if (file) config = readAuditConfig(file, inventory);
        else if (stack === LOCAL_STACK) {
          config = testnetAuditConfig(inventory);
          if (!o.printConfig && (await ensureTestnetLuks(inventory, transports)))
            io.err(
              'testnet: made the LUKS container vault:/srv/crypt/backup.luks for the passphrase check',
            );
        } else {
          throw new InvalidInputError(
            `no audit config for stack ${stack}: looked for baton.audit.${stack}.json and baton.audit.json in ${resolve('.')}`,
            'Write one (docs/audit.md has a full example), or pass --config FILE.',
          );
        }
        if (o.printConfig) {
          io.out(JSON.stringify(config, null, 2));
          return;
        }
        const alert = alertPolicy(config, o);
        const paths = auditPaths();
        const report = await runAudit({
          config,
          inventory,
          transports,
          paths,
          runsRoot: runsDir(),
          ...(o.only.length ? { only: o.only } : {}),
          ...(json
            ? {}
            : {
                onResult: (r) =>
                  io.err(`  ${r.verdict === 'pass' ? 'pass' : r.verdict.toUpperCase()}  ${r.id}`),
              }),
        });
        if (o.only.length && report.checks.length === 0) {
          throw new InvalidInputError(
            `--only ${o.only.join(', ')} matches no check of this audit`,
            'Run without --only to see every check id.',
          );
        }
        let alerts: AlertOutcome | undefined;
        if (alert?.command) alerts = await alertFailures(report, alert, paths.alerts, new Date());
        if (o.html) writeAtomically(resolve(o.html), renderHtml(report));
        if (json) {
          io.out(
            JSON.stringify(
              {
                ...report,
                ...(alerts ? { alerts } : {}),
                ...(o.html ? { html: resolve(o.html) } : {}),
                exitCode: report.counts.fail ? 1 : 0,
              },
              null,
              2,
            ),
          );
        } else {
          io.out(renderTable(report, { verbose: Boolean(o.verbose) }));
          if (o.html) io.out(`Status page: ${resolve(o.html)}`);
          if (alerts) for (const line of describeAlerts(alerts)) io.out(line);
        }
        if (report.counts.fail > 0)
          throw new AuditFailedError(
            report.checks.filter((c) => c.verdict === 'fail').map((c) => c.id),
          );
      } finally {
        await transports.close();
      }
    });

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
    .action((id: string, o: { by?: string; note?: string; json?: boolean }) => {
      const paths = auditPaths();
      const by = o.by ?? process.env.SUDO_USER ?? userInfo().username;
      const failure = acknowledge(paths.alerts, readLastReport(paths.last), id, {
        at: new Date().toISOString(),
        by,
        ...(o.note ? { note: o.note } : {}),
      });
      if (io.json() || o.json) io.out(JSON.stringify({ id, ...failure }, null, 2));
      else
        io.out(
          `acknowledged ${id} (failing since ${failure.failingSince}) as ${by}: no more alerts for it until it passes again`,
        );
    });
}

function alertPolicy(config: AuditConfig, o: AuditOptions): AuditConfig['alert'] {
  const given = {
    ...config.alert,
    ...(o.alertCommand ? { command: o.alertCommand } : {}),
    ...(o.escalateCommand ? { escalateCommand: o.escalateCommand } : {}),
    ...(o.escalationContact ? { escalationContact: o.escalationContact } : {}),
    ...(o.escalateAfter !== undefined ? { escalateAfter: Number(o.escalateAfter) } : {}),
    ...(o.repeat !== undefined ? { repeat: o.repeat } : {}),
  };
  if (o.repeat !== undefined && parseDuration(o.repeat) === undefined)
    throw new InvalidInputError(
      `--repeat ${o.repeat} is not a duration`,
      'Write e.g. 30m, 1h or 2h.',
    );
  const parsed = alertSchema.safeParse(given);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InvalidInputError(
      `alerting: ${issue.path.join('.') || '(alert)'}: ${issue.message}`,
      "Check --alert-command, --escalate-after and --repeat (or the config's alert section).",
    );
  }
  return parsed.data;
}

function describeAlerts(a: AlertOutcome): string[] {
  const lines: string[] = [];
  for (const d of a.deliveries) {
    lines.push(
      d.exitCode === 0
        ? `Alerts: ${d.items} sent through the ${d.command} command`
        : `Alerts: the ${d.command} command FAILED (${d.error ?? `exit ${d.exitCode}`}); the next audit sends them again`,
    );
  }
  for (const q of a.quiet) lines.push(`Alerts: ${q.id} not repeated now: ${q.why}`);
  return lines;
}
