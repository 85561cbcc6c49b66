/** `baton plan`: the dry run. */
import type { Command } from 'commander';
import { EXIT, Exit, type JsonFailure } from '../exit.ts';
import { invocation, runOptions, withCommon, type CommandContext } from './common.ts';

export function planCommand(program: Command, ctx: CommandContext): void {
  const { io, cli } = ctx;
  withCommon(
    ctx,
    runOptions(
      program
        .command('plan <runbook>')
        .description(
          'Dry run: gather facts and run every check for real; print each mutation per host; change nothing.',
        )
        .option('--out <file>', 'also write the plan as JSON to this file'),
    ),
  )
    .addHelpText(
      'after',
      `
Examples:
  npx baton plan config-release
  npx baton plan config-release --param keep=2 --json
  npx baton plan handover --stack production --out plan.json
Exits 0 when every precondition holds, 1 when one fails (nothing is changed either way).`,
    )
    .action(async (ref: string, o: { param: string[]; stack?: string; out?: string }) => {
      const [
        { planRunbook },
        { writePlanFile },
        { preflightFailures, renderPlan, renderPreflightFailures },
      ] = await Promise.all([
        import('../runs.ts'),
        import('../planfile.ts'),
        import('../../core/plan.ts'),
      ]);
      const { plan, hash } = await planRunbook(invocation(ctx, ref, o));
      const failures = preflightFailures(plan);
      if (o.out) writePlanFile(o.out, plan, hash, (await ctx.app.runbook(ref)).file);
      if (cli.json) {
        const failure: JsonFailure | undefined = failures.length
          ? {
              error: `${failures.length} precondition(s) failed:\n${renderPreflightFailures(failures)}`,
              code: 'PRECONDITION_FAILED',
              exitCode: EXIT.failed,
              hint: 'Nothing was changed. Fix what the failed checks name, then plan again.',
            }
          : undefined;
        io.out(
          JSON.stringify(
            {
              ok: !failure,
              planHash: hash,
              ...(plan.nothingToDo ? { nothingToDo: true } : {}),
              ...(failure ?? { exitCode: EXIT.done }),
              plan,
            },
            null,
            2,
          ),
        );
      } else {
        io.out(renderPlan(plan, hash));
        if (failures.length) {
          io.err(
            `\nPreconditions failed; nothing was changed:\n${renderPreflightFailures(failures)}`,
          );
        }
      }
      throw new Exit(failures.length ? EXIT.failed : EXIT.done);
    });
}
