/**
 * What stands between a plan and its first mutation: the approval policy
 * (signatures, hold, reconfirmation) and, on a terminal, the operator's "yes".
 */
import {
  countApprovals,
  loadApprovers,
  newToken,
  parseApprovalFile,
  readApprovalSources,
  verifyApproval,
  type Policy,
  type VerifiedApproval,
} from './approval.ts';
import { errorMessage } from './errors.ts';
import type { EngineDeps, GateResult } from './engine.ts';
import type { RunEvent } from './events.ts';
import type { Plan } from './plan.ts';

export type Gate = NonNullable<EngineDeps['gate']>;

export interface ApprovalGateOptions {
  policy: Policy;
  emergency: boolean;
  /** The hash the approvers signed (from the plan file); undefined when the run has no plan file. */
  approvedHash?: string;
  /** Directory of approval files, or `-` with `stdin` holding them. */
  approvals?: string;
  stdin?: string;
  now(): Date;
  sleep(ms: number): Promise<void>;
  /** How often to look for reconfirmations. */
  pollMs?: number;
}

const refuse = (reason: string, next: string): GateResult => ({ ok: false, reason, next });

export function approvalGate(o: ApprovalGateOptions): Gate {
  return async (plan: Plan, hash: string, record: (e: RunEvent) => void): Promise<GateResult> => {
    const rules = o.emergency ? o.policy.emergency : o.policy;
    record({
      kind: 'policy',
      source: o.policy.source,
      approvers: rules.approvers,
      holdSeconds: rules.holdSeconds,
      reconfirm: rules.reconfirm,
      roles: rules.roles,
      emergency: o.emergency,
    });
    if (rules.approvers === 0) {
      return { ok: true, emergency: o.emergency, approvers: [], reconfirmedBy: [], replan: false };
    }
    if (!o.approvals || !o.approvedHash) {
      return refuse(
        `${plan.runbook} on ${plan.stack} needs ${rules.approvers} approval(s), and none were given`,
        `Write the plan with \`baton plan … --out plan.json\`, have it approved with \`baton approve plan.json\`, then \`baton run --plan plan.json --approvals DIR\`.`,
      );
    }
    if (o.approvedHash !== hash) {
      return refuse(
        `the plan changed since it was approved: approved ${o.approvedHash.slice(0, 12)}, the hosts now give ${hash.slice(0, 12)}`,
        'Plan again, read what changed, and have the new plan approved.',
      );
    }
    const approvers = loadApprovers(o.policy.approversFile);
    const expect = { planHash: hash, runbook: plan.runbook, stack: plan.stack };
    const seen = new Set<string>();
    const collect = async (
      purpose: 'approve' | 'reconfirm',
      token?: string,
    ): Promise<VerifiedApproval[]> => {
      const verified: VerifiedApproval[] = [];
      for (const { source, text } of readApprovalSources(o.approvals!, o.stdin)) {
        let file;
        try {
          file = parseApprovalFile(text, source);
        } catch (e) {
          if (!seen.has(source + text))
            record({ kind: 'approval-refused', source, reason: errorMessage(e) });
          seen.add(source + text);
          continue;
        }
        if (file.purpose !== purpose) continue;
        try {
          verified.push(
            await verifyApproval(
              file,
              { ...expect, purpose, ...(token ? { token } : {}) },
              approvers,
              source,
            ),
          );
        } catch (e) {
          if (!seen.has(source + text))
            record({ kind: 'approval-refused', source, reason: errorMessage(e) });
          seen.add(source + text);
        }
      }
      return verified;
    };

    const { accepted, refused } = countApprovals(await collect('approve'), rules, o.emergency);
    for (const r of refused)
      record({ kind: 'approval-refused', source: r.source, reason: r.reason });
    for (const a of accepted) record({ kind: 'approval', ...approvalRecord(a) });
    if (accepted.length < rules.approvers) {
      return refuse(
        `${rules.approvers} distinct approval(s) needed${o.emergency ? ' for an emergency run' : ''}, ${accepted.length} valid${
          accepted.length ? ` (${accepted.map((a) => a.principal).join(', ')})` : ''
        }`,
        'The refused approvals are listed above with their reasons; get valid ones from people in the approvers file.',
      );
    }
    const approvedBy = accepted.map((a) => a.principal);
    if (rules.holdSeconds > 0) {
      const until = new Date(o.now().getTime() + rules.holdSeconds * 1000);
      record({ kind: 'hold', seconds: rules.holdSeconds, until: until.toISOString() });
      await o.sleep(rules.holdSeconds * 1000);
    }
    if (!rules.reconfirm) {
      return {
        ok: true,
        emergency: o.emergency,
        approvers: approvedBy,
        reconfirmedBy: [],
        replan: rules.holdSeconds > 0,
      };
    }
    if (o.approvals === '-') {
      return refuse(
        'reconfirmation needs an approvals directory to watch, not standard input',
        'Pass --approvals DIR.',
      );
    }
    const token = newToken();
    record({ kind: 'hold-end', token, reconfirmBy: approvedBy });
    const deadline = o.now().getTime() + rules.reconfirmTimeoutSeconds * 1000;
    const reconfirmed = new Map<string, VerifiedApproval>();
    for (;;) {
      for (const v of await collect('reconfirm', token)) {
        if (reconfirmed.has(v.principal)) continue;
        if (!approvedBy.includes(v.principal)) {
          const key = `not-approver:${v.signatureSha256}`;
          if (!seen.has(key)) {
            record({
              kind: 'approval-refused',
              source: v.source,
              reason: `${v.principal} did not approve this plan, so cannot reconfirm it`,
            });
            seen.add(key);
          }
          continue;
        }
        reconfirmed.set(v.principal, v);
        record({ kind: 'approval', ...approvalRecord(v) });
      }
      if (reconfirmed.size >= rules.approvers) break;
      if (o.now().getTime() >= deadline) {
        return refuse(
          `not reconfirmed within ${rules.reconfirmTimeoutSeconds} s: ${reconfirmed.size} of ${rules.approvers} reconfirmation(s)`,
          'Start the run again when the approvers are available.',
        );
      }
      await o.sleep(o.pollMs ?? 1000);
    }
    return {
      ok: true,
      emergency: o.emergency,
      approvers: approvedBy,
      reconfirmedBy: [...reconfirmed.keys()],
      replan: true,
    };
  };
}

function approvalRecord(
  a: VerifiedApproval,
): Omit<Extract<RunEvent, { kind: 'approval' }>, 'kind'> {
  return {
    purpose: a.purpose,
    principal: a.principal,
    roles: a.roles,
    keyFingerprint: a.keyFingerprint,
    emergency: a.emergency,
    signatureSha256: a.signatureSha256,
    source: a.source,
  };
}

/** Run gates in order; the first refusal wins, approvals and hold are merged. */
export function gates(...list: Array<Gate | undefined>): Gate {
  return async (plan, hash, record) => {
    let merged: GateResult = {
      ok: true,
      emergency: false,
      approvers: [],
      reconfirmedBy: [],
      replan: false,
    };
    for (const gate of list) {
      if (!gate) continue;
      const r = await gate(plan, hash, record);
      if (!r.ok) return r;
      if (merged.ok) {
        merged = {
          ok: true,
          emergency: merged.emergency || r.emergency,
          approvers: [...merged.approvers, ...r.approvers],
          reconfirmedBy: [...merged.reconfirmedBy, ...r.reconfirmedBy],
          replan: merged.replan || r.replan,
        };
      }
    }
    return merged;
  };
}
