/**
 * What the run store remembers about approvals: which run used each one (an
 * approval is good for one run), and which solo emergency runs still owe a
 * countersignature. Kept under the baton home beside the runs.
 */
import { sha256 } from '../core/hash.ts';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ApprovalRefused,
  isOperators,
  loadApprovers,
  operatorIdentity,
  operatorKeys,
  signatureSha256,
  signCountersignature,
  verifyCountersignature,
  type OperatorIdentity,
} from './approval.ts';
import { errorMessage, InvalidInputError } from '../core/errors.ts';
import type { RunEvent } from '../core/events.ts';
import { readJournal, type JournalRead } from '../engine/journal.ts';
import type { ProjectRef } from '../core/project.ts';
import { loadRepositoryPolicy } from './policy.ts';

export const COUNTERSIGNATURE_FILE = 'countersignature.json';

export interface Use {
  runId: string;
  /** When the run took the approval. */
  at: string;
}

export interface ApprovalLedger {
  /** The run that used this approval (by the sha256 of its signature), if any. */
  usedBy(signatureSha256: string): Use | undefined;
  /** Record that `runId` uses the approval; returns the earlier use instead when another run has it. */
  claim(signatureSha256: string, runId: string, at: Date): Use | undefined;
}

/**
 * The ledger of a baton home: `approvals/used/<sha256>`, created exclusively so
 * two runs started at once cannot both take one approval; and, for approvals
 * whose entry is missing, the `cleared` records of every run's journal.
 */
export function approvalLedger(home: string): ApprovalLedger {
  const dir = join(home, 'approvals', 'used');
  const entry = (sha: string): string => {
    if (!/^[0-9a-f]{64}$/.test(sha)) throw new Error(`not a sha256: ${sha}`);
    return join(dir, sha);
  };
  const read = (sha: string): Use | undefined => {
    const file = entry(sha);
    if (!existsSync(file)) return undefined;
    try {
      return JSON.parse(readFileSync(file, 'utf8')) as Use;
    } catch {
      return { runId: 'unknown (its ledger entry is unreadable)', at: '' };
    }
  };
  const fromJournals = (sha: string): Use | undefined => {
    const runs = join(home, 'runs');
    if (!existsSync(runs)) return undefined;
    for (const runId of readdirSync(runs).sort()) {
      let records;
      try {
        records = readJournal(join(runs, runId)).records;
      } catch {
        continue;
      }
      for (const r of records) {
        if (r.event.kind !== 'cleared') continue;
        if ((r.event.approvals ?? []).some((a) => signatureSha256(a.signature) === sha))
          return { runId, at: r.ts };
      }
    }
    return undefined;
  };
  return {
    usedBy: (sha) => read(sha) ?? fromJournals(sha),
    claim(sha, runId, at) {
      const earlier = read(sha) ?? fromJournals(sha);
      if (earlier && earlier.runId !== runId) return earlier;
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      try {
        writeFileSync(entry(sha), JSON.stringify({ runId, at: at.toISOString() }) + '\n', {
          flag: 'wx',
          mode: 0o600,
        });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        const other = read(sha);
        if (other && other.runId !== runId) return other;
      }
      return undefined;
    },
  };
}

export type CountersignatureState =
  | { state: 'not-owed' }
  | { state: 'due'; approvers: string[] }
  | { state: 'signed'; by: string; keyFingerprint: string }
  | { state: 'invalid'; reason: string };

/** The cleared record of a run that was a solo emergency, if it was one. */
export function soloEmergency(
  events: RunEvent[],
): Extract<RunEvent, { kind: 'cleared' }> | undefined {
  const cleared = events.find(
    (e): e is Extract<RunEvent, { kind: 'cleared' }> => e.kind === 'cleared',
  );
  return cleared?.countersignatureDue ? cleared : undefined;
}

/**
 * Whether a run owes a countersignature and has it: a solo emergency owes one
 * until an approver other than the operator and the run's own approvers signs
 * its finished journal (`baton countersign`), verified against the repository's
 * approvers file.
 */
export async function countersignatureState(
  dir: string,
  /** The project (an app), or a directory to find it from: its policy names the approvers. */
  cwd?: ProjectRef,
  keys?: string[],
): Promise<CountersignatureState> {
  const read = readJournal(dir);
  const events = read.records.map((r) => r.event);
  const cleared = soloEmergency(events);
  if (!cleared) return { state: 'not-owed' };
  const file = join(dir, COUNTERSIGNATURE_FILE);
  if (!existsSync(file)) return { state: 'due', approvers: cleared.approvers };
  try {
    const { start, planHash, head } = finished(read, dir);
    const repo = loadRepositoryPolicy(cwd);
    const signed = await verifyCountersignature(
      JSON.parse(readFileSync(file, 'utf8')) as unknown,
      { runId: start.runId, planHash, journalHead: head },
      loadApprovers(repo.approversFile),
      file,
    );
    const operator = operatorIdentity(
      start.operator,
      repo.data.operators ?? {},
      keys ?? (await operatorKeys()),
    );
    const refusal = countersignerRefusal(signed, cleared.approvers, operator);
    if (refusal) return { state: 'invalid', reason: refusal };
    return { state: 'signed', by: signed.principal, keyFingerprint: signed.keyFingerprint };
  } catch (e) {
    return { state: 'invalid', reason: errorMessage(e) };
  }
}

function finished(
  read: JournalRead,
  dir: string,
): {
  start: Extract<RunEvent, { kind: 'run-start' }>;
  planHash: string;
  head: { seq: number; hash: string };
} {
  const events = read.records.map((r) => r.event);
  const start = events[0];
  const planned = events.find((e) => e.kind === 'planned');
  if (start?.kind !== 'run-start' || planned?.kind !== 'planned')
    throw new InvalidInputError(`${dir}: the journal has no run-start and plan`);
  const last = read.records.at(-1)!;
  if (last.event.kind !== 'run-end') {
    throw new InvalidInputError(
      `run ${start.runId} has not ended`,
      'Countersign it once it has ended: the countersignature covers the whole journal.',
    );
  }
  return {
    start,
    planHash: planned.planHash,
    head: { seq: last.seq, hash: sha256(JSON.stringify(last)) },
  };
}

/** `baton countersign`: a second approver signs a solo emergency run's finished journal. */
export async function countersignRun(o: {
  dir: string;
  keyPath: string;
  signer?: string;
  cwd?: ProjectRef;
  keys?: string[];
}): Promise<{ file: string; principal: string }> {
  const read = readJournal(o.dir);
  const events = read.records.map((r) => r.event);
  const cleared = soloEmergency(events);
  const { start, planHash, head } = finished(read, o.dir);
  if (!cleared) {
    throw new InvalidInputError(
      `run ${start.runId} owes no countersignature: it was not an emergency its operator approved alone`,
    );
  }
  const repo = loadRepositoryPolicy(o.cwd);
  const approvers = loadApprovers(repo.approversFile);
  const c = await signCountersignature({
    runId: start.runId,
    planHash,
    journalHead: head,
    keyPath: o.keyPath,
    ...(o.signer ? { signer: o.signer } : {}),
  });
  const file = join(o.dir, COUNTERSIGNATURE_FILE);
  const signed = await verifyCountersignature(
    c,
    { runId: start.runId, planHash, journalHead: head },
    approvers,
    `the countersignature made with ${o.keyPath}`,
  );
  const operator = operatorIdentity(
    start.operator,
    repo.data.operators ?? {},
    o.keys ?? (await operatorKeys()),
  );
  const refusal = countersignerRefusal(signed, cleared.approvers, operator);
  if (refusal)
    throw new ApprovalRefused(refusal, 'Ask an approver who neither ran nor approved the run.');
  writeFileSync(file, JSON.stringify(c, null, 2) + '\n', { mode: 0o644 });
  return { file, principal: signed.principal };
}

/** Why this signer cannot countersign a run: they approved it, or ran it. */
export function countersignerRefusal(
  signer: { principal: string; publicKey: string },
  runApprovers: string[],
  operator: OperatorIdentity,
): string | undefined {
  if (runApprovers.includes(signer.principal))
    return `${signer.principal} approved the run; the countersignature must come from a second approver`;
  if (isOperators(signer, operator))
    return `${signer.principal} is the run's operator (${operator.name}); the countersignature must come from a second approver`;
  return undefined;
}
