import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sh } from '../../lib/core/shell.ts';
import {
  postgresFormat as format,
  postgresParams,
  quoteIdent,
  quoteLiteral,
  type PostgresParams,
} from '../../lib/steps/formats/postgresql.ts';
import { findExecutable } from '../../lib/transports/which.ts';
import { localIo, probeOnly, type LocalIo } from '../support/format-io.ts';
import { assertPrerequisite, skipUnless } from '../support/require.ts';

const run = promisify(execFile);
const PG_BIN = '/usr/lib/postgresql/15/bin';

function missingPrerequisite(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (the server runs as postgres, through runuser)';
  for (const program of ['initdb', 'pg_ctl', 'postgres'])
    if (!existsSync(join(PG_BIN, program)))
      return `needs PostgreSQL 15 (${PG_BIN}/${program}, package postgresql-15)`;
  for (const program of ['runuser', 'psql', 'pg_dump', 'pg_restore', 'sha256sum'])
    if (!findExecutable(program)) return `needs ${program} on PATH`;
  const passwd = readFileSync('/etc/passwd', 'utf8');
  if (!passwd.split('\n').some((l) => l.startsWith('postgres:')))
    return 'needs the OS user postgres';
  return undefined;
}

const missing = missingPrerequisite();

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('postgresParams', () => {
  it('default to the Debian socket directory, port 5432 and the postgres OS user', () => {
    expect(postgresParams.parse({ pgDatabase: 'app' })).toEqual({
      pgDatabase: 'app',
      pgHost: '/var/run/postgresql',
      pgPort: 5432,
      pgOsUser: 'postgres',
      pgAdminDatabase: 'postgres',
    });
  });

  it('refuse a database name that is not an identifier, too long, or a system one', () => {
    for (const pgDatabase of [
      'app; DROP DATABASE app',
      'app-prod',
      '9lives',
      'a'.repeat(50),
      'postgres',
      'template1',
    ])
      expect(postgresParams.safeParse({ pgDatabase }).success, pgDatabase).toBe(false);
    expect(postgresParams.safeParse({ pgDatabase: 'app', pgHost: 'run/pg' }).success).toBe(false);
  });
});

describe.skipIf(skipUnless(missing, 'the PostgreSQL format against a real server'))(
  'the PostgreSQL format, against a real PostgreSQL 15 server',
  () => {
    let dir: string;
    let data: string;
    let socket: string;
    let port: number;
    let params: PostgresParams;
    let io: LocalIo;
    let live: Awaited<ReturnType<typeof format.fingerprint>>;
    const sessions: ChildProcessWithoutNullStreams[] = [];
    const measured: string[] = [];

    const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
      const started = performance.now();
      const result = await fn();
      measured.push(`${what} ${Math.round(performance.now() - started)} ms`);
      return result;
    };

    /** psql as `user` over the socket, from outside the format; never throws. */
    const psql = async (database: string, sql: string, user = 'postgres') => {
      try {
        const { stdout } = await run('runuser', [
          '-u',
          'postgres',
          '--',
          'psql',
          '-X',
          '-At',
          '-v',
          'ON_ERROR_STOP=1',
          '-h',
          socket,
          '-p',
          String(port),
          '-U',
          user,
          '-d',
          database,
          '-c',
          sql,
        ]);
        return { ok: true, out: stdout.trim(), err: '' };
      } catch (e) {
        const { stdout, stderr } = e as { stdout: string; stderr: string };
        return { ok: false, out: String(stdout).trim(), err: String(stderr) };
      }
    };
    const must = async (database: string, sql: string, user = 'postgres'): Promise<string> => {
      const r = await psql(database, sql, user);
      if (!r.ok) throw new Error(`psql ${sql}: ${r.err}`);
      return r.out;
    };
    const databases = async (): Promise<string[]> =>
      (await must('postgres', "SELECT datname FROM pg_database WHERE datname ~ 'app' ORDER BY 1"))
        .split('\n')
        .filter(Boolean);
    const accounts = (database: string): Promise<string> =>
      must(database, 'SELECT count(*) FROM accounts');

    /** A session of the app role that stays open; `pid` is its backend. */
    const openSession = async (): Promise<{
      pid: string;
      send(sql: string): Promise<{ code: number | null; out: string; err: string }>;
    }> => {
      const child = spawn('runuser', [
        '-u',
        'postgres',
        '--',
        'psql',
        '-X',
        '-At',
        '-h',
        socket,
        '-p',
        String(port),
        '-U',
        'app',
        '-d',
        'app',
      ]);
      sessions.push(child);
      let out = '';
      let err = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr.on('data', (b: Buffer) => (err += b.toString()));
      child.stdin.write('SELECT pg_backend_pid();\n');
      for (let i = 0; i < 100 && !/\d+\n/.test(out); i++)
        await new Promise((r) => setTimeout(r, 50));
      const pid = out.trim();
      return {
        pid,
        send: (sql) =>
          new Promise((resolve) => {
            child.once('exit', (code) => resolve({ code, out, err }));
            child.stdin.end(`${sql}\n`);
          }),
      };
    };
    const alive = async (pid: string): Promise<boolean> =>
      (await must('postgres', `SELECT count(*) FROM pg_stat_activity WHERE pid = ${pid}`)) === '1';

    beforeAll(async () => {
      assertPrerequisite(missing);
      dir = mkdtempSync(join(tmpdir(), 'baton-pg-'));
      chmodSync(dir, 0o755);
      data = join(dir, 'data');
      socket = join(dir, 'socket');
      const uid = Number((await run('id', ['-u', 'postgres'])).stdout);
      const gid = Number((await run('id', ['-g', 'postgres'])).stdout);
      for (const d of [data, socket]) {
        mkdirSync(d, { mode: 0o700 });
        chownSync(d, uid, gid);
      }
      port = await freePort();
      await run('runuser', [
        '-u',
        'postgres',
        '--',
        join(PG_BIN, 'initdb'),
        '-D',
        data,
        '-U',
        'postgres',
        '-E',
        'UTF8',
        '--locale=C.UTF-8',
        '--auth-local=peer',
        '--auth-host=reject',
        '--no-sync',
      ]);
      // Peer authentication: the OS user postgres may be the postgres role and the app role.
      await writeFile(join(data, 'pg_hba.conf'), 'local all all peer map=baton\n');
      await writeFile(join(data, 'pg_ident.conf'), 'baton postgres postgres\nbaton postgres app\n');
      await writeFile(
        join(data, 'postgresql.auto.conf'),
        `listen_addresses = ''\nunix_socket_directories = '${socket}'\nport = ${port}\nfsync = off\n`,
      );
      await run('runuser', [
        '-u',
        'postgres',
        '--',
        join(PG_BIN, 'pg_ctl'),
        '-D',
        data,
        '-l',
        join(data, 'server.log'),
        '-w',
        'start',
      ]);

      await must('postgres', 'CREATE ROLE app LOGIN');
      await must('postgres', 'CREATE DATABASE app OWNER app');
      for (const sql of [
        'CREATE TABLE accounts (id serial PRIMARY KEY, name text NOT NULL, balance int, created timestamptz, avatar bytea, note text)',
        "INSERT INTO accounts (name, balance, created, avatar, note) SELECT 'user' || g, g * 7 % 1000, timestamptz '2024-01-01 00:00+00' + g * interval '1 minute', decode(md5(g::text), 'hex'), CASE WHEN g % 10 = 0 THEN NULL ELSE E'line\\nwith\\ttab, \\\\ and '' quote ' || g END FROM generate_series(1, 3000) g",
        'CREATE TABLE channels (name text PRIMARY KEY, topic text)',
        "INSERT INTO channels VALUES ('#ops', 'incidents'), ('#dev', NULL), ('#help', 'ask'), ('#random', ''), ('#ünïcode', '☃')",
        'CREATE SCHEMA "odd schema"',
        'CREATE TABLE "odd schema"."we""ird; DROP TABLE accounts" (k int, v jsonb, p point)',
        `INSERT INTO "odd schema"."we""ird; DROP TABLE accounts" VALUES (1, '{"a": [1, 2]}', '(1,2)'), (2, NULL, '(3,4)')`,
        'CREATE TABLE empty_log (at timestamptz, what text)',
      ])
        await must('app', sql, 'app');
      params = postgresParams.parse({ pgDatabase: 'app', pgHost: socket, pgPort: port });
      io = localIo();
    });

    afterAll(async () => {
      for (const s of sessions) s.kill();
      await io?.close();
      if (data && existsSync(join(data, 'postmaster.pid')))
        await run('runuser', [
          '-u',
          'postgres',
          '--',
          join(PG_BIN, 'pg_ctl'),
          '-D',
          data,
          '-m',
          'immediate',
          '-w',
          'stop',
        ]);
      if (dir) await rm(dir, { recursive: true, force: true });
      if (measured.length) console.info(`postgresql format, measured: ${measured.join(', ')}`);
    });

    it('quotes identifiers and literals so that hostile text round-trips through the server', async () => {
      const hostile = `it's "odd"; DROP TABLE accounts; -- \\ \n ☃`;
      expect(await must('app', `SELECT ${quoteLiteral(hostile)}`)).toBe(hostile);
      expect(await must('app', `SELECT 1 AS ${quoteIdent(hostile)}`)).toBe('1');
    });

    it('fingerprints every table of the user schemas, by schema.table, with the size of the database', async () => {
      live = await timed('fingerprint', () => format.fingerprint(probeOnly(io), params));
      expect(live).toEqual({
        counts: {
          'odd schema.we"ird; DROP TABLE accounts': 2,
          'public.accounts': 3000,
          'public.channels': 5,
          'public.empty_log': 0,
        },
        content: expect.stringMatching(/^[0-9a-f]{64}$/),
        bytes: Number(await must('app', "SELECT pg_database_size('app')")),
        summary: '4 tables, 3007 rows',
      });
      expect(await format.fingerprint(probeOnly(io), params)).toEqual(live);
    });

    it('fingerprints a database that does not exist with a fault, without throwing', async () => {
      const fp = await format.fingerprint(probeOnly(io), { ...params, pgDatabase: 'nothere' });
      expect(fp).toMatchObject({ counts: {}, content: '', bytes: 0 });
      expect(fp.fault).toMatch(/database "nothere" does not exist/);
    });

    it('freeze refuses the app new writes and ends its open writing session; reads still work', async () => {
      const writer = await openSession();
      expect(await alive(writer.pid)).toBe(true);
      await timed('freeze', () => format.freeze(io, params));
      expect(io.notes).toEqual({
        alreadyFrozen: false,
        freezing: true,
        thawed: false,
        froze: true,
      });

      expect(await alive(writer.pid)).toBe(false);
      const late = await writer.send("INSERT INTO channels VALUES ('#late', 'x');");
      expect(late.code).not.toBe(0);
      expect(late.err).toMatch(/terminating connection|server closed the connection/);

      const insert = await psql('app', "INSERT INTO channels VALUES ('#new', 'x')", 'app');
      expect(insert).toMatchObject({
        ok: false,
        err: expect.stringMatching(/read-only transaction/),
      });
      expect(await must('app', 'SELECT count(*) FROM channels', 'app')).toBe('5');
      expect(await format.proveFrozen(probeOnly(io), params)).toMatchObject({
        ok: true,
        found: expect.stringMatching(/read-only transaction/),
      });
    });

    it('freeze again finds its own setting and only ends sessions', async () => {
      const before = io.changes.length;
      await format.freeze(io, params);
      const again = io.changes.slice(before);
      expect(again).toHaveLength(1);
      expect(again[0]).toMatch(/pg_terminate_backend/);
      expect((await format.proveFrozen(probeOnly(io), params)).ok).toBe(true);
    });

    it('thaw lets the app write again, and ends the sessions opened read-only', async () => {
      const reader = await openSession();
      await format.thaw(io, params);
      expect(await alive(reader.pid)).toBe(false);
      expect(await psql('app', "INSERT INTO channels VALUES ('#new', 'x')", 'app')).toMatchObject({
        ok: true,
      });
      await must('app', "DELETE FROM channels WHERE name = '#new'", 'app');
      const proof = await format.proveFrozen(probeOnly(io), params);
      expect(proof).toMatchObject({ ok: false, found: expect.stringMatching(/writes are taken/) });
      expect(
        await must('app', "SELECT count(*) FROM pg_class WHERE relname ~ '^baton_probe'"),
      ).toBe('0');
      const before = io.changes.length;
      await format.thaw(io, params);
      expect(io.changes.length).toBe(before);
    });

    it('refuses a freeze this run did not set, and never lifts it', async () => {
      await must('postgres', 'ALTER DATABASE app SET default_transaction_read_only = on');
      const other = localIo();
      try {
        await expect(format.freeze(other, params)).rejects.toMatchObject({
          code: 'PRECONDITION_FAILED',
          message: expect.stringMatching(/database app .*read-only already/),
        });
        expect(other.notes).toEqual({ alreadyFrozen: true });
        await format.thaw(other, params);
        expect(other.changes).toEqual([]);
        expect(
          await must(
            'postgres',
            "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = 'app'",
          ),
        ).toBe('{default_transaction_read_only=on}');
      } finally {
        await other.close();
        await must('postgres', 'ALTER DATABASE app RESET default_transaction_read_only');
      }
    });

    it('refuses to freeze while a role turns read-only off for itself', async () => {
      await must(
        'postgres',
        'ALTER ROLE app IN DATABASE app SET default_transaction_read_only = off',
      );
      const other = localIo();
      try {
        await expect(format.freeze(other, params)).rejects.toMatchObject({
          code: 'PRECONDITION_FAILED',
          message: expect.stringMatching(/roles turn default_transaction_read_only off.*: app;/),
        });
        expect(other.changes).toEqual([]);
      } finally {
        await other.close();
        await must(
          'postgres',
          'ALTER ROLE app IN DATABASE app RESET default_transaction_read_only',
        );
      }
    });

    const dumpFile = (): string => join(dir, 'app.dump');

    it('restores the snapshot into a scratch database that fingerprints as the live one', async () => {
      await timed('snapshot', () => io.probe(sh`${format.snapshot(params)} > ${dumpFile()}`));
      await timed('restore', () => format.restoreScratch(io, dumpFile(), params));
      const copy = await timed('fingerprint scratch', () =>
        format.fingerprintScratch(probeOnly(io), params),
      );
      expect({ ...copy, bytes: 0 }).toEqual({ ...live, bytes: 0 });
      expect(format.missing(copy, live, { maxShrinkPercent: 0 })).toEqual([]);
      // Owners as dumped.
      expect(
        await must(
          'baton_scratch_app',
          "SELECT tableowner FROM pg_tables WHERE tablename = 'accounts'",
        ),
      ).toBe('app');
    });

    it('a row changed after the snapshot changes the live fingerprint', async () => {
      await must('app', 'UPDATE accounts SET balance = balance + 1 WHERE id = 42', 'app');
      const changed = await format.fingerprint(probeOnly(io), params);
      expect(changed.counts).toEqual(live.counts);
      expect(changed.content).not.toBe(live.content);
      await must('app', 'UPDATE accounts SET balance = balance - 1 WHERE id = 42', 'app');
      expect((await format.fingerprint(probeOnly(io), params)).content).toBe(live.content);
    });

    it("refuses a truncated dump and an empty file, in pg_restore's words", async () => {
      const whole = readFileSync(dumpFile());
      const half = join(dir, 'half.dump');
      const empty = join(dir, 'empty.dump');
      await writeFile(half, whole.subarray(0, Math.floor(whole.length / 2)));
      await writeFile(empty, '');
      await expect(format.restoreScratch(io, half, params)).rejects.toMatchObject({
        code: 'DB_CORRUPT',
        message: expect.stringMatching(/pg_restore refused .*half\.dump: .*end of file/),
      });
      await expect(format.restoreScratch(io, empty, params)).rejects.toMatchObject({
        code: 'DB_CORRUPT',
        message: expect.stringMatching(/input file is too short/),
      });
    });

    it('a dump that lacks a table is named by missing()', async () => {
      await must('postgres', 'CREATE DATABASE app_partial TEMPLATE app');
      await must('app_partial', 'DROP TABLE channels');
      const partial = join(dir, 'partial.dump');
      await io.probe(sh`${format.snapshot({ ...params, pgDatabase: 'app_partial' })} > ${partial}`);
      await must('postgres', 'DROP DATABASE app_partial');
      await format.restoreScratch(io, partial, params);
      const copy = await format.fingerprintScratch(probeOnly(io), params);
      expect(format.missing(copy, live, { maxShrinkPercent: 0 })).toEqual([
        'public.channels: missing (the reference holds 5 rows)',
      ]);
    });

    it('a scratch copy with one row changed hashes differently', async () => {
      await format.restoreScratch(io, dumpFile(), params);
      await must('baton_scratch_app', "UPDATE channels SET topic = 'changed' WHERE name = '#ops'");
      const copy = await format.fingerprintScratch(probeOnly(io), params);
      expect(copy.counts).toEqual(live.counts);
      expect(format.missing(copy, live, { maxShrinkPercent: 0 })).toEqual([]);
      expect(copy.content).not.toBe(live.content);
    });

    let installer: LocalIo;

    it('install makes the copy the live database and keeps the old one as app_baton_before', async () => {
      await format.restoreScratch(io, dumpFile(), params);
      // Only the database that was there holds this row.
      await must('app', "INSERT INTO accounts (name) VALUES ('only-before')", 'app');
      installer = localIo();
      await timed('install', () => format.install(installer, params));
      expect(await databases()).toEqual(['app', 'app_baton_before']);
      expect(await accounts('app')).toBe('3000');
      expect(await accounts('app_baton_before')).toBe('3001');
      expect(installer.changes.join('\n')).toMatch(
        /RENAME TO "app_baton_before".*RENAME TO "app"/s,
      );
    });

    it('install again finds its work done and changes nothing', async () => {
      const before = installer.changes.length;
      await format.install(installer, params);
      expect(installer.changes.length).toBe(before);
      expect(await databases()).toEqual(['app', 'app_baton_before']);
      expect(await accounts('app_baton_before')).toBe('3001');
    });

    it('install refuses to replace a backup an earlier run left', async () => {
      const later = localIo();
      try {
        await format.restoreScratch(later, dumpFile(), params);
        await expect(format.install(later, params)).rejects.toMatchObject({
          code: 'PRECONDITION_FAILED',
          message: expect.stringMatching(/app_baton_before exists already/),
        });
        expect(await databases()).toEqual(['app', 'app_baton_before', 'baton_scratch_app']);
        await format.dropScratch(later, params);
      } finally {
        await later.close();
      }
    });

    it('uninstall puts the original back with its rows, and again does nothing', async () => {
      await format.uninstall(installer, params);
      expect(await databases()).toEqual(['app', 'baton_scratch_app']);
      expect(await accounts('app')).toBe('3001');
      expect(await must('app', "SELECT count(*) FROM accounts WHERE name = 'only-before'")).toBe(
        '1',
      );
      const before = installer.changes.length;
      await format.uninstall(installer, params);
      expect(installer.changes.length).toBe(before);
      await installer.close();
    });

    it('dropScratch drops the scratch database, ending its sessions, and again does nothing harmful', async () => {
      const child = spawn('runuser', [
        '-u',
        'postgres',
        '--',
        'psql',
        '-X',
        '-h',
        socket,
        '-p',
        String(port),
        '-d',
        'baton_scratch_app',
      ]);
      sessions.push(child);
      const onScratch = (): Promise<string> =>
        must(
          'postgres',
          "SELECT count(*) FROM pg_stat_activity WHERE datname = 'baton_scratch_app'",
        );
      for (let i = 0; i < 100 && (await onScratch()) === '0'; i++)
        await new Promise((r) => setTimeout(r, 50));
      expect(await onScratch()).toBe('1');
      await format.dropScratch(io, params);
      await format.dropScratch(io, params);
      expect(await databases()).toEqual(['app']);
    });
  },
);
