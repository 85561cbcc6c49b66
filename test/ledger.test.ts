import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { approvalLedger } from '../lib/approval/ledger.ts';

describe('the approval ledger', () => {
  const sha = 'a'.repeat(64);
  const at = new Date('2026-12-01T03:00:00Z');

  it('gives an approval to the first run that claims it and names that run to the next', () => {
    const home = mkdtempSync(join(tmpdir(), 'baton-ledger-'));
    const first = approvalLedger(home);
    const second = approvalLedger(home);
    expect(first.claim(sha, 'run-1', at)).toBeUndefined();
    expect(second.claim(sha, 'run-2', at)).toEqual({ runId: 'run-1', at: at.toISOString() });
    expect(second.usedBy(sha)).toEqual({ runId: 'run-1', at: at.toISOString() });
    expect(first.claim(sha, 'run-1', at)).toBeUndefined();
  });

  it('knows nothing of an approval no run claimed', () => {
    expect(
      approvalLedger(mkdtempSync(join(tmpdir(), 'baton-ledger-'))).usedBy(sha),
    ).toBeUndefined();
  });
});
