/** `baton approve` and `baton countersign`: a person's signature on a plan, or on a finished solo run. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { BatonError } from '../../core/errors.ts';
import { EXIT, Exit } from '../exit.ts';
import { withCommon, type CommandContext } from './common.ts';

export function approveCommand(program: Command, ctx: CommandContext): void {
  const { io, cli } = ctx;
  withCommon(
    ctx,
    program
      .command('approve <plan-file>')
      .description('Sign a plan, or reconfirm it after the hold, with your own SSH key.')
      .requiredOption(
        '--key <path>',
        'your ssh private key (or its .pub, with the key in ssh-agent)',
      )
      .option('--out <dir>', 'where to write the approval file; - for standard output', '.')
      .option('--reconfirm <token>', 'reconfirm after the hold, with the token the run printed')
      .option('--emergency', 'approve it as an emergency run')
      .option(
        '--as <principal>',
        'your name in the approvers file (informational; the signature decides)',
      ),
  )
    .addHelpText(
      'after',
      `
Examples:
  npx baton approve plan.json --key ~/.ssh/id_ed25519 --out approvals/
  npx baton approve plan.json --key ~/.ssh/id_ed25519 --reconfirm 5f0c…e1 --out approvals/
  npx baton approve plan.json --key ~/.ssh/id_ed25519 --emergency --out -
Read the plan it prints before you sign: your signature covers exactly those commands.`,
    )
    .action(
      async (
        file: string,
        o: { key: string; out: string; reconfirm?: string; emergency?: boolean; as?: string },
      ) => {
        const [
          { readPlanFile },
          { renderPlan },
          { loadRepositoryPolicy, resolvePolicy },
          approval,
        ] = await Promise.all([
          import('../planfile.ts'),
          import('../../core/plan.ts'),
          import('../../approval/policy.ts'),
          import('../../approval/approval.ts'),
        ]);
        const planFile = readPlanFile(file);
        const { plan } = planFile;
        if (!plan.policyHash) {
          throw new BatonError(
            'INVALID_INPUT',
            `${file} was made by an older baton and names no policy`,
            'Plan again with this baton, then approve the new plan file.',
          );
        }
        io.err(renderPlan(plan, planFile.planHash));
        const repo = loadRepositoryPolicy(ctx.app);
        if (repo.hash !== plan.policyHash) {
          io.err(
            `note: the plan was made under policy ${plan.policyHash.slice(0, 12)}, and baton.policy.json and the approvers file here give ${repo.hash.slice(0, 12)}; the run checks your approval against the policy the plan names`,
          );
        }
        const rules = resolvePolicy({
          repo,
          runbook: plan.runbook,
          stack: plan.stack,
          destructive: plan.steps.some((s) => s.destructive),
          testnet: false,
        });
        const signed = await approval.sign({
          purpose: o.reconfirm ? 'reconfirm' : 'approve',
          planHash: planFile.planHash,
          policyHash: plan.policyHash,
          ttlHours: (o.emergency ? rules.emergency : rules).approvalTtlHours,
          runbook: planFile.plan.runbook,
          stack: planFile.plan.stack,
          emergency: Boolean(o.emergency),
          keyPath: o.key,
          ...(o.reconfirm ? { token: o.reconfirm } : {}),
          ...(o.as ? { signer: o.as } : {}),
        });
        const text = JSON.stringify(signed) + '\n';
        if (o.out === '-') io.out(text);
        else {
          mkdirSync(o.out, { recursive: true });
          const name = approval.approvalFileName(signed, o.as ?? o.key.split('/').pop() ?? 'key');
          const path = join(o.out, name);
          writeFileSync(path, text, { mode: 0o644 });
          if (cli.json)
            io.out(
              JSON.stringify({ file: path, purpose: signed.purpose, planHash: signed.planHash }),
            );
          else {
            const what = signed.purpose === 'approve' ? 'approval' : 'reconfirmation';
            io.out(
              `${what} of plan ${planFile.planHash.slice(0, 12)} written to ${path}; good for one run until ${signed.expiresAt}`,
            );
          }
        }
        throw new Exit(EXIT.done);
      },
    );
}

export function countersignCommand(program: Command, ctx: CommandContext): void {
  const { io, cli } = ctx;
  withCommon(
    ctx,
    program
      .command('countersign <run-id>')
      .description(
        "Review a solo emergency run: sign its finished journal as a second approver, into the run's directory.",
      )
      .requiredOption(
        '--key <path>',
        'your ssh private key (or its .pub, with the key in ssh-agent)',
      )
      .option(
        '--as <principal>',
        'your name in the approvers file (informational; the signature decides)',
      ),
  )
    .addHelpText(
      'after',
      `
Examples:
  npx baton report 20261121T060102Z-failover-1a2b      read what the run did first
  npx baton countersign 20261121T060102Z-failover-1a2b --key ~/.ssh/id_ed25519
Until it is countersigned, \`baton runs\` and \`baton audit\` show the run as owing it.`,
    )
    .action(async (runId: string, o: { key: string; as?: string }) => {
      const [{ runDir }, { readJournal }, { buildReport, renderMarkdown }, { countersignRun }] =
        await Promise.all([
          import('../run-store.ts'),
          import('../../engine/journal.ts'),
          import('../report.ts'),
          import('../../approval/ledger.ts'),
        ]);
      const dir = runDir(runId, ctx.app);
      io.err(renderMarkdown(buildReport(readJournal(dir))));
      const { file, principal } = await countersignRun({
        dir,
        keyPath: o.key,
        cwd: ctx.app,
        ...(o.as ? { signer: o.as } : {}),
      });
      if (cli.json) io.out(JSON.stringify({ runId, file, countersignedBy: principal }));
      else io.out(`run ${runId} countersigned by ${principal}: ${file}`);
      throw new Exit(EXIT.done);
    });
}
