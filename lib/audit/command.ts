/** What `baton audit` and `baton audit ack` do, loaded only when one of them runs. */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname, resolve } from 'node:path';
import { InvalidInputError } from '../core/errors.ts';
import { LOCAL_STACK } from '../testnet/stack.ts';
import { acknowledge, alertFailures, type AlertOutcome } from './alert.ts';
import { runAudit, type AuditReport } from './audit.ts';
import { AuditFailedError, type AuditIo, type AuditOptions } from './cli.ts';
import { alertSchema, findAuditConfigFile, readAuditConfig, type AuditConfig } from './config.ts';
import { parseDuration } from './duration.ts';
import { renderHtml } from './html.ts';
import { renderTable } from './render.ts';
import { auditPaths } from './state.ts';
import { ensureTestnetLuks, testnetAuditConfig } from './testnet.ts';

export async function audit(o: AuditOptions, io: AuditIo): Promise<void> {
  const json = io.json() || Boolean(o.json);
  if (!o.stack)
    throw new InvalidInputError(
      'name the stack to audit: baton audit --stack NAME',
      'For the local testnet: baton audit --stack local.',
    );
  const stack = o.stack;
  const inventory = await io.app.inventory(stack);
  const file = findAuditConfigFile(stack, o.config, io.app);
  let config: AuditConfig;
  const transports = await io.app.transports();
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
        `no audit config for stack ${stack}: looked for baton.audit.${stack}.json and baton.audit.json in ${io.app.root}`,
        'Write one (docs/audit.md has a full example), or pass --config FILE.',
      );
    }
    if (o.printConfig) {
      io.out(JSON.stringify(config, null, 2));
      return;
    }
    const alert = alertPolicy(config, o);
    const paths = auditPaths(io.app, io.app.env);
    const report = await runAudit({
      config,
      inventory,
      transports,
      paths,
      project: io.app,
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
}

export function ack(
  id: string,
  o: { by?: string; note?: string; json?: boolean },
  io: AuditIo,
): void {
  const paths = auditPaths(io.app, io.app.env);
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
}

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
