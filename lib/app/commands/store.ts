/** `baton runs` and `baton unlock`: the runs this project has, and a stale stack lock broken. */
import type { Command } from 'commander';
import type { CountersignatureState } from '../../approval/ledger.ts';
import { EXIT, Exit } from '../exit.ts';
import { withCommon, type CommandContext } from './common.ts';

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

export function runsCommand(program: Command, ctx: CommandContext): void {
  const { io, cli } = ctx;
  withCommon(
    ctx,
    program.command('runs').description('List runs, newest last, with their outcome and state.'),
  )
    .addHelpText('after', '\nExamples:\n  npx baton runs\n  npx baton runs --json')
    .action(async () => {
      const [{ listRuns, runDir }, { countersignatureState }] = await Promise.all([
        import('../run-store.ts'),
        import('../../approval/ledger.ts'),
      ]);
      const runs = [];
      for (const r of listRuns(ctx.app)) {
        const c =
          r.journal === 'verified'
            ? await countersignatureState(runDir(r.runId, ctx.app), ctx.app)
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
}

export function unlockCommand(program: Command, ctx: CommandContext): void {
  const { io, cli } = ctx;
  withCommon(
    ctx,
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
      const { unlockStack } = await import('../runs.ts');
      const r = await unlockStack({ stack, lockId, cwd: ctx.app.cwd, app: ctx.app });
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
}
