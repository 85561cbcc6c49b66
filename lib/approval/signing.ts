/**
 * Signed heads: the journal's chain has no key, so anyone who can write the
 * run directory can rewrite it and compute the chain again. At each record
 * that clears a run to change hosts and at its end, the head (sequence and
 * hash) is signed with an SSH key (`ssh-keygen -Y sign`, namespace
 * `baton-journal`) into `signatures.jsonl` beside the journal, and noted in
 * the run store's index, so that cutting the end of both files is seen;
 * `baton verify` and `baton resume` check the chain against those signatures.
 */
import { SIGNING_KEY_ENV } from '../core/env.ts';
import { sha256 } from '../core/hash.ts';
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { loadApprovers, parseApprovers, type Approver } from './approval.ts';
import { errorMessage, InvalidInputError } from '../core/errors.ts';
import type { JournalRecord, RunEvent } from '../core/events.ts';
import { readJournal, SIGNED_KINDS, type Head, type HeadSigner } from '../engine/journal.ts';

export const JOURNAL_NAMESPACE = 'baton-journal';
export const SIGNATURES_FILE = 'signatures.jsonl';
/** In the baton home: one line per signed head of every run, the last line of a run saying how far its signed journal reaches. */
export const RUN_INDEX_FILE = 'runs-index.jsonl';

export interface SignedHead extends Head {
  kind: RunEvent['kind'];
  signedAt: string;
  /** An armored SSH signature over `headMessage`. */
  signature: string;
}

/** The exact bytes a head signature covers. */
export function headMessage(head: Head): string {
  return `baton journal head v1\nseq: ${head.seq}\nhash: ${head.hash}\n`;
}

/** One line of the run index: a signed head of a run, by the sha256 of its signature. */
export interface IndexEntry {
  runId: string;
  seq: number;
  hash: string;
  kind: RunEvent['kind'];
  signatureSha256: string;
}

/** A head signer with an ssh key, and a signature it made when created, to tell who it signs as. */
export interface SshHeadSigner extends HeadSigner {
  keyPath: string;
  probe: { message: string; signature: string };
}

/**
 * A signer with the key at `keyPath` (a private key, or its .pub with the key
 * in ssh-agent). It signs once on creation, so a key that cannot sign is
 * found before the run starts, not at its gate. With `index`, every head it
 * signs is also appended to that run index.
 */
export function sshHeadSigner(
  keyPath: string,
  now: () => Date = () => new Date(),
  opts: { index?: string } = {},
): SshHeadSigner {
  if (!existsSync(keyPath)) {
    throw new InvalidInputError(
      `no signing key at ${keyPath}`,
      `Pass --signing-key (or set ${SIGNING_KEY_ENV}) with the path of the ssh key that signs this run's journal.`,
    );
  }
  const sign = (message: string): string => {
    const r = spawnSync(
      'ssh-keygen',
      ['-q', '-Y', 'sign', '-f', keyPath, '-n', JOURNAL_NAMESPACE],
      {
        input: message,
        encoding: 'utf8',
      },
    );
    if (r.status !== 0 || !r.stdout.includes('BEGIN SSH SIGNATURE')) {
      throw new InvalidInputError(
        `ssh-keygen could not sign with ${keyPath}: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}`,
        'Check the key path, and that ssh-agent holds the key if it has a passphrase.',
      );
    }
    return r.stdout;
  };
  const probeMessage = headMessage({ seq: -1, hash: 'a signing check, not a head' });
  const probe = { message: probeMessage, signature: sign(probeMessage) };
  return {
    keyPath,
    probe,
    sign(dir, head, kind) {
      const signed: SignedHead = {
        ...head,
        kind,
        signedAt: now().toISOString(),
        signature: sign(headMessage(head)),
      };
      appendLine(join(dir, SIGNATURES_FILE), JSON.stringify(signed));
      if (opts.index) {
        const entry: IndexEntry = {
          runId: basename(dir),
          seq: head.seq,
          hash: head.hash,
          kind,
          signatureSha256: sha256(signed.signature),
        };
        appendLine(opts.index, JSON.stringify(entry));
      }
    },
  };
}

function appendLine(file: string, line: string): void {
  const fd = openSync(file, 'a', 0o600);
  try {
    writeSync(fd, line + '\n');
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The last entry the run index holds for a run; undefined when it holds none; null when there is no index. */
export function indexedHead(index: string, runId: string): IndexEntry | undefined | null {
  if (!existsSync(index)) return null;
  let last: IndexEntry | undefined;
  for (const line of readFileSync(index, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    let entry: IndexEntry;
    try {
      entry = JSON.parse(line) as IndexEntry;
    } catch {
      continue;
    }
    if (entry.runId === runId) last = entry;
  }
  return last;
}

/**
 * Whether the journal's signed heads reach as far as the run index says: the
 * index's last entry for the run must be the last line of its signatures
 * file, and a record the journal still has. Cheap (no signature is checked),
 * for `baton runs`; `verifyRun` checks the signatures themselves.
 */
export function indexProblem(
  index: string,
  runId: string,
  signatures: SignedHead[],
  records: number,
): string | undefined {
  const entry = indexedHead(index, runId);
  if (entry === null) return undefined;
  const last = signatures.at(-1);
  if (!entry) {
    return last
      ? `the journal has a signed head at record ${last.seq} (${last.kind}), and the run index ${index} has no entry for run ${runId}: the index was edited, or the run was moved here from another baton home`
      : undefined;
  }
  const said = `the run index ${index} says run ${runId} was signed up to record ${entry.seq} (${entry.kind})`;
  if (entry.seq >= records)
    return `${said}, and the journal ends at record ${records - 1}: its signed end was cut off`;
  if (!last)
    return `${said}, and ${SIGNATURES_FILE} holds no signature: the signatures were removed`;
  if (last.seq < entry.seq)
    return `${said}, and the last signature in ${SIGNATURES_FILE} is at record ${last.seq}: signed heads were cut from its end`;
  if (last.seq > entry.seq)
    return `${said}, and ${SIGNATURES_FILE} has a later signature at record ${last.seq} (${last.kind}) that the index does not know: it was added outside baton, or the index was edited`;
  if (last.hash !== entry.hash || sha256(last.signature) !== entry.signatureSha256)
    return `${said}, and the signature at record ${last.seq} in ${SIGNATURES_FILE} is not the one the index recorded: it was replaced`;
  return undefined;
}

/**
 * The signer a run uses: the key given, else none. A run that needs
 * approvals is refused without one, before anything is recorded: its journal
 * would be as easy to rewrite as a text file. A key no one trusts to sign
 * journals is refused too: `baton verify` would fail the journal it signs.
 */
export function runSigner(opts: {
  keyPath: string | undefined;
  /** Decided by the approval policy (approval.ts): does this run need approvals? */
  needsApprovals: boolean;
  what: string;
  /** Who may sign journals (see `trustedSigners`). */
  trusted: Signers | undefined;
  /** The run index the heads are noted in. */
  index?: string;
  now?: () => Date;
}): (SshHeadSigner & { identity: SignerIdentity }) | undefined {
  if (!opts.keyPath) {
    if (!opts.needsApprovals) return undefined;
    throw new InvalidInputError(
      `${opts.what} needs approvals, so its journal must be signed, and no signing key was given`,
      `Pass --signing-key KEY (or set ${SIGNING_KEY_ENV}): the operator's ssh key, or a controller key the policy names under signers.controllers.`,
    );
  }
  const signer = sshHeadSigner(opts.keyPath, opts.now, opts.index ? { index: opts.index } : {});
  return { ...signer, identity: requireTrusted(signer, opts.trusted) };
}

/** Who a signer signs as, among the trusted signers; refuses a key that is not one of them. */
export function requireTrusted(
  signer: SshHeadSigner,
  trusted: Signers | undefined,
): SignerIdentity {
  const found = trusted
    ? identify(signer.probe.signature, signer.probe.message, trusted.signers)
    : undefined;
  if (found && 'principal' in found) return found;
  throw new InvalidInputError(
    `the signing key ${signer.keyPath} is not one that may sign journals: it is neither an approver's key nor a controller key the policy names (trusted: ${trusted?.sources.join('; ') || 'no one'})`,
    "Sign with your own key from the approvers file, or add the controller's public key to signers.controllers in baton.policy.json (through its review). Nothing was recorded.",
  );
}

export function readSignatures(dir: string): SignedHead[] {
  const file = join(dir, SIGNATURES_FILE);
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((line, i) => {
      try {
        return JSON.parse(line) as SignedHead;
      } catch {
        return {
          seq: -1,
          hash: '',
          kind: 'log',
          signedAt: '',
          signature: `(line ${i + 1} of ${SIGNATURES_FILE} is not JSON)`,
        };
      }
    });
}

/** Who may sign a journal's heads: approvers and controllers. */
export interface Signers {
  signers: Approver[];
  /** Where they came from, for the report. */
  sources: string[];
}

/** A signer found among the trusted ones. */
export interface SignerIdentity {
  principal: string;
  keyFingerprint: string;
  publicKey: string;
}

/**
 * The keys that may sign journals: the approvers file's (when it exists), the
 * controllers a policy names (`signers.controllers`), and a controller key given.
 */
export function loadSigners(opts: {
  approversFile: string;
  controllers?: { keys: string[]; file: string };
  controllerKey?: string;
}): Signers {
  const signers: Approver[] = [];
  const sources: string[] = [];
  if (existsSync(opts.approversFile)) {
    signers.push(...loadApprovers(opts.approversFile));
    sources.push(`the approvers file ${opts.approversFile} (${signers.length} key(s))`);
  }
  const controller = (line: string, where: string, n: number): Approver => {
    const [type, blob, ...comment] = line.trim().split(/\s+/);
    let name = `controller:${(comment.join('-') || String(n)).replace(/[^A-Za-z0-9._@-]/g, '_')}`;
    if (signers.some((a) => a.principal === name)) name += `-${n}`;
    return parseApprovers(`${name} controller ${type} ${blob}`, where)[0]!;
  };
  const keys = opts.controllers?.keys ?? [];
  if (keys.length) {
    keys.forEach((k, i) => signers.push(controller(k, opts.controllers!.file, i + 1)));
    sources.push(
      `the controller key(s) under signers.controllers in ${opts.controllers!.file} (${keys.length})`,
    );
  }
  if (opts.controllerKey) {
    if (!existsSync(opts.controllerKey))
      throw new InvalidInputError(`no controller key at ${opts.controllerKey}`);
    signers.push(
      controller(readFileSync(opts.controllerKey, 'utf8'), opts.controllerKey, signers.length + 1),
    );
    sources.push(`the controller key ${opts.controllerKey}`);
  }
  return { signers, sources };
}

/** The approvals a clearance carries, as verified. */
export interface VerifiedClearance {
  policyHash: string;
  approversFile: string;
  approvals: Array<{ purpose: 'approve' | 'reconfirm'; principal: string; keyFingerprint: string }>;
}

/**
 * Checks what a cleared record says about approvals (gate.ts, which knows
 * the approvers and the policy). `signerKeys` are the public keys that signed
 * the journal: the operator holds them, so an approval made with one is the
 * operator's own. Throws naming what is wrong.
 */
export type ClearanceVerifier = (
  records: JournalRecord[],
  signerKeys: string[],
) => Promise<VerifiedClearance>;

export interface ClearanceReport extends Partial<VerifiedClearance> {
  seq: number;
  ok: boolean;
  problem?: string;
}

export interface HeadCheck {
  seq: number;
  kind: string;
  ok: boolean;
  principal?: string;
  keyFingerprint?: string;
  publicKey?: string;
  problem?: string;
}

export interface Verification {
  /**
   * verified: the chain holds and agrees with every signed head, and every head that must be signed is;
   * incomplete: the same, but the last record is not signed yet (a resume signs it);
   * unsigned: the chain holds and nothing is signed; failed: see problems.
   */
  status: 'verified' | 'incomplete' | 'unsigned' | 'failed';
  records: number;
  chain: string;
  heads: HeadCheck[];
  /** Each cleared record, and the approvals behind it as verified. */
  clearances: ClearanceReport[];
  /** The last record should be signed and is not: the controller stopped between the two writes; a resume signs it. */
  unsignedLast?: { seq: number; kind: string };
  problems: string[];
  /** What the verdict rests on. */
  trusted: string[];
  /** What this check could not establish. */
  unchecked: string[];
}

export interface VerifyOptions {
  /** Who may sign; undefined when no approvers file is known (signatures then cannot be checked). */
  signers?: Signers;
  verifyClearance?: ClearanceVerifier;
  /** The run index (`RUN_INDEX_FILE` in the baton home) that notes every signed head. */
  index?: string;
}

/** Check a run's journal: its chain, every signed head, and which records no signature covers. */
export async function verifyRun(dir: string, opts: VerifyOptions = {}): Promise<Verification> {
  const problems: string[] = [];
  const trusted: string[] = [];
  const unchecked: string[] = [];
  let read;
  try {
    read = readJournal(dir);
  } catch (e) {
    return {
      status: 'failed',
      records: 0,
      chain: `broken: ${errorMessage(e)}`,
      heads: [],
      clearances: [],
      problems: [errorMessage(e)],
      trusted,
      unchecked: ['the signed heads: the chain they sign is broken'],
    };
  }
  const { records, hashes } = read;
  const chain = `intact: ${records.length} record(s), each holding the sha256 of the one before, and the head agrees`;
  const signatures = readSignatures(dir);
  const heads: HeadCheck[] = [];
  for (const s of signatures) {
    const head: HeadCheck = { seq: s.seq, kind: s.kind, ok: false };
    heads.push(head);
    if (!Number.isInteger(s.seq) || s.seq < 0 || s.seq >= records.length) {
      head.problem = `a signature for record ${s.seq}, which the journal does not have: records were removed`;
    } else if (hashes[s.seq] !== s.hash) {
      head.problem = `the signed head at record ${s.seq} (${s.kind}) does not match the journal: records up to ${s.seq} were rewritten after they were signed`;
    } else if (records[s.seq]!.event.kind !== s.kind) {
      head.problem = `the signature at record ${s.seq} says ${s.kind}, the record is ${records[s.seq]!.event.kind}`;
    } else if (!opts.signers) {
      head.problem = 'no list of allowed signers to check the signature against';
    } else {
      const found = identify(s.signature, headMessage(s), opts.signers.signers);
      if ('principal' in found) Object.assign(head, { ok: true, ...found });
      else
        head.problem = found.by
          ? `the signature at record ${s.seq} (${s.kind}) by ${found.by} does not cover this head: forged or edited`
          : `the signature at record ${s.seq} (${s.kind}) is not by an allowed signer, or is damaged`;
    }
    if (head.problem) problems.push(head.problem);
  }

  const policy = records.find(
    (r): r is JournalRecord & { event: Extract<RunEvent, { kind: 'policy' }> } =>
      r.event.kind === 'policy',
  );
  const mustBeSigned = signatures.length > 0 || (policy?.event.approvers ?? 0) > 0;
  let unsignedLast: Verification['unsignedLast'];
  if (mustBeSigned) {
    const signedSeqs = new Set(heads.filter((h) => !h.problem).map((h) => h.seq));
    for (const r of records) {
      if (!SIGNED_KINDS.has(r.event.kind) || signedSeqs.has(r.seq)) continue;
      if (r.seq === records.length - 1 && !heads.some((h) => h.seq === r.seq)) {
        unsignedLast = { seq: r.seq, kind: r.event.kind };
      } else if (!heads.some((h) => h.seq === r.seq)) {
        problems.push(
          `record ${r.seq} (${r.event.kind}) has no signature, though the run ${signatures.length > 0 ? 'signs its heads' : `needed ${policy?.event.approvers} approval(s)`}`,
        );
      }
    }
  }

  const clearances: ClearanceReport[] = [];
  const cleared = records.filter((r) => r.event.kind === 'cleared');
  if (cleared.length > 1)
    problems.push(
      `the journal has ${cleared.length} cleared records (${cleared.map((c) => c.seq).join(', ')}): a run is cleared once`,
    );
  if (cleared.length && opts.verifyClearance) {
    const signerKeys = [
      ...new Set(heads.filter((h) => h.ok && h.publicKey).map((h) => h.publicKey!)),
    ];
    const seq = cleared[0]!.seq;
    try {
      clearances.push({
        seq,
        ok: true,
        ...(await opts.verifyClearance(records, signerKeys)),
      });
    } catch (e) {
      clearances.push({ seq, ok: false, problem: errorMessage(e) });
      problems.push(`the clearance at record ${seq}: ${errorMessage(e)}`);
    }
    const good = clearances.filter((c) => c.ok);
    for (const c of good)
      trusted.push(
        `the policy ${c.policyHash} (baton.policy.json and the approvers file ${c.approversFile}) and the run store's record of which run used each approval, against which the approvals behind record ${c.seq} were checked`,
      );
  } else if (cleared.length) {
    unchecked.push(
      `the approvals behind the clearance at record ${cleared.map((c) => c.seq).join(', ')}: not checked here`,
    );
  }

  let indexed = false;
  if (opts.index) {
    const wrong = indexProblem(opts.index, basename(dir), signatures, records.length);
    if (wrong) problems.push(wrong);
    else if (indexedHead(opts.index, basename(dir))) indexed = true;
  }

  const good = heads.filter((h) => h.ok);
  if (good.length > 0) {
    trusted.push(...(opts.signers?.sources ?? []));
    trusted.push('that the keys of the signers were not stolen');
    const lastSigned = Math.max(...good.map((h) => h.seq));
    if (lastSigned < records.length - 1) {
      unchecked.push(
        `records ${lastSigned + 1}–${records.length - 1}, after the last signed head: only the chain protects them`,
      );
    }
  } else {
    unchecked.push(
      'who wrote the journal: no head is signed, so anyone who can write the run directory could have rewritten it and its chain',
    );
  }
  if (indexed) {
    trusted.push(
      `the run index ${opts.index}, which notes every signed head: whoever can write it and the run directory can cut the end of both`,
    );
  } else {
    unchecked.push(
      opts.index && existsSync(opts.index)
        ? `whether signed heads were cut from the end of ${SIGNATURES_FILE} together with the records they signed: the run index ${opts.index} has no entry for this run`
        : `whether signed heads were cut from the end of ${SIGNATURES_FILE} together with the records they signed: there is no run index${opts.index ? ` at ${opts.index}` : ''} to compare with`,
    );
  }
  if (unsignedLast) {
    unchecked.push(
      `record ${unsignedLast.seq} (${unsignedLast.kind}), the last, is not signed: the controller stopped between writing and signing it, or its signature was removed`,
    );
  }

  const status = problems.length
    ? 'failed'
    : unsignedLast
      ? 'incomplete'
      : good.length
        ? 'verified'
        : 'unsigned';
  return {
    status,
    records: records.length,
    chain,
    heads,
    clearances,
    ...(unsignedLast ? { unsignedLast } : {}),
    problems,
    trusted,
    unchecked,
  };
}

/** Who of `signers` made this signature over `message`; `by` names a listed signer whose signature does not cover it. */
function identify(
  signature: string,
  message: string,
  signers: Approver[],
): SignerIdentity | { by?: string } {
  const dir = mkdtempSync(join(tmpdir(), 'baton-head-'));
  try {
    const sig = join(dir, 'head.sig');
    const allowed = join(dir, 'allowed_signers');
    writeFileSync(sig, signature);
    writeFileSync(
      allowed,
      signers
        .map((a) => `${a.principal} namespaces="${JOURNAL_NAMESPACE}" ${a.publicKey}\n`)
        .join(''),
    );
    const found = spawnSync('ssh-keygen', ['-Y', 'find-principals', '-s', sig, '-f', allowed], {
      encoding: 'utf8',
    });
    const principal = found.stdout.trim().split('\n')[0]?.trim();
    if (found.status !== 0 || !principal) return {};
    const verified = spawnSync(
      'ssh-keygen',
      ['-Y', 'verify', '-f', allowed, '-I', principal, '-n', JOURNAL_NAMESPACE, '-s', sig],
      { input: message, encoding: 'utf8' },
    );
    if (verified.status !== 0) return { by: principal };
    const keyFingerprint =
      /key (SHA256:[A-Za-z0-9+/]+)/.exec(verified.stdout + verified.stderr)?.[1] ?? 'unknown';
    return {
      principal,
      keyFingerprint,
      publicKey: signers.find((a) => a.principal === principal)!.publicKey,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One line per fact, for `baton verify` and a refused resume. */
export function renderVerification(runId: string, v: Verification): string {
  const verdict = {
    verified: 'verified',
    incomplete: 'NOT verified: its last record is not signed',
    unsigned: 'NOT verified: nothing is signed',
    failed: 'FAILED verification',
  }[v.status];
  const lines = [`Run ${runId}: ${verdict}`, `  chain: ${v.chain}`];
  if (v.heads.length) {
    lines.push('  signed heads:');
    for (const h of v.heads) {
      lines.push(
        h.ok
          ? `    record ${h.seq} (${h.kind}): good signature by ${h.principal} (${h.keyFingerprint})`
          : `    record ${h.seq} (${h.kind}): BAD: ${h.problem}`,
      );
    }
  }
  for (const c of v.clearances) {
    if (!c.ok) {
      lines.push(`  clearance at record ${c.seq}: BAD: ${c.problem}`);
      continue;
    }
    lines.push(
      `  clearance at record ${c.seq}: holds under policy ${c.policyHash} (approvers file ${c.approversFile})${c.approvals!.length ? '' : ': the policy asked for no approvals'}`,
    );
    for (const a of c.approvals!)
      lines.push(`    ${a.purpose} by ${a.principal} (${a.keyFingerprint}): good`);
  }
  const shown = (p: string): boolean =>
    v.heads.some((h) => h.problem === p) ||
    v.clearances.some((c) => `the clearance at record ${c.seq}: ${c.problem}` === p);
  for (const p of v.problems.filter((p) => !shown(p))) lines.push(`  problem: ${p}`);
  for (const t of v.trusted) lines.push(`  trusts: ${t}`);
  for (const u of v.unchecked) lines.push(`  could not check: ${u}`);
  return lines.join('\n');
}
