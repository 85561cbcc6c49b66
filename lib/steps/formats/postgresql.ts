/**
 * One PostgreSQL database as a data format, in dump mode: frozen by making
 * read-only the default for its new sessions and ending the sessions that
 * were open; copied with `pg_dump -Fc`; proven by restoring the dump into a
 * scratch database next to the live one; put in place by renaming databases.
 *
 * Every command runs as the OS user `pgOsUser` (`runuser`) over the server's
 * unix socket, so peer authentication lets it in and no password exists.
 * Commands that change a database (freeze, thaw, renames, drops) connect to
 * `pgAdminDatabase`: a session inside a frozen database is itself read-only,
 * and a database cannot be renamed or dropped from inside.
 *
 * The freeze holds for clients that take the session default, which is what
 * applications do; a client that says `BEGIN READ WRITE` or sets
 * `default_transaction_read_only` itself still writes. A role whose own
 * setting turns it off is found and refused before anything changes.
 *
 * The dump holds the database's contents with their owners and grants as
 * dumped (no --no-owner, no --no-acl): the roles are cluster-wide, not in the
 * dump, and must exist on the receiving server, or the restore stops at the
 * first object it cannot give to its owner. Properties of the database itself
 * (its owner, its grants, ALTER DATABASE … SET, encoding and locale) are not
 * in a dump made without --create, and are deliberately left out: with
 * --create, the freeze itself would travel with the copy.
 */
import { z } from 'zod';
import { BatonError, InvalidInputError } from '../../core/errors.ts';
import { CommandError, type CommandResult } from '../../core/exec.ts';
import { sha256 } from '../../core/hash.ts';
import { condition, type Condition, type Exec } from '../../core/runbook.ts';
import { sh, type Cmd } from '../../core/shell.ts';
import {
  missingByCounts,
  type DataFormat,
  type Fingerprint,
  type FormatApply,
  type FormatProbe,
} from '../data.ts';

const RESERVED = ['postgres', 'template0', 'template1'];

/** Short enough that `baton_scratch_` before it and `_baton_before` after it stay within 63 bytes. */
const databaseName = z
  .string()
  .regex(
    /^[A-Za-z_][A-Za-z0-9_]{0,48}$/,
    'must be a database name of letters, digits and _ (at most 49), not starting with a digit',
  );

export const postgresParams = z.object({
  pgDatabase: databaseName
    .refine((name) => !RESERVED.includes(name), 'must not be postgres, template0 or template1')
    .describe('the database to move'),
  pgHost: z
    .string()
    .regex(/^\/[^\x00-\x1f\x7f]*$/, 'must be an absolute path without control characters')
    .refine((p) => !p.split('/').includes('..'), 'must not contain ..')
    .default('/var/run/postgresql')
    .describe("the directory of the server's unix socket"),
  pgPort: z
    .number()
    .int()
    .min(1)
    .max(65535)
    .default(5432)
    .describe('the server port (it names the socket file)'),
  pgOsUser: z
    .string()
    .regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'must be a user name')
    .default('postgres')
    .describe('the OS user psql, pg_dump and pg_restore run as (peer authentication)'),
  pgAdminDatabase: databaseName
    .default('postgres')
    .describe('the database that commands changing other databases connect to'),
});

export type PostgresParams = z.output<typeof postgresParams>;

/** `name` as an SQL identifier. */
export function quoteIdent(name: string): string {
  return '"' + name.replaceAll('"', '""') + '"';
}

/** `text` as an SQL string literal, whatever standard_conforming_strings says. */
export function quoteLiteral(text: string): string {
  const body = text.replaceAll("'", "''");
  return text.includes('\\') ? `E'${body.replaceAll('\\', '\\\\')}'` : `'${body}'`;
}

interface Names {
  live: string;
  scratch: string;
  backup: string;
  admin: string;
}

function namesOf(p: PostgresParams): Names {
  if (p.pgAdminDatabase === p.pgDatabase)
    throw new InvalidInputError(
      `pgAdminDatabase is ${p.pgDatabase}, the database to move`,
      'Name another database to connect to for renames and drops (postgres, usually).',
    );
  return {
    live: p.pgDatabase,
    scratch: `baton_scratch_${p.pgDatabase}`,
    backup: `${p.pgDatabase}_baton_before`,
    admin: p.pgAdminDatabase,
  };
}

function client(p: PostgresParams, program: 'psql' | 'pg_dump' | 'pg_restore'): Cmd {
  return sh`runuser -u ${p.pgOsUser} -- ${program} -w -h ${p.pgHost} -p ${p.pgPort}`;
}

/** One psql session on `database`, each statement sent on its own (`-c`), stopping at the first error. */
function psql(p: PostgresParams, database: string, statements: string[]): Cmd {
  return sh`${client(p, 'psql')} -X -q -At -v ON_ERROR_STOP=1 -d ${database} ${statements.flatMap((s) => ['-c', s])}`;
}

/** Ends every client session on `database` (waiting up to 5 s for each to go). */
function endSessions(database: string): string {
  return (
    'SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity ' +
    `WHERE datname = ${quoteLiteral(database)} AND backend_type = 'client backend' AND pid <> pg_backend_pid()`
  );
}

function rename(from: string, to: string): string {
  return `ALTER DATABASE ${quoteIdent(from)} RENAME TO ${quoteIdent(to)}`;
}

/** The first error line psql or pg_restore printed, or the exit status. */
function said(r: CommandResult): string {
  const lines = r.stderr.split('\n').map((l) => l.trim());
  return (
    lines.find((l) => /^(ERROR|FATAL|pg_restore: error|pg_dump: error|psql: error)/.test(l)) ??
    lines.find((l) => l !== '') ??
    `exited ${r.exitCode}`
  );
}

/** PostgreSQL's reading of a boolean setting (`on`, `true`, `yes`, `1` and their prefixes). */
function settingIsOn(value: string): boolean {
  const v = value
    .trim()
    .toLowerCase()
    .replace(/^'(.*)'$/, '$1');
  return v === 'on' || v === '1' || (v !== '' && ('true'.startsWith(v) || 'yes'.startsWith(v)));
}

interface ServerState {
  /** Which of the live, scratch and backup databases exist. */
  databases: Set<string>;
  /** The live database has default_transaction_read_only on, for every role. */
  readOnly: boolean;
  /** Roles whose own setting turns read-only off again in the live database. */
  writers: string[];
}

async function serverState(probe: Exec, p: PostgresParams): Promise<ServerState> {
  const n = namesOf(p);
  const live = quoteLiteral(n.live);
  const sql =
    'SELECT json_build_object(' +
    `'databases', (SELECT coalesce(json_agg(datname), '[]') FROM pg_database WHERE datname IN (${[n.live, n.scratch, n.backup].map(quoteLiteral).join(', ')})), ` +
    `'settings', (SELECT coalesce(json_agg(json_build_object('role', r.rolname, 'everywhere', s.setdatabase = 0, 'config', s.setconfig)), '[]') ` +
    'FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole ' +
    `WHERE s.setdatabase = 0 OR s.setdatabase = (SELECT oid FROM pg_database WHERE datname = ${live})))`;
  const out = await probe(psql(p, n.admin, [sql]));
  const state = JSON.parse(out.stdout) as {
    databases: string[];
    settings: Array<{ role: string | null; everywhere: boolean; config: string[] }>;
  };
  const readOnlyOf = (config: string[]): boolean | undefined => {
    const entry = config.find((c) => c.startsWith('default_transaction_read_only='));
    return entry === undefined ? undefined : settingIsOn(entry.slice(entry.indexOf('=') + 1));
  };
  return {
    databases: new Set(state.databases),
    readOnly: state.settings.some((s) => s.role === null && readOnlyOf(s.config) === true),
    writers: state.settings
      .filter((s) => s.role !== null && readOnlyOf(s.config) === false)
      .map((s) => `${s.role}${s.everywhere ? ' (in every database)' : ''}`),
  };
}

interface Relation {
  schema: string;
  name: string;
}

interface Table extends Relation {
  /** Name, type and NOT NULL of each column, in column order. */
  columns: Array<[string, string, boolean]>;
}

interface Listing {
  bytes: number;
  tables: Table[];
  sequences: Relation[];
}

const USER_RELATIONS =
  "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'";

const LISTING_SQL =
  'SELECT json_build_object(' +
  "'bytes', pg_database_size(current_database()), " +
  "'tables', (SELECT coalesce(json_agg(json_build_object('schema', n.nspname, 'name', c.relname, 'columns', " +
  "(SELECT coalesce(json_agg(json_build_array(a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull) ORDER BY a.attnum), '[]') " +
  'FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped))), ' +
  `'[]') ${USER_RELATIONS} AND c.relkind = 'r'), ` +
  "'sequences', (SELECT coalesce(json_agg(json_build_object('schema', n.nspname, 'name', c.relname)), '[]') " +
  `${USER_RELATIONS} AND c.relkind = 'S'))`;

/** Code-point order, the same on every server whatever its collation. */
function byName(a: Relation, b: Relation): number {
  const order = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);
  return order(a.schema, b.schema) || order(a.name, b.name);
}

const qualified = (r: Relation): string => `${quoteIdent(r.schema)}.${quoteIdent(r.name)}`;

/**
 * Settings that decide how values print: equal data prints equal text on any
 * server, whatever its time zone or its defaults.
 */
const CANONICAL_OUTPUT = [
  "SET TimeZone = 'UTC'",
  "SET DateStyle = 'ISO, YMD'",
  "SET IntervalStyle = 'postgres'",
  'SET extra_float_digits = 1',
  "SET bytea_output = 'hex'",
  "SET client_encoding = 'UTF8'",
];

/** A line no COPY text output holds (a backslash there always starts an escape): it ends a table. */
const END_OF_TABLE = "SELECT chr(92) || '.'";

/**
 * One read-only session, in one snapshot, that prints the row count of every
 * table on a line and then streams every table's rows, sorted by their text
 * in the C collation (an order every server agrees on, for every type), into
 * sha256sum on the host. Only the counts and the hash come back, and the
 * status of psql (a pipe would otherwise hide it).
 */
function hashCommand(p: PostgresParams, database: string, listing: Listing): Cmd {
  const counts = `SELECT array_to_string(ARRAY[${listing.tables.map((t) => `(SELECT count(*) FROM ${qualified(t)})`).join(', ')}]::bigint[], ' ')`;
  const session = psql(p, database, [
    ...CANONICAL_OUTPUT,
    'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
    counts,
    ...listing.tables.flatMap((t) => [
      `COPY (SELECT * FROM ${qualified(t)} AS r ORDER BY r::text COLLATE "C") TO STDOUT`,
      END_OF_TABLE,
    ]),
    ...listing.sequences.map(
      (s) => `COPY (SELECT last_value, is_called FROM ${qualified(s)}) TO STDOUT`,
    ),
    'COMMIT',
  ]);
  return sh`{ { ${session}; echo "psql-exit $?" >&3; } | { IFS= read -r counts; printf '%s\n' "$counts"; sha256sum; }; } 3>&1`;
}

function faulty(fault: string): Fingerprint {
  return { counts: {}, content: '', bytes: 0, fault, summary: fault };
}

async function fingerprintDatabase(
  io: FormatProbe,
  p: PostgresParams,
  database: string,
): Promise<Fingerprint> {
  const listed = await io.probe(psql(p, database, [LISTING_SQL]), { allowFail: true });
  if (listed.exitCode !== 0)
    return faulty(`database ${database} on ${io.host.name} does not read: ${said(listed)}`);
  const listing = JSON.parse(listed.stdout) as Listing;
  listing.tables.sort(byName);
  listing.sequences.sort(byName);

  const hashed = await io.probe(hashCommand(p, database, listing), { allowFail: true });
  // Lines: the counts, the hash and psql's status; the status may come anywhere.
  const lines = hashed.stdout.split('\n');
  const status = lines.map((l) => /^psql-exit (\d+)$/.exec(l)?.[1]).find((s) => s !== undefined);
  const hash = lines.map((l) => /^([0-9a-f]{64}) {2}-$/.exec(l)?.[1]).find((h) => h !== undefined);
  const countLine = lines.find((l) => !/^psql-exit \d+$/.test(l) && !/^[0-9a-f]{64} {2}-$/.test(l));
  const rows = countLine ? countLine.split(' ').map(Number) : [];
  if (status !== '0' || hash === undefined || rows.length !== listing.tables.length)
    return faulty(`database ${database} on ${io.host.name} does not read whole: ${said(hashed)}`);

  const counts: Record<string, number> = {};
  listing.tables.forEach((t, i) => (counts[`${t.schema}.${t.name}`] = rows[i]!));
  const description = JSON.stringify({
    tables: listing.tables.map((t) => [t.schema, t.name, t.columns]),
    sequences: listing.sequences.map((s) => [s.schema, s.name]),
  });
  const total = rows.reduce((a, b) => a + b, 0);
  const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;
  return {
    counts,
    content: sha256(`${description}\n${hash}`),
    bytes: listing.bytes,
    summary: `${plural(listing.tables.length, 'table')}, ${plural(total, 'row')}`,
  };
}

const precondition = (message: string, hint: string): BatonError =>
  new BatonError('PRECONDITION_FAILED', message, hint);

async function freeze(io: FormatApply, p: PostgresParams): Promise<void> {
  const n = namesOf(p);
  const state = await serverState(io.probe, p);
  if (!state.databases.has(n.live))
    throw precondition(
      `database ${n.live} does not exist on ${io.host.name}`,
      'Check pgDatabase, pgHost and pgPort: they name the database to move.',
    );
  const ours = io.notes.freezing === true || io.notes.froze === true;
  if (state.readOnly && !ours) {
    io.note({ alreadyFrozen: true });
    throw precondition(
      `database ${n.live} on ${io.host.name} is read-only already (ALTER DATABASE … SET default_transaction_read_only = on): this run did not set it and will not lift it`,
      `Find out who froze ${n.live} and why; once that is settled, ALTER DATABASE ${quoteIdent(n.live)} RESET default_transaction_read_only and run again.`,
    );
  }
  if (state.writers.length > 0)
    throw precondition(
      `on ${io.host.name}, roles turn default_transaction_read_only off for themselves in ${n.live}: ${state.writers.join(', ')}; their new sessions would still write`,
      'ALTER ROLE … [IN DATABASE …] RESET default_transaction_read_only for each, then run again.',
    );
  if (!state.readOnly) {
    io.note({ alreadyFrozen: false, freezing: true, thawed: false });
    await io.$(
      psql(p, n.admin, [
        `ALTER DATABASE ${quoteIdent(n.live)} SET default_transaction_read_only = on`,
      ]),
    );
  }
  // Sessions keep the default they started with: end them, they come back read-only.
  await io.$(psql(p, n.admin, [endSessions(n.live)]));
  io.note({ froze: true });
}

/** What the write probe creates, inside a transaction it rolls back, if the database lets it. */
const PROBE_TABLE = 'baton_probe_frozen';

async function proveFrozen(io: FormatProbe, p: PostgresParams): Promise<Condition> {
  const n = namesOf(p);
  const write = await io.probe(
    psql(p, n.live, [`BEGIN; CREATE TABLE ${quoteIdent(PROBE_TABLE)} (); ROLLBACK;`]),
    { allowFail: true },
  );
  const refused = write.exitCode !== 0 && /read-only transaction/.test(write.stderr);
  const state = await serverState(io.probe, p);
  const found = refused
    ? `a new session's CREATE TABLE was refused: ${said(write)}`
    : write.exitCode === 0
      ? "a new session's CREATE TABLE went through (rolled back): writes are taken"
      : `the write failed, not as read-only: ${said(write)}`;
  return condition(`database ${n.live} refuses writes`, refused && state.writers.length === 0, {
    expected: 'a write in a new session fails: read-only transaction',
    found:
      state.writers.length > 0
        ? `${found}; roles that still write in new sessions: ${state.writers.join(', ')}`
        : found,
    remedy: `Freeze again, or by hand: ALTER DATABASE ${quoteIdent(n.live)} SET default_transaction_read_only = on, then end its sessions.`,
  });
}

async function thaw(io: FormatApply, p: PostgresParams): Promise<void> {
  const n = namesOf(p);
  if (io.notes.alreadyFrozen === true) return;
  if (io.notes.froze !== true && io.notes.freezing !== true) return;
  if (io.notes.thawed === true) return;
  const state = await serverState(io.probe, p);
  if (!state.databases.has(n.live)) return;
  // Sessions opened during the freeze stay read-only until they reconnect.
  await io.$(
    psql(p, n.admin, [
      `ALTER DATABASE ${quoteIdent(n.live)} RESET default_transaction_read_only`,
      endSessions(n.live),
    ]),
  );
  io.note({ thawed: true });
}

async function restoreScratch(io: FormatApply, file: string, p: PostgresParams): Promise<void> {
  const n = namesOf(p);
  await io.$(
    psql(p, n.admin, [
      `DROP DATABASE IF EXISTS ${quoteIdent(n.scratch)} WITH (FORCE)`,
      `CREATE DATABASE ${quoteIdent(n.scratch)} TEMPLATE template0`,
    ]),
  );
  // pg_restore reads the file on stdin: the shell opens it, whoever owns it.
  try {
    await io.$(sh`${client(p, 'pg_restore')} --exit-on-error -d ${n.scratch} < ${file}`);
  } catch (e) {
    if (!(e instanceof CommandError)) throw e;
    throw new BatonError(
      'DB_CORRUPT',
      `on ${io.host.name}, pg_restore refused ${file}: ${said(e)}`,
      'The dump is truncated or not a pg_dump -Fc archive, or a role it names is missing on this server: take the snapshot again, or create the roles first.',
      { cause: e },
    );
  }
}

async function dropScratch(io: FormatApply, p: PostgresParams): Promise<void> {
  const n = namesOf(p);
  await io.$(psql(p, n.admin, [`DROP DATABASE IF EXISTS ${quoteIdent(n.scratch)} WITH (FORCE)`]));
}

async function install(io: FormatApply, p: PostgresParams): Promise<void> {
  const n = namesOf(p);
  const state = await serverState(io.probe, p);
  const has = (name: string): boolean => state.databases.has(name);
  if (!has(n.scratch)) {
    if (io.notes.installing === true && has(n.live)) return;
    throw precondition(
      `there is no restored copy ${n.scratch} on ${io.host.name} to install`,
      'Restore and verify the snapshot first.',
    );
  }
  if (has(n.live) && has(n.backup))
    throw precondition(
      `on ${io.host.name}, ${n.backup} exists already, from an earlier run, and so does ${n.live}: installing would leave ${n.live} nowhere to go`,
      `Compare ${n.backup} with what you need, then drop or rename it, and run again.`,
    );
  io.note({ installing: true });
  const statements = [endSessions(n.scratch)];
  if (has(n.live)) {
    io.note({ keptBackup: true });
    statements.push(endSessions(n.live), rename(n.live, n.backup));
  }
  statements.push(rename(n.scratch, n.live));
  await io.$(psql(p, n.admin, statements));
}

async function uninstall(io: FormatApply, p: PostgresParams): Promise<void> {
  const n = namesOf(p);
  if (io.notes.installing !== true) return;
  const state = await serverState(io.probe, p);
  const has = (name: string): boolean => state.databases.has(name);
  // With a backup, the backup gone means it is back in place already.
  if (io.notes.keptBackup === true && !has(n.backup)) return;
  const statements: string[] = [];
  // What install put in place goes back to being the scratch copy.
  if (has(n.live)) {
    if (has(n.scratch)) statements.push(`DROP DATABASE ${quoteIdent(n.scratch)} WITH (FORCE)`);
    statements.push(endSessions(n.live), rename(n.live, n.scratch));
  }
  if (io.notes.keptBackup === true) statements.push(rename(n.backup, n.live));
  if (statements.length > 0) await io.$(psql(p, n.admin, statements));
}

export const postgresFormat: DataFormat<PostgresParams> = {
  name: 'postgresql',
  describe: (p) => `database ${p.pgDatabase}`,
  params: postgresParams,
  tools: () => ['runuser', 'psql', 'pg_dump', 'pg_restore', 'sha256sum'],
  fingerprint: (io, p) => fingerprintDatabase(io, p, namesOf(p).live),
  freeze,
  proveFrozen,
  thaw,
  snapshot: (p) => sh`${client(p, 'pg_dump')} -Fc --lock-wait-timeout=60s -d ${namesOf(p).live}`,
  restoreScratch,
  fingerprintScratch: (io, p) => fingerprintDatabase(io, p, namesOf(p).scratch),
  dropScratch,
  install,
  uninstall,
  missing: missingByCounts,
};
