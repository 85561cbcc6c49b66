/**
 * An SQLite file as a data format, through Debian's sqlite3 CLI on the host.
 * The freeze is a detached sqlite3 that holds `BEGIN IMMEDIATE`: readers go
 * on, every writer gets "database is locked", and ending it writes nothing.
 * Copies are `.backup` copies, proven by `integrity_check` and by a file whose
 * size is what its pages make, so a cut file is never read as a short database.
 * The content hash follows rows in rowid order (every column for WITHOUT
 * ROWID tables), which a `.backup`, a VACUUM or a `.dump` keep.
 */
import { z } from 'zod';
import { BatonError } from '../../core/errors.ts';
import { CommandError } from '../../core/exec.ts';
import { condition, type Condition } from '../../core/runbook.ts';
import { raw, sh, type Cmd } from '../../core/shell.ts';
import {
  missingByCounts,
  type CopyPolicy,
  type DataFormat,
  type Fingerprint,
  type FormatApply,
  type FormatProbe,
} from '../data.ts';

const CONTROL = /[\u0000-\u001f\u007f]/;

const absolutePath = z
  .string()
  .startsWith('/', 'an absolute path')
  .refine((p) => !CONTROL.test(p), 'a path without newlines or control characters')
  .refine((p) => p.length > 1 && !p.endsWith('/'), 'the path of a file, not of a directory')
  .refine(
    (p) =>
      !p
        .slice(1)
        .split('/')
        .some((s) => s === '' || s === '.' || s === '..'),
    'a path without //, . or .. in it',
  );

const userName = z
  .string()
  .regex(/^([A-Za-z_][A-Za-z0-9_.-]{0,31}\$?|[0-9]+)$/, 'a user name or a numeric uid');

export const sqliteParams = z.object({
  /** The live database file, absolute; its -wal, -shm and -journal go with it. */
  sqliteDb: absolutePath.describe('absolute path of the live SQLite database file'),
  /** The user that owns the database file (the application's user). */
  sqliteOwner: userName.describe('the user that owns the database file'),
});

export type SqliteParams = z.output<typeof sqliteParams>;

/** The files baton keeps beside the database. */
export interface SqlitePaths {
  db: string;
  /** Pid of the sqlite3 that holds the freeze. */
  freezePid: string;
  /** Where a snapshot is restored and proven before install. */
  scratch: string;
  /** The live file as it was before install (its -wal, -shm, -journal beside it). */
  before: string;
}

export function sqlitePaths(params: SqliteParams): SqlitePaths {
  const db = params.sqliteDb;
  return {
    db,
    freezePid: `${db}.baton-freeze.pid`,
    scratch: `${db}.baton-scratch`,
    before: `${db}.baton-before`,
  };
}

/** Waits for a writer that holds the lock for this long, then gives up. */
const BUSY_MS = 10_000;
/**
 * What the holder runs once it holds the lock: its output says the lock is
 * held, and its argv tells a holder from any other sqlite3 (the CLI splits a
 * dot-command's arguments in its own argv, but leaves SQL whole).
 */
const HOLD_SQL = "SELECT 'baton-freeze'";
const HOLD_OUT = 'baton-freeze';

/**
 * The scratch copy is baton's alone: opened immutable, so that reading it
 * takes no locks and leaves no -wal or -shm beside it.
 */
function immutableUri(path: string): string {
  return `file:${path.split('/').map(encodeURIComponent).join('/')}?immutable=1`;
}

/** `held PID`: whether PID is a live freeze holder of "$db" (a zombie or a reused pid is not). */
const HELD_FN = sh`mark=${HOLD_SQL}
held() {
  case $1 in ''|*[!0-9]*) return 1 ;; esac
  a=$(tr '\\0' '\\n' < "/proc/$1/cmdline" 2>/dev/null) || return 1
  printf '%s\\n' "$a" | grep -qxF -- "$db" && printf '%s\\n' "$a" | grep -qxF -- "$mark"
}`;

/**
 * SQL that writes the SQL of one read of the whole database: schema text,
 * then each table's row count and rows, in one transaction. Every line it
 * prints is one line: values are `quote()`d, backslashes and newlines escaped.
 */
const DUMP_SQL = String.raw`
SELECT 'BEGIN;';
SELECT 'SELECT ''#schema '' || CASE schema_version WHEN ' || schema_version ||
  ' THEN ''same'' ELSE ''changed'' END FROM pragma_schema_version;' FROM pragma_schema_version;
SELECT 'SELECT ''#sql '' || json_array(type, name, tbl_name, sql) FROM sqlite_schema ORDER BY name;';
SELECT 'SELECT ''#rows '' || json_array(' || quote(t.name) || ', count(*)) FROM ' || t.ident || ';' ||
  char(10) || 'SELECT replace(replace(' || t.cols || ', ''\'', ''\\''), char(10), ''\n'') FROM ' ||
  t.ident || ' ORDER BY ' || t.ord || ';'
FROM (
  SELECT l.name, '"' || replace(l.name, '"', '""') || '"' AS ident,
    (SELECT group_concat('quote("' || replace(c.name, '"', '""') || '")', ' || '','' || ')
      FROM (SELECT name FROM pragma_table_info(l.name) ORDER BY cid) AS c) AS cols,
    CASE WHEN l.wr THEN '1' ELSE coalesce((
      SELECT a.r FROM (SELECT 'rowid' AS r, 1 AS k UNION ALL SELECT '_rowid_', 2 UNION ALL SELECT 'oid', 3) AS a
      WHERE NOT EXISTS (SELECT 1 FROM pragma_table_info(l.name) AS c WHERE lower(c.name) = a.r)
      ORDER BY a.k LIMIT 1), '1') END AS ord
  FROM pragma_table_list AS l
  WHERE l.schema = 'main' AND l.type IN ('table', 'shadow') AND substr(l.name, 1, 7) <> 'sqlite_'
) AS t ORDER BY t.name;
SELECT 'COMMIT;';
SELECT 'SELECT ''#end'';';
`;

/**
 * Fingerprint one file: `path` for the shell, `open` for sqlite3 (the path
 * or a URI). Tables of a virtual table are skipped: their rows live in its
 * shadow tables, which are counted.
 */
async function fingerprintFile(
  io: FormatProbe,
  path: string,
  open: string,
  readonly: Cmd,
): Promise<Fingerprint> {
  const r = await io.probe(
    sh`f=${path}; o=${open}
[ -f "$f" ] || { echo '#missing'; exit 0; }
echo "#bytes $(wc -c < "$f")"
[ "$(head -c 16 "$f" | tr '\\0' @)" = 'SQLite format 3@' ] || { echo '#magic no'; exit 0; }
[ -e "$f-wal" ] || echo "#pagebytes $(sqlite3 ${readonly} -batch -cmd '.timeout ${BUSY_MS}' "$o" 'SELECT page_count * page_size FROM pragma_page_count, pragma_page_size')"
sqlite3 ${readonly} -bail -batch -cmd '.timeout ${BUSY_MS}' "$o" ${DUMP_SQL} |
  sqlite3 ${readonly} -bail -batch -cmd '.timeout ${BUSY_MS}' "$o" |
  awk '{ print | "sha256sum" } /^#(rows|schema|end)/ { print } END { close("sha256sum") }'`,
    { allowFail: true },
  );
  const lines = r.stdout.split('\n');
  const meta = (tag: string): string | undefined =>
    lines.find((l) => l.startsWith(`#${tag} `))?.slice(tag.length + 2);
  const bytes = Number(meta('bytes') ?? 0);
  const faulty = (fault: string): Fingerprint => ({
    counts: {},
    content: '',
    bytes,
    fault,
    summary: `unreadable: ${fault}`,
  });
  const said = r.stderr.trim().split('\n').filter(Boolean).at(-1);
  if (lines.includes('#missing')) return faulty(`no file at ${path}`);
  if (meta('magic') === 'no')
    return faulty(
      bytes === 0
        ? 'empty (0 bytes): not an SQLite database'
        : 'not an SQLite database: no "SQLite format 3" header',
    );
  const pageBytes = meta('pagebytes');
  if (pageBytes !== undefined && pageBytes !== String(bytes))
    return faulty(
      pageBytes === ''
        ? `unreadable: ${said ?? 'sqlite3 gave no page count'}`
        : `truncated: ${bytes} bytes on disk where its pages make ${pageBytes}`,
    );
  if (meta('schema') === 'changed') return faulty('the schema changed while it was read');
  const hash = lines.find((l) => /^[0-9a-f]{64} {2}-$/.test(l));
  if (!lines.includes('#end') || !hash)
    return faulty(said ?? 'the read stopped before the last table');
  const counts: Record<string, number> = {};
  for (const l of lines) {
    if (!l.startsWith('#rows ')) continue;
    const [table, rows] = JSON.parse(l.slice(6)) as [string, number];
    counts[table] = rows;
  }
  return { counts, content: hash.slice(0, 64), bytes, summary: summarize(counts) };
}

function summarize(counts: Record<string, number>): string {
  const tables = Object.keys(counts).length;
  const rows = Object.values(counts).reduce((a, b) => a + b, 0);
  return `${tables} ${tables === 1 ? 'table' : 'tables'}, ${rows} ${rows === 1 ? 'row' : 'rows'}`;
}

/** Whether each path exists on the host, in order. */
async function exists(io: FormatProbe, paths: string[]): Promise<boolean[]> {
  const r = await io.probe(
    sh`for p in ${paths}; do if [ -e "$p" ]; then echo 1; else echo 0; fi; done`,
  );
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => l === '1');
}

/** Pid in the freeze pid file, and whether it is a live holder of this database. */
async function holder(
  io: FormatProbe,
  paths: SqlitePaths,
): Promise<{ pid?: number; live: boolean }> {
  const r = await io.probe(
    sh`db=${paths.db}; pidfile=${paths.freezePid}
${HELD_FN}
[ -f "$pidfile" ] || exit 0
pid=$(cat "$pidfile")
echo "pid $pid"
if held "$pid"; then echo live; fi`,
  );
  const pid = /^pid (\d+)$/m.exec(r.stdout)?.[1];
  return { ...(pid ? { pid: Number(pid) } : {}), live: /^live$/m.test(r.stdout) };
}

/** A failed script's own words (its last lines on stderr), as a BatonError. */
async function refusing(
  run: Promise<void>,
  code: 'DB_CORRUPT' | 'STEP_FAILED',
  what: string,
  hint: string,
): Promise<void> {
  try {
    await run;
  } catch (e) {
    if (!(e instanceof CommandError)) throw e;
    const said = e.stderr.trim().split('\n').slice(-3).join('; ');
    throw new BatonError(code, `${what} on ${e.host}: ${said || e.message}`, hint, { cause: e });
  }
}

export const sqliteFormat: DataFormat<SqliteParams> = {
  name: 'sqlite',
  params: sqliteParams,

  describe(params: SqliteParams): string {
    return params.sqliteDb;
  },

  tools(): string[] {
    return [
      'sqlite3',
      'sha256sum',
      'awk',
      'setsid',
      'mkfifo',
      'mktemp',
      'head',
      'tr',
      'grep',
      'wc',
      'cp',
      'ln',
      'mv',
      'chown',
      'chgrp',
      'chmod',
      'sync',
      'sleep',
    ];
  },

  fingerprint(io: FormatProbe, params: SqliteParams): Promise<Fingerprint> {
    return fingerprintFile(io, params.sqliteDb, params.sqliteDb, raw('-readonly'));
  },

  async freeze(io: FormatApply, params: SqliteParams): Promise<void> {
    const paths = sqlitePaths(params);
    const found = await holder(io, paths);
    if (found.live) {
      const ours =
        io.notes.froze === true &&
        (io.notes.freezePid === undefined || io.notes.freezePid === found.pid);
      if (ours) return;
      io.note({ alreadyFrozen: true });
      throw new BatonError(
        'PRECONDITION_FAILED',
        `${paths.db} on ${io.host.name} is frozen already, by sqlite3 pid ${found.pid} (${paths.freezePid}), which this run did not start`,
        `Find who froze it (ps -fp ${found.pid}); end that freeze there, or kill ${found.pid} (it holds BEGIN IMMEDIATE and writes nothing), and run again.`,
      );
    }
    io.note({ froze: true, alreadyFrozen: false });
    await refusing(
      io.$(sh`db=${paths.db}; pidfile=${paths.freezePid}
${HELD_FN}
[ -f "$db" ] || { echo "no database at $db" >&2; exit 1; }
if [ -f "$pidfile" ]; then
  if held "$(cat "$pidfile")"; then exit 0; fi
  rm -f -- "$pidfile"
fi
d=$(mktemp -d) || exit 1
trap 'rm -rf -- "$d"' EXIT
mkfifo "$d/in" || exit 1
setsid sh -c 'cd / && echo $$ > "$1.new" && mv -f -- "$1.new" "$1" && exec sqlite3 -bail -batch -cmd ".timeout ${BUSY_MS}" -cmd "BEGIN IMMEDIATE" -cmd "$5" "$2" <>"$3" >"$4" 2>&1' baton-freeze "$pidfile" "$db" "$d/in" "$d/out" "$mark" </dev/null >/dev/null 2>&1 &
i=0
until grep -qx ${HOLD_OUT} "$d/out" 2>/dev/null; do
  i=$((i + 1))
  p=$(cat "$pidfile" 2>/dev/null)
  if [ "$i" -gt 5 ] && [ -z "$(tr -d '\\0' < "/proc/$p/cmdline" 2>/dev/null)" ]; then
    rm -f -- "$pidfile"
    echo "sqlite3 did not take the write lock on $db: $(tail -n 3 "$d/out" 2>/dev/null)" >&2
    exit 1
  fi
  if [ "$i" -gt ${BUSY_MS / 100 + 50} ]; then
    [ -n "$p" ] && kill "$p"
    rm -f -- "$pidfile"
    echo "sqlite3 did not take the write lock on $db in time" >&2
    exit 1
  fi
  sleep 0.1
done`),
      'STEP_FAILED',
      `could not freeze ${paths.db}`,
      'A writer may hold the database for longer than the freeze waits; see what holds it (fuser -v on the file) and freeze again.',
    );
    const started = await holder(io, paths);
    if (started.live && started.pid !== undefined) io.note({ freezePid: started.pid });
  },

  async proveFrozen(io: FormatProbe, params: SqliteParams): Promise<Condition> {
    const db = params.sqliteDb;
    const r = await io.probe(
      sh`[ -f ${db} ] || { echo ${`no database at ${db}`} >&2; exit 2; }
sqlite3 -bail -batch -cmd '.timeout 0' ${db} 'BEGIN IMMEDIATE; ROLLBACK;'`,
      { allowFail: true },
    );
    const said = r.stderr.trim().split('\n').filter(Boolean).at(-1) ?? '';
    const refused = r.exitCode !== 0 && /database is locked/.test(r.stderr);
    return condition(`${db} refuses writes`, refused, {
      expected: 'a write (BEGIN IMMEDIATE) fails with "database is locked"',
      found: refused
        ? said
        : r.exitCode === 0
          ? 'the write lock was granted: writes are accepted'
          : `the write failed otherwise: ${said || `exit ${r.exitCode}`}`,
      remedy:
        'Freeze again: the freeze is a detached sqlite3 holding BEGIN IMMEDIATE; check that it is still running.',
    });
  },

  async thaw(io: FormatApply, params: SqliteParams): Promise<void> {
    if (io.notes.froze !== true) return;
    const paths = sqlitePaths(params);
    const want = typeof io.notes.freezePid === 'number' ? String(io.notes.freezePid) : '';
    await refusing(
      io.$(sh`db=${paths.db}; pidfile=${paths.freezePid}; want=${want}
${HELD_FN}
[ -f "$pidfile" ] || exit 0
pid=$(cat "$pidfile")
if held "$pid"; then
  if [ -n "$want" ] && [ "$pid" != "$want" ]; then
    echo "$pidfile names sqlite3 pid $pid, not $want, which this run started: left as it is" >&2
    exit 1
  fi
  kill -TERM "$pid"
  i=0
  while held "$pid"; do
    i=$((i + 1))
    [ "$i" -eq 50 ] && kill -KILL "$pid"
    [ "$i" -gt 100 ] && { echo "sqlite3 pid $pid, holding $db, did not end" >&2; exit 1; }
    sleep 0.1
  done
fi
rm -f -- "$pidfile"`),
      'STEP_FAILED',
      `could not thaw ${paths.db}`,
      `See what holds the lock (${paths.freezePid} names the holder) and end it by hand.`,
    );
    io.note({ froze: false });
  },

  snapshot(params: SqliteParams): Cmd {
    return sh`umask 077
d=$(mktemp -d) || exit 1
trap 'rm -rf -- "$d"' EXIT
trap 'exit 1' HUP INT TERM
cd "$d" && sqlite3 -readonly -bail -batch -cmd '.timeout ${BUSY_MS}' ${params.sqliteDb} '.backup snapshot.db' >&2 && cat snapshot.db`;
  },

  async restoreScratch(io: FormatApply, file: string, params: SqliteParams): Promise<void> {
    const { scratch } = sqlitePaths(params);
    await refusing(
      io.$(sh`src=${file}; s=${scratch}; o=${immutableUri(scratch)}
umask 077
fail() { rm -f -- "$s" "$s-wal" "$s-shm" "$s-journal"; echo "$1" >&2; exit 1; }
rm -f -- "$s" "$s-wal" "$s-shm" "$s-journal"
[ -f "$src" ] || fail "no snapshot at $src"
cp -- "$src" "$s" || fail "could not copy $src to $s"
bytes=$(wc -c < "$s")
[ "$bytes" -gt 0 ] || fail "empty (0 bytes): not an SQLite database"
[ "$(head -c 16 "$s" | tr '\\0' @)" = 'SQLite format 3@' ] || fail 'not an SQLite database: no "SQLite format 3" header'
pages=$(sqlite3 -batch "$o" 'SELECT page_count * page_size FROM pragma_page_count, pragma_page_size' 2>&1) || fail "unreadable: $pages"
[ "$pages" = "$bytes" ] || fail "truncated: $bytes bytes where its pages make $pages"
check=$(sqlite3 -batch "$o" 'PRAGMA integrity_check' 2>&1) || fail "integrity_check failed: $check"
[ "$check" = ok ] || fail "integrity_check: $(printf '%s\\n' "$check" | head -n 5 | tr '\\n' ' ')"`),
      'DB_CORRUPT',
      `the snapshot ${file} does not restore as an SQLite database`,
      'Take the snapshot again; a cut or empty copy is never used.',
    );
  },

  fingerprintScratch(io: FormatProbe, params: SqliteParams): Promise<Fingerprint> {
    const { scratch } = sqlitePaths(params);
    return fingerprintFile(io, scratch, immutableUri(scratch), raw(''));
  },

  async dropScratch(io: FormatApply, params: SqliteParams): Promise<void> {
    const { scratch } = sqlitePaths(params);
    const side = ['-wal', '-shm', '-journal'].map((x) => scratch + x);
    await io.$(sh`rm -f -- ${scratch} ${side}`);
  },

  async install(io: FormatApply, params: SqliteParams): Promise<void> {
    const paths = sqlitePaths(params);
    const [live, kept, scratch] = await exists(io, [paths.db, paths.before, paths.scratch]);
    if (io.notes.installed === true && !scratch) return;
    if (kept && io.notes.installed !== true)
      throw new BatonError(
        'PRECONDITION_FAILED',
        `${paths.before} on ${io.host.name} is there already, from an earlier run: install keeps the live file there and will not overwrite it`,
        `Check what ${paths.before} holds, move it away, and run again.`,
      );
    if (io.notes.installed !== true) io.note({ installed: true, keptBefore: live === true });
    await refusing(
      io.$(sh`db=${paths.db}; s=${paths.scratch}; b=${paths.before}; owner=${params.sqliteOwner}
[ -e "$s" ] || { echo "no restored copy at $s: restore the snapshot first" >&2; exit 1; }
if [ -e "$db" ] && [ ! -e "$b" ]; then
  ln -- "$db" "$b" 2>/dev/null || { cp -p -- "$db" "$b.new" && mv -f -- "$b.new" "$b"; } || exit 1
fi
for x in -wal -shm -journal; do
  [ -e "$db$x" ] || continue
  if [ -e "$b$x" ]; then echo "both $db$x and $b$x exist: left as they are" >&2; exit 1; fi
  mv -- "$db$x" "$b$x" || exit 1
done
rm -f -- "$s-wal" "$s-shm" "$s-journal"
chown -- "$owner:" "$s" || exit 1
if [ -e "$b" ]; then chgrp --reference="$b" -- "$s" && chmod --reference="$b" -- "$s" || exit 1; fi
mv -f -- "$s" "$db" || exit 1
sync -- "$db" "$(dirname -- "$db")"`),
      'STEP_FAILED',
      `could not install the restored copy as ${paths.db}`,
      `The live file as it was is kept as ${paths.before} (when there was one); put it back by hand if the database is not usable.`,
    );
  },

  async uninstall(io: FormatApply, params: SqliteParams): Promise<void> {
    if (io.notes.installed !== true) return;
    const paths = sqlitePaths(params);
    const kept = io.notes.keptBefore === true ? 'yes' : 'no';
    await refusing(
      io.$(sh`db=${paths.db}; s=${paths.scratch}; b=${paths.before}; kept=${kept}
if [ "$kept" = yes ]; then
  if [ -e "$b" ]; then
    rm -f -- "$db-wal" "$db-shm" "$db-journal"
    ln -f -- "$db" "$s" 2>/dev/null || true
    mv -f -- "$b" "$db" || exit 1
  fi
  for x in -wal -shm -journal; do
    if [ -e "$b$x" ]; then mv -f -- "$b$x" "$db$x" || exit 1; fi
  done
elif [ -e "$db" ] && [ ! -e "$s" ]; then
  rm -f -- "$db-wal" "$db-shm" "$db-journal"
  mv -- "$db" "$s" || exit 1
fi
sync -- "$(dirname -- "$db")"`),
      'STEP_FAILED',
      `could not put back what was at ${paths.db}`,
      `The live file as it was is ${paths.before}; move it to ${paths.db} by hand.`,
    );
    io.note({ installed: false });
  },

  missing(copy: Fingerprint, reference: Fingerprint, policy: CopyPolicy): string[] {
    const faults = [
      ...(copy.fault ? [`unreadable: ${copy.fault}`] : []),
      ...(reference.fault
        ? [`the reference is unreadable, nothing to compare with: ${reference.fault}`]
        : []),
    ];
    return faults.length ? faults : missingByCounts(copy, reference, policy);
  },
};
