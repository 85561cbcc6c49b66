import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BatonError } from '../../lib/core/errors.ts';
import {
  sqliteFormat,
  sqliteParams,
  sqlitePaths,
  type SqliteParams,
} from '../../lib/steps/formats/sqlite.ts';
import { localIo, probeOnly, type LocalIo } from '../support/format-io.ts';
import { assertPrerequisite, skipUnless } from '../support/require.ts';

const SQLITE3 = '/usr/bin/sqlite3';
const POLICY = { maxShrinkPercent: 5 };

function unavailable(): string | undefined {
  if (!existsSync(SQLITE3)) return `needs ${SQLITE3} (Debian package sqlite3)`;
  return undefined;
}

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[]): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(file, args, { encoding: 'utf8' }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A client of the database, as an application would be: no busy timeout. */
const client = (db: string, sql: string): Promise<Ran> =>
  run(SQLITE3, ['-bail', '-batch', '-cmd', '.timeout 0', db, sql]);

async function sqlOk(db: string, sql: string): Promise<string> {
  const r = await client(db, sql);
  if (r.code !== 0) throw new Error(`sqlite3 ${db}: ${r.stderr}`);
  return r.stdout.trim();
}

async function sha256(file: string): Promise<string> {
  const r = await run('sha256sum', ['--', file]);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout.slice(0, 64);
}

/** Runs the format's snapshot command in a shell, its stdout into `file`. */
async function takeSnapshot(params: SqliteParams, file: string): Promise<void> {
  const out = await open(file, 'w');
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn('sh', ['-c', sqliteFormat.snapshot(params).text], {
        stdio: ['ignore', out.fd, 'pipe'],
      });
      let stderr = '';
      child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
      child.on('error', reject);
      child.on('close', (code) =>
        code === 0 ? resolve() : reject(new Error(`snapshot exited ${code}: ${stderr}`)),
      );
    });
  } finally {
    await out.close();
  }
}

const SEED = `
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, avatar BLOB);
CREATE TABLE channels (name TEXT PRIMARY KEY, topic TEXT) WITHOUT ROWID;
CREATE TABLE log (at INTEGER, line TEXT);
CREATE INDEX log_at ON log (at);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
  INSERT INTO users (name, avatar) SELECT 'user' || i, randomblob(16) FROM n;
INSERT INTO users (name) VALUES ('o''brien'), ('two
lines\\n');
INSERT INTO channels VALUES ('#ops', 'handover tonight'), ('#baton', NULL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
  INSERT INTO log SELECT 1700000000 + i, 'line ' || i FROM n;
`;
const SEEDED = { users: 202, channels: 2, log: 1000 };

const suite = 'the SQLite data format against the real sqlite3';
const missing = unavailable();

describe.skipIf(skipUnless(missing, suite))(suite, () => {
  let base: string;
  let dir: string;
  let params: SqliteParams;
  let io: LocalIo;
  const ios: LocalIo[] = [];
  const dbs: SqliteParams[] = [];

  const newIo = (): LocalIo => {
    const made = localIo();
    ios.push(made);
    return made;
  };

  beforeAll(() => {
    assertPrerequisite(missing);
  });

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'baton-sqlite-'));
    dir = join(base, "data dir's");
    await mkdir(dir);
    params = sqliteParams.parse({
      sqliteDb: join(dir, 'app "live".db'),
      sqliteOwner: userInfo().username,
    });
    dbs.push(params);
    await sqlOk(params.sqliteDb, SEED);
    io = newIo();
  });

  afterEach(async () => {
    for (const p of dbs.splice(0)) {
      for (const each of ios) await sqliteFormat.thaw(each, p).catch(() => undefined);
      const pidFile = sqlitePaths(p).freezePid;
      const pid = existsSync(pidFile) ? Number(await readFile(pidFile, 'utf8')) : 0;
      if (pid > 0 && alive(pid)) process.kill(pid, 'SIGKILL');
    }
    for (const each of ios.splice(0)) await each.close();
    await rm(base, { recursive: true, force: true });
  });

  const holderPid = async (): Promise<number> =>
    Number((await readFile(sqlitePaths(params).freezePid, 'utf8')).trim());
  /** Whether the process runs (a zombie, ended and not yet reaped, does not). */
  const alive = (pid: number): boolean => {
    try {
      return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
    } catch {
      return false;
    }
  };

  describe('parameters', () => {
    it('take an absolute file path and a user name, and nothing a shell or a line could break', () => {
      const ok = sqliteParams.safeParse({ sqliteDb: '/srv/app/it\'s a "db"', sqliteOwner: 'app' });
      expect(ok.success).toBe(true);
      for (const sqliteDb of [
        'app.db',
        '/srv/app/\nx.db',
        '/srv/a\tb.db',
        '/srv/app/',
        '/srv/../x.db',
        '/srv//x.db',
      ])
        expect(sqliteParams.safeParse({ sqliteDb, sqliteOwner: 'app' }).success, sqliteDb).toBe(
          false,
        );
      for (const sqliteOwner of ['', 'app:app', '-r', 'a b', 'x\n'])
        expect(
          sqliteParams.safeParse({ sqliteDb: '/srv/x.db', sqliteOwner }).success,
          sqliteOwner,
        ).toBe(false);
      expect(sqliteParams.safeParse({ sqliteDb: '/srv/x.db', sqliteOwner: '1000' }).success).toBe(
        true,
      );
    });
  });

  describe('freeze', () => {
    it('makes a writer fail with "database is locked" while a reader reads; thaw lets it write', async () => {
      const untouched = await sha256(params.sqliteDb);
      await sqliteFormat.freeze(io, params);

      const pid = await holderPid();
      expect(alive(pid)).toBe(true);
      const refused = await client(params.sqliteDb, "INSERT INTO log VALUES (1, 'during freeze')");
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(/database is locked/);
      expect(await sqlOk(params.sqliteDb, 'SELECT count(*) FROM log')).toBe('1000');
      expect(await sqliteFormat.proveFrozen(probeOnly(io), params)).toMatchObject({ ok: true });
      expect(io.notes).toMatchObject({ froze: true, alreadyFrozen: false, freezePid: pid });

      await sqliteFormat.thaw(io, params);
      expect(alive(pid)).toBe(false);
      expect(existsSync(sqlitePaths(params).freezePid)).toBe(false);
      // The holder ends without writing: the file is as it was, byte for byte.
      expect(await sha256(params.sqliteDb)).toBe(untouched);
      await sqlOk(params.sqliteDb, "INSERT INTO log VALUES (2, 'after thaw')");
      expect(await sqlOk(params.sqliteDb, 'SELECT count(*) FROM log')).toBe('1001');
      expect(await sqliteFormat.proveFrozen(probeOnly(io), params)).toMatchObject({
        ok: false,
        found: 'the write lock was granted: writes are accepted',
      });
    });

    it('holds from a process of its own that outlives the command that started it', async () => {
      await sqliteFormat.freeze(io, params);
      const pid = await holderPid();
      const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
      // Fields after the name: state, ppid, pgrp, session. A session of its own.
      expect(Number(fields[3])).toBe(pid);
      expect(Number(fields[3])).not.toBe(
        Number((await readFile('/proc/self/stat', 'utf8')).split(') ')[1]!.split(' ')[3]),
      );
    });

    it('is idempotent: a second freeze finds its own holder, and a second thaw does nothing', async () => {
      await sqliteFormat.freeze(io, params);
      const pid = await holderPid();
      const changes = io.changes.length;
      await sqliteFormat.freeze(io, params);
      expect(io.changes.length).toBe(changes);
      expect(await holderPid()).toBe(pid);
      await sqliteFormat.thaw(io, params);
      const after = io.changes.length;
      await sqliteFormat.thaw(io, params);
      expect(io.changes.length).toBe(after);
      await sqlOk(params.sqliteDb, "INSERT INTO log VALUES (3, 'writable')");
    });

    it('refuses a freeze it did not set, notes it, and does not lift it', async () => {
      const other = newIo();
      await sqliteFormat.freeze(other, params);
      const pid = await holderPid();

      const refusal = await sqliteFormat.freeze(io, params).catch((e: unknown) => e);
      expect(refusal).toBeInstanceOf(BatonError);
      expect((refusal as BatonError).code).toBe('PRECONDITION_FAILED');
      expect((refusal as BatonError).message).toContain(`pid ${pid}`);
      expect(io.notes.alreadyFrozen).toBe(true);
      expect(io.notes.froze).toBeUndefined();

      await sqliteFormat.thaw(io, params);
      expect(alive(pid)).toBe(true);
      const refused = await client(params.sqliteDb, "INSERT INTO log VALUES (4, 'still frozen')");
      expect(refused.stderr).toMatch(/database is locked/);

      await sqliteFormat.thaw(other, params);
      await sqlOk(params.sqliteDb, "INSERT INTO log VALUES (5, 'thawed by its owner')");
    });

    it('takes a stale pid file (its process gone) as no freeze', async () => {
      await writeFile(sqlitePaths(params).freezePid, '999999\n');
      await sqliteFormat.freeze(io, params);
      expect(await holderPid()).not.toBe(999999);
      expect((await client(params.sqliteDb, 'INSERT INTO log VALUES (6, 0)')).stderr).toMatch(
        /database is locked/,
      );
    });

    it('fails, and leaves no holder, when a writer keeps the lock past its wait', async () => {
      const other = newIo();
      await sqliteFormat.freeze(other, params);
      const pidFile = sqlitePaths(params).freezePid;
      const writer = await holderPid();
      await rm(pidFile); // now a writer baton knows nothing about
      const refusal = await sqliteFormat.freeze(io, params).catch((e: unknown) => e);
      expect((refusal as BatonError).code).toBe('STEP_FAILED');
      expect((refusal as BatonError).message).toMatch(/database is locked/);
      expect(existsSync(pidFile)).toBe(false);
      process.kill(writer);
    }, 30_000);
  });

  describe('snapshot and scratch', () => {
    it('a snapshot taken while frozen restores to scratch with the fingerprint of the live database', async () => {
      await sqliteFormat.freeze(io, params);
      const file = join(base, 'snapshot.db');
      await takeSnapshot(params, file);
      expect((await client(params.sqliteDb, 'INSERT INTO log VALUES (7, 0)')).stderr).toMatch(
        /database is locked/,
      );
      const live = await sqliteFormat.fingerprint(probeOnly(io), params);
      await sqliteFormat.restoreScratch(io, file, params);
      const scratch = sqlitePaths(params).scratch;
      expect(await sqlOk(scratch, 'PRAGMA integrity_check')).toBe('ok');
      expect(await sqlOk(scratch, 'SELECT count(*) FROM users')).toBe('202');

      const copy = await sqliteFormat.fingerprintScratch(probeOnly(io), params);
      expect(live).toEqual({
        counts: SEEDED,
        content: expect.stringMatching(/^[0-9a-f]{64}$/),
        bytes: (await stat(params.sqliteDb)).size,
        summary: '3 tables, 1204 rows',
      });
      expect(copy).toEqual({ ...live, bytes: (await stat(scratch)).size });
      expect(sqliteFormat.missing(copy, live, POLICY)).toEqual([]);
      // Reading the scratch left nothing beside it.
      expect(existsSync(`${scratch}-wal`) || existsSync(`${scratch}-shm`)).toBe(false);

      await sqliteFormat.thaw(io, params);
      await sqlOk(params.sqliteDb, "INSERT INTO log VALUES (8, 'after thaw')");
      const later = await sqliteFormat.fingerprint(probeOnly(io), params);
      expect(later.counts).toEqual({ ...SEEDED, log: 1001 });
      expect(later.content).not.toBe(live.content);

      await sqliteFormat.dropScratch(io, params);
      expect(existsSync(scratch)).toBe(false);
      await sqliteFormat.dropScratch(io, params);
    });

    it('does the same for a database in WAL mode, with rows still in its -wal', async () => {
      await sqlOk(params.sqliteDb, 'PRAGMA journal_mode = WAL');
      // A reader that stays open keeps the -wal from being checkpointed away.
      const reader = spawn(SQLITE3, [params.sqliteDb], { stdio: ['pipe', 'ignore', 'ignore'] });
      reader.stdin.write('BEGIN; SELECT count(*) FROM log;\n');
      try {
        await sqlOk(params.sqliteDb, "INSERT INTO log VALUES (13, 'in the wal')");
        expect((await stat(`${params.sqliteDb}-wal`)).size).toBeGreaterThan(0);
        await sqliteFormat.freeze(io, params);
        const refused = await client(params.sqliteDb, 'INSERT INTO log VALUES (14, 0)');
        expect(refused.stderr).toMatch(/database is locked/);
        expect(await sqlOk(params.sqliteDb, 'SELECT count(*) FROM log')).toBe('1001');

        const file = join(base, 'snapshot.db');
        await takeSnapshot(params, file);
        await sqliteFormat.restoreScratch(io, file, params);
        const live = await sqliteFormat.fingerprint(probeOnly(io), params);
        const copy = await sqliteFormat.fingerprintScratch(probeOnly(io), params);
        expect(live.fault).toBeUndefined();
        expect(copy.counts).toEqual({ ...SEEDED, log: 1001 });
        expect(copy.content).toBe(live.content);
        await sqliteFormat.thaw(io, params);
        await sqlOk(params.sqliteDb, 'INSERT INTO log VALUES (15, 0)');
      } finally {
        reader.kill();
      }
    });

    it('fingerprints the same data alike however the file is laid out (VACUUM, another page size)', async () => {
      const before = await sqliteFormat.fingerprint(probeOnly(io), params);
      await sqlOk(params.sqliteDb, 'PRAGMA page_size = 1024; VACUUM;');
      const after = await sqliteFormat.fingerprint(probeOnly(io), params);
      expect(after.bytes).not.toBe(before.bytes);
      expect({ ...after, bytes: 0 }).toEqual({ ...before, bytes: 0 });
    });

    it('refuses a snapshot cut at half its bytes, an empty file and a file that is no database', async () => {
      const file = join(base, 'snapshot.db');
      await takeSnapshot(params, file);
      const whole = await readFile(file);
      const cases: Array<[string, Buffer, RegExp]> = [
        ['half.db', whole.subarray(0, whole.length / 2), /truncated|malformed/],
        ['empty.db', Buffer.alloc(0), /empty \(0 bytes\): not an SQLite database/],
        ['text.db', Buffer.from('users,channels\n1,2\n'), /no "SQLite format 3" header/],
      ];
      for (const [name, bytes, why] of cases) {
        const bad = join(base, name);
        await writeFile(bad, bytes);
        const refusal = await sqliteFormat.restoreScratch(io, bad, params).catch((e: unknown) => e);
        expect(refusal, name).toBeInstanceOf(BatonError);
        expect((refusal as BatonError).code, name).toBe('DB_CORRUPT');
        expect((refusal as BatonError).message, name).toMatch(why);
        expect(existsSync(sqlitePaths(params).scratch), name).toBe(false);

        const seen = await sqliteFormat.fingerprint(probeOnly(io), { ...params, sqliteDb: bad });
        expect(seen, name).toMatchObject({ counts: {}, bytes: bytes.length });
        expect(seen.fault, name).toMatch(why);
        expect(
          sqliteFormat.missing(
            seen,
            await sqliteFormat.fingerprint(probeOnly(io), params),
            POLICY,
          )[0],
        ).toMatch(/^unreadable: /);
      }
    });

    it('names a table the copy lacks, and a copy with no rows at all', async () => {
      const live = await sqliteFormat.fingerprint(probeOnly(io), params);
      const file = join(base, 'copy.db');
      await takeSnapshot(params, file);
      await sqlOk(file, 'DROP TABLE channels');
      await sqliteFormat.restoreScratch(io, file, params);
      const lacking = await sqliteFormat.fingerprintScratch(probeOnly(io), params);
      expect(sqliteFormat.missing(lacking, live, POLICY)).toEqual([
        'channels: missing (the reference holds 2 rows)',
      ]);

      await sqlOk(file, 'DELETE FROM users; DELETE FROM log');
      await sqliteFormat.restoreScratch(io, file, params);
      const emptied = await sqliteFormat.fingerprintScratch(probeOnly(io), params);
      expect(sqliteFormat.missing(emptied, live, POLICY)).toEqual([
        'empty: no rows at all, where the reference holds 1204',
        'channels: missing (the reference holds 2 rows)',
        'log: 0 rows of 1000 (more than 5 % fewer)',
        'users: 0 rows of 202 (more than 5 % fewer)',
      ]);
    });

    it('gives a copy differing in one row the same counts and another content hash', async () => {
      const live = await sqliteFormat.fingerprint(probeOnly(io), params);
      const file = join(base, 'copy.db');
      await takeSnapshot(params, file);
      await sqlOk(file, "UPDATE log SET line = 'line 500.' WHERE at = 1700000500");
      await sqliteFormat.restoreScratch(io, file, params);
      const copy = await sqliteFormat.fingerprintScratch(probeOnly(io), params);
      expect(copy.counts).toEqual(live.counts);
      expect(copy.content).not.toBe(live.content);
    });
  });

  describe('install', () => {
    /** The live database now, then a snapshot of it restored to scratch, then one more row live. */
    async function restoredThenChanged(): Promise<{ restored: string; replaced: string }> {
      const file = join(base, 'snapshot.db');
      await takeSnapshot(params, file);
      await sqliteFormat.restoreScratch(io, file, params);
      await sqlOk(params.sqliteDb, "INSERT INTO log VALUES (9, 'only on the old side')");
      return {
        restored: await sha256(sqlitePaths(params).scratch),
        replaced: await sha256(params.sqliteDb),
      };
    }

    it('keeps the live file as .baton-before and uninstall puts it back byte for byte', async () => {
      const { restored, replaced } = await restoredThenChanged();
      const paths = sqlitePaths(params);
      await sqliteFormat.install(io, params);

      expect(await sha256(paths.db)).toBe(restored);
      expect(await sha256(paths.before)).toBe(replaced);
      expect(existsSync(paths.scratch)).toBe(false);
      expect((await stat(paths.db)).uid).toBe(userInfo().uid);
      expect(await sqlOk(paths.db, 'SELECT count(*) FROM log')).toBe('1000');
      const changes = io.changes.length;
      await sqliteFormat.install(io, params);
      expect(io.changes.length).toBe(changes);

      await sqliteFormat.uninstall(io, params);
      expect(await sha256(paths.db)).toBe(replaced);
      expect(existsSync(paths.before)).toBe(false);
      expect(await sqlOk(paths.db, 'SELECT count(*) FROM log')).toBe('1001');
      const undone = io.changes.length;
      await sqliteFormat.uninstall(io, params);
      expect(io.changes.length).toBe(undone);
      expect(await sha256(paths.db)).toBe(replaced);
    });

    it('a retried install does not overwrite the first backup', async () => {
      const { replaced } = await restoredThenChanged();
      const paths = sqlitePaths(params);
      await sqliteFormat.install(io, params);
      // A second restore and install, as a retry of the step makes them.
      const again = join(base, 'again.db');
      await takeSnapshot(params, again);
      await sqlOk(again, "INSERT INTO log VALUES (10, 'second copy')");
      await sqliteFormat.restoreScratch(io, again, params);
      const second = await sha256(paths.scratch);
      await sqliteFormat.install(io, params);
      expect(await sha256(paths.db)).toBe(second);
      expect(await sha256(paths.before)).toBe(replaced);
      await sqliteFormat.uninstall(io, params);
      expect(await sha256(paths.db)).toBe(replaced);
    });

    it('moves the live -wal with the file it belongs to, and brings it back', async () => {
      const paths = sqlitePaths(params);
      await sqlOk(paths.db, 'PRAGMA journal_mode = WAL');
      const file = join(base, 'snapshot.db');
      await takeSnapshot(params, file);
      await sqliteFormat.restoreScratch(io, file, params);
      // A -wal with frames, as an application that has not checkpointed leaves it.
      await writeFile(`${paths.db}-wal`, 'frames of the old file');
      await sqliteFormat.install(io, params);
      expect(existsSync(`${paths.db}-wal`)).toBe(false);
      expect(await readFile(`${paths.before}-wal`, 'utf8')).toBe('frames of the old file');
      expect(await sqlOk(paths.db, 'SELECT count(*) FROM users')).toBe('202');
      await sqliteFormat.uninstall(io, params);
      expect(await readFile(`${paths.db}-wal`, 'utf8')).toBe('frames of the old file');
    });

    it('refuses a .baton-before this run did not make, and an install with nothing restored', async () => {
      const paths = sqlitePaths(params);
      await writeFile(paths.before, 'from an earlier failover');
      const refusal = await sqliteFormat.install(io, params).catch((e: unknown) => e);
      expect((refusal as BatonError).code).toBe('PRECONDITION_FAILED');
      expect(await readFile(paths.before, 'utf8')).toBe('from an earlier failover');
      await rm(paths.before);

      const nothing = await sqliteFormat.install(newIo(), params).catch((e: unknown) => e);
      expect((nothing as BatonError).message).toMatch(/no restored copy/);
      expect(await sqlOk(paths.db, 'SELECT count(*) FROM log')).toBe('1000');
    });
  });

  it('plans every change without running one: a plan leaves the database as it was', async () => {
    const untouched = await sha256(params.sqliteDb);
    const planned: string[] = [];
    // As a plan runs a step: probes for real, changes recorded only, notes not kept.
    const plan = {
      ...probeOnly(io),
      $: (async (cmd: { text: string }) => {
        planned.push(cmd.text);
      }) as LocalIo['$'],
      act: io.act,
      note: () => undefined,
      notes: {},
    };
    await sqliteFormat.freeze(plan, params);
    await sqliteFormat.restoreScratch(plan, join(base, 'not yet streamed.db'), params);
    expect((await sqliteFormat.fingerprintScratch(plan, params)).fault).toMatch(/^no file at /);
    await sqliteFormat.install(plan, params);
    await sqliteFormat.thaw(plan, params);
    expect(planned).toHaveLength(3);
    expect(await sha256(params.sqliteDb)).toBe(untouched);
    const paths = sqlitePaths(params);
    expect([paths.freezePid, paths.scratch, paths.before].filter((p) => existsSync(p))).toEqual([]);
    await sqlOk(params.sqliteDb, 'INSERT INTO log VALUES (16, 0)');
  });

  it('works end to end on a path with a space, quotes and shell syntax in it', async () => {
    const hostile = join(base, "it's $(touch pwned) `id` ; rm -rf x");
    await mkdir(hostile);
    const p = { ...params, sqliteDb: join(hostile, 'a "b".db') };
    dbs.push(p);
    await sqlOk(p.sqliteDb, SEED);
    await sqliteFormat.freeze(io, p);
    expect((await client(p.sqliteDb, 'INSERT INTO log VALUES (11, 0)')).stderr).toMatch(
      /database is locked/,
    );
    const file = join(hostile, "snap 'x'.db");
    await takeSnapshot(p, file);
    await sqliteFormat.restoreScratch(io, file, p);
    const copy = await sqliteFormat.fingerprintScratch(probeOnly(io), p);
    expect(copy.counts).toEqual(SEEDED);
    expect(copy.content).toBe((await sqliteFormat.fingerprint(probeOnly(io), p)).content);
    await sqliteFormat.install(io, p);
    expect(existsSync(sqlitePaths(p).before)).toBe(true);
    await sqliteFormat.uninstall(io, p);
    await sqliteFormat.dropScratch(io, p);
    await sqliteFormat.thaw(io, p);
    await sqlOk(p.sqliteDb, 'INSERT INTO log VALUES (12, 0)');
    expect(existsSync(join(base, 'pwned')) || existsSync('pwned')).toBe(false);
  });
});
