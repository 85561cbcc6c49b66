/**
 * What stands between a plan and its first mutation: the approval policy
 * (signatures, single use, expiry, hold, reconfirmation, a second person) and,
 * on a terminal, the operator's "yes". And, for resume, the same judgement
 * made again from the journal's cleared record.
 */
import {
  ApprovalRefused,
  countApprovals,
  isOperators,
  loadApprovers,
  newToken,
  parseApproval,
  parseApprovalFile,
  operatorIdentity,
  readApprovalSources,
  signatureSha256,
  verifyApproval,
  type Approver,
  type OperatorIdentity,
  type VerifiedApproval,
} from './approval.ts';
import { errorMessage } from '../core/errors.ts';
import type { EngineDeps, GateResult } from '../engine/engine.ts';
import type { Clearance, RunEvent } from '../core/events.ts';
import type { ApprovalLedger } from './ledger.ts';
import { planHash, type Plan } from '../core/plan.ts';
import { strictest, type Policy, type Rules } from './policy.ts';

export type Gate = NonNullable<EngineDeps['gate']>;

export interface ApprovalGateOptions {
  policy: Policy;
  emergency: boolean;
  /** The hash the approvers signed (from the plan file); undefined when the run has no plan file. */
  approvedHash?: string;
  /** The policy hash the plan file was made under. */
  approvedPolicyHash?: string;
  /** Directory of approval files, or `-` with `stdin` holding them. */
  approvals?: string;
  stdin?: string;
  /** The run these approvals are used up by. */
  runId: string;
  operator: OperatorIdentity;
  ledger: ApprovalLedger;
  now(): Date;
  sleep(ms: number): Promise<void>;
  /** How often to look for reconfirmations. */
  pollMs?: number;
}

const refuse = (reason: string, next: string): GateResult => ({ ok: false, reason, next });

/** Why these approvals, all valid, still do not clear a run: none is from someone other than the operator. */
function soloRefusal(
  accepted: VerifiedApproval[],
  operator: OperatorIdentity,
  emergency: boolean,
  policy: Policy,
): { solo: boolean; reason?: string } {
  if (accepted.some((a) => !isOperators(a, operator))) return { solo: false };
  if (emergency && policy.allowSolo) return { solo: true };
  return {
    solo: true,
    reason: `every approval is the operator's own (${accepted.map((a) => a.principal).join(', ')}, run by ${operator.name}): a second person must approve${
      emergency ? ' even in an emergency, unless the policy sets emergency.allowSolo' : ''
    }`,
  };
}

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
      policyHash: o.policy.hash,
    });
    if (rules.approvers === 0) {
      return {
        ok: true,
        emergency: o.emergency,
        approvers: [],
        reconfirmedBy: [],
        replan: false,
        clearance: { policyHash: o.policy.hash, approvals: [] },
      };
    }
    if (!o.approvals || !o.approvedHash) {
      return refuse(
        `${plan.runbook} on ${plan.stack} needs ${rules.approvers} approval(s), and none were given`,
        `Write the plan with \`baton plan … --out plan.json\`, have it approved with \`baton approve plan.json\`, then \`baton run --plan plan.json --approvals DIR\`.`,
      );
    }
    if (o.approvedPolicyHash !== undefined && o.approvedPolicyHash !== o.policy.hash) {
      return refuse(
        `the repository's policy changed since the plan was made: the plan was made under policy ${o.approvedPolicyHash.slice(0, 12)}, and baton.policy.json and the approvers file now give ${o.policy.hash.slice(0, 12)}`,
        'Plan again under the current policy and have the new plan approved.',
      );
    }
    if (o.approvedHash !== hash) {
      return refuse(
        `the plan changed since it was approved: approved ${o.approvedHash.slice(0, 12)}, the hosts now give ${hash.slice(0, 12)}`,
        'Plan again, read what changed, and have the new plan approved.',
      );
    }
    const approvers = loadApprovers(o.policy.approversFile);
    const expect = {
      planHash: hash,
      policyHash: o.policy.hash,
      runbook: plan.runbook,
      stack: plan.stack,
      ttlHours: rules.approvalTtlHours,
    };
    const seen = new Set<string>();
    const refused = (source: string, text: string, reason: string): void => {
      if (!seen.has(source + text)) record({ kind: 'approval-refused', source, reason });
      seen.add(source + text);
    };
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
          refused(source, text, errorMessage(e));
          continue;
        }
        if (file.purpose !== purpose) continue;
        let v: VerifiedApproval;
        try {
          v = await verifyApproval(
            file,
            { ...expect, purpose, now: o.now(), ...(token ? { token } : {}) },
            approvers,
            source,
          );
        } catch (e) {
          refused(source, text, errorMessage(e));
          continue;
        }
        const used = purpose === 'approve' ? o.ledger.usedBy(v.signatureSha256) : undefined;
        if (used && used.runId !== o.runId) {
          refused(
            source,
            text,
            `${source} is refused: this approval by ${v.principal} was already used by run ${used.runId}${used.at ? ` (${used.at})` : ''}; an approval is good for one run`,
          );
          continue;
        }
        verified.push(v);
      }
      return verified;
    };

    const counted = countApprovals(await collect('approve'), rules, o.emergency);
    for (const r of counted.refused)
      record({ kind: 'approval-refused', source: r.source, reason: r.reason });
    const accepted = counted.accepted;
    if (accepted.length < rules.approvers) {
      return refuse(
        `${rules.approvers} distinct approval(s) needed${o.emergency ? ' for an emergency run' : ''}, ${accepted.length} valid${
          accepted.length ? ` (${accepted.map((a) => a.principal).join(', ')})` : ''
        }`,
        'The refused approvals are listed above with their reasons; get valid ones from people in the approvers file.',
      );
    }
    const solo = soloRefusal(accepted, o.operator, o.emergency, o.policy);
    if (solo.reason) {
      return refuse(
        solo.reason,
        'Ask an approver who is not running this to approve the plan (see the approvers file).',
      );
    }
    for (const a of accepted) {
      const earlier = o.ledger.claim(a.signatureSha256, o.runId, o.now());
      if (earlier) {
        return refuse(
          `${a.source}: the approval by ${a.principal} was taken by run ${earlier.runId} while this run checked it; an approval is good for one run`,
          'Have the plan approved again for this run.',
        );
      }
      record({ kind: 'approval', ...approvalRecord(a) });
    }
    const approvedBy = accepted.map((a) => a.principal);
    const clearWith = (reconfirmed: VerifiedApproval[]): GateResult & { ok: true } => ({
      ok: true,
      emergency: o.emergency,
      approvers: approvedBy,
      reconfirmedBy: reconfirmed.map((v) => v.principal),
      replan: rules.holdSeconds > 0 || reconfirmed.length > 0,
      clearance: {
        policyHash: o.policy.hash,
        approvals: [...accepted, ...reconfirmed].map((v) => v.approval),
        ...(solo.solo ? { countersignatureDue: true } : {}),
      },
    });
    if (rules.holdSeconds > 0) {
      const until = new Date(o.now().getTime() + rules.holdSeconds * 1000);
      record({ kind: 'hold', seconds: rules.holdSeconds, until: until.toISOString() });
      await o.sleep(rules.holdSeconds * 1000);
    }
    if (!rules.reconfirm) return clearWith([]);
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
          'Start the run again when the approvers are available, with fresh approvals: these were used by this run.',
        );
      }
      await o.sleep(o.pollMs ?? 1000);
    }
    return clearWith([...reconfirmed.values()]);
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
        const clearance: Clearance | undefined = merged.clearance ?? r.clearance;
        merged = {
          ok: true,
          emergency: merged.emergency || r.emergency,
          approvers: [...merged.approvers, ...r.approvers],
          reconfirmedBy: [...merged.reconfirmedBy, ...r.reconfirmedBy],
          replan: merged.replan || r.replan,
          ...(clearance ? { clearance } : {}),
        };
      }
    }
    return merged;
  };
}

export interface ClearanceCheck {
  /** The run cleared its gate; false when the journal has no cleared record (nothing to check). */
  cleared: boolean;
  approvers: string[];
  reconfirmedBy: string[];
  countersignatureDue: boolean;
  /** The approvals and reconfirmations that verified, in the order the record carries them. */
  approvals: Array<Pick<VerifiedApproval, 'purpose' | 'principal' | 'keyFingerprint'>>;
}

export interface VerifyClearanceOptions {
  ledger: ApprovalLedger;
  /** The approvers; default: read from the policy's approvers file. */
  approvers?: Approver[];
  /** The public keys of the person resuming, to recognise their own approvals. */
  operatorKeys?: string[];
}

/**
 * Judge a journal's clearance again instead of trusting its `cleared` record:
 * the record must carry approvals that verify now against the repository's
 * policy and approvers, that this run (and no other) used, enough of them,
 * from someone other than the operator (unless a solo emergency is allowed and
 * owed a countersignature), with the reconfirmations the policy asks for.
 * Throws ApprovalRefused naming what is wrong.
 */
export async function verifyClearance(
  events: RunEvent[],
  policy: Policy,
  options: VerifyClearanceOptions,
): Promise<ClearanceCheck> {
  const bad = (what: string): ApprovalRefused =>
    new ApprovalRefused(
      `the journal's clearance does not hold: ${what}`,
      'Do not resume this run. Keep the journal for the post-mortem, inspect the hosts, and run again with fresh approvals.',
    );
  const start = events[0];
  if (start?.kind !== 'run-start') throw bad('the journal does not begin with run-start');
  const cleared = events.find(
    (e): e is Extract<RunEvent, { kind: 'cleared' }> => e.kind === 'cleared',
  );
  if (!cleared)
    return {
      cleared: false,
      approvers: [],
      reconfirmedBy: [],
      countersignatureDue: false,
      approvals: [],
    };
  const planned = events.find(
    (e): e is Extract<RunEvent, { kind: 'planned' }> => e.kind === 'planned',
  );
  if (!planned) throw bad('it has a cleared record and no plan');
  const plan = planned.plan;
  if (planHash(plan) !== planned.planHash)
    throw bad(
      `the recorded plan hashes to ${planHash(plan).slice(0, 12)}, not to its recorded hash ${planned.planHash.slice(0, 12)}`,
    );
  if (plan.runbook !== start.runbook || plan.stack !== start.stack)
    throw bad(
      `the plan is for ${plan.runbook} on ${plan.stack}, and the run for ${start.runbook} on ${start.stack}`,
    );
  if (plan.policyHash !== policy.hash)
    throw bad(
      `the run was planned under policy ${String(plan.policyHash).slice(0, 12)}, and the repository's policy is now ${policy.hash.slice(0, 12)}`,
    );
  if (cleared.emergency && !policy.emergencyAllowed)
    throw bad(
      `it says the run was an emergency, and the policy does not let ${plan.runbook} take the emergency path`,
    );
  const recorded = events.find(
    (e): e is Extract<RunEvent, { kind: 'policy' }> => e.kind === 'policy',
  );
  const base: Rules = cleared.emergency ? policy.emergency : policy;
  // The run's own policy record may hold a caller's stricter overlay; it never lowers the repository's rules.
  const rules = recorded
    ? strictest(base, {
        ...base,
        approvers: recorded.approvers,
        holdSeconds: recorded.holdSeconds,
        reconfirm: recorded.reconfirm,
        roles: recorded.roles,
      })
    : base;
  if (rules.approvers === 0)
    return {
      cleared: true,
      approvers: [],
      reconfirmedBy: [],
      countersignatureDue: false,
      approvals: [],
    };

  const approvers = options.approvers ?? loadApprovers(policy.approversFile);
  const files = cleared.approvals ?? [];
  const verifyAll = async (
    purpose: 'approve' | 'reconfirm',
    token?: string,
  ): Promise<VerifiedApproval[]> => {
    const out: VerifiedApproval[] = [];
    for (const [i, raw] of files.entries()) {
      const source = `the cleared record's approval ${i + 1}`;
      let file;
      try {
        file = parseApproval(raw, source);
      } catch (e) {
        throw bad(errorMessage(e));
      }
      if (file.purpose !== purpose) continue;
      // An approval is judged at the time this run took it, as the ledger recorded it.
      let at = new Date(file.signedAt);
      if (purpose === 'approve') {
        const use = options.ledger.usedBy(signatureSha256(file.signature));
        if (!use) throw bad(`${source} was never recorded as used by run ${start.runId}`);
        if (use.runId !== start.runId)
          throw bad(`${source} was used by run ${use.runId}, not by this run ${start.runId}`);
        at = new Date(use.at);
      }
      try {
        out.push(
          await verifyApproval(
            file,
            {
              planHash: planned.planHash,
              policyHash: policy.hash,
              runbook: plan.runbook,
              stack: plan.stack,
              purpose,
              ...(token ? { token } : {}),
              now: at,
              ttlHours: rules.approvalTtlHours,
            },
            approvers,
            source,
          ),
        );
      } catch (e) {
        throw bad(errorMessage(e));
      }
    }
    return out;
  };

  const counted = countApprovals(await verifyAll('approve'), rules, cleared.emergency);
  const accepted = counted.accepted;
  if (accepted.length < rules.approvers)
    throw bad(
      `the run needs ${rules.approvers} approval(s), and its cleared record carries ${accepted.length} valid${
        counted.refused.length ? ` (${counted.refused.map((r) => r.reason).join('; ')})` : ''
      }`,
    );
  const principals = accepted.map((a) => a.principal);
  if ([...principals].sort().join() !== [...cleared.approvers].sort().join())
    throw bad(
      `it names approvers ${cleared.approvers.join(', ') || 'none'}, and its approvals are by ${principals.join(', ')}`,
    );
  const operator = operatorIdentity(start.operator, policy.operators, options.operatorKeys ?? []);
  const solo = soloRefusal(accepted, operator, cleared.emergency, policy);
  if (solo.reason) throw bad(solo.reason);
  if (solo.solo && !cleared.countersignatureDue)
    throw bad(
      'it was a solo emergency, and its cleared record does not say a countersignature is due',
    );

  let reconfirmedBy: string[] = [];
  let again: VerifiedApproval[] = [];
  if (rules.reconfirm) {
    const holdEnd = events.find(
      (e): e is Extract<RunEvent, { kind: 'hold-end' }> => e.kind === 'hold-end',
    );
    if (!holdEnd)
      throw bad(
        'the policy needs a reconfirmation after the hold, and the journal has no hold end',
      );
    again = (await verifyAll('reconfirm', holdEnd.token)).filter((v) =>
      principals.includes(v.principal),
    );
    reconfirmedBy = [...new Set(again.map((v) => v.principal))];
    if (reconfirmedBy.length < rules.approvers)
      throw bad(
        `the policy needs ${rules.approvers} reconfirmation(s), and the cleared record carries ${reconfirmedBy.length} valid`,
      );
  }
  return {
    cleared: true,
    approvers: principals,
    reconfirmedBy,
    countersignatureDue: solo.solo,
    approvals: [...accepted, ...again].map(({ purpose, principal, keyFingerprint }) => ({
      purpose,
      principal,
      keyFingerprint,
    })),
  };
}
