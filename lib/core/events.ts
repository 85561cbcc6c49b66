/**
 * One union of run events. The journal stores them, the console shows them,
 * the report renders them; nothing else describes what a run did.
 */
import type { CodeManifest } from './code-version.ts';
import type { Condition } from './runbook.ts';
import type { Inventory } from './inventory.ts';
import type { Plan } from './plan.ts';

/** A signed approval or reconfirmation of one plan (lib/approval/approval.ts signs and verifies them). */
export type Purpose = 'approve' | 'reconfirm';

export interface ApprovalFile {
  kind: 'baton.approval';
  version: 2;
  purpose: Purpose;
  planHash: string;
  /** The repository policy the plan was made under (its rules and approvers file). */
  policyHash: string;
  runbook: string;
  stack: string;
  emergency: boolean;
  /** Present on reconfirmations: the token the run printed when its hold ended. */
  token?: string;
  /** Who the signer says they are; the signature decides. */
  signer?: string;
  signedAt: string;
  expiresAt: string;
  signature: string;
}

export type RunOutcome = 'done' | 'rolled-back' | 'precondition-failed' | 'needs-human';
export type Phase = 'apply' | 'verify' | 'undo' | 'recover';

export interface CommandRecord {
  command: string;
  exitCode: number | null;
  signal: string | null;
  durationMs: number;
  /** Tails of the output, redacted. */
  stdout: string;
  stderr: string;
}

export type RunEvent =
  | {
      kind: 'run-start';
      runId: string;
      runbook: string;
      runbookFile: string;
      codeVersion: string;
      /** What codeVersion covers, file by file (code-version.ts). */
      codeManifest: CodeManifest;
      stack: string;
      mode: 'run' | 'rehearse';
      operator: string;
      params: Record<string, unknown>;
      secretParams: string[];
      inventory: Inventory;
      inventoryHash: string;
      pid: number;
      /** The stack lock this run holds (lib/engine/stacklock.ts), and the places that granted it. */
      lock?: { lockId: string; places: string[] };
    }
  | { kind: 'planned'; planHash: string; plan: Plan }
  | { kind: 'preflight'; conditions: Array<Condition & { step: string; host: string }> }
  | {
      kind: 'policy';
      source: string;
      approvers: number;
      holdSeconds: number;
      reconfirm: boolean;
      roles: string[];
      emergency: boolean;
      /** The repository policy's hash (rules and approvers file). */
      policyHash?: string;
    }
  | {
      kind: 'approval';
      purpose: 'approve' | 'reconfirm';
      principal: string;
      roles: string[];
      keyFingerprint: string;
      emergency: boolean;
      signatureSha256: string;
      source: string;
    }
  | { kind: 'approval-refused'; source: string; reason: string }
  | { kind: 'hold'; seconds: number; until: string }
  | { kind: 'hold-end'; token: string; reconfirmBy: string[] }
  | ({
      kind: 'cleared';
      emergency: boolean;
      approvers: string[];
      reconfirmedBy: string[];
    } & Clearance)
  | { kind: 'step-start'; step: string; hosts: string[] }
  | { kind: 'intent'; step: string; host: string; attempt: number; commands: string[] }
  | { kind: 'command'; step: string; host: string; phase: Phase; result: CommandRecord }
  | { kind: 'retry'; step: string; host: string; attempt: number; error: string; delayMs: number }
  | {
      kind: 'outcome';
      step: string;
      host: string;
      ok: boolean;
      durationMs: number;
      error?: string;
      conditions?: Condition[];
      recovered?: boolean;
    }
  | { kind: 'note'; step: string; host: string; data: Record<string, string | number | boolean> }
  | { kind: 'step-end'; step: string; ok: boolean }
  | { kind: 'rollback-start'; reason: string }
  /** A step marking its point of no return (`ctx.commit()`), before the mutation that passes it. */
  | { kind: 'commit'; step: string; host: string }
  /** A failure past a commit step: nothing is undone, the run can only be finished. */
  | { kind: 'forward'; step: string; reason: string }
  | { kind: 'undo-intent'; step: string; host: string }
  | {
      kind: 'undo-outcome';
      step: string;
      host: string;
      ok: boolean;
      durationMs: number;
      error?: string;
    }
  | {
      kind: 'resume';
      operator: string;
      pid: number;
      interrupted: Array<{ step: string; host: string }>;
    }
  | { kind: 'log'; step?: string; host?: string; message: string }
  /** `baton unlock`: a person broke a stack lock. */
  | {
      kind: 'unlock';
      stack: string;
      lockId: string;
      by: string;
      removed: string[];
      unreachable: string[];
      holder?: { runId: string; operator: string; controller: string; takenAt: string };
    }
  | {
      kind: 'run-end';
      outcome: RunOutcome;
      /** The named state the hosts are left in. */
      state: string;
      /** The exact next action for a person, when one is needed. */
      next?: string;
      error?: string;
      /** Every step was already done or skipped: the run changed nothing. */
      nothingToDo?: boolean;
    };

/** What the gate hands the journal with its clearance, so that resume can check it again. */
export interface Clearance {
  policyHash?: string;
  /** The approvals and reconfirmations the run used, as signed. */
  approvals?: ApprovalFile[];
  /** A solo emergency: a second approver must countersign the run afterwards. */
  countersignatureDue?: boolean;
}

export type RunEventKind = RunEvent['kind'];
export type EventOf<K extends RunEventKind> = Extract<RunEvent, { kind: K }>;

/** A formatter per event kind; a missing kind is a compile error. */
export type EventFormatters<R> = { [K in RunEventKind]: (event: EventOf<K>) => R };

export function formatEvent<R>(event: RunEvent, formatters: EventFormatters<R>): R {
  return (formatters[event.kind] as (e: RunEvent) => R)(event);
}

/** A journal record: an event with its time and place in the hash chain. */
export interface JournalRecord {
  seq: number;
  ts: string;
  prev: string;
  event: RunEvent;
}
