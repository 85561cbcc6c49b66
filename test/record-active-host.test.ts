import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { planRunbook, startRun } from '../lib/app/runs.ts';
import { workspace } from './helpers.ts';

const RUNBOOK = join(import.meta.dirname, 'fixtures', 'active-host.ts');
const PATH = process.env.PATH;

/** A `pulumi` on PATH that records its arguments, as the CLI's contract for `config set` takes them. */
function fakePulumi(): string {
  const bin = mkdtempSync(join(tmpdir(), 'baton-pulumi-'));
  const log = join(bin, 'calls');
  writeFileSync(join(bin, 'pulumi'), `#!/bin/sh\necho "$*" >> ${log}\n`);
  chmodSync(join(bin, 'pulumi'), 0o755);
  process.env.PATH = `${bin}:${PATH}`;
  return log;
}

afterEach(() => {
  process.env.PATH = PATH;
});

describe('after a cut, the Pulumi stack learns the active host', () => {
  it('sets baton:activeHost so the next pulumi up keeps the cut', async () => {
    const log = fakePulumi();
    const ws = workspace();
    const { plan } = await planRunbook({
      runbook: RUNBOOK,
      stack: 'nodes',
      params: [],
      cwd: ws.cwd,
    });
    expect(plan.steps[0]!.hosts[0]!.mutations).toEqual([
      'pulumi config set baton:activeHost beta --stack nodes with {"activeHost":"beta","stack":"nodes"}',
    ]);
    const result = await startRun({ runbook: RUNBOOK, stack: 'nodes', params: [], cwd: ws.cwd });
    expect(result.outcome).toBe('done');
    expect(readFileSync(log, 'utf8')).toBe('config set baton:activeHost beta --stack nodes\n');
  });

  it('says what to run by hand where no pulumi CLI is installed', async () => {
    process.env.PATH = '/nonexistent';
    const ws = workspace();
    const { plan } = await planRunbook({
      runbook: RUNBOOK,
      stack: 'nodes',
      params: [],
      cwd: ws.cwd,
    });
    expect(plan.steps[0]!.skipped).toBe(
      'no pulumi CLI or infra/ here: after the run, `cd infra && pulumi config set baton:activeHost beta --stack nodes`, or the next pulumi up undoes the cut',
    );
  });

  it('is skipped on the testnet, which is no Pulumi stack', async () => {
    fakePulumi();
    const ws = workspace();
    const { plan } = await planRunbook({
      runbook: RUNBOOK,
      stack: 'demo',
      params: [],
      cwd: ws.cwd,
    });
    expect(plan.steps[0]!.skipped).toBe('stack demo is not a Pulumi stack');
  });
});
