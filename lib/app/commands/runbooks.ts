/** `baton runbooks` and `baton completion`: what baton knows, for people and for shells. */
import { Argument, type Command } from 'commander';
import { completionScript, SHELLS, type Shell } from '../completion.ts';
import { EXIT, Exit } from '../exit.ts';
import { withCommon, type CommandContext } from './common.ts';

export function runbooksCommand(program: Command, ctx: CommandContext): void {
  const { io, cli } = ctx;
  withCommon(
    ctx,
    program
      .command('runbooks [runbook]')
      .description('List the runbooks baton knows, or describe one: summary, parameters, steps.'),
  )
    .addHelpText('after', '\nExamples:\n  npx baton runbooks\n  npx baton runbooks config-release')
    .action(async (name?: string) => {
      const { describeParams } = await import('../../core/params.ts');
      const names = name ? [name] : await ctx.app.runbookNames();
      const described = [];
      for (const n of names) {
        const { runbook } = await ctx.app.runbook(n);
        described.push({
          name: runbook.name,
          summary: runbook.summary,
          params: describeParams(runbook.params),
          steps: runbook.steps.map((s) => ({
            id: s.id,
            title: s.title,
            destructive: Boolean(s.destructive),
            undo: Boolean(s.undo),
          })),
        });
      }
      if (cli.json) io.out(JSON.stringify(described, null, 2));
      else
        for (const d of described) {
          io.out(`${d.name}: ${d.summary}`);
          if (!name) continue;
          io.out('  parameters:');
          for (const p of d.params) io.out(`    ${p}`);
          io.out('  steps:');
          for (const s of d.steps)
            io.out(
              `    ${s.id}: ${s.title}${s.destructive ? ' [destructive]' : ''}${s.undo ? '' : ' [no undo]'}`,
            );
        }
      throw new Exit(EXIT.done);
    });
}

export function completionCommand(program: Command, ctx: CommandContext): void {
  program
    .command('completion')
    .description(
      'Print a shell completion script for baton: commands, options, runbook names, run ids, stacks, files.',
    )
    .addArgument(new Argument('<shell>', 'the shell to complete in').choices(SHELLS))
    .addHelpText(
      'after',
      `
Examples:
  source <(npx baton completion bash)                       in ~/.bashrc
  npx baton completion zsh > ~/.zfunc/_baton                with ~/.zfunc on $fpath before compinit
Runbook names come from the project's runbooks/ and baton's own; run ids and stacks from
$BATON_HOME, else the project's .baton/ (the project: the nearest directory upwards with
baton.policy.json or runbooks/, as baton finds it).`,
    )
    .action(async (shell: Shell) => {
      ctx.io.out(completionScript(program, shell));
      throw new Exit(EXIT.done);
    });
}
