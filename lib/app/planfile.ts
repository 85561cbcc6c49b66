/** A plan written by `baton plan --out`: what approvers sign and `baton run --plan` runs. */
import { readFileSync, writeFileSync } from 'node:fs';
import { z } from 'zod';
import { BatonError, InvalidInputError } from '../core/errors.ts';
import { manifestHash } from '../core/code-version.ts';
import { parseParamArgs, rawFromRecorded, secretParamNames } from '../core/params.ts';
import { planHash as hashOf, type Plan } from '../core/plan.ts';
import type { App } from './app.ts';
import type { Invocation } from './runs.ts';

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'a sha256 in hex');

const plannedHost = z.object({
  host: z.string(),
  mutations: z.array(z.string()),
  undo: z.array(z.string()),
  done: z.string().optional(),
});

const plannedStep = z.object({
  id: z.string(),
  title: z.string(),
  destructive: z.boolean(),
  pointOfNoReturn: z.boolean(),
  commit: z.boolean().optional(),
  frozen: z.enum(['begins', 'ends']).optional(),
  skipped: z.string().optional(),
  state: z.string().optional(),
  hosts: z.array(plannedHost),
});

const preflight = z.looseObject({
  name: z.string(),
  ok: z.boolean(),
  expected: z.string(),
  found: z.string(),
  step: z.string(),
  host: z.string(),
});

/** The schema of a plan file; the plan hash then binds its content. */
export const planFileSchema = z.object({
  kind: z.literal('baton.plan'),
  planHash: sha256Hex,
  runbookFile: z.string().min(1),
  plan: z.object({
    runbook: z.string(),
    summary: z.string(),
    stack: z.string(),
    codeVersion: z.string(),
    code: z.record(z.string(), z.string()),
    params: z.record(z.string(), z.unknown()),
    inventoryHash: z.string(),
    policyHash: z.string(),
    facts: z.unknown(),
    preflight: z.array(preflight),
    steps: z.array(plannedStep),
    nothingToDo: z.boolean().optional(),
  }),
});

/** A plan written by `baton plan --out`: what approvers sign and `baton run --plan` runs. */
export interface PlanFile {
  kind: 'baton.plan';
  planHash: string;
  runbookFile: string;
  plan: Plan;
}

export function writePlanFile(path: string, plan: Plan, hash: string, runbookFile: string): void {
  const file: PlanFile = { kind: 'baton.plan', planHash: hash, runbookFile, plan };
  writeFileSync(path, JSON.stringify(file, null, 2) + '\n', { mode: 0o600 });
}

/** Read a plan file and check that its content still hashes to the hash it carries. */
export function readPlanFile(path: string): PlanFile {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new InvalidInputError(`${path} is not a plan file: ${(e as Error).message}`);
  }
  if ((raw as { kind?: unknown } | null)?.kind !== 'baton.plan') {
    throw new InvalidInputError(
      `${path} is not a plan file (write one with \`baton plan … --out FILE\`)`,
    );
  }
  if (typeof (raw as { plan?: { code?: unknown } }).plan?.code !== 'object') {
    throw new InvalidInputError(
      `${path} does not say which code it was made with (made by an older baton, or edited)`,
      'Plan again with this baton and have the new plan approved.',
    );
  }
  const parsed = planFileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InvalidInputError(
      `${path} is not a plan file baton can run: ${issue.path.join('.') || 'the file'}: ${issue.message}`,
      'Plan again with `baton plan … --out FILE`; a plan file is not edited by hand.',
    );
  }
  const data = parsed.data as PlanFile;
  if (manifestHash(data.plan.code) !== data.plan.codeVersion) {
    throw new InvalidInputError(
      `${path} does not say which code it was made with (made by an older baton, or edited)`,
      'Plan again with this baton and have the new plan approved.',
    );
  }
  const actual = hashOf(data.plan);
  if (actual !== data.planHash) {
    throw new BatonError(
      'APPROVAL_REFUSED',
      `${path} was edited after it was made: its plan hashes to ${actual.slice(0, 12)}, but it says ${data.planHash.slice(0, 12)}`,
      'Approvals bind to the plan as made; plan again and have it approved.',
    );
  }
  return data;
}

/** The invocation a plan file describes; secrets not given by reference must be given again. */
export async function invocationFromPlan(
  file: PlanFile,
  secretArgs: string[],
  app: App,
): Promise<Invocation> {
  const loaded = await app.runbook(file.runbookFile);
  return {
    runbook: file.runbookFile,
    stack: file.plan.stack,
    params: [],
    rawParams: rawFromRecorded(
      file.plan.params,
      secretParamNames(loaded.runbook.params),
      parseParamArgs(secretArgs),
      'this plan',
      'baton run --plan',
    ),
    cwd: app.cwd,
    app,
  };
}
