/** `baton report` and `baton verify`: a run read back from its journal. */
import { Option, type Command } from 'commander';
import { EXIT, Exit, type JsonFailure } from '../exit.ts';
import {
  ALLOWED_SIGNERS_HELP,
  CONTROLLER_KEY_HELP,
  withCommon,
  type CommandContext,
  type VerifyOptions,
} from './common.ts';

export function reportCommand(program: Command, ctx: CommandContext): void {
  const { io, cli } = ctx;
  withCommon(
    ctx,
    program
      .command('report <run-id>')
      .description('The run as a post-mortem timeline, from its verified journal.')
      .addOption(
        new Option('--format <format>', 'output format')
          .choices(['md', 'markdown', 'json'])
          .default('md'),
      ),
  )
    .addHelpText(
      'after',
      `
Examples:
  npx baton report 20261121T060102Z-config-release-1a2b
  npx baton report <run-id> --format json
Exits 1 when the journal fails verification (tampered or truncated).`,
    )
    .action(async (runId: string, o: { format: string }) => {
      const [{ runDir }, { readJournal }, { buildReport, renderMarkdown }] = await Promise.all([
        import('../run-store.ts'),
        import('../../engine/journal.ts'),
        import('../report.ts'),
      ]);
      const report = buildReport(readJournal(runDir(runId, ctx.app)));
      io.out(
        cli.json || o.format === 'json' ? JSON.stringify(report, null, 2) : renderMarkdown(report),
      );
      throw new Exit(EXIT.done);
    });
}

export function verifyCommand(program: Command, ctx: CommandContext): void {
  const { io, cli } = ctx;
  withCommon(
    ctx,
    program
      .command('verify <run-id>')
      .description(
        "Check a run's journal: its chain, every signed head against the allowed signers and the run index, the approvals behind its clearance, and say what no check covers.",
      )
      .option('--allowed-signers <file>', ALLOWED_SIGNERS_HELP)
      .option('--controller-key <file.pub>', CONTROLLER_KEY_HELP),
  )
    .addHelpText(
      'after',
      `
Examples:
  npx baton verify 20261121T060102Z-handover-1a2b
  npx baton verify <run-id> --allowed-signers approvers --json
Run it where the repository's baton.policy.json and approvers file are the ones
the run was planned under: the approvals are checked against them.
Exits 0 when the journal is verified, 1 when it is not: a broken chain, a signed
head it no longer matches, a bad signature, a signed end the run index has and
the journal lacks, a clearance whose approvals do not hold, or nothing signed at all.`,
    )
    .action(async (runId: string, o: VerifyOptions) => {
      const [{ runDir }, { runIndex }, { clearanceVerifier, signersFor }, signing] =
        await Promise.all([
          import('../run-store.ts'),
          import('../paths.ts'),
          import('../runs.ts'),
          import('../../approval/signing.ts'),
        ]);
      const dir = runDir(runId, ctx.app);
      const signers = signersFor({ ...o, cwd: ctx.app });
      const v = await signing.verifyRun(dir, {
        ...(signers ? { signers } : {}),
        verifyClearance: clearanceVerifier(ctx.app),
        index: runIndex(ctx.app),
      });
      const exitCode = v.status === 'verified' ? EXIT.done : EXIT.failed;
      if (cli.json) {
        const failure: JsonFailure | undefined =
          exitCode === EXIT.done
            ? undefined
            : {
                error: v.problems.length
                  ? v.problems.join('; ')
                  : `the journal of run ${runId} is ${v.status}: ${v.status === 'unsigned' ? 'nothing in it is signed' : 'its last record is not signed yet'}`,
                code: v.status === 'failed' ? 'JOURNAL_CORRUPT' : 'JOURNAL_UNVERIFIED',
                exitCode,
                hint:
                  v.status === 'incomplete'
                    ? `\`baton resume ${runId}\` signs it.`
                    : 'Read `baton verify` without --json for what was and was not checked.',
              };
        io.out(JSON.stringify({ runId, ...v, ...(failure ?? { exitCode }) }, null, 2));
      } else io.out(signing.renderVerification(runId, v));
      throw new Exit(exitCode);
    });
}
