/**
 * The `baton` command. The only place that maps errors and outcomes to exit
 * codes: 0 done (or nothing to do), 1 failed and left in a safe state (or an
 * audit failed), 2 invalid input, 3 needs a human.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { Argument, Command, CommanderError, Option } from 'commander';
import type { RunResult } from '../engine/engine.ts';
import { completionScript, SHELLS, type Shell } from './completion.ts';
import { BatonError, isBatonError, thrownText, type ErrorCode } from '../core/errors.ts';
import type { RunOutcome } from '../core/events.ts';
import { readJournal } from '../engine/journal.ts';
import { renderVerification, SIGNING_KEY_ENV, verifyRun } from '../approval/signing.ts';
import { describeParams } from '../core/params.ts';
import { registerPulumiStackSource } from '../integrations/pulumi-stack.ts';
import { registerTestnetCommands } from '../testnet/cli.ts';
import { up as testnetUp } from '../testnet/index.ts';
import { rehearsalParams } from '../testnet/rehearsal.ts';
import { LOCAL_STACK, readTestnetInventory } from '../testnet/stack.ts';
import {
  destructiveStepsToRun,
  renderPlan,
  renderPreflightFailures,
  preflightFailures,
} from '../core/plan.ts';
import { buildReport, renderMarkdown } from './report.ts';
import { approvalFileName, sign } from '../approval/approval.ts';
import {
  countersignatureState,
  countersignRun,
  type CountersignatureState,
} from '../approval/ledger.ts';
import { loadRepositoryPolicy, resolvePolicy } from '../approval/policy.ts';
import { isReported, registerAuditCommands } from '../audit/cli.ts';
import type { Gate } from '../approval/gate.ts';
import {
  clearanceVerifier,
  invocationFromPlan,
  readPlanFile,
  writePlanFile,
  listRunbooks,
  listRuns,
  loadRunbook,
  PACKAGE_ROOT,
  planRunbook,
  resumeRun,
  runDir,
  runIndex,
  signersFor,
  startRun,
  unlockStack,
  type Invocation,
} from './runs.ts';
import { canRedraw, plainDisplay, taskListDisplay, type Display } from './display.ts';

export const EXIT = { done: 0, failed: 1, invalid: 2, needsHuman: 3 } as const;

export function exitCodeFor(code: ErrorCode): number {
  switch (code) {
    case 'INVALID_INPUT':
    case 'CODE_CHANGED':
      return EXIT.invalid;
    case 'NEEDS_HUMAN':
    case 'RUN_LOCKED':
    case 'STACK_LOCKED':
      return EXIT.needsHuman;
    default:
      return EXIT.failed;
  }
}

/**
 * What `--json` prints for a failure, and nothing else on stdout; a failed
 * run's result and a plan whose preconditions fail carry the same fields
 * beside their own.
 */
export interface JsonFailure {
  error: string;
  /** An ErrorCode, or INTERNAL for an error baton did not expect. */
  code: ErrorCode | 'INTERNAL';
  exitCode: number;
  /** What to do next. */
  hint?: string;
}

const OUTCOME_CODE: Record<Exclude<RunOutcome, 'done'>, ErrorCode> = {
  'precondition-failed': 'PRECONDITION_FAILED',
  'rolled-back': 'STEP_FAILED',
  'needs-human': 'NEEDS_HUMAN',
};

export function failureOf(e: unknown): JsonFailure {
  if (e instanceof CommanderError) {
    return {
      error: e.message.replace(/^error: /, ''),
      code: 'INVALID_INPUT',
      exitCode: EXIT.invalid,
      hint: 'Add --help for usage and examples.',
    };
  }
  if (isBatonError(e)) {
    return {
      error: e.message,
      code: e.code,
      exitCode: exitCodeFor(e.code),
      ...(e.hint ? { hint: e.hint } : {}),
    };
  }
  return {
    error: `baton stopped on an error it did not expect: ${thrownText(e)}`,
    code: 'INTERNAL',
    exitCode: EXIT.failed,
    hint: `That is a bug in baton. Run it again with ${DEBUG_ENV}=1 for the stack trace, and report both.`,
  };
}

/** A run's result as --json prints it: its exit code, and a failure's code and hint. */
export function runResultJson(result: RunResult): RunResult & Partial<JsonFailure> {
  const exitCode = exitCodeForOutcome(result.outcome);
  if (result.outcome === 'done') return { ...result, exitCode };
  return {
    ...result,
    exitCode,
    code: OUTCOME_CODE[result.outcome],
    ...(result.next ? { hint: result.next } : {}),
  };
}

/** Set to 1 for stack traces with errors. */
export const DEBUG_ENV = 'BATON_DEBUG';

/** The stack, and the stacks of its causes where they are not in it already. */
function stackOf(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  let text = e.stack ?? `${e.name}: ${e.message}`;
  if (e.cause !== undefined && !text.includes('caused by:'))
    text += `\ncaused by: ${stackOf(e.cause)}`;
  return text;
}

/**
 * Whether the arguments ask for --json, before commander has parsed them: a
 * usage error must be printed as JSON too. Words after `--` are a host's command.
 */
export function jsonRequested(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).includes('--json');
}

export function exitCodeForOutcome(outcome: RunOutcome): number {
  switch (outcome) {
    case 'done':
      return EXIT.done;
    case 'rolled-back':
    case 'precondition-failed':
      return EXIT.failed;
    case 'needs-human':
      return EXIT.needsHuman;
  }
}

export interface Io {
  out(text: string): void;
  err(text: string): void;
  stdoutIsTTY: boolean;
  stdinIsTTY: boolean;
  ask(question: string): Promise<string>;
}

export function processIo(): Io {
  return {
    out: (text) => process.stdout.write(text.endsWith('\n') ? text : text + '\n'),
    err: (text) => process.stderr.write(text.endsWith('\n') ? text : text + '\n'),
    stdoutIsTTY: Boolean(process.stdout.isTTY),
    stdinIsTTY: Boolean(process.stdin.isTTY),
    async ask(question) {
      const rl = createInterface({ input: process.stdin, output: process.stderr });
      try {
        return await rl.question(question);
      } finally {
        rl.close();
      }
    },
  };
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

const EXIT_CODES_HELP = `
Exit codes:
  0  done, or nothing to do (every step already done or skipped)
  1  failed, and left in a safe state (rolled back, or stopped before any change); an audit failed
  2  invalid input (nothing was run)
  3  needs a human: the hosts are in a named state the output and the journal describe
With --json, a failure prints one object on stdout: { error, code, exitCode, hint? }.`;

class Exit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

export async function main(argv: string[], io: Io = processIo()): Promise<number> {
  const cli = { json: jsonRequested(argv) };
  registerPulumiStackSource();
  const program = buildProgram(io, cli);
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
    if (process.env[DEBUG_ENV] === '1' && !(e instanceof CommanderError)) io.err(stackOf(e));
    return failure.exitCode;
  }
}

/**
 * Every command, as commander definitions: main parses with them, and the
 * README's CLI block and the shell completions are made from them.
 * `cli.json` is where an action finds whether --json was given.
 */
export function buildProgram(io: Io, cli: { json: boolean } = { json: false }): Command {
  const program = new Command('baton')
    .description(
      'Failover runbooks as typed code: plan against real hosts, rehearse on a local testnet, run with a journal.',
    )
    .version(process.env.npm_package_version ?? 'baton')
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

  const withCommon = (cmd: Command): Command =>
    cmd.option('--json', 'machine-readable output on stdout').hook('preAction', (c) => {
      cli.json = Boolean(c.opts().json);
    });

  const runOptions = (cmd: Command): Command =>
    cmd
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

  withCommon(
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
      const { plan, hash } = await planRunbook(invocation(ref, o));
      const failures = preflightFailures(plan);
      if (o.out) writePlanFile(o.out, plan, hash, (await loadRunbook(ref)).file);
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

  interface ExecuteOptions {
    param: string[];
    stack?: string;
    yes?: boolean;
    plan?: string;
    approvals?: string;
    emergency?: boolean;
    policy?: string;
    policyOf?: string;
    signingKey?: string;
  }

  const execute = async (
    ref: string | undefined,
    o: ExecuteOptions,
    mode: 'run' | 'rehearse',
  ): Promise<never> => {
    const planFile = o.plan ? readPlanFile(o.plan) : undefined;
    if (planFile && (ref || o.stack)) {
      throw new BatonError(
        'INVALID_INPUT',
        'with --plan, the runbook, stack and parameters come from the plan file',
        'Leave out the runbook name and --stack; --param only gives secrets again.',
      );
    }
    if (!planFile && !ref)
      throw new BatonError('INVALID_INPUT', 'name a runbook, or pass --plan FILE');
    const inv = planFile ? await invocationFromPlan(planFile, o.param) : invocation(ref!, o);
    const loaded = await loadRunbook(inv.runbook);
    if (mode === 'rehearse') {
      if (inv.stack === LOCAL_STACK && !readTestnetInventory()) {
        io.err('No testnet is up here: bringing up the irc testnet first (this needs root).');
        await testnetUp({ topology: 'irc', log: io.err });
      }
      if (!planFile) inv.params = [...rehearsalParams(loaded.runbook, inv.params), ...inv.params];
    }
    const declared = loaded.runbook.steps.filter((s) => s.destructive).map((s) => s.id);
    const approved = Boolean(o.approvals);
    if (mode === 'run' && !o.yes && !approved && !io.stdinIsTTY) {
      throw new BatonError(
        'INVALID_INPUT',
        `baton run asks for confirmation, and there is no terminal to ask on${
          declared.length ? ` (destructive steps: ${declared.join(', ')})` : ''
        }`,
        `Read \`baton plan ${inv.runbook}\` first, then pass --yes (or run an approved plan with --plan and --approvals).`,
      );
    }
    const display = makeDisplay(io, cli.json);
    const confirm: Gate | undefined =
      mode === 'run' && !o.yes && !approved
        ? async (plan, hash) => {
            display.close();
            io.err(renderPlan(plan, hash));
            // Only a destructive step the plan will apply somewhere asks for the runbook's name.
            const destructive = destructiveStepsToRun(plan);
            const answer = await io.ask(
              destructive.length
                ? `This plan has destructive steps (${destructive.join(', ')}). Type the runbook name to proceed: `
                : 'Proceed? [y/N] ',
            );
            const yes = destructive.length
              ? answer.trim() === plan.runbook
              : /^y(es)?$/i.test(answer.trim());
            return yes
              ? { ok: true, emergency: false, approvers: [], reconfirmedBy: [], replan: false }
              : {
                  ok: false,
                  reason: 'the operator did not confirm the plan',
                  next: 'Run again when ready.',
                };
          }
        : undefined;
    const result = await startRun({
      ...inv,
      mode,
      ...(o.approvals ? { approvals: o.approvals } : {}),
      ...(o.approvals === '-' ? { stdinApprovals: readFileSync(0, 'utf8') } : {}),
      ...(planFile ? { approvedHash: planFile.planHash, approvedPlan: planFile.plan } : {}),
      ...(planFile?.plan.policyHash ? { approvedPolicyHash: planFile.plan.policyHash } : {}),
      ...(o.emergency ? { emergency: true } : {}),
      ...(o.policy ? { policyFile: o.policy } : {}),
      ...(o.policyOf ? { policyOf: o.policyOf } : {}),
      ...(confirm ? { gate: confirm } : {}),
      ...signingKeyOf(o),
      deps: { onEvent: (e) => display.event(e) },
    });
    display.close();
    return finish(result, mode === 'rehearse');
  };

  const finish = (result: RunResult, timeline = false): never => {
    if (cli.json) io.out(JSON.stringify(runResultJson(result), null, 2));
    else {
      if (timeline) io.out('\n' + renderMarkdown(buildReport(readJournal(runDir(result.runId)))));
      io.out(
        result.nothingToDo
          ? `\nRun ${result.runId}: nothing to do: every step is already done or skipped; nothing was changed`
          : `\nRun ${result.runId}: ${result.outcome}`,
      );
      io.out(`Hosts are in state: ${result.state}`);
      if (result.error) io.out(`Why: ${result.error}`);
      if (result.next) io.out(`Next: ${result.next}`);
      io.out(`Timeline: baton report ${result.runId}`);
    }
    throw new Exit(exitCodeForOutcome(result.outcome));
  };

  withCommon(
    runOptions(
      program
        .command('run [runbook]')
        .description(
          'Plan, clear the gate (approvals or a confirmation), then run every step for real, journaled; roll back in reverse order on failure.',
        )
        .option('--yes', 'do not ask for confirmation (read the plan first)')
        .option('--plan <file>', 'run this approved plan (from `baton plan --out`)')
        .option('--approvals <dir>', 'directory of approval files, or - for standard input')
        .option(
          '--emergency',
          "use the policy's emergency path (runbooks under emergency.runbooks only; marked as an emergency)",
        )
        .option(
          '--policy <file>',
          "stricter rules on top of the repository's baton.policy.json (a looser file is refused)",
        )
        .option('--signing-key <path>', SIGNING_KEY_HELP),
    ),
  )
    .addHelpText(
      'after',
      `
Examples:
  npx baton run config-release --yes
  npx baton plan handover --stack production --out plan.json
  npx baton approve plan.json --key ~/.ssh/id_ed25519 --out approvals/     (each approver)
  npx baton run --plan plan.json --approvals approvals/
  npx baton run --plan plan.json --approvals approvals/ --emergency
${EXIT_CODES_HELP}`,
    )
    .action((ref: string | undefined, o: ExecuteOptions) => execute(ref, o, 'run'));

  withCommon(
    program
      .command('rehearse [runbook]')
      .description(
        'Run a runbook end to end on a testnet (stack local, or demo); any other inventory is refused.',
      )
      .option('--param <name=value>', 'a runbook parameter; repeatable', collect, [])
      .option(
        '--policy-of <stack>',
        "practise the approval flow under another stack's policy (e.g. production)",
      )
      .option('--plan <file>', 'rehearse this approved plan (made with --stack local)')
      .option('--approvals <dir>', 'directory of approval files')
      .option('--policy <file>', "stricter rules on top of the repository's policy")
      .option('--signing-key <path>', SIGNING_KEY_HELP),
  )
    .addHelpText(
      'after',
      `
Examples:
  sudo npx baton testnet up && npx baton rehearse handover
  npx baton plan handover --stack local --out plan.json
  npx baton approve plan.json --key ~/.ssh/id_ed25519 --out approvals/
  npx baton rehearse --policy-of production --plan plan.json --approvals approvals/
${EXIT_CODES_HELP}`,
    )
    .action((ref: string | undefined, o: ExecuteOptions) =>
      execute(ref, { ...o, ...(o.plan ? {} : { stack: 'local' }), yes: true }, 'rehearse'),
    );

  withCommon(
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
        const repo = loadRepositoryPolicy();
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
        const approval = await sign({
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
        const text = JSON.stringify(approval) + '\n';
        if (o.out === '-') io.out(text);
        else {
          mkdirSync(o.out, { recursive: true });
          const name = approvalFileName(approval, o.as ?? o.key.split('/').pop() ?? 'key');
          const path = join(o.out, name);
          writeFileSync(path, text, { mode: 0o644 });
          if (cli.json)
            io.out(
              JSON.stringify({
                file: path,
                purpose: approval.purpose,
                planHash: approval.planHash,
              }),
            );
          else {
            const what = approval.purpose === 'approve' ? 'approval' : 'reconfirmation';
            io.out(
              `${what} of plan ${planFile.planHash.slice(0, 12)} written to ${path}; good for one run until ${approval.expiresAt}`,
            );
          }
        }
        throw new Exit(EXIT.done);
      },
    );

  withCommon(
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
      const dir = runDir(runId);
      const report = buildReport(readJournal(dir));
      io.err(renderMarkdown(report));
      const { file, principal } = await countersignRun({
        dir,
        keyPath: o.key,
        ...(o.as ? { signer: o.as } : {}),
      });
      if (cli.json) io.out(JSON.stringify({ runId, file, countersignedBy: principal }));
      else io.out(`run ${runId} countersigned by ${principal}: ${file}`);
      throw new Exit(EXIT.done);
    });

  withCommon(
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
      const display = makeDisplay(io, cli.json);
      const result = await resumeRun({
        runId,
        params: o.param,
        ...signingKeyOf(o),
        ...(o.allowedSigners ? { allowedSigners: o.allowedSigners } : {}),
        ...(o.controllerKey ? { controllerKey: o.controllerKey } : {}),
        deps: { onEvent: (e) => display.event(e) },
      });
      display.close();
      finish(result);
    });

  withCommon(
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
    .action((runId: string, o: { format: string }) => {
      const report = buildReport(readJournal(runDir(runId)));
      io.out(
        cli.json || o.format === 'json' ? JSON.stringify(report, null, 2) : renderMarkdown(report),
      );
      throw new Exit(EXIT.done);
    });

  withCommon(
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
      const dir = runDir(runId);
      const signers = signersFor(o);
      const v = await verifyRun(dir, {
        ...(signers ? { signers } : {}),
        verifyClearance: clearanceVerifier(),
        index: runIndex(),
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
      } else io.out(renderVerification(runId, v));
      throw new Exit(exitCode);
    });

  withCommon(
    program.command('runs').description('List runs, newest last, with their outcome and state.'),
  )
    .addHelpText('after', '\nExamples:\n  npx baton runs\n  npx baton runs --json')
    .action(async () => {
      const runs = [];
      for (const r of listRuns()) {
        const c =
          r.journal === 'verified'
            ? await countersignatureState(runDir(r.runId))
            : { state: 'not-owed' as const };
        runs.push(c.state === 'not-owed' ? r : { ...r, countersignature: c });
      }
      if (cli.json) io.out(JSON.stringify(runs, null, 2));
      else if (runs.length === 0) io.out('no runs yet');
      else
        for (const r of runs) {
          io.out(
            `${r.runId}  ${r.runbook}  ${r.stack}  ${r.operator}  ${r.outcome}${r.state ? ` (${r.state})` : ''}`,
          );
          if (r.journal !== 'verified') io.out(`  journal: ${r.journal}`);
          if ('countersignature' in r)
            io.out(`  ${countersignatureLine(r.runId, r.countersignature)}`);
        }
      throw new Exit(EXIT.done);
    });

  withCommon(
    program
      .command('unlock <stack> <lock-id>')
      .description(
        'Break a stale stack lock (its controller is gone for good), on every host that holds it; journaled.',
      ),
  )
    .addHelpText(
      'after',
      '\nThe refusal of a run names the lock id, its run, operator, controller and age.\n\nExamples:\n  npx baton unlock production 3f9a1c2e',
    )
    .action(async (stack: string, lockId: string) => {
      const r = await unlockStack({ stack, lockId });
      if (cli.json) io.out(JSON.stringify(r, null, 2));
      else {
        io.out(
          `Lock ${lockId} of stack ${stack} broken on ${r.removed.join(', ') || 'no place'}${r.holder ? ` (it was held by run ${r.holder.runId}, ${r.holder.operator} on ${r.holder.controller}, since ${r.holder.takenAt})` : ''}.`,
        );
        if (r.unreachable.length)
          io.out(`Unreachable, check them when they are back: ${r.unreachable.join(', ')}.`);
        io.out(`Journal: ${r.journal}`);
      }
      throw new Exit(EXIT.done);
    });

  withCommon(
    program
      .command('runbooks [runbook]')
      .description('List the runbooks baton knows, or describe one: summary, parameters, steps.'),
  )
    .addHelpText('after', '\nExamples:\n  npx baton runbooks\n  npx baton runbooks config-release')
    .action(async (name?: string) => {
      const names = name ? [name] : listRunbooks();
      const described = [];
      for (const n of names) {
        const { runbook } = await loadRunbook(n);
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

  registerTestnetCommands(program, { out: io.out, json: () => cli.json });
  registerAuditCommands(program, { out: io.out, err: io.err, json: () => cli.json });

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
Runbook names come from ./runbooks and baton's own; run ids and stacks from $BATON_HOME, else ./.baton.`,
    )
    .action((shell: Shell) => {
      io.out(completionScript(program, shell, { packageRunbooks: join(PACKAGE_ROOT, 'runbooks') }));
      throw new Exit(EXIT.done);
    });

  return program;
}

function countersignatureLine(
  runId: string,
  c: Exclude<CountersignatureState, { state: 'not-owed' }>,
): string {
  switch (c.state) {
    case 'due':
      return `countersignature DUE: approved by the operator alone (${c.approvers.join(', ')}); a second approver runs \`baton countersign ${runId} --key KEY\``;
    case 'invalid':
      return `countersignature INVALID: ${c.reason}`;
    case 'signed':
      return `countersigned by ${c.by} (${c.keyFingerprint})`;
  }
}

interface VerifyOptions {
  allowedSigners?: string;
  controllerKey?: string;
}

const SIGNING_KEY_HELP = `the ssh key that signs the journal's head at the gate and at the end (default $${SIGNING_KEY_ENV}); needed where the policy needs approvals`;
const ALLOWED_SIGNERS_HELP =
  "who may sign journals, as an approvers file (default: the policy's approvers file and its signers.controllers)";
const CONTROLLER_KEY_HELP = 'the public key of a controller that may sign journals too';

function signingKeyOf(o: { signingKey?: string }): { signingKey?: string } {
  const key = o.signingKey ?? process.env[SIGNING_KEY_ENV];
  return key ? { signingKey: key } : {};
}

function invocation(ref: string, o: { param: string[]; stack?: string }): Invocation {
  return { runbook: ref, params: o.param, ...(o.stack ? { stack: o.stack } : {}) };
}

function makeDisplay(io: Io, json: boolean): Display {
  if (!json && io.stdoutIsTTY && canRedraw(process.env)) return taskListDisplay(process.stdout);
  // With --json, stdout carries only the result; progress goes to stderr.
  return plainDisplay(json ? io.err : io.out);
}
