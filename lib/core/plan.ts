/**
 * The plan: what a run will do, computed before the first mutation. Its hash
 * binds approvals to exactly these mutations on exactly this inventory.
 */
import { canonicalJson, sha256 } from './hash.ts';
import { codeChanges, describeCodeChanges, type CodeManifest } from './code-version.ts';
import type { Condition } from './runbook.ts';

export interface PlannedHost {
  host: string;
  /** Mutations in order, the exact command lines. */
  mutations: string[];
  /** What undo would run. */
  undo: string[];
  /** The step's check found its work already done here: the run leaves this host alone. */
  done?: string;
}

export interface PlannedStep {
  id: string;
  title: string;
  destructive: boolean;
  /** Mutates without an undo: once done, the run cannot roll back past it. */
  pointOfNoReturn: boolean;
  /** From this step on, the run goes only forward (writes may exist on the new side). */
  commit?: boolean;
  /** Where users' writes are refused from (`begins`), or taken again after (`ends`). */
  frozen?: 'begins' | 'ends';
  /** Why the step will not run, when it will not. */
  skipped?: string;
  state?: string;
  hosts: PlannedHost[];
}

export type PreflightCondition = Condition & { step: string; host: string };

export interface Plan {
  runbook: string;
  summary: string;
  stack: string;
  codeVersion: string;
  /** The files and packages codeVersion covers; its hash is codeVersion. */
  code: CodeManifest;
  params: Record<string, unknown>;
  inventoryHash: string;
  /** The repository's approval policy (rules and approvers) the plan was made under. */
  policyHash: string;
  facts: unknown;
  preflight: PreflightCondition[];
  steps: PlannedStep[];
  /** Every step is skipped, check-only, or already done on each of its hosts: a run changes nothing. */
  nothingToDo?: boolean;
}

/** The hash over what a run will do: code, params, inventory, policy and mutations, not the probes' readings. */
export function planHash(plan: Plan): string {
  return sha256(
    canonicalJson({
      runbook: plan.runbook,
      codeVersion: plan.codeVersion,
      stack: plan.stack,
      params: plan.params,
      inventoryHash: plan.inventoryHash,
      policyHash: plan.policyHash,
      steps: plan.steps.map((s) => ({
        id: s.id,
        destructive: s.destructive,
        pointOfNoReturn: s.pointOfNoReturn,
        commit: s.commit ?? false,
        skipped: s.skipped ?? null,
        hosts: s.hosts,
      })),
    }),
  );
}

/**
 * What differs between an approved plan and the plan the hosts give now, in
 * the terms a person checks: code, parameters, inventory, and per step and
 * host the first command that is not the same. Empty when they hash equally.
 */
export function planDifferences(approved: Plan, now: Plan): string[] {
  const out: string[] = [];
  if (approved.runbook !== now.runbook)
    out.push(`runbook ${approved.runbook} is now ${now.runbook}`);
  if (approved.stack !== now.stack) out.push(`stack ${approved.stack} is now ${now.stack}`);
  if (approved.codeVersion !== now.codeVersion) {
    const changes = approved.code && now.code ? codeChanges(approved.code, now.code) : [];
    out.push(
      `the code changed: ${changes.length ? describeCodeChanges(changes) : `${approved.codeVersion.slice(0, 12)} is now ${now.codeVersion.slice(0, 12)}`}`,
    );
  }
  for (const name of [...new Set([...Object.keys(approved.params), ...Object.keys(now.params)])]) {
    const [was, is] = [canonicalJson(approved.params[name]), canonicalJson(now.params[name])];
    if (was !== is) out.push(`parameter ${name} was ${was ?? 'unset'}, is ${is ?? 'unset'}`);
  }
  if ((approved.policyHash ?? null) !== (now.policyHash ?? null)) {
    out.push(
      `the repository's policy changed since the plan was made: the plan was made under policy ${(approved.policyHash ?? 'none').slice(0, 12)}, and baton.policy.json and the approvers file now give ${(now.policyHash ?? 'none').slice(0, 12)}`,
    );
  }
  if (approved.inventoryHash !== now.inventoryHash) {
    out.push(`the inventory of stack ${now.stack} changed (hosts, addresses, host keys or DNS)`);
  }
  const ids = [...new Set([...approved.steps.map((s) => s.id), ...now.steps.map((s) => s.id)])];
  for (const id of ids) {
    const a = approved.steps.find((s) => s.id === id);
    const b = now.steps.find((s) => s.id === id);
    if (!a || !b) {
      out.push(`step ${id} ${a ? 'is no longer in the plan' : 'is new'}`);
      continue;
    }
    if ((a.skipped ?? null) !== (b.skipped ?? null)) {
      out.push(
        `step ${id} ${b.skipped ? `is now skipped (${b.skipped})` : 'now runs (it was skipped)'}`,
      );
    }
    if (
      a.destructive !== b.destructive ||
      a.pointOfNoReturn !== b.pointOfNoReturn ||
      Boolean(a.commit) !== Boolean(b.commit)
    ) {
      out.push(`step ${id} changed its destructive or point-of-no-return mark`);
    }
    const hosts = [...new Set([...a.hosts.map((h) => h.host), ...b.hosts.map((h) => h.host)])];
    for (const host of hosts) {
      const ha = a.hosts.find((h) => h.host === host);
      const hb = b.hosts.find((h) => h.host === host);
      if (!ha || !hb) {
        out.push(`step ${id} ${ha ? 'no longer runs' : 'now runs'} on ${host}`);
        continue;
      }
      if ((ha.done ?? null) !== (hb.done ?? null)) {
        out.push(
          `step ${id} on ${host} ${hb.done !== undefined ? `is now already done (${hb.done})` : 'now has work to do (it was already done)'}`,
        );
        continue;
      }
      for (const [what, was, is] of [
        ['mutation', ha.mutations, hb.mutations],
        ['undo', ha.undo, hb.undo],
      ] as const) {
        const i = firstDifference(was, is);
        if (i < 0) continue;
        out.push(
          `step ${id} on ${host}, ${what} ${i + 1}: ${is[i] === undefined ? 'nothing' : `\`${is[i]}\``} now, ` +
            `${was[i] === undefined ? 'nothing' : `\`${was[i]}\``} when approved`,
        );
      }
    }
  }
  return out;
}

function firstDifference(a: readonly string[], b: readonly string[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) if (a[i] !== b[i]) return i;
  return -1;
}

export function preflightFailures(plan: Plan): PreflightCondition[] {
  return plan.preflight.filter((c) => !c.ok);
}

export function renderPlan(plan: Plan, hash: string): string {
  const lines: string[] = [];
  lines.push(`Plan ${hash.slice(0, 12)} for ${plan.runbook} on stack ${plan.stack}`);
  lines.push(`  ${plan.summary}`);
  const params = Object.entries(plan.params)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  if (params.length) lines.push(`  params: ${params.join(' ')}`);
  const failed = preflightFailures(plan);
  lines.push(
    `  preflight: ${plan.preflight.length - failed.length} of ${plan.preflight.length} checks passed`,
  );
  for (const c of failed) lines.push(`    FAILED ${c.step} on ${c.host}: ${c.name}`);
  for (const c of plan.preflight.filter((p) => p.ok && p.notice)) {
    lines.push(`    NOTE ${c.step} on ${c.host}: ${c.name}: ${c.found}`);
  }
  plan.steps.forEach((step, i) => {
    const marks = [
      step.destructive ? 'DESTRUCTIVE' : '',
      step.pointOfNoReturn ? 'POINT OF NO RETURN (no undo)' : '',
      step.commit ? 'POINT OF NO RETURN (writes may exist after it: forward only)' : '',
      step.skipped ? `SKIPPED: ${step.skipped}` : '',
      !step.skipped && step.hosts.length > 0 && step.hosts.every((h) => h.done !== undefined)
        ? 'ALREADY DONE'
        : '',
    ].filter(Boolean);
    lines.push(
      `  ${i + 1}. ${step.id}: ${step.title}${marks.length ? `  [${marks.join(', ')}]` : ''}`,
    );
    if (step.skipped) return;
    for (const host of step.hosts) {
      if (host.done !== undefined) {
        lines.push(`     ${host.host}: already done (${host.done})`);
        continue;
      }
      if (host.mutations.length === 0) {
        lines.push(`     ${host.host}: (checks only)`);
        continue;
      }
      for (const m of host.mutations) lines.push(`     ${host.host}$ ${m}`);
      for (const u of host.undo) lines.push(`     ${host.host} undo$ ${u}`);
    }
  });
  if (plan.nothingToDo)
    lines.push('  Nothing to do: every step is already done or skipped; a run changes nothing.');
  return lines.join('\n');
}

/** The destructive steps a run of this plan would apply somewhere: not skipped, not already done everywhere. */
export function destructiveStepsToRun(plan: Plan): string[] {
  return plan.steps
    .filter((s) => s.destructive && !s.skipped && s.hosts.some((h) => h.done === undefined))
    .map((s) => s.id);
}

export function renderPreflightFailures(failures: PreflightCondition[]): string {
  return failures
    .map(
      (c) =>
        `- step ${c.step}, host ${c.host}, check "${c.name}": expected ${c.expected}, found ${c.found}.` +
        (c.remedy ? ` To do: ${c.remedy}` : ''),
    )
    .join('\n');
}
