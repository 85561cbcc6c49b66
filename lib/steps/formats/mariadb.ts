/**
 * MariaDB in dump mode: one database is frozen with the global read_only,
 * dumped with mariadb-dump, restored into a scratch database and moved into
 * place table by table (MariaDB cannot rename a database). Every command
 * connects as root over the server's unix socket (unix_socket
 * authentication): no password exists anywhere.
 *
 * The frozen state is proven by a real write as a client without READ ONLY
 * ADMIN. Root cannot log in as another account without its password, so the
 * write runs inside a SQL SECURITY DEFINER procedure whose definer is the
 * probe account: the server checks read_only against the definer. The
 * procedure and its table live in their own database, `baton_probe`, made at
 * freeze and dropped at thaw. The probe account is `myProbeUser` (the app's
 * own account, granted INSERT on that table and EXECUTE on the procedure
 * until thaw revokes them) or else `baton_probe`@`localhost`, created locked
 * (it cannot log in) with only those two privileges and dropped at thaw.
 *
 * Install moves base tables only. RENAME TABLE moves neither views nor
 * tables with triggers to another database, and routines and events belong
 * to a database by name, so install refuses, before changing anything, a
 * database or scratch that holds any of them.
 */
import { z } from 'zod';
import { BatonError } from '../../core/errors.ts';
import { sha256 } from '../../core/hash.ts';
import { condition, type Condition, type Exec } from '../../core/runbook.ts';
import { sh, type Cmd } from '../../core/shell.ts';
import { missingByCounts, type DataFormat, type Fingerprint, type FormatProbe } from '../data.ts';

const ACCOUNT = /^([A-Za-z0-9_.-]{1,80})@([A-Za-z0-9_.%:-]{1,255})$/;

export const mariadbParams = z.object({
  myDatabase: z
    .string()
    .regex(
      /^[A-Za-z0-9_]{1,50}$/,
      'must be a database name of letters, digits and _ (at most 50, so baton_scratch_<name> fits)',
    )
    .describe('the database to hand over'),
  mySocket: z
    .string()
    .regex(/^\/[^\x00-\x1f\x7f]*$/, 'must be an absolute path without control characters')
    .default('/run/mysqld/mysqld.sock')
    .describe("the server's unix socket; baton connects through it as root (unix_socket)"),
  myProbeUser: z
    .string()
    .regex(ACCOUNT, "must be an account as user@host, e.g. app@'%' written app@%")
    .optional()
    .describe(
      'the account the app writes as (user@host): the freeze is proven by a write as it (default: a locked baton_probe@localhost)',
    ),
});

export type MariadbParams = z.output<typeof mariadbParams>;

/** A SQL identifier in backticks. */
export function quoteIdent(name: string): string {
  return '`' + name.replaceAll('`', '``') + '`';
}

/** A SQL string literal (the server's default sql_mode: backslash escapes). */
export function quoteLiteral(text: string): string {
  return "'" + text.replaceAll('\\', '\\\\').replaceAll("'", "''") + "'";
}

/** SQL that quotes the identifier held in `column`, for statements built on the server. */
function identOf(column: string): string {
  return `CONCAT('\`', REPLACE(${column}, '\`', '\`\`'), '\`')`;
}

const PROBE_DB = 'baton_probe';
const PROBE_TABLE = `${quoteIdent(PROBE_DB)}.${quoteIdent('writes')}`;
const PROBE_CALL = `${quoteIdent(PROBE_DB)}.${quoteIdent('try_write')}`;
const DEFAULT_PROBE = { user: 'baton_probe', host: 'localhost' };

export function scratchName(params: MariadbParams): string {
  return `baton_scratch_${params.myDatabase}`;
}

export function backupName(params: MariadbParams): string {
  return `${params.myDatabase}_baton_before`;
}

function probeAccount(params: MariadbParams): { user: string; host: string; sql: string } {
  const m = params.myProbeUser ? ACCOUNT.exec(params.myProbeUser) : null;
  const account = m ? { user: m[1]!, host: m[2]! } : DEFAULT_PROBE;
  return { ...account, sql: `${quoteLiteral(account.user)}@${quoteLiteral(account.host)}` };
}

/** The mariadb client as root over the socket, running `sql` (statements ended by `;`). */
function mariadb(params: MariadbParams, sql: string): Cmd {
  return sh`mariadb --socket=${params.mySocket} --user=root --default-character-set=utf8mb4 --batch --skip-column-names -e ${sql}`;
}

/** One compound statement (BEGIN NOT ATOMIC … END), whose `;` the client must not split at. */
function mariadbBlock(params: MariadbParams, block: string): Cmd {
  return sh`mariadb --socket=${params.mySocket} --user=root --default-character-set=utf8mb4 --batch --skip-column-names --delimiter=// -e ${block}`;
}

/** Rows of a query's batch output, fields as the client escapes them. */
async function query(probe: Exec, params: MariadbParams, sql: string): Promise<string[][]> {
  const out = await probe(mariadb(params, sql));
  return out.stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.split('\t'));
}

function unescapeBatch(field: string): string {
  return field.replace(/\\(.)/g, (_, c: string) =>
    c === 'n' ? '\n' : c === 't' ? '\t' : c === '0' ? '\0' : c,
  );
}

async function schemaExists(probe: Exec, params: MariadbParams, schema: string): Promise<boolean> {
  const rows = await query(
    probe,
    params,
    `SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ${quoteLiteral(schema)}`,
  );
  return rows.length > 0;
}

async function tableCount(probe: Exec, params: MariadbParams, schema: string): Promise<number> {
  const rows = await query(
    probe,
    params,
    `SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${quoteLiteral(schema)}`,
  );
  return Number(rows[0]?.[0] ?? 0);
}

async function fingerprintSchema(
  io: FormatProbe,
  params: MariadbParams,
  schema: string,
): Promise<Fingerprint> {
  const where = `on ${io.host.name}`;
  if (!(await schemaExists(io.probe, params, schema)))
    return {
      counts: {},
      content: sha256(''),
      bytes: 0,
      fault: `database ${schema} does not exist ${where}`,
      summary: `no database ${schema}`,
    };
  const lit = quoteLiteral(schema);
  const tables = (
    await query(
      io.probe,
      params,
      `SELECT TABLE_NAME, COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${lit} AND TABLE_TYPE = 'BASE TABLE'`,
    )
  )
    .map(([name, bytes]) => ({ name: unescapeBatch(name!), bytes: Number(bytes) }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const columns = new Map<string, string[]>();
  for (const [table, ...definition] of await query(
    io.probe,
    params,
    `SELECT TABLE_NAME, ORDINAL_POSITION, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, CHARACTER_SET_NAME, COLLATION_NAME, GENERATION_EXPRESSION FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ${lit} ORDER BY TABLE_NAME, ORDINAL_POSITION`,
  )) {
    const name = unescapeBatch(table!);
    columns.set(name, [...(columns.get(name) ?? []), definition.join('\t')]);
  }
  const counts: Record<string, number> = {};
  const checksums = new Map<string, string>();
  if (tables.length > 0) {
    const qualified = tables.map((t) => `${quoteIdent(schema)}.${quoteIdent(t.name)}`);
    const rows = await query(
      io.probe,
      params,
      qualified.map((q, i) => `SELECT ${i}, COUNT(*) FROM ${q}`).join(' UNION ALL '),
    );
    for (const [i, n] of rows) counts[tables[Number(i)]!.name] = Number(n);
    // Computed by the server where the rows are: no row leaves the host.
    const sums = await query(io.probe, params, `CHECKSUM TABLE ${qualified.join(', ')} EXTENDED`);
    for (const [table, sum] of sums) checksums.set(unescapeBatch(table!), sum ?? 'NULL');
  }
  const parts: string[] = [];
  let fault: string | undefined;
  for (const t of tables) {
    const sum = checksums.get(`${schema}.${t.name}`) ?? 'NULL';
    if (sum === 'NULL')
      fault ??= `CHECKSUM TABLE gave no checksum for ${schema}.${t.name} ${where}`;
    parts.push(`table ${t.name}\nchecksum ${sum}\n${(columns.get(t.name) ?? []).join('\n')}\n`);
  }
  const rows = Object.values(counts).reduce((a, b) => a + b, 0);
  return {
    counts,
    content: sha256(parts.join('')),
    bytes: tables.reduce((a, t) => a + t.bytes, 0),
    ...(fault ? { fault } : {}),
    summary: `${tables.length} tables, ${rows} rows`,
  };
}

function alreadyFrozen(io: FormatProbe): BatonError {
  return new BatonError(
    'PRECONDITION_FAILED',
    `MariaDB on ${io.host.name} already had read_only = ON before this run froze it`,
    'Someone else set it: another run, a person, or this is a replica. Find out who before anything else; baton does not lift a read_only it did not set.',
  );
}

/**
 * Ends the sessions of accounts without READ ONLY ADMIN (granted directly;
 * roles are not followed) whose current database is the app's. read_only
 * refuses their next write, and the COMMIT of a transaction they opened
 * before, but leaves them connected: an app's pool would keep its connections
 * to the old primary and answer errors instead of reconnecting to wherever the
 * database now lives, an open transaction keeps its locks until then, and a
 * session's temporary tables stay writable. Sessions of accounts with READ
 * ONLY ADMIN (root, the operator's own, replication) are left: read_only does
 * not bind them, ending them would not stop a reconnect, and one of them may
 * be doing this handover.
 */
function endSessionsSql(params: MariadbParams): string {
  return `BEGIN NOT ATOMIC
  DECLARE done BOOLEAN DEFAULT FALSE;
  DECLARE ended INT DEFAULT 0;
  DECLARE victim BIGINT;
  DECLARE sessions CURSOR FOR
    SELECT p.ID FROM information_schema.PROCESSLIST p
    WHERE p.DB = ${quoteLiteral(params.myDatabase)} AND p.ID <> CONNECTION_ID()
      AND p.USER NOT IN ('system user', 'event_scheduler')
      AND NOT EXISTS (SELECT 1 FROM information_schema.USER_PRIVILEGES g
        WHERE g.PRIVILEGE_TYPE = 'READ_ONLY ADMIN'
          AND SUBSTRING_INDEX(g.GRANTEE, '''@''', 1) = CONCAT('''', p.USER));
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = TRUE;
  DECLARE CONTINUE HANDLER FOR 1094 BEGIN END;
  OPEN sessions;
  each_session: LOOP
    FETCH sessions INTO victim;
    IF done THEN LEAVE each_session; END IF;
    KILL CONNECTION victim;
    SET ended = ended + 1;
  END LOOP;
  CLOSE sessions;
  SELECT CONCAT(ended, ' connections ended');
END`;
}

function probeSetupSql(params: MariadbParams): string {
  const account = probeAccount(params).sql;
  return [
    `CREATE DATABASE IF NOT EXISTS ${quoteIdent(PROBE_DB)}`,
    `CREATE TABLE IF NOT EXISTS ${PROBE_TABLE} (at DATETIME(6) NOT NULL) ENGINE=InnoDB`,
    ...(params.myProbeUser ? [] : [`CREATE USER IF NOT EXISTS ${account} ACCOUNT LOCK`]),
    `GRANT INSERT ON ${PROBE_TABLE} TO ${account}`,
    `CREATE OR REPLACE DEFINER = ${account} PROCEDURE ${PROBE_CALL}() SQL SECURITY DEFINER INSERT INTO ${PROBE_TABLE} VALUES (NOW(6))`,
    `GRANT EXECUTE ON PROCEDURE ${PROBE_CALL} TO ${account}`,
  ].join(';\n');
}

function probeCleanupSql(params: MariadbParams): string {
  const account = probeAccount(params).sql;
  // 1141, 1147, 1403: no such grant (a retry, or the database is already gone).
  const ignoringAbsent = (statement: string): string =>
    `BEGIN DECLARE CONTINUE HANDLER FOR 1141, 1147, 1403 BEGIN END; ${statement}; END;`;
  const forget = params.myProbeUser
    ? [
        ignoringAbsent(`REVOKE EXECUTE ON PROCEDURE ${PROBE_CALL} FROM ${account}`),
        ignoringAbsent(`REVOKE INSERT ON ${PROBE_TABLE} FROM ${account}`),
      ]
    : [`DROP USER IF EXISTS ${account};`];
  return `BEGIN NOT ATOMIC
  ${forget.join('\n  ')}
  DROP DATABASE IF EXISTS ${quoteIdent(PROBE_DB)};
END`;
}

/** RENAME TABLE of every table of `from` into `to`, built and run on the server. */
function moveTablesSql(from: string, to: string): string {
  return `SET stmt = NULL;
    SELECT CONCAT('RENAME TABLE ', GROUP_CONCAT(CONCAT(${quoteLiteral(quoteIdent(from))}, '.', ${identOf('TABLE_NAME')}, ' TO ', ${quoteLiteral(quoteIdent(to))}, '.', ${identOf('TABLE_NAME')}) ORDER BY TABLE_NAME SEPARATOR ', '))
      INTO stmt FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${quoteLiteral(from)};
    IF stmt IS NOT NULL THEN EXECUTE IMMEDIATE stmt; END IF;`;
}

function countTablesSql(schema: string, into: string): string {
  return `SELECT COUNT(*) INTO ${into} FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${quoteLiteral(schema)};`;
}

/** Views, triggers, sequences, routines and events of the schemas: what RENAME TABLE cannot move. */
function unmovableSql(schemas: string[]): string {
  const list = schemas.map(quoteLiteral).join(', ');
  return `SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME, ' (', LOWER(TABLE_TYPE), ')') FROM information_schema.TABLES WHERE TABLE_SCHEMA IN (${list}) AND TABLE_TYPE <> 'BASE TABLE'
    UNION ALL SELECT CONCAT(TRIGGER_SCHEMA, '.', TRIGGER_NAME, ' (trigger)') FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA IN (${list})
    UNION ALL SELECT CONCAT(ROUTINE_SCHEMA, '.', ROUTINE_NAME, ' (', LOWER(ROUTINE_TYPE), ')') FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA IN (${list})
    UNION ALL SELECT CONCAT(EVENT_SCHEMA, '.', EVENT_NAME, ' (event)') FROM information_schema.EVENTS WHERE EVENT_SCHEMA IN (${list})`;
}

function signal(message: string): string {
  return `SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = ${quoteLiteral(message)};`;
}

function schemaExistsSql(schema: string): string {
  return `EXISTS (SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ${quoteLiteral(schema)})`;
}

/**
 * The whole install as one compound statement, so that the plan shows what runs
 * and a retry finds its way from any point: the live tables go to the backup,
 * the scratch tables into the live database, the empty scratch is dropped.
 */
function installSql(params: MariadbParams): string {
  const db = params.myDatabase;
  const scratch = scratchName(params);
  const before = backupName(params);
  return `BEGIN NOT ATOMIC
  DECLARE live, kept, fresh, unmovable INT;
  DECLARE stmt LONGTEXT;
  SET SESSION group_concat_max_len = 67108864;
  SELECT COUNT(*) INTO unmovable FROM (${unmovableSql([db, scratch])}) o;
  IF unmovable > 0 THEN ${signal(`${db} or ${scratch} holds views, triggers, routines or events, which RENAME TABLE cannot move`)} END IF;
  ${countTablesSql(db, 'live')}
  ${countTablesSql(before, 'kept')}
  ${countTablesSql(scratch, 'fresh')}
  IF ${schemaExistsSql(scratch)} AND (fresh > 0 OR NOT ${schemaExistsSql(before)}) THEN
    IF live > 0 AND kept > 0 THEN ${signal(`${before} already holds tables from an earlier run and ${db} holds tables: baton does not replace a backup`)} END IF;
    CREATE DATABASE IF NOT EXISTS ${quoteIdent(before)};
    CREATE DATABASE IF NOT EXISTS ${quoteIdent(db)};
    ${moveTablesSql(db, before)}
    ${moveTablesSql(scratch, db)}
  ELSEIF NOT ${schemaExistsSql(before)} THEN
    ${signal(`nothing to install: there is no ${scratch} (restore the snapshot first)`)}
  END IF;
  DROP DATABASE IF EXISTS ${quoteIdent(scratch)};
END`;
}

/** Install in reverse: the installed tables back to the scratch, the backup into the live database. */
function uninstallSql(params: MariadbParams): string {
  const db = params.myDatabase;
  const scratch = scratchName(params);
  const before = backupName(params);
  return `BEGIN NOT ATOMIC
  DECLARE live, fresh INT;
  DECLARE stmt LONGTEXT;
  SET SESSION group_concat_max_len = 67108864;
  IF ${schemaExistsSql(before)} THEN
    ${countTablesSql(db, 'live')}
    ${countTablesSql(scratch, 'fresh')}
    IF live > 0 AND fresh > 0 THEN ${signal(`both ${db} and ${scratch} hold tables: put ${before} back by hand`)} END IF;
    CREATE DATABASE IF NOT EXISTS ${quoteIdent(scratch)};
    ${moveTablesSql(db, scratch)}
    ${moveTablesSql(before, db)}
    DROP DATABASE ${quoteIdent(before)};
  END IF;
END`;
}

export const mariadbFormat: DataFormat<MariadbParams> = {
  name: 'mariadb',
  params: mariadbParams,

  describe(params) {
    return `database ${params.myDatabase}`;
  },

  tools() {
    return ['mariadb', 'mariadb-dump', 'tail', 'grep'];
  },

  fingerprint(io, params) {
    return fingerprintSchema(io, params, params.myDatabase);
  },

  async freeze(io, params) {
    if (io.notes.alreadyFrozen) throw alreadyFrozen(io);
    // A retry after a dropped connection finds its own read_only: that one is this run's.
    if (!io.notes.freezing) {
      const [row] = await query(io.probe, params, 'SELECT @@GLOBAL.read_only');
      if (row?.[0] === '1') {
        io.note({ alreadyFrozen: true });
        throw alreadyFrozen(io);
      }
      const probe = probeAccount(params);
      if (params.myProbeUser) {
        const found = await query(
          io.probe,
          params,
          `SELECT 1 FROM mysql.user WHERE User = ${quoteLiteral(probe.user)} AND Host = ${quoteLiteral(probe.host)}`,
        );
        if (found.length === 0)
          throw new BatonError(
            'PRECONDITION_FAILED',
            `myProbeUser ${params.myProbeUser} is not an account of MariaDB on ${io.host.name}`,
            'Name the account the app writes as, exactly as mysql.user holds it (user@host), or leave myProbeUser out.',
          );
      }
      io.note({ freezing: true });
    }
    await io.$(mariadb(params, probeSetupSql(params)));
    // SET GLOBAL read_only waits for running writes; past 30 s it fails instead of hanging.
    await io.$(mariadb(params, 'SET SESSION lock_wait_timeout = 30; SET GLOBAL read_only = ON'));
    io.note({ froze: true });
    await io.$(mariadbBlock(params, endSessionsSql(params)), {
      logOutput: `${params.myDatabase} on ${io.host.name}`,
    });
  },

  async proveFrozen(io, params): Promise<Condition> {
    const account = params.myProbeUser ?? `${DEFAULT_PROBE.user}@${DEFAULT_PROBE.host}`;
    const r = await io.probe(mariadb(params, `CALL ${PROBE_CALL}()`), { allowFail: true });
    const said = r.stderr.trim().split('\n').at(-1) ?? '';
    const refused = r.exitCode !== 0 && /ERROR 1290\b.*--read-only option/.test(said);
    return condition(`writes refused by MariaDB on ${io.host.name}`, refused, {
      expected: `an INSERT as ${account} refused with ER_OPTION_PREVENTS_STATEMENT (--read-only option)`,
      found: refused ? said : r.exitCode === 0 ? `the INSERT as ${account} was accepted` : said,
      remedy:
        'Check SELECT @@GLOBAL.read_only and that the account lacks READ ONLY ADMIN; run the freeze again before copying anything.',
    });
  },

  async thaw(io, params) {
    // Only a read_only this run set (or sent, and lost the answer to) is lifted.
    if (io.notes.alreadyFrozen || !(io.notes.froze || io.notes.freezing)) return;
    await io.$(mariadb(params, 'SET GLOBAL read_only = OFF'));
    await io.$(mariadbBlock(params, probeCleanupSql(params)));
  },

  snapshot(params) {
    return sh`mariadb-dump --socket=${params.mySocket} --user=root --default-character-set=utf8mb4 --single-transaction --routines --triggers --events --hex-blob --no-create-db ${params.myDatabase}`;
  },

  async restoreScratch(io, file, params) {
    const scratch = quoteIdent(scratchName(params));
    await io.$(mariadb(params, `DROP DATABASE IF EXISTS ${scratch}; CREATE DATABASE ${scratch}`));
    // The file is checked where the load reads it, in the same command: it is only there at run time.
    // A dump made with --databases would switch to (and overwrite) the database it came from.
    const truncated = `baton: ${file} does not end with mariadb-dump's "-- Dump completed" line: the dump is empty or truncated`;
    const named = `baton: ${file} names a database (USE or CREATE DATABASE): it cannot be restored into ${scratchName(params)}`;
    await io.$(
      sh`case "$(tail -n 1 ${file})" in ${'-- Dump completed'}*) ;; *) echo ${truncated} >&2; exit 1;; esac && if grep -Eq ${'^(USE|CREATE DATABASE) '} ${file}; then echo ${named} >&2; exit 1; fi && mariadb --socket=${params.mySocket} --user=root --database=${scratchName(params)} < ${file}`,
    );
  },

  fingerprintScratch(io, params) {
    return fingerprintSchema(io, params, scratchName(params));
  },

  async dropScratch(io, params) {
    await io.$(mariadb(params, `DROP DATABASE IF EXISTS ${quoteIdent(scratchName(params))}`));
  },

  async install(io, params) {
    const db = params.myDatabase;
    const before = backupName(params);
    if (!io.notes.installing) {
      const kept = await tableCount(io.probe, params, before);
      if (kept > 0)
        throw new BatonError(
          'PRECONDITION_FAILED',
          `${before} on ${io.host.name} already holds ${kept} tables from an earlier run`,
          `baton keeps the first backup: look at ${before}, then drop it by hand (or move its tables back into ${db}) before installing again.`,
        );
      const unmovable = await query(io.probe, params, unmovableSql([db, scratchName(params)]));
      if (unmovable.length > 0)
        throw new BatonError(
          'PRECONDITION_FAILED',
          `install on ${io.host.name} cannot move ${unmovable.map((r) => unescapeBatch(r[0]!)).join(', ')}`,
          'RENAME TABLE moves base tables only: load the dump into the database by hand instead.',
        );
      io.note({ installing: true });
    }
    await io.$(mariadbBlock(params, installSql(params)));
    io.note({ installed: true });
  },

  async uninstall(io, params) {
    // Only what this run's install moved is moved back: an older backup stays where it is.
    if (!(io.notes.installing || io.notes.installed)) return;
    await io.$(mariadbBlock(params, uninstallSql(params)));
  },

  missing(copy, reference, policy) {
    return missingByCounts(copy, reference, policy);
  },
};
