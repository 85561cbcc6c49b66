/**
 * The two-person rule. An approval is an SSH signature (`ssh-keygen -Y sign`,
 * namespace `baton-plan`) over a plan's hash and the policy's hash, with the
 * time it was signed and when it expires, made with the approver's own key and
 * checked against the approvers file kept in the operator's repository. A
 * reconfirmation signs the same plan plus a token that only exists once the
 * hold has ended, so it cannot be made early. A countersignature (namespace
 * `baton-countersign`) is a second approver's review of a finished run.
 */
import type { ApprovalFile, Purpose } from '../core/events.ts';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { $ } from 'zx/core';
import { z } from 'zod';
import { BatonError, InvalidInputError } from '../core/errors.ts';
import type { Rules } from './policy.ts';

export const NAMESPACE = 'baton-plan';
export const COUNTERSIGN_NAMESPACE = 'baton-countersign';
/** How far ahead of this controller's clock a signing time may be. */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000;

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

const approvalFileSchema = z.object({
  kind: z.literal('baton.approval'),
  version: z.literal(2),
  purpose: z.enum(['approve', 'reconfirm']),
  planHash: sha256Hex,
  policyHash: sha256Hex,
  runbook: z.string(),
  stack: z.string(),
  emergency: z.boolean(),
  token: z.string().optional(),
  signer: z.string().optional(),
  signedAt: z.string(),
  expiresAt: z.string(),
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
  a: Omit<ApprovalFile, 'kind' | 'version' | 'signature' | 'signer'>,
): string {
  return [
    'baton plan approval v2',
    `purpose: ${a.purpose}`,
    `plan: ${a.planHash}`,
    `policy: ${a.policyHash}`,
    `runbook: ${a.runbook}`,
    `stack: ${a.stack}`,
    `emergency: ${a.emergency ? 'yes' : 'no'}`,
    `signed: ${a.signedAt}`,
    `expires: ${a.expiresAt}`,
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

function allowedSigners(approvers: Approver[], namespace: string): string {
  return approvers.map((a) => `${a.principal} namespaces="${namespace}" ${a.publicKey}\n`).join('');
}

async function withScratch<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'baton-sig-'));
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function sshSign(keyPath: string, namespace: string, message: string): Promise<string> {
  if (!existsSync(keyPath)) {
    throw new InvalidInputError(
      `no key at ${keyPath}`,
      'Pass --key with the path of your ssh private key.',
    );
  }
  const out = await $({
    input: message,
    nothrow: true,
    quiet: true,
  })`ssh-keygen -q -Y sign -f ${keyPath} -n ${namespace}`;
  if (out.exitCode !== 0 || !out.stdout.includes('BEGIN SSH SIGNATURE')) {
    throw new BatonError(
      'APPROVAL_REFUSED',
      `ssh-keygen could not sign with ${keyPath}: ${out.stderr.trim() || `exit ${out.exitCode}`}`,
      'Check the key path, and that ssh-agent holds the key if it has a passphrase.',
    );
  }
  return out.stdout;
}

interface Signed {
  approver: Approver;
  keyFingerprint: string;
}

/** Which listed approver made `signature` over `message`; refused with the reason otherwise. */
async function verifySignature(
  signature: string,
  message: string,
  namespace: string,
  approvers: Approver[],
  source: string,
  claimed: string | undefined,
): Promise<Signed> {
  return withScratch(async (dir) => {
    const sig = join(dir, 'approval.sig');
    const allowed = join(dir, 'allowed_signers');
    writeFileSync(sig, signature);
    writeFileSync(allowed, allowedSigners(approvers, namespace));
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
        `${source} is refused: ${why}${claimed ? ` (it says it is from ${claimed})` : ''}`,
        'Only people listed in the approvers file can approve; ask one of them.',
      );
    }
    const verified = await $({
      input: message,
      nothrow: true,
      quiet: true,
    })`ssh-keygen -Y verify -f ${allowed} -I ${principal} -n ${namespace} -s ${sig}`;
    if (verified.exitCode !== 0) {
      throw new ApprovalRefused(
        `${source} is refused: the signature by ${principal} does not match what the file says (forged or edited)`,
        `Ask ${principal} to sign again.`,
      );
    }
    const keyFingerprint =
      /key (SHA256:[A-Za-z0-9+/]+)/.exec(verified.stdout + verified.stderr)?.[1] ?? 'unknown';
    return { approver: approvers.find((a) => a.principal === principal)!, keyFingerprint };
  });
}

export interface SignInput {
  purpose: Purpose;
  planHash: string;
  policyHash: string;
  runbook: string;
  stack: string;
  emergency: boolean;
  token?: string;
  /** The approver's private key (or its public key, with the private key in ssh-agent). */
  keyPath: string;
  signer?: string;
  now?: Date;
  /** How long the approval stays valid; default 24 h. */
  ttlHours?: number;
}

/** Sign with the approver's own key through ssh-keygen. */
export async function sign(input: SignInput): Promise<ApprovalFile> {
  const signedAt = input.now ?? new Date();
  const expiresAt = new Date(signedAt.getTime() + (input.ttlHours ?? 24) * 3_600_000);
  const body = {
    purpose: input.purpose,
    planHash: input.planHash,
    policyHash: input.policyHash,
    runbook: input.runbook,
    stack: input.stack,
    emergency: input.emergency,
    ...(input.token ? { token: input.token } : {}),
    signedAt: signedAt.toISOString(),
    expiresAt: expiresAt.toISOString(),
  };
  const signature = await sshSign(input.keyPath, NAMESPACE, signedMessage(body));
  return {
    kind: 'baton.approval',
    version: 2,
    ...body,
    ...(input.signer ? { signer: input.signer } : {}),
    signature,
  };
}

export interface VerifiedApproval {
  purpose: Purpose;
  principal: string;
  roles: string[];
  keyFingerprint: string;
  publicKey: string;
  emergency: boolean;
  /** sha256 of the signature: what makes an approval single-use. */
  signatureSha256: string;
  source: string;
  approval: ApprovalFile;
}

export interface Expectation {
  planHash: string;
  policyHash: string;
  runbook: string;
  stack: string;
  purpose: Purpose;
  token?: string;
  /** The time to judge expiry at. */
  now: Date;
  /** The longest validity the policy allows. */
  ttlHours: number;
}

export function signatureSha256(signature: string): string {
  return createHash('sha256').update(signature).digest('hex');
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
  return parseApproval(data, source);
}

export function parseApproval(data: unknown, source: string): ApprovalFile {
  if (
    data &&
    typeof data === 'object' &&
    (data as { kind?: unknown }).kind === 'baton.approval' &&
    (data as { version?: unknown }).version === undefined
  ) {
    throw new ApprovalRefused(
      `${source} is an approval of an older kind, which signs neither the policy nor a time nor an expiry`,
      'Ask the approver to approve the plan again with this baton.',
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

const hoursText = (ms: number): string => `${Math.round((ms / 3_600_000) * 10) / 10} h`;

/** Refuse an approval whose signing time or expiry does not hold at `now` under a validity of `ttlHours`. */
function checkTimes(a: ApprovalFile, now: Date, ttlHours: number, source: string): void {
  const signed = Date.parse(a.signedAt);
  const expires = Date.parse(a.expiresAt);
  if (Number.isNaN(signed) || Number.isNaN(expires) || expires <= signed) {
    throw new ApprovalRefused(
      `${source} is refused: its signing time ${a.signedAt} and expiry ${a.expiresAt} are not a time span`,
    );
  }
  if (signed > now.getTime() + MAX_CLOCK_SKEW_MS) {
    throw new ApprovalRefused(
      `${source} is refused: it was signed in the future (${a.signedAt}, ${hoursText(signed - now.getTime())} ahead of this controller's clock ${now.toISOString()})`,
      "Check the approver's clock and this one's, then have it signed again.",
    );
  }
  if (expires - signed > ttlHours * 3_600_000) {
    throw new ApprovalRefused(
      `${source} is refused: it is valid for ${hoursText(expires - signed)}, and the policy allows approvals of at most ${ttlHours} h`,
      "Have it signed again (baton approve uses the policy's approvalTtlHours).",
    );
  }
  if (now.getTime() >= expires) {
    throw new ApprovalRefused(
      `${source} is refused: it expired at ${a.expiresAt} (signed ${a.signedAt})`,
      'Have the plan approved again.',
    );
  }
}

/** Verify one approval: it is for this plan, policy and purpose, current, and signed by a listed approver. */
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
  if (approval.policyHash !== expected.policyHash) {
    throw new ApprovalRefused(
      `${source} was signed under policy ${approval.policyHash.slice(0, 12)}, and this run's policy is ${expected.policyHash.slice(0, 12)}: baton.policy.json or the approvers file changed`,
      'Plan again under the current policy and have the new plan approved.',
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
  checkTimes(approval, expected.now, expected.ttlHours, source);
  const { approver, keyFingerprint } = await verifySignature(
    approval.signature,
    signedMessage(approval),
    NAMESPACE,
    approvers,
    source,
    approval.signer,
  );
  return {
    purpose: approval.purpose,
    principal: approver.principal,
    roles: approver.roles,
    keyFingerprint,
    publicKey: approver.publicKey,
    emergency: approval.emergency,
    signatureSha256: signatureSha256(approval.signature),
    source,
    approval,
  };
}

// ---- countersignatures ------------------------------------------------------

/** A second approver's review of a finished run: they sign its id, its plan and its journal's head. */
export interface Countersignature {
  kind: 'baton.countersignature';
  version: 1;
  runId: string;
  planHash: string;
  /** The journal's last record when it was signed: the report is made from exactly that journal. */
  journalHead: { seq: number; hash: string };
  signer?: string;
  signedAt: string;
  signature: string;
}

const countersignatureSchema = z.object({
  kind: z.literal('baton.countersignature'),
  version: z.literal(1),
  runId: z.string(),
  planHash: sha256Hex,
  journalHead: z.object({ seq: z.number().int().min(0), hash: sha256Hex }),
  signer: z.string().optional(),
  signedAt: z.string(),
  signature: z.string().min(1),
});

export function countersignMessage(
  c: Omit<Countersignature, 'kind' | 'version' | 'signature' | 'signer'>,
): string {
  return [
    'baton run countersignature v1',
    `run: ${c.runId}`,
    `plan: ${c.planHash}`,
    `journal: ${c.journalHead.seq} ${c.journalHead.hash}`,
    `signed: ${c.signedAt}`,
    '',
  ].join('\n');
}

export async function signCountersignature(input: {
  runId: string;
  planHash: string;
  journalHead: { seq: number; hash: string };
  keyPath: string;
  signer?: string;
  now?: Date;
}): Promise<Countersignature> {
  const body = {
    runId: input.runId,
    planHash: input.planHash,
    journalHead: input.journalHead,
    signedAt: (input.now ?? new Date()).toISOString(),
  };
  const signature = await sshSign(input.keyPath, COUNTERSIGN_NAMESPACE, countersignMessage(body));
  return {
    kind: 'baton.countersignature',
    version: 1,
    ...body,
    ...(input.signer ? { signer: input.signer } : {}),
    signature,
  };
}

/** Verify a countersignature over this run and this journal; returns who made it. */
export async function verifyCountersignature(
  data: unknown,
  expected: { runId: string; planHash: string; journalHead: { seq: number; hash: string } },
  approvers: Approver[],
  source: string,
): Promise<{ principal: string; publicKey: string; keyFingerprint: string }> {
  const parsed = countersignatureSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ApprovalRefused(
      `${source} is not a countersignature: ${issue.path.join('.')}: ${issue.message}`,
    );
  }
  const c = parsed.data;
  if (c.runId !== expected.runId || c.planHash !== expected.planHash) {
    throw new ApprovalRefused(`${source} countersigns run ${c.runId}, not run ${expected.runId}`);
  }
  if (
    c.journalHead.seq !== expected.journalHead.seq ||
    c.journalHead.hash !== expected.journalHead.hash
  ) {
    throw new ApprovalRefused(
      `${source} countersigns the journal up to record ${c.journalHead.seq}, and the journal now ends at record ${expected.journalHead.seq} with another hash`,
      'The run went on after it was countersigned: have it countersigned again.',
    );
  }
  const { approver, keyFingerprint } = await verifySignature(
    c.signature,
    countersignMessage(c),
    COUNTERSIGN_NAMESPACE,
    approvers,
    source,
    c.signer,
  );
  return { principal: approver.principal, publicKey: approver.publicKey, keyFingerprint };
}

// ---- the operator -----------------------------------------------------------

/** Who runs baton: their name, the approver principals that are theirs, and their public keys. */
export interface OperatorIdentity {
  name: string;
  principals: string[];
  /** `keytype base64` of every public key the operator holds on this controller. */
  keys: string[];
}

/**
 * The public keys of the person at this controller: `~/.ssh/*.pub` and the
 * keys in their ssh-agent. An approval made with one of them is the operator's own.
 */
export async function operatorKeys(home = process.env.HOME ?? homedir()): Promise<string[]> {
  const keys = new Set<string>();
  const add = (line: string): void => {
    const [type, blob] = line.trim().split(/\s+/);
    if (type && blob && /^(ssh-|ecdsa-|sk-)/.test(type)) keys.add(`${type} ${blob}`);
  };
  const dir = join(home, '.ssh');
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).filter((f) => f.endsWith('.pub'))) {
      try {
        readFileSync(join(dir, f), 'utf8').split('\n').forEach(add);
      } catch {
        // unreadable: not a key this operator can show
      }
    }
  }
  if (process.env.SSH_AUTH_SOCK) {
    const agent = await $({ nothrow: true, quiet: true, timeout: '5s' })`ssh-add -L`;
    if (agent.exitCode === 0) agent.stdout.split('\n').forEach(add);
  }
  return [...keys];
}

export function operatorIdentity(
  name: string,
  operators: Record<string, string[]>,
  keys: string[],
): OperatorIdentity {
  const principals = [
    name,
    ...Object.entries(operators)
      .filter(([, names]) => names.includes(name))
      .map(([principal]) => principal),
  ];
  return { name, principals, keys };
}

export function isOperators(
  a: { principal: string; publicKey: string },
  operator: OperatorIdentity,
): boolean {
  return operator.principals.includes(a.principal) || operator.keys.includes(a.publicKey);
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
