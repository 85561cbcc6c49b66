/** `baton run` and `baton rehearse`: plan, clear the gate, run every step, journaled. */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { BatonError } from '../../core/errors.ts';
import type { Gate } from '../../approval/gate.ts';
import { EXIT_CODES_HELP } from '../exit.ts';
import {
  collect,
  finish,
  invocation,
  makeDisplay,
  runOptions,
  signingKeyOf,
  SIGNING_KEY_HELP,
  withCommon,
  type CommandContext,
} from './common.ts';

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

async function execute(
  ctx: CommandContext,
  ref: string | undefined,
  o: ExecuteOptions,
  mode: 'run' | 'rehearse',
): Promise<never> {
  const { io, app } = ctx;
  const [
    { startRun },
    { invocationFromPlan, readPlanFile },
    { destructiveStepsToRun, renderPlan },
  ] = await Promise.all([
    import('../runs.ts'),
    import('../planfile.ts'),
    import('../../core/plan.ts'),
  ]);
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
  const inv = planFile
    ? await invocationFromPlan(planFile, o.param, app)
    : invocation(ctx, ref!, o);
  const loaded = await app.runbook(inv.runbook);
  if (mode === 'rehearse') {
    const [{ LOCAL_STACK, readTestnetInventory }, { rehearsalParams }] = await Promise.all([
      import('../../testnet/stack.ts'),
      import('../../testnet/rehearsal.ts'),
    ]);
    if (inv.stack === LOCAL_STACK && !readTestnetInventory(app)) {
      io.err('No testnet is up here: bringing up the irc testnet first (this needs root).');
      const { up } = await import('../../testnet/index.ts');
      await up({ topology: 'irc', log: io.err });
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
  const display = makeDisplay(ctx);
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
    ...signingKeyOf(ctx, o),
    deps: { onEvent: (e) => display.event(e) },
  });
  display.close();
  return finish(ctx, result, mode === 'rehearse');
}

export function runCommand(program: Command, ctx: CommandContext): void {
  withCommon(
    ctx,
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
    .action((ref: string | undefined, o: ExecuteOptions) => execute(ctx, ref, o, 'run'));
}

export function rehearseCommand(program: Command, ctx: CommandContext): void {
  withCommon(
    ctx,
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
      execute(ctx, ref, { ...o, ...(o.plan ? {} : { stack: 'local' }), yes: true }, 'rehearse'),
    );
}
