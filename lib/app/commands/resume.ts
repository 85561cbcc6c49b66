/** `baton resume`: continue a run whose controller stopped. */
import type { Command } from 'commander';
import { EXIT_CODES_HELP } from '../exit.ts';
import {
  ALLOWED_SIGNERS_HELP,
  collect,
  CONTROLLER_KEY_HELP,
  finish,
  makeDisplay,
  signingKeyOf,
  SIGNING_KEY_HELP,
  withCommon,
  type CommandContext,
  type VerifyOptions,
} from './common.ts';

export function resumeCommand(program: Command, ctx: CommandContext): void {
  withCommon(
    ctx,
    program
      .command('resume <run-id>')
      .description(
        'Continue a run whose controller stopped: re-verify the interrupted step, then continue or roll back.',
      )
      .option(
        '--param <name=value>',
        'secret parameters again (journals never hold them)',
        collect,
        [],
      )
      .option('--signing-key <path>', SIGNING_KEY_HELP)
      .option('--allowed-signers <file>', ALLOWED_SIGNERS_HELP)
      .option('--controller-key <file.pub>', CONTROLLER_KEY_HELP),
  )
    .addHelpText(
      'after',
      `
Examples:
  npx baton resume 20261121T060102Z-config-release-1a2b
  npx baton resume <run-id> --param credential=@env:CREDENTIAL
  npx baton resume <run-id> --signing-key ~/.ssh/id_ed25519
A signed journal is verified first (as \`baton verify\` does); one that fails is not resumed.
The code must be the code the run started with: otherwise exit 2, naming the files that changed.
${EXIT_CODES_HELP}`,
    )
    .action(async (runId: string, o: VerifyOptions & { param: string[]; signingKey?: string }) => {
      const { resumeRun } = await import('../runs.ts');
      const display = makeDisplay(ctx);
      const result = await resumeRun({
        runId,
        params: o.param,
        cwd: ctx.app.cwd,
        app: ctx.app,
        ...signingKeyOf(ctx, o),
        ...(o.allowedSigners ? { allowedSigners: o.allowedSigners } : {}),
        ...(o.controllerKey ? { controllerKey: o.controllerKey } : {}),
        deps: { onEvent: (e) => display.event(e) },
      });
      display.close();
      return finish(ctx, result);
    });
}
