/**
 * The `baton` command: builds the app (app.ts) and the command tree
 * (commands/, one file per command; each loads what it runs only when it
 * runs), parses, and ends every failure the same way (exit.ts).
 */
import { Command, CommanderError } from 'commander';
import { DEBUG_ENV } from '../core/env.ts';
import type { BatonError } from '../core/errors.ts';
import { isReported, registerAuditCommands } from '../audit/cli.ts';
import { registerTestnetCommands } from '../testnet/cli.ts';
import { createApp, type App } from './app.ts';
import { approveCommand, countersignCommand } from './commands/approve.ts';
import type { CommandContext } from './commands/common.ts';
import { initCommand } from './commands/init.ts';
import { planCommand } from './commands/plan.ts';
import { reportCommand, verifyCommand } from './commands/report.ts';
import { resumeCommand } from './commands/resume.ts';
import { completionCommand, runbooksCommand } from './commands/runbooks.ts';
import { rehearseCommand, runCommand } from './commands/run.ts';
import { runsCommand, unlockCommand } from './commands/store.ts';
import {
  EXIT,
  EXIT_CODES_HELP,
  Exit,
  exitCodeFor,
  failureOf,
  jsonRequested,
  stackOf,
} from './exit.ts';
import { processIo, type Io } from './io.ts';
import { batonVersion } from '../core/package-root.ts';

export async function main(
  argv: string[],
  io: Io = processIo(),
  app: App = createApp(),
): Promise<number> {
  const cli = { json: jsonRequested(argv) };
  const program = buildProgram(io, cli, app);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.done;
  } catch (e) {
    if (e instanceof Exit) return e.code;
    // An audit prints its own results; its failure is only the exit code.
    if (isReported(e)) return exitCodeFor((e as BatonError).code);
    if (
      e instanceof CommanderError &&
      ['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(e.code)
    ) {
      return EXIT.done;
    }
    const failure = failureOf(e);
    if (cli.json) io.out(JSON.stringify(failure, null, 2));
    // commander has printed its own message, with the pointer to --help.
    else if (!(e instanceof CommanderError)) {
      io.err(`error: ${failure.error}`);
      if (failure.hint) io.err(`what to do: ${failure.hint}`);
    }
    if (app.env[DEBUG_ENV] === '1' && !(e instanceof CommanderError)) io.err(stackOf(e));
    return failure.exitCode;
  }
}

/**
 * Every command, as commander definitions: main parses with them, and the
 * README's CLI block and the shell completions are made from them.
 * `cli.json` is where an action finds whether --json was given.
 */
export function buildProgram(
  io: Io,
  cli: { json: boolean } = { json: false },
  app: App = createApp(),
): Command {
  const program = new Command('baton')
    .description(
      'Failover runbooks as typed code: plan against real hosts, rehearse on a local testnet, run with a journal.',
    )
    .version(batonVersion())
    .showHelpAfterError('(add --help for usage and examples)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.out(s.trimEnd()),
      // With --json the failure is printed as JSON, once.
      writeErr: (s) => (cli.json ? undefined : io.err(s.trimEnd())),
    })
    .addHelpText(
      'after',
      `
Examples:
  npx baton plan config-release --json          dry run of the demo runbook: probes run, nothing changes
  npx baton run config-release --yes            run it on the built-in demo stack
  npx baton plan handover --stack production    dry run against production
  npx baton runs                                list runs and their outcomes
  npx baton report <run-id>                     the run's timeline, post-mortem style
${EXIT_CODES_HELP}`,
    );
  const ctx: CommandContext = { io, cli, app };
  initCommand(program, ctx);
  planCommand(program, ctx);
  runCommand(program, ctx);
  rehearseCommand(program, ctx);
  approveCommand(program, ctx);
  countersignCommand(program, ctx);
  resumeCommand(program, ctx);
  reportCommand(program, ctx);
  verifyCommand(program, ctx);
  runsCommand(program, ctx);
  unlockCommand(program, ctx);
  runbooksCommand(program, ctx);
  registerTestnetCommands(program, { out: io.out, json: () => cli.json });
  registerAuditCommands(program, { out: io.out, err: io.err, json: () => cli.json, app });
  completionCommand(program, ctx);
  return program;
}
