/**
 * Atheme's opensex flat-file database (services.db), read the way Atheme 7.2
 * reads it, so that a file Atheme would refuse is refused here first, with
 * the same line, token and words. Incident 003 lost thirty minutes to
 * `db-read-time: needed int at file … line 15119 token 3` on a restart.
 *
 * The grammar (version 1): one record per line; the first word is the record
 * type (case-insensitive), words are separated by single spaces (two spaces
 * make an empty word), a "multiword" is the rest of the line. Tokens are
 * numbered from 1 (the type); a word read past the end of the line does not
 * advance the count, a multiword read does. Numbers are C `strtol(s, 0)`:
 * optional leading blanks and sign, then decimal, octal after `0` or hex
 * after `0x`, and nothing else (so `08` and `1\r` are not numbers).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { BatonError } from '../../core/errors.ts';
import { condition, type Condition } from '../../core/runbook.ts';

/** The Atheme function that gave up, as it names itself in the log. */
export type AthemeReader =
  'db-read-int' | 'db-read-uint' | 'db-read-time' | 'db-sread-word' | 'db-sread-multiword';

/** Why Atheme would exit on this file ("exiting to avoid data loss"). */
export type AthemeDbFault =
  | {
      kind: 'needed';
      reader: AthemeReader;
      needed: 'int' | 'word' | 'multiword';
      file: string;
      line: number;
      token: number;
      recordType: string;
      /** Atheme's own log line, without its timestamp. */
      message: string;
    }
  | { kind: 'unknown-directive'; file: string; line: number; recordType: string; message: string }
  | {
      kind: 'chanacs';
      reason: 'nonexistent channel' | 'nonexistent target';
      file: string;
      line: number;
      recordType: 'CA';
      name: string;
      message: string;
    }
  | { kind: 'grammar'; file: string; line: number; recordType: string; message: string };

/** A services.db that Atheme would refuse to load. Never carries a line's text (it may hold a password hash). */
export class AthemeDbError extends BatonError {
  readonly fault: AthemeDbFault;
  constructor(fault: AthemeDbFault) {
    super(
      'DB_CORRUPT',
      `${fault.message} (a ${fault.recordType} record)`,
      `Atheme would refuse to start on this file. Repair or remove line ${fault.line} of ${fault.file}, or restore the newest copy that parses.`,
    );
    this.name = 'AthemeDbError';
    this.fault = fault;
  }
}

export interface AthemeAccount {
  /** Entity id (schema 10 and later). */
  uid: string | undefined;
  name: string;
  email: string;
  /** Unix seconds. */
  registeredAt: number;
  lastLoginAt: number;
  flags: string;
  language: string | undefined;
  line: number;
}

export interface AthemeNick {
  nick: string;
  account: string;
  registeredAt: number;
  lastSeenAt: number;
  line: number;
}

export interface AthemeChannel {
  name: string;
  registeredAt: number;
  usedAt: number;
  flags: string;
  /** The first account with flag F in the channel's access list, as Atheme picks it. */
  founder: string | undefined;
  /** The topic ChanServ keeps (`private:topic:text`), if any. */
  topic: string | undefined;
  line: number;
}

export interface AthemeChanAccess {
  channel: string;
  /** An account, a group (`!name`) or a hostmask (`nick!user@host`). */
  target: string;
  flags: string;
  modifiedAt: number;
  setter: string | undefined;
  line: number;
}

export interface AthemeDb {
  file: string;
  /** GRVER: the opensex grammar version (1 when absent). */
  grammarVersion: number;
  /** DBV: the core schema version. */
  schemaVersion: number | undefined;
  /** MDEP: modules loaded when the file was written. */
  modules: string[];
  accounts: AthemeAccount[];
  nicks: AthemeNick[];
  channels: AthemeChannel[];
  chanacs: AthemeChanAccess[];
  /** Rows per record type (upper case), including rows Atheme skips. */
  recordCounts: Record<string, number>;
  /** Lines read, counted as Atheme counts them. */
  lines: number;
  /** Rows Atheme loads but ignores, with the reason it logs. */
  notes: Array<{ line: number; message: string }>;
}

export interface AthemeDbOptions {
  /** The path Atheme would print (`DATADIR/services.db`). */
  file?: string;
  /** serverinfo::casemapping of the services config; names compare under it. */
  casemapping?: 'rfc1459' | 'ascii';
  /** Modules the services config loads besides those the file lists (MDEP). */
  modules?: string[];
  /** Record types of further modules: type (upper case) to the module that registers it. */
  moduleRecords?: Record<string, string>;
}

/**
 * Record types that modules of Atheme 7.2 register, and which module: a row
 * of one of these types loads only when that module does.
 */
export const MODULE_RECORDS: Readonly<Record<string, string>> = {
  BE: 'nickserv/badmail',
  BLE: 'proxyscan/dnsbl',
  HO: 'hostserv/offer',
  HR: 'hostserv/request',
  HE: 'helpserv/ticket',
  BOT: 'botserv/main',
  'BOT-COUNT': 'botserv/main',
  LI: 'infoserv/main',
  LIO: 'infoserv/main',
  'CLONES-DBV': 'operserv/clones',
  'CLONES-CK': 'operserv/clones',
  'CLONES-CD': 'operserv/clones',
  'CLONES-GR': 'operserv/clones',
  'CLONES-EX': 'operserv/clones',
  RW: 'operserv/rwatch',
  RR: 'operserv/rwatch',
  CFDBV: 'chanfix/main',
  CFCHAN: 'chanfix/main',
  CFOP: 'chanfix/main',
  CFMD: 'chanfix/main',
  GDBV: 'groupserv/main',
  GFA: 'groupserv/main',
  GRP: 'groupserv/main',
  MDG: 'groupserv/main',
  GACL: 'groupserv/main',
  CSREQ: 'chanserv/moderate',
};

/** NICKLEN + USERLEN + HOSTLEN + 1 of Atheme 7.2, measured: the longest hostmask a chanacs may be. */
const HOSTMASK_MAX = 109;

class Fault {
  constructor(readonly fault: AthemeDbFault) {}
}

/** One row and Atheme's read cursor over it. */
class Row {
  token = 0;
  private rest: string | null;
  type = '';

  constructor(
    readonly file: string,
    readonly line: number,
    text: string,
  ) {
    this.rest = text;
  }

  word(): string | null {
    if (this.rest === null) return null;
    const at = this.rest.indexOf(' ');
    let w: string;
    if (at === -1) {
      w = this.rest;
      this.rest = null;
    } else {
      w = this.rest.slice(0, at);
      this.rest = this.rest.slice(at + 1);
    }
    this.token++;
    return w;
  }

  private needed(reader: AthemeReader, needed: 'int' | 'word' | 'multiword'): never {
    throw new Fault({
      kind: 'needed',
      reader,
      needed,
      file: this.file,
      line: this.line,
      token: this.token,
      recordType: this.type,
      message: `${reader}: needed ${needed} at file ${this.file} line ${this.line} token ${this.token}`,
    });
  }

  sword(): string {
    return this.word() ?? this.needed('db-sread-word', 'word');
  }

  sstr(): string {
    const s = this.rest;
    this.token++;
    return s ?? this.needed('db-sread-multiword', 'multiword');
  }

  snum(kind: 'int' | 'uint' | 'time'): number {
    const w = this.word();
    const n = w === null ? undefined : cNumber(w);
    return n ?? this.needed(`db-read-${kind}`, 'int');
  }
}

/** `strtol(s, &end, 0)` that must consume all of `s`: the value, or undefined. */
function cNumber(s: string): number | undefined {
  const m = /^[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(s);
  if (!m) return undefined;
  const digits = m[2]!;
  const value = /^0[xX]/.test(digits)
    ? parseInt(digits.slice(2), 16)
    : digits.startsWith('0')
      ? parseInt(digits, 8)
      : parseInt(digits, 10);
  return m[1] === '-' ? -value : value;
}

function fold(name: string, casemapping: 'rfc1459' | 'ascii'): string {
  const lower = name.replace(/[A-Z]/g, (c) => c.toLowerCase());
  if (casemapping === 'ascii') return lower;
  return lower.replace(/[[\]\\~]/g, (c) => ({ '[': '{', ']': '}', '\\': '|', '~': '^' })[c]!);
}

function validHostmask(mask: string): boolean {
  if (mask.includes(' ')) return false;
  const bang = mask.indexOf('!');
  const at = mask.indexOf('@');
  if (bang === -1 || at === -1 || bang > at) return false;
  if (mask.indexOf('!', bang + 1) !== -1 || mask.indexOf('@', at + 1) !== -1) return false;
  if (Buffer.byteLength(mask) > HOSTMASK_MAX) return false;
  return !',-#@!'.includes(mask[0]!);
}

/** Split into rows as Atheme's getc loop does: at `\n`, a last line without one still counts, C strings end at NUL. */
function* rows(data: Uint8Array): Generator<string> {
  const decoder = new TextDecoder();
  let start = 0;
  while (start < data.length) {
    let end = data.indexOf(0x0a, start);
    if (end === -1) end = data.length;
    let line = data.subarray(start, end);
    const nul = line.indexOf(0);
    if (nul !== -1) line = line.subarray(0, nul);
    yield decoder.decode(line);
    start = end + 1;
  }
}

/**
 * Parse a services.db as Atheme 7.2 loads it. Throws AthemeDbError for the
 * first row Atheme would exit on, with Atheme's own message.
 */
export function parseAthemeDb(data: string | Uint8Array, options: AthemeDbOptions = {}): AthemeDb {
  const file = options.file ?? 'services.db';
  const casemapping = options.casemapping ?? 'rfc1459';
  const moduleRecords = { ...MODULE_RECORDS, ...options.moduleRecords };
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const db: AthemeDb = {
    file,
    grammarVersion: 1,
    schemaVersion: undefined,
    modules: [],
    accounts: [],
    nicks: [],
    channels: [],
    chanacs: [],
    recordCounts: {},
    lines: 0,
    notes: [],
  };
  const loaded = new Set(options.modules ?? []);
  const accounts = new Map<string, AthemeAccount>();
  const nicks = new Set<string>();
  const channels = new Map<string, AthemeChannel>();
  const groups = new Set<string>();
  let dbv = 0;
  let gdbv = Number.MAX_SAFE_INTEGER;
  const key = (name: string): string => fold(name, casemapping);

  const handlers: Record<string, (row: Row, type: string) => void> = {
    GRVER(row) {
      const v = row.snum('int');
      if (v !== 1) {
        throw new Fault({
          kind: 'grammar',
          file,
          line: row.line,
          recordType: 'GRVER',
          message: `grammar version ${v} at file ${file} line ${row.line}: only version 1 (what Atheme 7.2 writes) is understood`,
        });
      }
      db.grammarVersion = v;
    },
    DBV(row) {
      dbv = row.snum('int');
      db.schemaVersion = dbv;
    },
    MDEP(row) {
      const name = row.word();
      if (name) {
        db.modules.push(name);
        loaded.add(name);
      }
    },
    LUID: (row) => void row.sword(),
    CF: (row) => void row.sword(),
    MU(row) {
      const uid = dbv >= 10 ? row.sword() : undefined;
      const name = row.sword();
      if (accounts.has(key(name))) {
        db.notes.push({ line: row.line, message: `skipping duplicate account ${name}` });
        return;
      }
      row.sword(); // the password hash: never kept
      const email = row.sword();
      const registeredAt = row.snum('time');
      const lastLoginAt = row.snum('time');
      const flags = dbv >= 8 ? row.sword() : String(row.snum('uint'));
      const language = row.word() ?? undefined;
      const account: AthemeAccount = {
        uid,
        name,
        email,
        registeredAt,
        lastLoginAt,
        flags,
        language,
        line: row.line,
      };
      accounts.set(key(name), account);
      db.accounts.push(account);
    },
    ME(row) {
      row.sword();
      row.sword();
      row.snum('time');
      row.snum('int');
      row.sstr();
    },
    MI: (row) => void (row.sword(), row.sword()),
    AC: (row) => void (row.sword(), row.sword()),
    MCFP: (row) => void (row.sword(), row.sword()),
    MN(row) {
      const account = row.sword();
      const nick = row.sword();
      const registeredAt = row.snum('time');
      const lastSeenAt = row.snum('time');
      const owner = accounts.get(key(account));
      if (!owner) {
        db.notes.push({
          line: row.line,
          message: `registered nick ${nick} for unknown account ${account}`,
        });
        return;
      }
      if (nicks.has(key(nick))) {
        db.notes.push({
          line: row.line,
          message: `skipping duplicate nick ${nick} for account ${account}`,
        });
        return;
      }
      nicks.add(key(nick));
      db.nicks.push({ nick, account: owner.name, registeredAt, lastSeenAt, line: row.line });
    },
    SU() {},
    NAM: (row) => void row.sword(),
    SO(row) {
      row.sword();
      row.sword();
      if (dbv >= 8) row.sword();
      else row.snum('int');
      row.word();
    },
    MC(row) {
      const name = row.sword();
      const registeredAt = row.snum('time');
      const usedAt = row.snum('time');
      const flags = dbv >= 8 ? row.sword() : String(row.snum('uint'));
      row.snum('uint');
      row.snum('uint');
      row.snum('uint');
      row.word();
      if (channels.has(key(name))) {
        db.notes.push({ line: row.line, message: `channel ${name} registered twice` });
        return;
      }
      const channel: AthemeChannel = {
        name,
        registeredAt,
        usedAt,
        flags,
        founder: undefined,
        topic: undefined,
        line: row.line,
      };
      channels.set(key(name), channel);
      db.channels.push(channel);
    },
    MDU: metadata,
    MDC: metadata,
    MDN: metadata,
    MDA(row, type) {
      if (dbv < 12) return metadata(row, type);
      row.sword();
      row.sword();
      row.sword();
      row.sstr();
    },
    CA(row) {
      const chan = row.sword();
      const target = row.sword();
      const flags = row.sword();
      const modifiedAt = row.snum('time');
      const setter = dbv >= 9 ? row.sword() : undefined;
      const channel = channels.get(key(chan));
      const fault = (reason: 'nonexistent channel' | 'nonexistent target', name: string): Fault =>
        new Fault({
          kind: 'chanacs',
          reason,
          file,
          line: row.line,
          recordType: 'CA',
          name,
          message: `db-h-ca: line ${row.line}: chanacs for ${reason} ${name} - exiting to avoid data loss`,
        });
      if (!channel) throw fault('nonexistent channel', chan);
      const account = accounts.get(key(target));
      const entity =
        account !== undefined ||
        groups.has(key(target)) ||
        (target.startsWith('$') && [...loaded].some((m) => m.startsWith('exttarget/')));
      if (!entity && !validHostmask(target)) throw fault('nonexistent target', target);
      if (account && !channel.founder && flags.includes('F')) channel.founder = account.name;
      db.chanacs.push({
        channel: channel.name,
        target: account ? account.name : target,
        flags,
        modifiedAt,
        setter: setter === '*' ? undefined : setter,
        line: row.line,
      });
    },
    SI(row) {
      row.sword();
      row.snum('time');
      row.sword();
      row.sstr();
    },
    KID: (row) => void row.snum('int'),
    XID: (row) => void row.snum('int'),
    QID: (row) => void row.snum('int'),
    KL(row) {
      if (dbv > 10) row.snum('uint');
      row.sword();
      row.sword();
      row.snum('uint');
      row.snum('time');
      row.sword();
      row.sstr();
    },
    XL: xlineOrQline,
    QL: xlineOrQline,
    DE() {},
    // Module records whose grammar is checked; the other MODULE_RECORDS are taken as they are.
    HR(row) {
      row.sword();
      row.sword();
      row.snum('time');
      row.sword();
    },
    GDBV(row) {
      gdbv = row.snum('uint');
    },
    GRP(row) {
      if (gdbv >= 4) row.sword();
      groups.add(key(row.sword()));
      row.snum('time');
      if (gdbv >= 4) row.sword();
    },
    GACL(row) {
      row.sword();
      row.sword();
      if (gdbv >= 4) row.sword();
    },
    MDG(row) {
      row.sword();
      row.sword();
      row.sstr();
    },
    GFA: (row) => void row.sword(),
  };

  function metadata(row: Row, type: string): void {
    const name = row.sword();
    const prop = row.sword();
    const value = row.sstr();
    // Atheme compares the metadata type case-sensitively here: `mdc` rows are ignored.
    if (type === 'MDC' && prop === 'private:topic:text') {
      const channel = channels.get(key(name));
      if (channel) channel.topic = value;
    }
  }

  function xlineOrQline(row: Row): void {
    if (dbv > 10) row.snum('uint');
    row.sword();
    row.snum('uint');
    row.snum('time');
    row.sword();
    row.sstr();
  }

  try {
    for (const text of rows(bytes)) {
      const row = new Row(file, ++db.lines, text);
      const cmd = row.word();
      if (!cmd || '#\n\t \r'.includes(cmd[0]!)) continue;
      const type = cmd.toUpperCase();
      row.type = type;
      db.recordCounts[type] = (db.recordCounts[type] ?? 0) + 1;
      const module = moduleRecords[type];
      const handler =
        module === undefined
          ? handlers[type]
          : loaded.has(module)
            ? (handlers[type] ?? (() => {}))
            : undefined;
      if (!handler) {
        throw new Fault({
          kind: 'unknown-directive',
          file,
          line: row.line,
          recordType: type,
          message: `db ${file}:${row.line}: unknown directive '${cmd}'`,
        });
      }
      handler(row, cmd);
    }
  } catch (e) {
    if (e instanceof Fault) throw new AthemeDbError(e.fault);
    throw e;
  }
  return db;
}

/** Read and parse a services.db file; the file's path is what messages name. */
export async function readAthemeDb(path: string, options: AthemeDbOptions = {}): Promise<AthemeDb> {
  return parseAthemeDb(await readFile(path), { file: path, ...options });
}

/** Counts and a digest of what a services.db holds, independent of line order and timestamps. */
export interface AthemeFingerprint {
  accounts: number;
  nicks: number;
  channels: number;
  chanacs: number;
  /** sha256 over the sorted account names, nick registrations, channel names and access entries. */
  sha256: string;
}

/**
 * Two files with the same accounts, nick registrations, channels and channel
 * access fingerprint equally, whatever the order of their lines and whatever
 * their last-login or last-used times.
 */
export function fingerprint(db: AthemeDb): AthemeFingerprint {
  const sorted = (items: string[]): string[] => [...items].sort();
  const flagSet = (flags: string): string => [...flags.replace(/^\+/, '')].sort().join('');
  const canonical = {
    accounts: sorted(db.accounts.map((a) => a.name)),
    nicks: sorted(db.nicks.map((n) => `${n.nick} ${n.account}`)),
    channels: sorted(db.channels.map((c) => c.name)),
    chanacs: sorted(db.chanacs.map((ca) => `${ca.channel} ${ca.target} +${flagSet(ca.flags)}`)),
  };
  return {
    accounts: canonical.accounts.length,
    nicks: canonical.nicks.length,
    channels: canonical.channels.length,
    chanacs: canonical.chanacs.length,
    sha256: createHash('sha256').update(JSON.stringify(canonical)).digest('hex'),
  };
}

export type AthemeDbCheck =
  { ok: true; db: AthemeDb; fingerprint: AthemeFingerprint } | { ok: false; fault: AthemeDbFault };

/** Parse and fingerprint, returning the first fault as a value instead of throwing. */
export function checkAthemeDb(
  data: string | Uint8Array,
  options: AthemeDbOptions = {},
): AthemeDbCheck {
  try {
    const db = parseAthemeDb(data, options);
    return { ok: true, db, fingerprint: fingerprint(db) };
  } catch (e) {
    if (e instanceof AthemeDbError) return { ok: false, fault: e.fault };
    throw e;
  }
}

function describe(fp: AthemeFingerprint): string {
  return `${fp.accounts} accounts, ${fp.nicks} nicks, ${fp.channels} channels, ${fp.chanacs} access entries, sha256 ${fp.sha256.slice(0, 16)}`;
}

/** The precondition "the services.db on `host` loads in Atheme", as the operator reads it. */
export function dbCondition(host: string, check: AthemeDbCheck): Condition {
  if (check.ok) {
    return condition(`services.db on ${host} parses as Atheme reads it`, true, {
      expected: 'every record readable',
      found: `${check.db.lines} lines, ${describe(check.fingerprint)}`,
    });
  }
  return condition(`services.db on ${host} parses as Atheme reads it`, false, {
    expected: 'every record readable',
    found: check.fault.message,
    remedy: `Atheme on ${host} would refuse to start with this file: repair or remove line ${check.fault.line} (a ${check.fault.recordType} record) or restore the newest copy that parses.`,
  });
}

/** The postcondition "the copy on `host` holds what the primary held". */
export function fingerprintCondition(
  host: string,
  expected: AthemeFingerprint,
  found: AthemeFingerprint,
): Condition {
  return condition(
    `services.db on ${host} holds the same accounts, nicks and channels`,
    expected.sha256 === found.sha256,
    {
      expected: describe(expected),
      found: describe(found),
      remedy:
        'Do not start services from this copy: take a new snapshot from the primary and transfer it again.',
    },
  );
}
