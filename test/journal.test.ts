import { sha256 } from '../lib/core/hash.ts';
import { mkdtempSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JournalCorruptError } from '../lib/core/errors.ts';
import { Journal, readJournal } from '../lib/engine/journal.ts';
import { Redactor } from '../lib/core/redact.ts';

function journalWith(n: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'baton-journal-'));
  const j = Journal.create(dir);
  for (let i = 0; i < n; i++) j.append({ kind: 'log', message: `record ${i}` });
  return dir;
}

const file = (dir: string): string => join(dir, 'journal.jsonl');

describe('journal', () => {
  it('chains each record to the sha256 of the one before', () => {
    const dir = journalWith(3);
    const lines = readFileSync(file(dir), 'utf8').trim().split('\n');
    const records = lines.map((l) => JSON.parse(l) as { seq: number; prev: string });
    expect(records.map((r) => r.seq)).toEqual([0, 1, 2]);
    expect(records[0]!.prev).toBe('0'.repeat(64));
    expect(records[1]!.prev).toBe(sha256(lines[0]!));
    expect(records[2]!.prev).toBe(sha256(lines[1]!));
    expect(readJournal(dir).records).toHaveLength(3);
  });

  it('detects a changed record', () => {
    const dir = journalWith(4);
    const text = readFileSync(file(dir), 'utf8');
    writeFileSync(file(dir), text.replace('record 1', 'record X'));
    expect(() => readJournal(dir)).toThrow(
      /record 2 does not follow record 1: the chain is broken/,
    );
  });

  it('detects a changed last record through the head', () => {
    const dir = journalWith(3);
    const text = readFileSync(file(dir), 'utf8');
    writeFileSync(file(dir), text.replace('record 2', 'record Y'));
    expect(() => readJournal(dir)).toThrow(/does not match its head/);
  });

  it('detects removed trailing records', () => {
    const dir = journalWith(4);
    const lines = readFileSync(file(dir), 'utf8').split('\n');
    writeFileSync(file(dir), lines.slice(0, 2).join('\n') + '\n');
    expect(() => readJournal(dir)).toThrow(
      /was truncated: it ends at record 1, but record 3 was written/,
    );
  });

  it('detects a torn last line', () => {
    const dir = journalWith(3);
    const size = readFileSync(file(dir)).length;
    truncateSync(file(dir), size - 10);
    expect(() => readJournal(dir)).toThrow(JournalCorruptError);
    expect(() => readJournal(dir)).toThrow(/ends in the middle of a record/);
  });

  it('detects a removed middle record', () => {
    const dir = journalWith(4);
    const lines = readFileSync(file(dir), 'utf8').trim().split('\n');
    lines.splice(1, 1);
    writeFileSync(file(dir), lines.join('\n') + '\n');
    expect(() => readJournal(dir)).toThrow(/has sequence 2, expected 1/);
  });

  it('accepts a head one record behind, as a crash between the two writes leaves it', () => {
    const dir = journalWith(3);
    const lines = readFileSync(file(dir), 'utf8').trim().split('\n');
    writeFileSync(join(dir, 'head'), JSON.stringify({ seq: 1, hash: sha256(lines[1]!) }));
    const read = readJournal(dir);
    expect(read.headLagged).toBe(true);
    expect(read.records).toHaveLength(3);
  });

  it('redacts secrets before they reach the disk', () => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-journal-'));
    const r = new Redactor();
    r.add('pw', 'correct horse');
    Journal.create(dir, r).append({ kind: 'log', message: 'pw is correct horse' });
    expect(readFileSync(file(dir), 'utf8')).toContain('pw is [redacted:pw]');
  });
});
