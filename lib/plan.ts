/**
 * The plan: what a run will do, computed before the first mutation. Its hash
 * binds approvals to exactly these mutations on exactly this inventory.
 */
import { canonicalJson } from './inventory.ts';
import { sha256 } from './journal.ts';
import type { CodeManifest } from './code-version.ts';
import type { Condition } from './runbook.ts';

export interface PlannedHost {
  host: string;
  /** Mutations in order, the exact command lines. */
  mutations: string[];
  /** What undo would run. */
  undo: string[];
}

export interface PlannedStep {
  id: string;
  title: string;
  destructive: boolean;
  /** Mutates without an undo: once done, the run cannot roll back past it. */
  pointOfNoReturn: boolean;
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
  facts: unknown;
  preflight: PreflightCondition[];
  steps: PlannedStep[];
}

/** The hash over what a run will do: code, params, inventory and mutations, not the probes' readings. */
export function planHash(plan: Plan): string {
  return sha256(
    canonicalJson({
      runbook: plan.runbook,
      codeVersion: plan.codeVersion,
      stack: plan.stack,
      params: plan.params,
      inventoryHash: plan.inventoryHash,
      steps: plan.steps.map((s) => ({
        id: s.id,
        destructive: s.destructive,
        pointOfNoReturn: s.pointOfNoReturn,
        skipped: s.skipped ?? null,
        hosts: s.hosts,
      })),
    }),
  );
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
      step.skipped ? `SKIPPED: ${step.skipped}` : '',
    ].filter(Boolean);
    lines.push(
      `  ${i + 1}. ${step.id}: ${step.title}${marks.length ? `  [${marks.join(', ')}]` : ''}`,
    );
    if (step.skipped) return;
    for (const host of step.hosts) {
      if (host.mutations.length === 0) {
        lines.push(`     ${host.host}: (checks only)`);
        continue;
      }
      for (const m of host.mutations) lines.push(`     ${host.host}$ ${m}`);
      for (const u of host.undo) lines.push(`     ${host.host} undo$ ${u}`);
    }
  });
  return lines.join('\n');
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
