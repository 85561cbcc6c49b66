/** `baton init`: start an operator's repository. */
import type { Command } from 'commander';
import { EXIT, Exit } from '../exit.ts';
import { withCommon, type CommandContext } from './common.ts';

export function initCommand(program: Command, ctx: CommandContext): void {
  const { io, cli } = ctx;
  withCommon(
    ctx,
    program
      .command('init [dir]')
      .description(
        'Start a repository of your own here (or in dir): an example runbook, infra/, a policy, an approvers file; existing files are kept.',
      ),
  )
    .addHelpText(
      'after',
      `
Writes runbooks/example.ts, infra/ (a Pulumi project exporting an inventory),
baton.policy.json, approvers, package.json, and .gitignore; a file that exists
is kept as it is (.gitignore only gets the lines it lacks), so running it again
changes nothing.

Examples:
  npx baton init                 here
  npx baton init ops             in ./ops, made if need be
  npx baton init --json`,
    )
    .action(async (dir?: string) => {
      const [{ initProject }, { resolve }] = await Promise.all([
        import('../init.ts'),
        import('node:path'),
      ]);
      const r = initProject(resolve(ctx.app.cwd, dir ?? '.'));
      if (cli.json) {
        io.out(JSON.stringify({ ...r, exitCode: EXIT.done }, null, 2));
        throw new Exit(EXIT.done);
      }
      if (r.created.length === 0 && r.updated.length === 0) {
        io.out(
          `Nothing to do in ${r.dir}: every file baton init writes is there; nothing was changed.`,
        );
      } else io.out(`Initialised ${r.dir}:`);
      for (const f of r.created) io.out(`  created  ${f}`);
      for (const f of r.updated) io.out(`  updated  ${f}${r.notes[f] ? ` (${r.notes[f]})` : ''}`);
      for (const f of r.skipped)
        io.out(`  kept     ${f} (it exists)${r.notes[f] ? `: ${r.notes[f]}` : ''}`);
      if (r.created.length > 0 || r.updated.length > 0) {
        const here = r.dir === ctx.app.cwd ? '' : `cd ${r.dir} && `;
        io.out(
          [
            '',
            'Next:',
            `  ${here}npm install`,
            '  npx baton run example --stack demo --yes     the example, on the built-in demo stack',
            '  list your approvers in approvers, and your hosts in infra/ (infra/index.ts says how)',
          ].join('\n'),
        );
      }
      throw new Exit(EXIT.done);
    });
}
