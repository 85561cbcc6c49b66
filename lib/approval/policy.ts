/**
 * The approval policy. It belongs to the operator's repository: `baton.policy.json`
 * and the approvers file it names are read from one fixed place, never from a
 * path the caller chooses. Their content hash goes into every plan, so an
 * approval names the rules it was given under. A caller may add a stricter
 * overlay (`--policy FILE`), never a looser one.
 */
import { canonicalJson, sha256 } from '../core/hash.ts';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { InvalidInputError } from '../core/errors.ts';
import { projectOf, type ProjectRef } from '../core/project.ts';

export const POLICY_FILE = 'baton.policy.json';
export const DEFAULT_APPROVAL_TTL_HOURS = 24;

/** Rules as written in the policy file: every field optional; what is left out comes from the defaults. */
const rulesSchema = z
  .object({
    approvers: z.number().int().min(0).max(10),
    holdSeconds: z.number().min(0),
    reconfirm: z.boolean(),
    /** An approver must hold one of these roles; empty means any listed approver. */
    roles: z.array(z.string().min(1)),
    reconfirmTimeoutSeconds: z.number().min(1),
    /** How long an approval stays valid after it was signed. */
    approvalTtlHours: z
      .number()
      .positive()
      .max(24 * 30),
  })
  .partial()
  .strict();

const stackRulesSchema = rulesSchema.extend({ emergency: rulesSchema.optional() }).strict();

const policyFileSchema = z
  .object({
    /** The approvers file, relative to the policy file. */
    approvers: z.string().min(1).optional(),
    /** Approver principal → the operator names (BATON_OPERATOR, user@host) that person runs baton as. */
    operators: z.record(z.string(), z.array(z.string().min(1))).optional(),
    emergency: z
      .object({
        /** The runbooks that may take the emergency path at all. */
        runbooks: z.array(z.string().min(1)),
        /** An emergency the operator alone approved; it owes a countersignature afterwards. */
        allowSolo: z.boolean().optional(),
      })
      .strict()
      .optional(),
    /** Who may sign journals besides the approvers: controllers' public keys, `keytype base64 [name]`. */
    signers: z
      .object({
        controllers: z.array(
          z
            .string()
            .regex(
              /^(ssh-|ecdsa-|sk-)\S+ [A-Za-z0-9+/]+=*( .*)?$/,
              'not a public key line "keytype base64 [name]"',
            ),
        ),
      })
      .strict()
      .optional(),
    stacks: z.record(z.string(), stackRulesSchema).optional(),
    runbooks: z.record(z.string(), z.record(z.string(), stackRulesSchema)).optional(),
  })
  .strict();

export type PolicyFileData = z.output<typeof policyFileSchema>;

export interface Rules {
  approvers: number;
  holdSeconds: number;
  reconfirm: boolean;
  roles: string[];
  reconfirmTimeoutSeconds: number;
  approvalTtlHours: number;
}

export interface Policy extends Rules {
  emergency: Rules;
  /** Whether this runbook may take the emergency path. */
  emergencyAllowed: boolean;
  /** Whether an emergency approved by the operator alone may run (and then owes a countersignature). */
  allowSolo: boolean;
  approversFile: string;
  /** Approver principal → operator names. */
  operators: Record<string, string[]>;
  /** The repository policy's hash (see `RepositoryPolicy.hash`). */
  hash: string;
  /** Where the rules came from, for the journal. */
  source: string;
}

export interface RepositoryPolicy {
  /** The policy file, or undefined when the repository has none and the defaults apply. */
  file: string | undefined;
  approversFile: string;
  data: PolicyFileData;
  /** sha256 over the policy file's bytes (or "defaults") and the approvers file's bytes (or "none"). */
  hash: string;
}

/** Where the repository keeps its policy, the one place baton looks: the project root (core/project.ts). */
export function policyLocation(at: ProjectRef = process.cwd()): string {
  return join(projectOf(at).root, POLICY_FILE);
}

function parsePolicyFile(file: string, role: string): PolicyFileData {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new InvalidInputError(`${role} ${file} is not valid JSON: ${(e as Error).message}`);
  }
  const r = policyFileSchema.safeParse(data);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const where = issue.path.length ? issue.path.join('.') : 'the top level';
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => JSON.stringify(k)).join(', ');
    throw new InvalidInputError(
      `${role} ${file} has unknown key ${keys} at ${where}`,
      issue.keys.includes('testnets')
        ? 'Remove it: whether a stack is a testnet comes from its inventory (hosts made by `baton testnet up`, or the built-in demo), never from the policy.'
        : 'Remove or correct it; README "Two people, not one" lists every key.',
    );
  }
  throw new InvalidInputError(`${role} ${file} is invalid at ${where}: ${issue.message}`);
}

/** Read the repository's policy and approvers file and hash them. */
export function loadRepositoryPolicy(at: ProjectRef = process.cwd()): RepositoryPolicy {
  const location = policyLocation(at);
  const file = existsSync(location) ? location : undefined;
  const data = file ? parsePolicyFile(file, 'the policy') : {};
  const approversFile = resolve(dirname(location), data.approvers ?? 'approvers');
  const digest = (path: string | undefined, absent: string): string =>
    path && existsSync(path) ? sha256(readFileSync(path).toString('latin1')) : absent;
  const hash = sha256(
    canonicalJson({
      v: 'baton policy 1',
      policy: digest(file, 'defaults'),
      approvers: digest(approversFile, 'none'),
    }),
  );
  return { file, approversFile, data, hash };
}

/** A caller's stricter rules (`--policy FILE`): the same schema, minus what only the repository may set. */
export function loadOverlay(file: string): PolicyFileData {
  if (!existsSync(file)) throw new InvalidInputError(`no policy file ${file}`);
  const data = parsePolicyFile(file, 'the policy overlay');
  for (const key of ['approvers', 'operators', 'signers'] as const) {
    if (data[key] !== undefined) {
      throw new InvalidInputError(
        `the policy overlay ${file} sets ${key}, which only the repository's ${POLICY_FILE} may set`,
        "An overlay may only make the rules stricter: more approvers, a longer hold, reconfirmation, narrower roles. Who approves and who signs journals is the repository's to say.",
      );
    }
  }
  return data;
}

export interface ResolveOptions {
  repo: RepositoryPolicy;
  runbook: string;
  stack: string;
  destructive: boolean;
  /** Whether the inventory is a testnet (see testnetOrigin): no approvals by default. */
  testnet: boolean;
  overlay?: { file: string; data: PolicyFileData };
}

type Layer = z.output<typeof stackRulesSchema>;

/** The stack's rules, with the runbook's own rules for that stack over them field by field. */
function layerFor(data: PolicyFileData, runbook: string, stack: string): Layer {
  const onStack = data.stacks?.[stack] ?? {};
  const own = data.runbooks?.[runbook]?.[stack] ?? {};
  const emergency = { ...onStack.emergency, ...own.emergency };
  return {
    ...onStack,
    ...own,
    ...(onStack.emergency || own.emergency ? { emergency } : {}),
  };
}

function applyLayer(
  base: Rules,
  baseEmergency: Rules | undefined,
  layer: Layer,
): { rules: Rules; emergency: Rules } {
  const { emergency: emergencyLayer, ...own } = layer;
  const rules: Rules = { ...base, ...stripUndefined(own) };
  if (rules.approvers === 0) rules.reconfirm = false;
  const emergency: Rules = {
    ...(baseEmergency ?? {
      ...rules,
      approvers: Math.min(rules.approvers, 1),
      holdSeconds: 0,
      reconfirm: false,
    }),
    ...stripUndefined(emergencyLayer ?? {}),
  };
  if (emergency.approvers === 0) emergency.reconfirm = false;
  return { rules, emergency };
}

/**
 * The rules for a runbook on a stack: the repository's `baton.policy.json`
 * (the stack's rules, the runbook's on that stack over them), else the defaults — two approvers, a
 * five-minute hold and a reconfirmation for destructive runbooks (one approver
 * otherwise), none on a testnet — then the caller's overlay, which may only
 * make them stricter.
 */
export function resolvePolicy(o: ResolveOptions): Policy {
  const defaults: Rules = o.testnet
    ? {
        approvers: 0,
        holdSeconds: 0,
        reconfirm: false,
        roles: [],
        reconfirmTimeoutSeconds: 1800,
        approvalTtlHours: DEFAULT_APPROVAL_TTL_HOURS,
      }
    : {
        approvers: o.destructive ? 2 : 1,
        holdSeconds: 300,
        reconfirm: true,
        roles: [],
        reconfirmTimeoutSeconds: 1800,
        approvalTtlHours: DEFAULT_APPROVAL_TTL_HOURS,
      };
  const base = applyLayer(defaults, undefined, layerFor(o.repo.data, o.runbook, o.stack));
  const baseEmergencyAllowed = o.repo.data.emergency?.runbooks.includes(o.runbook) ?? false;
  const baseSolo = o.repo.data.emergency?.allowSolo ?? false;
  let { rules, emergency } = base;
  let emergencyAllowed = baseEmergencyAllowed;
  let allowSolo = baseSolo;
  if (o.overlay) {
    const over = applyLayer(rules, emergency, layerFor(o.overlay.data, o.runbook, o.stack));
    const e = o.overlay.data.emergency;
    const overAllowed = e ? e.runbooks.includes(o.runbook) : baseEmergencyAllowed;
    const overSolo = e?.allowSolo ?? baseSolo;
    const looser = [
      ...looserFields(rules, over.rules, ''),
      ...looserFields(emergency, over.emergency, 'emergency.'),
      ...(!baseEmergencyAllowed && overAllowed
        ? [`emergency.runbooks lets ${o.runbook} take the emergency path; the repository does not`]
        : []),
      ...(!baseSolo && overSolo
        ? ['emergency.allowSolo is true; the repository does not allow a solo emergency']
        : []),
    ];
    if (looser.length > 0) {
      throw new InvalidInputError(
        `the policy overlay ${o.overlay.file} is looser than the repository's policy (${o.repo.file ?? 'the defaults'}) for ${o.runbook} on ${o.stack}: ${looser.join('; ')}`,
        "An overlay may only make the rules stricter. Change the repository's policy through its review instead.",
      );
    }
    ({ rules, emergency } = over);
    emergencyAllowed = overAllowed;
    allowSolo = overSolo;
  }
  const source = [
    o.repo.file ?? (o.testnet ? 'defaults for a testnet' : 'defaults'),
    ...(o.overlay ? [`overlay ${o.overlay.file}`] : []),
  ].join(' + ');
  return {
    ...rules,
    emergency,
    emergencyAllowed,
    allowSolo,
    approversFile: o.repo.approversFile,
    operators: o.repo.data.operators ?? {},
    hash: o.repo.hash,
    source,
  };
}

/** The fields in which `candidate` is looser than `base`, each said in words. */
export function looserFields(base: Rules, candidate: Rules, prefix: string): string[] {
  const out: string[] = [];
  const say = (field: string, text: string): void => void out.push(`${prefix}${field} ${text}`);
  if (candidate.approvers < base.approvers)
    say('approvers', `is ${candidate.approvers}, below ${base.approvers}`);
  if (candidate.holdSeconds < base.holdSeconds)
    say('holdSeconds', `is ${candidate.holdSeconds}, below ${base.holdSeconds}`);
  if (base.reconfirm && !candidate.reconfirm) say('reconfirm', 'is false, and must stay true');
  if (
    base.roles.length > 0 &&
    (candidate.roles.length === 0 || candidate.roles.some((r) => !base.roles.includes(r)))
  )
    say(
      'roles',
      `is [${candidate.roles.join(', ')}], wider than [${base.roles.join(', ')}]: it may only narrow them`,
    );
  if (candidate.reconfirmTimeoutSeconds > base.reconfirmTimeoutSeconds)
    say(
      'reconfirmTimeoutSeconds',
      `is ${candidate.reconfirmTimeoutSeconds}, above ${base.reconfirmTimeoutSeconds}`,
    );
  if (candidate.approvalTtlHours > base.approvalTtlHours)
    say('approvalTtlHours', `is ${candidate.approvalTtlHours}, above ${base.approvalTtlHours}`);
  return out;
}

/** The stricter of two sets of rules, field by field. */
export function strictest(a: Rules, b: Rules): Rules {
  const roles =
    a.roles.length === 0
      ? b.roles
      : b.roles.length === 0
        ? a.roles
        : a.roles.filter((r) => b.roles.includes(r));
  return {
    approvers: Math.max(a.approvers, b.approvers),
    holdSeconds: Math.max(a.holdSeconds, b.holdSeconds),
    reconfirm: a.reconfirm || b.reconfirm,
    roles: roles.length ? roles : a.roles,
    reconfirmTimeoutSeconds: Math.min(a.reconfirmTimeoutSeconds, b.reconfirmTimeoutSeconds),
    approvalTtlHours: Math.min(a.approvalTtlHours, b.approvalTtlHours),
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
