/**
 * The append-only, hash-chained journal of a run: `journal.jsonl` (one record
 * per line, each carrying the sha256 of the line before) and `head` (sequence
 * and hash of the last record). Every append is fsynced before it returns, so
 * an intent is on disk before its mutation starts.
 */
import { sha256 } from '../core/hash.ts';
import {
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { JournalCorruptError } from '../core/errors.ts';
import type { JournalRecord, RunEvent } from '../core/events.ts';
import type { Redactor } from '../core/redact.ts';

export const GENESIS = '0'.repeat(64);
export const JOURNAL_FILE = 'journal.jsonl';
export const HEAD_FILE = 'head';

export interface Head {
  seq: number;
  hash: string;
}

/** Signs a head of the journal (signing.ts); the journal calls it at the records that must be signed. */
export interface HeadSigner {
  /** Sign and store a signature of `head`, the record just written being of `kind`. */
  sign(dir: string, head: Head, kind: RunEvent['kind']): void;
}

/** Heads signed by the operator's key: where the run was cleared to change hosts, and where it ended. */
export const SIGNED_KINDS: ReadonlySet<RunEvent['kind']> = new Set(['cleared', 'run-end']);

export class Journal {
  private seq: number;
  private prev: string;

  private constructor(
    readonly dir: string,
    private readonly redactor: Redactor | undefined,
    private readonly now: () => Date,
    head: Head | undefined,
    private readonly signer: HeadSigner | undefined,
  ) {
    this.seq = head ? head.seq + 1 : 0;
    this.prev = head ? head.hash : GENESIS;
  }

  static create(
    dir: string,
    redactor?: Redactor,
    now: () => Date = () => new Date(),
    signer?: HeadSigner,
  ): Journal {
    if (existsSync(join(dir, JOURNAL_FILE))) {
      throw new JournalCorruptError(`a journal already exists in ${dir}`, 'Pick a new run id.');
    }
    return new Journal(dir, redactor, now, undefined, signer);
  }

  /**
   * Continue an existing journal after verifying it end to end. A last record
   * that should be signed and is not (the controller died between the two
   * writes) is signed now.
   */
  static reopen(
    dir: string,
    redactor?: Redactor,
    now: () => Date = () => new Date(),
    signer?: HeadSigner,
    lastUnsigned = false,
  ): Journal {
    const { records } = readJournal(dir);
    const last = records.at(-1);
    const journal = new Journal(
      dir,
      redactor,
      now,
      last ? { seq: last.seq, hash: sha256(serialize(last)) } : undefined,
      signer,
    );
    if (last) {
      journal.writeHead({ seq: last.seq, hash: journal.prev });
      if (lastUnsigned && SIGNED_KINDS.has(last.event.kind))
        signer?.sign(dir, { seq: last.seq, hash: journal.prev }, last.event.kind);
    }
    return journal;
  }

  append(event: RunEvent): JournalRecord {
    const safe = this.redactor ? this.redactor.redactDeep(event) : event;
    const record: JournalRecord = {
      seq: this.seq,
      ts: this.now().toISOString(),
      prev: this.prev,
      event: safe,
    };
    const line = serialize(record);
    const fd = openSync(join(this.dir, JOURNAL_FILE), 'a', 0o600);
    try {
      writeSync(fd, line + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    this.prev = sha256(line);
    this.seq += 1;
    this.writeHead({ seq: record.seq, hash: this.prev });
    if (SIGNED_KINDS.has(safe.kind))
      this.signer?.sign(this.dir, { seq: record.seq, hash: this.prev }, safe.kind);
    return record;
  }

  private writeHead(head: Head): void {
    const tmp = join(this.dir, HEAD_FILE + '.tmp');
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, JSON.stringify(head) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, join(this.dir, HEAD_FILE));
    const dirFd = openSync(this.dir, 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  }
}

function serialize(record: JournalRecord): string {
  return JSON.stringify(record);
}

export interface JournalRead {
  records: JournalRecord[];
  /** sha256 of each record's line: the head a signature over record i signs. */
  hashes: string[];
  head: Head;
  /** True when the head lags the journal by one record: a crash between the two writes. */
  headLagged: boolean;
}

/** Read and verify a journal: chain, sequence, and head. Throws JournalCorruptError naming the record. */
export function readJournal(dir: string): JournalRead {
  const file = join(dir, JOURNAL_FILE);
  if (!existsSync(file)) throw new JournalCorruptError(`no journal at ${file}`);
  const text = readFileSync(file, 'utf8');
  if (text.length > 0 && !text.endsWith('\n')) {
    throw new JournalCorruptError(
      `${file} ends in the middle of a record: the journal was truncated or torn`,
    );
  }
  const lines = text.length === 0 ? [] : text.slice(0, -1).split('\n');
  const records: JournalRecord[] = [];
  const hashes: string[] = [];
  let prev = GENESIS;
  lines.forEach((line, i) => {
    let record: JournalRecord;
    try {
      record = JSON.parse(line) as JournalRecord;
    } catch {
      throw new JournalCorruptError(`${file} line ${i + 1} is not a valid record`);
    }
    if (record.seq !== i) {
      throw new JournalCorruptError(
        `${file} line ${i + 1} has sequence ${record.seq}, expected ${i}: records were removed or reordered`,
      );
    }
    if (record.prev !== prev) {
      throw new JournalCorruptError(
        `${file} record ${i} does not follow record ${i - 1}: the chain is broken (record ${Math.max(i - 1, 0)} or ${i} was changed)`,
      );
    }
    prev = sha256(line);
    records.push(record);
    hashes.push(prev);
  });
  const headFile = join(dir, HEAD_FILE);
  if (!existsSync(headFile)) {
    throw new JournalCorruptError(
      `${headFile} is missing: the journal cannot be checked for truncation`,
    );
  }
  let head: Head;
  try {
    head = JSON.parse(readFileSync(headFile, 'utf8')) as Head;
  } catch {
    throw new JournalCorruptError(`${headFile} is not valid`);
  }
  const last = records.length - 1;
  if (head.seq === last && head.hash === prev) return { records, hashes, head, headLagged: false };
  if (head.seq === last - 1 && last >= 1 && head.hash === sha256(lines[last - 1]!)) {
    return { records, hashes, head, headLagged: true };
  }
  if (head.seq > last) {
    throw new JournalCorruptError(
      `${file} was truncated: it ends at record ${last}, but record ${head.seq} was written`,
    );
  }
  throw new JournalCorruptError(`${file} does not match its head: the last records were changed`);
}
