import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BatonError } from '../../lib/core/errors.ts';
import { sh } from '../../lib/core/shell.ts';
import {
  backupName,
  mariadbFormat,
  mariadbParams,
  quoteIdent,
  quoteLiteral,
  scratchName,
  type MariadbParams,
} from '../../lib/steps/formats/mariadb.ts';
import { localIo, probeOnly, type LocalIo } from '../support/format-io.ts';
import { assertPrerequisite, skipUnless } from '../support/require.ts';

const run = promisify(execFile);
const BINARIES = [
  '/usr/sbin/mariadbd',
  '/usr/bin/mariadb-install-db',
  '/usr/bin/mariadb',
  '/usr/bin/mariadb-dump',
  '/usr/bin/mariadb-admin',
];

function unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (mariadbd runs as the mysql user)';
  for (const bin of BINARIES) {
    try {
      accessSync(bin, constants.X_OK);
    } catch {
      return `${bin} is not installed (mariadb-server)`;
    }
  }
  return undefined;
}

const missing = unavailable();
const APP_PASSWORD = 'app-secret';
const POLICY = { maxShrinkPercent: 0 };

describe.skipIf(skipUnless(missing, 'the MariaDB format'))(
  'the MariaDB format against a real mariadbd',
  () => {
    let dir: string;
    let socket: string;
    let server: ChildProcess;
    let params: MariadbParams;
    const ios: LocalIo[] = [];

    const io = (): LocalIo => {
      const made = localIo();
      ios.push(made);
      return made;
    };

    /** The mariadb client as root, from outside the format. */
    const sql = async (text: string, database = 'app'): Promise<string> =>
      (await run('mariadb', [`--socket=${socket}`, '-uroot', '-N', '-B', database, '-e', text]))
        .stdout;

    /** The same, as the app's own account (with its password, as the app connects). */
    const asApp = (text: string) =>
      run('mariadb', [
        `--socket=${socket}`,
        '-uapp',
        `-p${APP_PASSWORD}`,
        '-N',
        '-B',
        'app',
        '-e',
        text,
      ]);

    const readOnly = async () => (await sql('SELECT @@GLOBAL.read_only')).trim();

    const dumpTo = async (file: string): Promise<void> => {
      const io1 = io();
      await io1.$(sh`${mariadbFormat.snapshot(params)} > ${file}`);
    };

    beforeAll(async () => {
      assertPrerequisite(missing);
      dir = await mkdtemp(join(tmpdir(), 'baton-mariadb-'));
      await chown(dir, ...(await mysqlIds()));
      socket = join(dir, 'mysqld.sock');
      await run('mariadb-install-db', [
        '--no-defaults',
        '--user=mysql',
        `--datadir=${join(dir, 'data')}`,
        '--auth-root-authentication-method=socket',
      ]);
      server = spawn(
        'mariadbd',
        [
          '--no-defaults',
          '--user=mysql',
          `--datadir=${join(dir, 'data')}`,
          `--socket=${socket}`,
          `--pid-file=${join(dir, 'mysqld.pid')}`,
          `--log-error=${join(dir, 'error.log')}`,
          '--skip-networking',
        ],
        { stdio: 'ignore' },
      );
      for (let i = 0; !existsSync(socket); i++) {
        if (i > 300 || server.exitCode !== null)
          throw new Error(
            `mariadbd did not start:\n${await readFile(join(dir, 'error.log'), 'utf8').catch(() => '')}`,
          );
        await new Promise((r) => setTimeout(r, 100));
      }
      await sql(
        `CREATE DATABASE app;
        CREATE TABLE app.accounts (
          id INT PRIMARY KEY, name VARCHAR(64) CHARACTER SET utf8mb4 NOT NULL, email VARCHAR(128) NULL,
          balance DECIMAL(12,2) NOT NULL, score DOUBLE NULL, created DATETIME(3) NOT NULL,
          kind ENUM('user','oper','bot') NOT NULL, avatar BLOB NULL, bio TEXT NULL
        ) ENGINE=InnoDB;
        INSERT INTO app.accounts
          SELECT seq, CONCAT('user', seq, IF(seq % 3 = 0, ' ünï', '')), IF(seq % 7 = 0, NULL, CONCAT('u', seq, '@baton.test')),
            seq * 1.25, IF(seq % 5 = 0, NULL, seq / 3), TIMESTAMP('2024-01-01') + INTERVAL seq MINUTE,
            ELT(1 + seq % 3, 'user', 'oper', 'bot'), IF(seq % 4 = 0, NULL, UNHEX(SHA2(seq, 256))),
            IF(seq % 11 = 0, CONCAT('tab\\there', CHAR(10), 'newline'), NULL)
          FROM seq_1_to_3000;
        CREATE TABLE app.channels (name VARCHAR(50) PRIMARY KEY, topic TEXT NULL) ENGINE=InnoDB;
        INSERT INTO app.channels VALUES ('#baton', 'handover tonight'), ('#ops', NULL), ('#help', 'ask');
        CREATE TABLE app.memberships (
          account_id INT NOT NULL, channel VARCHAR(50) NOT NULL, PRIMARY KEY (account_id, channel),
          FOREIGN KEY (account_id) REFERENCES app.accounts (id), FOREIGN KEY (channel) REFERENCES app.channels (name)
        ) ENGINE=InnoDB;
        INSERT INTO app.memberships VALUES (1, '#baton'), (2, '#baton'), (2, '#ops'), (3, '#help');
        CREATE USER app@localhost IDENTIFIED BY ${quoteLiteral(APP_PASSWORD)};
        GRANT SELECT, INSERT, UPDATE, DELETE ON app.* TO app@localhost;`,
        'mysql',
      );
      params = mariadbParams.parse({ myDatabase: 'app', mySocket: socket });
    });

    afterAll(async () => {
      await Promise.all(ios.map((i) => i.close()));
      if (!dir) return;
      if (socket && existsSync(socket))
        await run('mariadb-admin', [`--socket=${socket}`, '-uroot', 'shutdown']).catch(() => {});
      if (server && server.exitCode === null)
        await new Promise((r) => {
          const t = setTimeout(() => (server.kill('SIGKILL'), r(undefined)), 20_000);
          server.once('exit', () => (clearTimeout(t), r(undefined)));
        });
      await rm(dir, { recursive: true, force: true });
    });

    it('parses its parameters: a plain database name, an absolute socket, an optional account', () => {
      expect(mariadbParams.parse({ myDatabase: 'app' })).toEqual({
        myDatabase: 'app',
        mySocket: '/run/mysqld/mysqld.sock',
      });
      expect(() => mariadbParams.parse({ myDatabase: 'app`; DROP' })).toThrow();
      expect(() => mariadbParams.parse({ myDatabase: 'app', mySocket: 'mysqld.sock' })).toThrow();
      expect(() => mariadbParams.parse({ myDatabase: 'app', myProbeUser: "a'b@%" })).toThrow();
      expect(mariadbParams.parse({ myDatabase: 'app', myProbeUser: 'app@%' }).myProbeUser).toBe(
        'app@%',
      );
      expect(quoteIdent('we`ird')).toBe('`we``ird`');
      expect(quoteLiteral("it's \\")).toBe("'it''s \\\\'");
    });

    it('freeze refuses the app, ends its open writing session, keeps reads, and thaw gives writes back', async () => {
      const session = await openWritingSession();
      const freezer = io();
      await mariadbFormat.freeze(freezer, params);
      expect(freezer.notes).toEqual({ freezing: true, froze: true });
      expect(await readOnly()).toBe('1');

      await expect(asApp("INSERT INTO channels VALUES ('#new', NULL)")).rejects.toThrow(
        /ERROR 1290 .*--read-only option/,
      );
      expect((await asApp('SELECT COUNT(*) FROM accounts')).stdout.trim()).toBe('3000');
      expect(
        await sql(`SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ${session.id}`),
      ).toBe('0\n');
      const client = await session.finish();
      expect(client.code).not.toBe(0);
      expect(client.stderr).toMatch(/server has gone away|lost connection/i);
      // Its uncommitted row was rolled back with it.
      expect(await sql("SELECT COUNT(*) FROM channels WHERE name = '#open'")).toBe('0\n');

      const proof = await mariadbFormat.proveFrozen(probeOnly(freezer), params);
      expect(proof).toMatchObject({ ok: true });
      expect(proof.found).toMatch(/--read-only option/);

      // A retry of the same step finds its own read_only and goes on.
      await mariadbFormat.freeze(freezer, params);

      // The proof fails when writes are taken, whoever lifted read_only.
      await sql('SET GLOBAL read_only = OFF');
      expect(await mariadbFormat.proveFrozen(probeOnly(freezer), params)).toMatchObject({
        ok: false,
        found: 'the INSERT as baton_probe@localhost was accepted',
      });
      await sql('SET GLOBAL read_only = ON');

      await mariadbFormat.thaw(freezer, params);
      await mariadbFormat.thaw(freezer, params);
      expect(await readOnly()).toBe('0');
      await asApp("INSERT INTO channels VALUES ('#after', NULL)");
      await asApp("DELETE FROM channels WHERE name = '#after'");
      // The probe leaves nothing behind.
      expect(await sql("SELECT COUNT(*) FROM mysql.user WHERE User = 'baton_probe'")).toBe('0\n');
      expect(await sql("SHOW DATABASES LIKE 'baton_probe'")).toBe('');
    });

    it("proves the freeze as the app's own account when myProbeUser names it", async () => {
      const named = { ...params, myProbeUser: 'app@localhost' };
      const freezer = io();
      await mariadbFormat.freeze(freezer, named);
      const proof = await mariadbFormat.proveFrozen(probeOnly(freezer), named);
      expect(proof).toMatchObject({ ok: true });
      expect(proof.expected).toMatch(/as app@localhost/);
      await mariadbFormat.thaw(freezer, named);
      expect(await readOnly()).toBe('0');
      expect(await sql("SHOW GRANTS FOR 'app'@'localhost'")).not.toMatch(/baton_probe/);

      await expect(
        mariadbFormat.freeze(io(), { ...params, myProbeUser: 'nobody@localhost' }),
      ).rejects.toThrow(/myProbeUser nobody@localhost is not an account/);
      expect(await readOnly()).toBe('0');
    });

    it('refuses a read_only someone else set, and never lifts it', async () => {
      await sql('SET GLOBAL read_only = ON');
      const freezer = io();
      const error = await mariadbFormat.freeze(freezer, params).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BatonError);
      expect(error).toMatchObject({ code: 'PRECONDITION_FAILED' });
      expect((error as Error).message).toMatch(/already had read_only = ON/);
      expect(freezer.notes).toEqual({ alreadyFrozen: true });
      expect(freezer.changes).toEqual([]);
      await expect(mariadbFormat.freeze(freezer, params)).rejects.toThrow(/already had read_only/);
      await mariadbFormat.thaw(freezer, params);
      expect(await readOnly()).toBe('1');
      await sql('SET GLOBAL read_only = OFF');
    });

    it('restores a snapshot into a scratch database that fingerprints as the live one', async () => {
      const file = join(dir, 'app.sql');
      await dumpTo(file);
      const dump = await readFile(file, 'utf8');
      expect(dump).not.toMatch(/^(USE|CREATE DATABASE)\b/m);

      const standby = io();
      await mariadbFormat.restoreScratch(standby, file, params);
      const live = await mariadbFormat.fingerprint(probeOnly(standby), params);
      const copy = await mariadbFormat.fingerprintScratch(probeOnly(standby), params);
      expect(live).toMatchObject({
        counts: { accounts: 3000, channels: 3, memberships: 4 },
        summary: '3 tables, 3007 rows',
      });
      expect(live.fault).toBeUndefined();
      expect(live.bytes).toBeGreaterThan(0);
      expect(copy.content).toBe(live.content);
      expect(copy.counts).toEqual(live.counts);
      expect(mariadbFormat.missing(copy, live, POLICY)).toEqual([]);

      // Restoring again replaces the scratch of the earlier attempt.
      await mariadbFormat.restoreScratch(standby, file, params);
      expect((await mariadbFormat.fingerprintScratch(probeOnly(standby), params)).content).toBe(
        live.content,
      );

      await sql('UPDATE accounts SET balance = balance + 1 WHERE id = 1234');
      const changed = await mariadbFormat.fingerprint(probeOnly(standby), params);
      expect(changed.counts).toEqual(live.counts);
      expect(changed.content).not.toBe(live.content);
      await sql('UPDATE accounts SET balance = balance - 1 WHERE id = 1234');
      expect((await mariadbFormat.fingerprint(probeOnly(standby), params)).content).toBe(
        live.content,
      );

      await mariadbFormat.dropScratch(standby, params);
      await mariadbFormat.dropScratch(standby, params);
      expect(await sql(`SHOW DATABASES LIKE ${quoteLiteral(scratchName(params))}`)).toBe('');
      expect(await mariadbFormat.fingerprintScratch(probeOnly(standby), params)).toMatchObject({
        fault: `database ${scratchName(params)} does not exist on local`,
      });
      expect(
        await mariadbFormat.fingerprint(probeOnly(standby), { ...params, myDatabase: 'nope' }),
      ).toMatchObject({ counts: {}, fault: 'database nope does not exist on local' });
    });

    it('refuses a truncated or empty dump, and detects a missing table and a changed row', async () => {
      const file = join(dir, 'full.sql');
      await dumpTo(file);
      const full = await readFile(file);
      const standby = io();
      const live = await mariadbFormat.fingerprint(probeOnly(standby), params);

      const half = join(dir, 'half.sql');
      await writeFile(half, full.subarray(0, Math.floor(full.length / 2)));
      await expect(mariadbFormat.restoreScratch(standby, half, params)).rejects.toThrow(
        /does not end with mariadb-dump's "-- Dump completed" line/,
      );
      const empty = join(dir, 'empty.sql');
      await writeFile(empty, '');
      await expect(mariadbFormat.restoreScratch(standby, empty, params)).rejects.toThrow(
        /empty or truncated/,
      );
      // A dump that ends well and fails to load is refused too.
      const named = join(dir, 'named.sql');
      await writeFile(
        named,
        `USE \`app\`;\nDROP TABLE accounts;\n-- Dump completed on 2024-01-01\n`,
      );
      await expect(mariadbFormat.restoreScratch(standby, named, params)).rejects.toThrow(
        /names a database/,
      );
      expect(await sql('SELECT COUNT(*) FROM accounts')).toBe('3000\n');
      const broken = join(dir, 'broken.sql');
      await writeFile(broken, `CREATE TABLE oops (;\n-- Dump completed on 2024-01-01\n`);
      await expect(mariadbFormat.restoreScratch(standby, broken, params)).rejects.toThrow(
        /ERROR 1064/,
      );

      const partial = join(dir, 'partial.sql');
      await run('sh', [
        '-c',
        `mariadb-dump --socket=${socket} --user=root --single-transaction --ignore-table=app.memberships --no-create-db app > ${partial}`,
      ]);
      await mariadbFormat.restoreScratch(standby, partial, params);
      const lacking = await mariadbFormat.fingerprintScratch(probeOnly(standby), params);
      expect(mariadbFormat.missing(lacking, live, POLICY)).toEqual([
        'memberships: missing (the reference holds 4 rows)',
      ]);

      await mariadbFormat.restoreScratch(standby, file, params);
      await sql("UPDATE channels SET topic = 'changed' WHERE name = '#ops'", scratchName(params));
      const edited = await mariadbFormat.fingerprintScratch(probeOnly(standby), params);
      expect(edited.counts).toEqual(live.counts);
      expect(mariadbFormat.missing(edited, live, POLICY)).toEqual([]);
      expect(edited.content).not.toBe(live.content);
      await mariadbFormat.dropScratch(standby, params);
    });

    it('installs the scratch tables, keeps the old ones as a backup, and uninstall puts them back', async () => {
      const file = join(dir, 'install.sql');
      await dumpTo(file);
      const standby = io();
      await mariadbFormat.restoreScratch(standby, file, params);
      const copy = await mariadbFormat.fingerprintScratch(probeOnly(standby), params);
      // What the standby held before: one channel more than the copy.
      await sql("INSERT INTO channels VALUES ('#old', 'only on the standby')");
      const old = await mariadbFormat.fingerprint(probeOnly(standby), params);
      expect(old.counts.channels).toBe(4);

      await mariadbFormat.install(standby, params);
      const installed = await mariadbFormat.fingerprint(probeOnly(standby), params);
      expect(installed.content).toBe(copy.content);
      expect(installed.counts).toEqual({ accounts: 3000, channels: 3, memberships: 4 });
      const backup = await mariadbFormat.fingerprint(probeOnly(standby), {
        ...params,
        myDatabase: backupName(params),
      });
      expect(backup.counts).toEqual(old.counts);
      expect(backup.content).toBe(old.content);
      expect(await sql(`SHOW DATABASES LIKE ${quoteLiteral(scratchName(params))}`)).toBe('');
      await asApp("INSERT INTO memberships VALUES (4, '#ops')");
      await asApp('DELETE FROM memberships WHERE account_id = 4');

      // A retry of the same step finds its work done.
      await mariadbFormat.install(standby, params);
      expect((await mariadbFormat.fingerprint(probeOnly(standby), params)).content).toBe(
        copy.content,
      );
      // Another run does not replace the first backup.
      await expect(mariadbFormat.install(io(), params)).rejects.toMatchObject({
        code: 'PRECONDITION_FAILED',
        message: expect.stringMatching(/app_baton_before on local already holds 3 tables/),
      });
      // And its uninstall has nothing of its own to undo.
      await mariadbFormat.uninstall(io(), params);
      expect((await mariadbFormat.fingerprint(probeOnly(standby), params)).content).toBe(
        copy.content,
      );

      await mariadbFormat.uninstall(standby, params);
      await mariadbFormat.uninstall(standby, params);
      const back = await mariadbFormat.fingerprint(probeOnly(standby), params);
      expect(back.content).toBe(old.content);
      expect(await sql("SELECT topic FROM channels WHERE name = '#old'")).toBe(
        'only on the standby\n',
      );
      expect(await sql(`SHOW DATABASES LIKE ${quoteLiteral(backupName(params))}`)).toBe('');
      expect((await mariadbFormat.fingerprintScratch(probeOnly(standby), params)).content).toBe(
        copy.content,
      );
      await mariadbFormat.dropScratch(standby, params);
      await sql("DELETE FROM channels WHERE name = '#old'");
    });

    it('finishes an install that stopped between moving the old tables out and the new ones in', async () => {
      const file = join(dir, 'interrupted.sql');
      await dumpTo(file);
      const standby = io();
      await mariadbFormat.restoreScratch(standby, file, params);
      const live = await mariadbFormat.fingerprint(probeOnly(standby), params);
      // Where a dropped connection may leave the install: the backup made, the live database empty.
      standby.note({ installing: true });
      await sql(
        `CREATE DATABASE app_baton_before;
        RENAME TABLE app.accounts TO app_baton_before.accounts, app.channels TO app_baton_before.channels,
          app.memberships TO app_baton_before.memberships`,
        'mysql',
      );
      await mariadbFormat.install(standby, params);
      expect((await mariadbFormat.fingerprint(probeOnly(standby), params)).content).toBe(
        live.content,
      );
      expect(
        (
          await mariadbFormat.fingerprint(probeOnly(standby), {
            ...params,
            myDatabase: backupName(params),
          })
        ).counts,
      ).toEqual(live.counts);
      await mariadbFormat.uninstall(standby, params);
      expect((await mariadbFormat.fingerprint(probeOnly(standby), params)).content).toBe(
        live.content,
      );
      await mariadbFormat.dropScratch(standby, params);
      expect(await sql("SHOW DATABASES LIKE 'app%'", 'mysql')).toBe('app\n');
    });

    it('refuses to install views, triggers or routines it cannot move, before changing anything', async () => {
      const file = join(dir, 'view.sql');
      await dumpTo(file);
      const standby = io();
      await mariadbFormat.restoreScratch(standby, file, params);
      await sql('CREATE VIEW topics AS SELECT name, topic FROM channels', scratchName(params));
      const before = await mariadbFormat.fingerprint(probeOnly(standby), params);
      await expect(mariadbFormat.install(standby, params)).rejects.toThrow(
        /cannot move baton_scratch_app\.topics \(view\)/,
      );
      expect(standby.notes).toEqual({});
      expect((await mariadbFormat.fingerprint(probeOnly(standby), params)).content).toBe(
        before.content,
      );
      await mariadbFormat.dropScratch(standby, params);
    });

    /** A connection of the app with a transaction open and a row written in it, left idle. */
    async function openWritingSession(): Promise<{
      id: number;
      /** Send one more statement, close stdin and wait for the client: its exit code and stderr. */
      finish(): Promise<{ code: number | null; stderr: string }>;
    }> {
      const child = spawn(
        'mariadb',
        [`--socket=${socket}`, '-uapp', `-p${APP_PASSWORD}`, '-N', '-B', '--unbuffered', 'app'],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.stdin.write(
        "BEGIN; INSERT INTO channels VALUES ('#open', NULL); SELECT CONNECTION_ID();\n",
      );
      const id = await new Promise<number>((resolve, reject) => {
        child.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
        void exited.then(() =>
          reject(new Error(`the app session ended before it wrote: ${stderr}`)),
        );
      });
      return {
        id,
        async finish() {
          child.stdin.end('SELECT 1;\n');
          return { code: await exited, stderr };
        },
      };
    }
  },
);

async function mysqlIds(): Promise<[number, number]> {
  const passwd = await readFile('/etc/passwd', 'utf8');
  const line = passwd.split('\n').find((l) => l.startsWith('mysql:'));
  if (!line) throw new Error('no mysql user in /etc/passwd');
  const [, , uid, gid] = line.split(':');
  return [Number(uid), Number(gid)];
}
