/**
 * The two-person rule after the fact: an emergency that its operator approved
 * alone is reviewed by a second approver (`baton countersign`). Until then the
 * audit of its stack fails.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readJournal } from '../engine/journal.ts';
import { countersignatureState, soloEmergency } from '../approval/ledger.ts';
import type { AuditCheck, Finding } from './check.ts';
import type { Project } from '../core/project.ts';
import { runsDir } from '../app/paths.ts';

/** The solo emergency runs on a stack in this run store. */
export function soloEmergencyRuns(runsRoot: string, stack: string): string[] {
  if (!existsSync(runsRoot)) return [];
  return readdirSync(runsRoot)
    .sort()
    .filter((runId) => {
      try {
        const events = readJournal(join(runsRoot, runId)).records.map((r) => r.event);
        const start = events[0];
        return start?.kind === 'run-start' && start.stack === stack && !!soloEmergency(events);
      } catch {
        return false;
      }
    });
}

export function countersignatureCheck(
  stack: string,
  project: Project,
  runIds: string[],
): AuditCheck {
  return {
    id: `countersignature:${stack}`,
    kind: 'countersignature',
    title: 'Emergency runs approved by their operator alone are countersigned by a second approver',
    targets: ['controller'],
    incident: 'the two-person rule: a run one person cleared alone is reviewed by a second',
    async run(): Promise<Finding> {
      const evidence: string[] = [];
      const owing: string[] = [];
      for (const runId of runIds) {
        const c = await countersignatureState(join(runsDir(project), runId), project);
        if (c.state === 'signed') evidence.push(`${runId}: countersigned by ${c.by}`);
        else if (c.state === 'due') {
          owing.push(runId);
          evidence.push(
            `${runId}: countersignature due (approved by ${c.approvers.join(', ')} alone)`,
          );
        } else if (c.state === 'invalid') {
          owing.push(runId);
          evidence.push(`${runId}: countersignature invalid: ${c.reason}`);
        }
      }
      return owing.length === 0
        ? {
            verdict: 'pass',
            summary: `${runIds.length} solo emergency run(s), each countersigned`,
            evidence,
          }
        : {
            verdict: 'fail',
            summary: `${owing.length} solo emergency run(s) not countersigned: ${owing.join(', ')}`,
            evidence,
            remedy: `An approver who neither ran nor approved each run reads \`baton report RUN\`, then \`baton countersign RUN --key KEY\`.`,
            metrics: { owing: owing.length, runs: runIds.length },
          };
    },
  };
}
