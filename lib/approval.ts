/**
 * The two-person rule. An approval is an SSH signature (`ssh-keygen -Y sign`,
 * namespace `baton-plan`) over a plan's hash, made with the approver's own key
 * and checked against the approvers file kept in the operator's repository.
 * A reconfirmation signs the same plan plus a token that only exists once the
 * hold has ended, so it cannot be made early.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { $ } from 'zx';
import { z } from 'zod';
import { BatonError, InvalidInputError } from './errors.ts';

export const NAMESPACE = 'baton-plan';

export type Purpose = 'approve' | 'reconfirm';

export interface ApprovalFile {
  kind: 'baton.approval';
  purpose: Purpose;
  planHash: string;
  runbook: string;
  stack: string;
  emergency: boolean;
  /** Present on reconfirmations: the token the run printed when its hold ended. */
  token?: string;
  /** Who the signer says they are; the signature decides. */
  signer?: string;
  signedAt: string;
  signature: string;
}

const approvalFileSchema = z.object({
  kind: z.literal('baton.approval'),
  purpose: z.enum(['approve', 'reconfirm']),
  planHash: z.string().regex(/^[0-9a-f]{64}$/),
  runbook: z.string(),
  stack: z.string(),
  emergency: z.boolean(),
  token: z.string().optional(),
  signer: z.string().optional(),
  signedAt: z.string(),
  signature: z.string().min(1),
});

export class ApprovalRefused extends BatonError {
  constructor(message: string, hint?: string) {
    super('APPROVAL_REFUSED', message, hint);
    this.name = 'ApprovalRefused';
  }
}

/** The exact bytes an approver signs. */
export function signedMessage(
  a: Omit<ApprovalFile, 'kind' | 'signature' | 'signedAt' | 'signer'>,
): string {
  return [
    'baton plan approval v1',
    `purpose: ${a.purpose}`,
    `plan: ${a.planHash}`,
    `runbook: ${a.runbook}`,
    `stack: ${a.stack}`,
    `emergency: ${a.emergency ? 'yes' : 'no'}`,
    ...(a.token ? [`token: ${a.token}`] : []),
    '',
  ].join('\n');
}

export interface Approver {
  principal: string;
  roles: string[];
  /** `ssh-ed25519 AAAA…` */
  publicKey: string;
}

/**
 * The approvers file: one approver per line, `principal roles keytype base64 [comment]`,
 * roles comma-separated (`alice@example.org senior,admin ssh-ed25519 AAAA… alice`).
 */
export function parseApprovers(text: string, file: string): Approver[] {
  const approvers: Approver[] = [];
  text.split('\n').forEach((line, i) => {
    const trimmed = line.trim();
    if (!trimmed || trimmed.startsWith('#')) return;
    const [principal, roles, keytype, key] = trimmed.split(/\s+/);
    if (!principal || !roles || !keytype || !key || !/^(ssh-|ecdsa-|sk-)/.test(keytype)) {
      throw new InvalidInputError(
        `${file} line ${i + 1} is not "principal roles keytype key": ${JSON.stringify(trimmed.slice(0, 60))}`,
        'Write one approver per line, e.g. `alice@example.org senior ssh-ed25519 AAAA… alice`.',
      );
    }
    if (approvers.some((a) => a.principal === principal)) {
      throw new InvalidInputError(`${file} line ${i + 1}: ${principal} is listed twice`);
    }
    approvers.push({ principal, roles: roles.split(','), publicKey: `${keytype} ${key}` });
  });
  return approvers;
}

export function loadApprovers(file: string): Approver[] {
  if (!existsSync(file)) {
    throw new InvalidInputError(
      `no approvers file at ${file}`,
      'Create it in your repository: one line per approver, `principal roles keytype key`.',
    );
  }
  return parseApprovers(readFileSync(file, 'utf8'), file);
}

function allowedSigners(approvers: Approver[]): string {
  return approvers.map((a) => `${a.principal} namespaces="${NAMESPACE}" ${a.publicKey}\n`).join('');
}

async function withScratch<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'baton-sig-'));
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface SignInput {
  purpose: Purpose;
  planHash: string;
  runbook: string;
  stack: string;
  emergency: boolean;
  token?: string;
  /** The approver's private key (or its public key, with the private key in ssh-agent). */
  keyPath: string;
  signer?: string;
  now?: Date;
}

/** Sign with the approver's own key through ssh-keygen. */
export async function sign(input: SignInput): Promise<ApprovalFile> {
  if (!existsSync(input.keyPath)) {
    throw new InvalidInputError(
      `no key at ${input.keyPath}`,
      'Pass --key with the path of your ssh private key.',
    );
  }
  const body = {
    purpose: input.purpose,
    planHash: input.planHash,
    runbook: input.runbook,
    stack: input.stack,
    emergency: input.emergency,
    ...(input.token ? { token: input.token } : {}),
  };
  const out = await $({
    input: signedMessage(body),
    nothrow: true,
    quiet: true,
  })`ssh-keygen -q -Y sign -f ${input.keyPath} -n ${NAMESPACE}`;
  if (out.exitCode !== 0 || !out.stdout.includes('BEGIN SSH SIGNATURE')) {
    throw new BatonError(
      'APPROVAL_REFUSED',
      `ssh-keygen could not sign with ${input.keyPath}: ${out.stderr.trim() || `exit ${out.exitCode}`}`,
      'Check the key path, and that ssh-agent holds the key if it has a passphrase.',
    );
  }
  return {
    kind: 'baton.approval',
    ...body,
    ...(input.signer ? { signer: input.signer } : {}),
    signedAt: (input.now ?? new Date()).toISOString(),
    signature: out.stdout,
  };
}

export interface VerifiedApproval {
  purpose: Purpose;
  principal: string;
  roles: string[];
  keyFingerprint: string;
  emergency: boolean;
  /** sha256 of the signature, to tell approvals apart in the journal. */
  signatureSha256: string;
  source: string;
}

export interface Expectation {
  planHash: string;
  runbook: string;
  stack: string;
  purpose: Purpose;
  token?: string;
}

export function parseApprovalFile(text: string, source: string): ApprovalFile {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new ApprovalRefused(
      `${source} is not an approval: not JSON (truncated?)`,
      'Ask the approver to send the file again.',
    );
  }
  const parsed = approvalFileSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ApprovalRefused(
      `${source} is not an approval: ${issue.path.join('.')}: ${issue.message}`,
    );
  }
  return parsed.data as ApprovalFile;
}

/** Verify one approval: it is for this plan and purpose, and its signature is good and made by a listed approver. */
export async function verifyApproval(
  approval: ApprovalFile,
  expected: Expectation,
  approvers: Approver[],
  source: string,
): Promise<VerifiedApproval> {
  if (approval.purpose !== expected.purpose) {
    throw new ApprovalRefused(
      `${source} is ${approval.purpose === 'approve' ? 'an approval' : 'a reconfirmation'}, not ${expected.purpose === 'approve' ? 'an approval' : 'a reconfirmation'}`,
    );
  }
  if (approval.planHash !== expected.planHash) {
    throw new ApprovalRefused(
      `${source} approves plan ${approval.planHash.slice(0, 12)}, not this plan ${expected.planHash.slice(0, 12)}`,
      'The plan changed since it was approved, or the approval is for another plan: have the current plan approved.',
    );
  }
  if (approval.runbook !== expected.runbook || approval.stack !== expected.stack) {
    throw new ApprovalRefused(
      `${source} is for ${approval.runbook} on ${approval.stack}, not ${expected.runbook} on ${expected.stack}`,
    );
  }
  if (expected.purpose === 'reconfirm' && approval.token !== expected.token) {
    throw new ApprovalRefused(
      `${source} does not carry this hold's reconfirmation token: it was made before the hold ended, or for another run`,
      'Reconfirm after the hold ends, with the token the run prints then.',
    );
  }
  return withScratch(async (dir) => {
    const sig = join(dir, 'approval.sig');
    const allowed = join(dir, 'allowed_signers');
    writeFileSync(sig, approval.signature);
    writeFileSync(allowed, allowedSigners(approvers));
    const found = await $({
      nothrow: true,
      quiet: true,
    })`ssh-keygen -Y find-principals -s ${sig} -f ${allowed}`;
    const principal = found.stdout.trim().split('\n')[0]?.trim();
    if (found.exitCode !== 0 || !principal) {
      const why =
        /Couldn't parse|invalid format|not a signature|truncated|incomplete|parse signature|error in libcrypto/i.test(
          found.stderr,
        )
          ? 'its signature is damaged or not an SSH signature'
          : 'its key is not in the approvers file';
      throw new ApprovalRefused(
        `${source} is refused: ${why}${approval.signer ? ` (it says it is from ${approval.signer})` : ''}`,
        'Only people listed in the approvers file can approve; ask one of them.',
      );
    }
    const verified = await $({
      input: signedMessage(approval),
      nothrow: true,
      quiet: true,
    })`ssh-keygen -Y verify -f ${allowed} -I ${principal} -n ${NAMESPACE} -s ${sig}`;
    if (verified.exitCode !== 0) {
      throw new ApprovalRefused(
        `${source} is refused: the signature by ${principal} does not match what the file says (forged or edited)`,
        `Ask ${principal} to approve again.`,
      );
    }
    const fingerprint =
      /key (SHA256:[A-Za-z0-9+/]+)/.exec(verified.stdout + verified.stderr)?.[1] ?? 'unknown';
    const approver = approvers.find((a) => a.principal === principal)!;
    return {
      purpose: approval.purpose,
      principal,
      roles: approver.roles,
      keyFingerprint: fingerprint,
      emergency: approval.emergency,
      signatureSha256: createHash('sha256').update(approval.signature).digest('hex'),
      source,
    };
  });
}

/** Approval files from a directory (`*.json`) or `-` for standard input (one JSON document per line). */
export function readApprovalSources(
  where: string,
  stdin?: string,
): Array<{ source: string; text: string }> {
  if (where === '-') {
    return (stdin ?? '')
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .map((text, i) => ({ source: `stdin line ${i + 1}`, text }));
  }
  if (!existsSync(where)) throw new InvalidInputError(`no approvals directory ${where}`);
  return readdirSync(where)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ source: join(where, f), text: readFileSync(join(where, f), 'utf8') }));
}

export function newToken(): string {
  return randomBytes(16).toString('hex');
}

export function approvalFileName(a: ApprovalFile, principalHint: string): string {
  const who = principalHint.replace(/[^A-Za-z0-9._-]/g, '_');
  return `${a.purpose}-${a.planHash.slice(0, 12)}-${who}.json`;
}

// ---- policy -----------------------------------------------------------------

/** Rules as written in the policy file: every field optional; what is left out comes from the defaults. */
const rulesSchema = z
  .object({
    approvers: z.number().int().min(0).max(10),
    holdSeconds: z.number().min(0),
    reconfirm: z.boolean(),
    /** Roles an approver must hold; empty means any listed approver. */
    roles: z.array(z.string()),
    reconfirmTimeoutSeconds: z.number().min(1),
  })
  .partial()
  .strict();

const policyRulesSchema = rulesSchema.extend({ emergency: rulesSchema.optional() }).strict();

export const policyFileSchema = z.object({
  /** The approvers file, relative to the policy file. */
  approvers: z.string().default('approvers'),
  /** Stacks that are testnets: no approvals by default. */
  testnets: z.array(z.string()).default([]),
  stacks: z.record(z.string(), policyRulesSchema).default({}),
  runbooks: z.record(z.string(), z.record(z.string(), policyRulesSchema)).default({}),
});

export interface Rules {
  approvers: number;
  holdSeconds: number;
  reconfirm: boolean;
  roles: string[];
  reconfirmTimeoutSeconds: number;
}

export interface Policy extends Rules {
  emergency: Rules;
  /** Where the approvers file is. */
  approversFile: string;
  /** Where the rules came from, for the journal. */
  source: string;
}

export const BUILTIN_TESTNETS = ['local', 'demo', 'testnet'];
export const POLICY_FILE = 'baton.policy.json';

/**
 * The policy for a runbook on a stack: from `baton.policy.json` (runbook+stack,
 * then stack), else the defaults — two approvers, a five-minute hold and a
 * reconfirmation for destructive runbooks (one approver otherwise), none on testnets.
 */
export function resolvePolicy(opts: {
  runbook: string;
  stack: string;
  destructive: boolean;
  file?: string;
  cwd?: string;
}): Policy {
  const file = opts.file ?? join(resolve(opts.cwd ?? process.cwd()), POLICY_FILE);
  let parsed: z.output<typeof policyFileSchema> = policyFileSchema.parse({});
  let fromFile = false;
  if (existsSync(file)) {
    let data: unknown;
    try {
      data = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new InvalidInputError(`${file} is not valid JSON: ${(e as Error).message}`);
    }
    const r = policyFileSchema.safeParse(data);
    if (!r.success) {
      const issue = r.error.issues[0]!;
      throw new InvalidInputError(
        `${file} is invalid at ${issue.path.join('.')}: ${issue.message}`,
      );
    }
    parsed = r.data;
    fromFile = true;
  } else if (opts.file) {
    throw new InvalidInputError(`no policy file ${opts.file}`);
  }
  const testnet = BUILTIN_TESTNETS.includes(opts.stack) || parsed.testnets.includes(opts.stack);
  const defaults: Rules = testnet
    ? { approvers: 0, holdSeconds: 0, reconfirm: false, roles: [], reconfirmTimeoutSeconds: 1800 }
    : {
        approvers: opts.destructive ? 2 : 1,
        holdSeconds: 300,
        reconfirm: true,
        roles: [],
        reconfirmTimeoutSeconds: 1800,
      };
  const { emergency: emergencyLayer, ...layer } =
    parsed.runbooks[opts.runbook]?.[opts.stack] ?? parsed.stacks[opts.stack] ?? {};
  const rules: Rules = { ...defaults, ...stripUndefined(layer) };
  if (rules.approvers === 0) rules.reconfirm = false;
  const emergency: Rules = {
    ...rules,
    approvers: Math.min(rules.approvers, 1),
    holdSeconds: 0,
    reconfirm: false,
    ...stripUndefined(emergencyLayer ?? {}),
  };
  return {
    ...rules,
    emergency,
    approversFile: resolve(dirname(file), parsed.approvers),
    source: fromFile ? file : testnet ? 'defaults for a testnet' : 'defaults',
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Check verified approvals against the rules: distinct approvers, enough of them, with the right roles. */
export function countApprovals(
  verified: VerifiedApproval[],
  rules: Rules,
  emergency: boolean,
): { accepted: VerifiedApproval[]; refused: Array<{ source: string; reason: string }> } {
  const accepted: VerifiedApproval[] = [];
  const refused: Array<{ source: string; reason: string }> = [];
  for (const v of verified) {
    if (accepted.some((a) => a.principal === v.principal)) {
      refused.push({
        source: v.source,
        reason: `${v.principal} already approved: the same approver counts once`,
      });
    } else if (rules.roles.length > 0 && !v.roles.some((r) => rules.roles.includes(r))) {
      refused.push({
        source: v.source,
        reason: `${v.principal} has roles ${v.roles.join(', ')}, and this policy needs one of ${rules.roles.join(', ')}`,
      });
    } else if (emergency && !v.emergency && v.purpose === 'approve') {
      refused.push({
        source: v.source,
        reason: `${v.principal} approved a planned run, not an emergency`,
      });
    } else if (!emergency && v.emergency) {
      refused.push({
        source: v.source,
        reason: `${v.principal} approved an emergency run; this run is not one`,
      });
    } else accepted.push(v);
  }
  return { accepted, refused };
}
