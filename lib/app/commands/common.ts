/** What every command shares: its context, the common options, and how a run's end is printed. */
import type { Command } from 'commander';
import { SIGNING_KEY_ENV } from '../../core/env.ts';
import type { RunResult } from '../../engine/engine.ts';
import type { App } from '../app.ts';
import { canRedraw, plainDisplay, taskListDisplay, type Display } from '../display.ts';
import { Exit, exitCodeOfResult, runResultJson } from '../exit.ts';
import type { Io } from '../io.ts';
import type { Invocation } from '../runs.ts';

export interface CommandContext {
  io: Io;
  /** Whether --json was given: an action's output, and its failure, are JSON then. */
  cli: { json: boolean };
  app: App;
}

export const collect = (value: string, previous: string[]): string[] => [...previous, value];

export const SIGNING_KEY_HELP = `the ssh key that signs the journal's head at the gate and at the end (default $${SIGNING_KEY_ENV}); needed where the policy needs approvals`;
export const ALLOWED_SIGNERS_HELP =
  "who may sign journals, as an approvers file (default: the policy's approvers file and its signers.controllers)";
export const CONTROLLER_KEY_HELP = 'the public key of a controller that may sign journals too';

export interface VerifyOptions {
  allowedSigners?: string;
  controllerKey?: string;
}

/** --json on a command, and where its action finds it. */
export function withCommon(ctx: CommandContext, cmd: Command): Command {
  return cmd.option('--json', 'machine-readable output on stdout').hook('preAction', (c) => {
    ctx.cli.json = Boolean(c.opts().json);
  });
}

export function runOptions(cmd: Command): Command {
  return cmd
    .option(
      '--param <name=value>',
      'a runbook parameter; repeatable; secrets as name=@env:VAR or name=@file:PATH',
      collect,
      [],
    )
    .option(
      '--stack <name>',
      'where the hosts come from: a Pulumi stack, a saved outputs file, local, demo',
    );
}

export function signingKeyOf(
  ctx: CommandContext,
  o: { signingKey?: string },
): { signingKey?: string } {
  const key = o.signingKey ?? ctx.app.env[SIGNING_KEY_ENV];
  return key ? { signingKey: key } : {};
}

export function invocation(
  ctx: CommandContext,
  ref: string,
  o: { param: string[]; stack?: string },
): Invocation {
  return {
    runbook: ref,
    params: o.param,
    ...(o.stack ? { stack: o.stack } : {}),
    cwd: ctx.app.cwd,
    app: ctx.app,
  };
}

export function makeDisplay(ctx: CommandContext): Display {
  const { io, cli } = ctx;
  if (!cli.json && io.stdoutIsTTY && canRedraw(ctx.app.env)) return taskListDisplay(process.stdout);
  // With --json, stdout carries only the result; progress goes to stderr.
  return plainDisplay(cli.json ? io.err : io.out);
}

/** The end of a run or a resume, as text or JSON; ends the command with the outcome's exit code. */
export async function finish(
  ctx: CommandContext,
  result: RunResult,
  timeline = false,
): Promise<never> {
  const { io } = ctx;
  const [{ readJournal }, { buildReport, renderMarkdown }, { runDir }] = await Promise.all([
    import('../../engine/journal.ts'),
    import('../report.ts'),
    import('../run-store.ts'),
  ]);
  // The journal adds what the result does not carry; a run whose journal cannot be read
  // (a full disk) still ends with its own result and exit code.
  let report: ReturnType<typeof buildReport> | undefined;
  try {
    report = buildReport(readJournal(runDir(result.runId, ctx.app.cwd)));
  } catch {
    report = undefined;
  }
  const frozen = report?.frozen?.ms !== undefined ? report.frozen : undefined;
  if (ctx.cli.json)
    io.out(JSON.stringify({ ...runResultJson(result), ...(frozen ? { frozen } : {}) }, null, 2));
  else {
    if (timeline && report) io.out('\n' + renderMarkdown(report));
    io.out(
      result.nothingToDo
        ? `\nRun ${result.runId}: nothing to do: every step is already done or skipped; nothing was changed`
        : `\nRun ${result.runId}: ${result.outcome}`,
    );
    io.out(`Hosts are in state: ${result.state}`);
    if (frozen) io.out(`Writes frozen: ${(frozen.ms! / 1000).toFixed(1)} s`);
    if (result.error) io.out(`Why: ${result.error}`);
    if (result.next) io.out(`Next: ${result.next}`);
    io.out(`Timeline: baton report ${result.runId}`);
  }
  throw new Exit(exitCodeOfResult(result));
}
