/** The run store: one directory per run under the baton home, its lock, and the list of runs. */
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { BatonError, InvalidInputError } from '../core/errors.ts';
import type { RunEvent } from '../core/events.ts';
import { readJournal, type JournalRead } from '../engine/journal.ts';
import { indexProblem, readSignatures } from '../approval/signing.ts';
import { runIndex, runsDir } from './paths.ts';
import { type ProjectRef } from '../core/project.ts';

/** A run's directory in the project's baton home (`at`: the project, or a directory to find it from). */
export function runDir(runId: string, at?: ProjectRef): string {
  if (!/^[A-Za-z0-9._-]+$/.test(runId))
    throw new InvalidInputError(`${JSON.stringify(runId)} is not a run id`);
  const dir = join(runsDir(at), runId);
  if (!existsSync(dir)) {
    throw new InvalidInputError(
      `no run ${runId} in ${runsDir(at)}`,
      '`baton runs` lists the runs.',
    );
  }
  return dir;
}

/** One controller per run: a lock file holding the pid; a dead holder's lock is taken over. */
export function acquireLock(dir: string, runId: string): () => void {
  const file = join(dir, 'lock');
  if (existsSync(file)) {
    const [pidText, host] = readFileSync(file, 'utf8').trim().split(' ');
    const pid = Number(pidText);
    if (host === hostname() && pid && pid !== process.pid && alive(pid)) {
      throw new BatonError(
        'RUN_LOCKED',
        `run ${runId} is being driven by process ${pid} on this machine`,
        `Wait for it to finish, or stop it (kill ${pid}) and then \`baton resume ${runId}\`.`,
      );
    }
    if (host !== hostname()) {
      throw new BatonError(
        'RUN_LOCKED',
        `run ${runId} is locked by a controller on ${host}`,
        `Make sure that controller is gone, then delete ${file} and resume.`,
      );
    }
  }
  writeFileSync(file, `${process.pid} ${hostname()}\n`, { mode: 0o600 });
  return () => rmSync(file, { force: true });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface RunSummary {
  runId: string;
  runbook: string;
  stack: string;
  operator: string;
  startedAt: string;
  endedAt?: string;
  outcome: string;
  state?: string;
  journal: 'verified' | string;
}

export function listRuns(at?: ProjectRef): RunSummary[] {
  const root = runsDir(at);
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .sort()
    .map((runId): RunSummary => {
      const dir = join(root, runId);
      let read: JournalRead;
      try {
        read = readJournal(dir);
      } catch (e) {
        return {
          runId,
          runbook: '?',
          stack: '?',
          operator: '?',
          startedAt: '?',
          outcome: 'unknown',
          journal: (e as Error).message,
        };
      }
      const first = read.records[0];
      const start = first?.event.kind === 'run-start' ? first.event : undefined;
      const cut = indexProblem(runIndex(at), runId, readSignatures(dir), read.records.length);
      const end = read.records.findLast((r) => r.event.kind === 'run-end');
      const endEvent = end?.event as Extract<RunEvent, { kind: 'run-end' }> | undefined;
      return {
        runId,
        runbook: start?.runbook ?? '?',
        stack: start?.stack ?? '?',
        operator: start?.operator ?? '?',
        startedAt: first?.ts ?? '?',
        ...(end ? { endedAt: end.ts } : {}),
        outcome:
          endEvent?.outcome ??
          (existsSync(join(dir, 'lock')) ? 'running or interrupted' : 'interrupted'),
        ...(endEvent ? { state: endEvent.state } : {}),
        journal: cut ?? 'verified',
      };
    });
}
