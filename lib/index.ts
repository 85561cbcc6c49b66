/**
 * The runbook author's API (`import … from 'baton-runbooks'`): define a
 * runbook and its steps, state conditions, quote commands, mark parameters.
 * The step packs are in `baton-runbooks/steps`.
 */
export {
  alreadyDone,
  condition,
  defineRunbook,
  type ActData,
  type AnyRunbook,
  type ApplyContext,
  type CheckResult,
  type CommandOptions,
  type Condition,
  type Exec,
  type FactsContext,
  type Mutate,
  type MutateOptions,
  type Notes,
  type ProbeContext,
  type Runbook,
  type RunbookContext,
  type RunbookDef,
  type StepDef,
  type Targets,
} from './core/runbook.ts';
export { CommandError, type CommandResult, type ExecOptions } from './core/exec.ts';
export { BatonError, InvalidInputError, type ErrorCode } from './core/errors.ts';
export { multiline, secret } from './core/params.ts';
export { Cmd, quote, raw, sh, type ShellValue } from './core/shell.ts';
export type { DnsInventory, DnsRecord, Host, Inventory } from './core/inventory.ts';
export { batonHome } from './core/home.ts';
export { batonFile, batonVersion } from './core/package-root.ts';
