/**
 * The data steps through the engine, on two local hosts with a real SQLite
 * database each, checked from outside baton with the sqlite3 CLI and sha256sum.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startRun } from '../lib/app/runs.ts';
import { workspace, type Workspace } from './helpers.ts';
import { assertPrerequisite, skipUnless } from './support/require.ts';

const RUNBOOK = join(import.meta.dirname, 'fixtures', 'sqlite-move.ts');
const missing =
  spawnSync('sqlite3', ['-version']).status === 0 ? undefined : 'needs the sqlite3 CLI';

const sql = (db: string, text: string): string =>
  execFileSync('sqlite3', ['-batch', db, text], { encoding: 'utf8' }).trim();
const write = (db: string, text: string): { ok: boolean; said: string } => {
  const r = spawnSync('sqlite3', ['-batch', '-cmd', '.timeout 0', db, text], { encoding: 'utf8' });
  return { ok: r.status === 0, said: `${r.stdout}${r.stderr}`.trim() };
};
const sha = (file: string): string =>
  execFileSync('sha256sum', [file], { encoding: 'utf8' }).slice(0, 64);
const dump = (db: string): string => execFileSync('sqlite3', [db, '.dump'], { encoding: 'utf8' });

describe.skipIf(skipUnless(missing, 'the data steps on SQLite'))(
  'the data steps, on SQLite',
  () => {
    let ws: Workspace;
    const db = (host: string): string => join(ws.data, host, 'app.db');
    const holders: string[] = [];

    beforeAll(() => assertPrerequisite(missing));

    const setUp = (): void => {
      ws = workspace(['a', 'b']);
      for (const h of ['a', 'b']) mkdirSync(join(ws.data, h));
      sql(
        db('a'),
        `CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL, note BLOB);
       WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
       INSERT INTO accounts SELECT i, 'user' || i, CASE WHEN i % 7 = 0 THEN NULL ELSE randomblob(16) END FROM n;
       CREATE TABLE channels (name TEXT PRIMARY KEY, topic TEXT) WITHOUT ROWID;
       INSERT INTO channels VALUES ('#ops', 'it''s quiet'), ('#help', NULL);`,
      );
      // An older database on b, which the move must keep aside and a rollback put back.
      sql(
        db('b'),
        `CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO accounts VALUES (1, 'stale');`,
      );
      holders.push(`${db('a')}.baton-freeze.pid`);
    };

    afterEach(() => {
      // A move that completed leaves the old primary frozen: end that freeze for the next test.
      for (const file of holders.splice(0)) {
        if (existsSync(file)) spawnSync('sh', ['-c', `kill "$(cat '${file}')" 2>/dev/null`]);
      }
    });

    it('moves every row to b, keeps b’s old database aside, and leaves a frozen', async () => {
      setUp();
      const before = { a: dump(db('a')), bFile: sha(db('b')) };
      const result = await startRun({
        runbook: RUNBOOK,
        stack: 'nodes',
        params: [`dir=${ws.data}`],
        cwd: ws.cwd,
      });
      expect(result.error).toBeUndefined();
      expect(result.outcome).toBe('done');
      expect(dump(db('b'))).toBe(before.a);
      expect(sql(db('b'), 'SELECT count(*) FROM accounts; PRAGMA integrity_check;')).toBe(
        '2000\nok',
      );
      expect(sha(`${db('b')}.baton-before`)).toBe(before.bFile);
      // The old primary refuses writes; its data is as it was.
      const refused = write(db('a'), "INSERT INTO channels VALUES ('#late', 'lost?')");
      expect(refused).toMatchObject({
        ok: false,
        said: expect.stringContaining('database is locked'),
      });
      expect(dump(db('a'))).toBe(before.a);
      // Nothing of the run's own is left in the data's places.
      expect(readdirSync(join(ws.data, 'b')).sort()).toEqual(['app.db', 'app.db.baton-before']);
      expect(readdirSync(join(ws.data, 'work')).filter((f) => f.includes('incoming'))).toEqual([]);
    }, 60_000);

    for (const step of ['sqlite-freeze', 'sqlite-transfer', 'sqlite-verify', 'sqlite-install']) {
      it(`rolls back a failure after ${step}: a writable and unchanged, b's database back byte for byte`, async () => {
        setUp();
        const before = { a: dump(db('a')), aFile: sha(db('a')), bFile: sha(db('b')) };
        const result = await startRun({
          runbook: RUNBOOK,
          stack: 'nodes',
          params: [`dir=${ws.data}`, `failAfter=${step}`],
          cwd: ws.cwd,
        });
        expect([result.outcome, result.error]).toEqual(['rolled-back', expect.any(String)]);
        expect(result.error).toContain(`failing after ${step}, as asked`);
        expect(sha(db('a'))).toBe(before.aFile);
        expect(sha(db('b'))).toBe(before.bFile);
        expect(readdirSync(join(ws.data, 'a'))).toEqual(['app.db']);
        expect(readdirSync(join(ws.data, 'b'))).toEqual(['app.db']);
        const work = join(ws.data, 'work');
        expect(existsSync(work) ? readdirSync(work) : []).toEqual([]);
        // The freeze is lifted: a client writes on a again.
        expect(write(db('a'), "INSERT INTO channels VALUES ('#after', 'written')")).toMatchObject({
          ok: true,
        });
        expect(sql(db('a'), "SELECT topic FROM channels WHERE name = '#after'")).toBe('written');
        expect(dump(db('a'))).not.toBe(before.a);
      }, 60_000);
    }
  },
);
