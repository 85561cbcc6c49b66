import { beforeAll, describe, expect, it } from 'vitest';
import {
  AthemeDbError,
  checkAthemeDb,
  dbCondition,
  fingerprint,
  fingerprintCondition,
  parseAthemeDb,
  readAthemeDb,
  type AthemeDbFault,
} from '../lib/integrations/atheme/db.ts';
import { athemeConfig, athemeUnavailable, loadAndSave } from './support/atheme.ts';
import { freePort } from './support/sshd.ts';
import { assertPrerequisite, skipUnless } from './support/require.ts';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HASHES = ['$pbkdf2v2$alicesecret', '$pbkdf2v2$bobsecret', '$pbkdf2v2$davesecret'];

/** A services.db as an operator might hold it: three accounts, four nicks, two channels. */
const SEED = [
  'DBV 12',
  'MDEP hostserv/request',
  'MDEP groupserv/main',
  'LUID AAAAAAAAF',
  'CF +AFHORVabefhioqrstv',
  `MU AAAAAAAAA alice ${HASHES[0]} alice@baton.test 1700000000 1700000100 +C default`,
  'MDU alice private:host:vhost alice.users.baton.test',
  'MN alice alice 1700000000 1700000100',
  'MN alice alice_ 1700000010 1700000100',
  `MU AAAAAAAAB bob ${HASHES[1]} bob@baton.test 1700000500 1700000600 +C default`,
  'MN bob bob 1700000500 1700000600',
  `MU AAAAAAAAC dave ${HASHES[2]} dave@baton.test 1700000900 1700000900 +C default`,
  'MN dave dave 1700000900 1700000900',
  'MC #baton 1700001000 1700001100 +v 272 0 0',
  'CA #baton alice +AFORaefhioqrstv 1700001000 *',
  'CA #baton bob +AV 1700001200 alice',
  'MDC #baton private:topic:text handover tonight',
  'MC #ops 1700002000 1700002100 +v 272 0 0',
  'CA #ops bob +AFORaefhioqrstv 1700002000 *',
  'HR dave dave.users.baton.test 1700003000 dave',
  'KID 0',
  'XID 0',
  'QID 0',
];
/** Where `seedWith` puts its extra row: line 21, after every channel. */
const AT = 20;
const seedWith = (row: string): string =>
  [...SEED.slice(0, AT), row, ...SEED.slice(AT)].join('\n') + '\n';
const FILE = '/srv/atheme/data/services.db';

/**
 * Corrupt rows and what Atheme 7.2.12 prints for each, as measured on the
 * real daemon; the real-Atheme suite below checks these again on every run.
 */
const CORRUPT: Array<{ title: string; row: string; message: string }> = [
  {
    title: 'a word where the registration time belongs (the testnet notes case)',
    row: 'MU AAAAAAAAD carol $pbkdf2v2$carolsecret carol@baton.test BROKEN 1700000000 +C default',
    message: `db-read-time: needed int at file ${FILE} line 21 token 6`,
  },
  {
    title: 'an account line cut after the email',
    row: 'MU AAAAAAAAD carol $pbkdf2v2$carolsecret carol@baton.test',
    message: `db-read-time: needed int at file ${FILE} line 21 token 5`,
  },
  {
    title: 'two spaces: an empty word',
    row: 'MU AAAAAAAAD carol $pbkdf2v2$carolsecret carol@baton.test  1700000000 1700000000 +C default',
    message: `db-read-time: needed int at file ${FILE} line 21 token 6`,
  },
  {
    title: 'a carriage return after a number',
    row: 'MU AAAAAAAAD carol $pbkdf2v2$carolsecret carol@baton.test 1700000000\r 1700000000 +C default',
    message: `db-read-time: needed int at file ${FILE} line 21 token 6`,
  },
  {
    title: 'a nick registration without its times (token 3, as in incident 003)',
    row: 'MN alice alicealt',
    message: `db-read-time: needed int at file ${FILE} line 21 token 3`,
  },
  {
    title: 'a nick registration without the nick',
    row: 'MN alice',
    message: `db-sread-word: needed word at file ${FILE} line 21 token 2`,
  },
  {
    title: 'a channel without its mode lock limit',
    row: 'MC #broken 1700000000 1700000000 +v 272 0',
    message: `db-read-uint: needed int at file ${FILE} line 21 token 7`,
  },
  {
    title: 'an octal number with an 8 in it',
    row: 'CA #baton dave +AV 08 *',
    message: `db-read-time: needed int at file ${FILE} line 21 token 5`,
  },
  {
    title: 'a memo status that is not a number',
    row: 'ME alice bob 1700000000 x hello there',
    message: `db-read-int: needed int at file ${FILE} line 21 token 5`,
  },
  {
    title: 'metadata without a value',
    row: 'MDU alice private:x',
    message: `db-sread-multiword: needed multiword at file ${FILE} line 21 token 4`,
  },
  {
    title: 'a kline without its reason',
    row: 'KL 1 user host 60 1700000000 setter',
    message: `db-sread-multiword: needed multiword at file ${FILE} line 21 token 8`,
  },
  {
    title: 'a vhost request without its time',
    row: 'HR alice alice.users.baton.test',
    message: `db-read-time: needed int at file ${FILE} line 21 token 3`,
  },
  {
    title: 'an unknown record type',
    row: 'FOO bar',
    message: `db ${FILE}:21: unknown directive 'FOO'`,
  },
  {
    title: 'channel access for a channel that is not registered',
    row: 'CA #nochan alice +AV 1700000000 *',
    message:
      'db-h-ca: line 21: chanacs for nonexistent channel #nochan - exiting to avoid data loss',
  },
  {
    title: 'channel access for an account that does not exist',
    row: 'CA #baton nobody +AV 1700000000 *',
    message: 'db-h-ca: line 21: chanacs for nonexistent target nobody - exiting to avoid data loss',
  },
];

/** Rows Atheme loads without complaint, and what the parser must count. */
const ACCEPTED: Array<{ title: string; row: string; accounts: number; chanacs: number }> = [
  { title: 'a comment', row: '# a comment MU x', accounts: 3, chanacs: 3 },
  {
    title: 'a line starting with a space (Atheme skips it)',
    row: ' MU AAAAAAAAD carol h carol@baton.test BROKEN 1 +C default',
    accounts: 3,
    chanacs: 3,
  },
  {
    // With its nick: Atheme registers the account name as a nick for an account without one.
    title: 'a lower-case type and a hex time',
    row: 'mu AAAAAAAAD carol $pbkdf2v2$carolsecret carol@baton.test 0x6553f100 1700000000 +C default\nMN carol carol 1700000000 1700000000',
    accounts: 4,
    chanacs: 3,
  },
  {
    title: 'a duplicate account (Atheme skips it before reading further)',
    row: 'MU AAAAAAAAE ALICE',
    accounts: 3,
    chanacs: 3,
  },
  {
    title: 'channel access for a hostmask',
    row: 'CA #baton *!*@guest.baton.test +V 1700000000 *',
    accounts: 3,
    chanacs: 4,
  },
];

function faultOf(text: string): AthemeDbFault | undefined {
  const check = checkAthemeDb(text, { file: FILE });
  return check.ok ? undefined : check.fault;
}

describe('services.db parser', () => {
  it('reads accounts, nicks, channels with founder and topic, and channel access', () => {
    const db = parseAthemeDb(SEED.join('\n') + '\n', { file: FILE });
    expect(db.schemaVersion).toBe(12);
    expect(db.modules).toEqual(['hostserv/request', 'groupserv/main']);
    expect(
      db.accounts.map(({ name, email, registeredAt }) => ({ name, email, registeredAt })),
    ).toEqual([
      { name: 'alice', email: 'alice@baton.test', registeredAt: 1700000000 },
      { name: 'bob', email: 'bob@baton.test', registeredAt: 1700000500 },
      { name: 'dave', email: 'dave@baton.test', registeredAt: 1700000900 },
    ]);
    expect(db.nicks.map((n) => `${n.nick}=${n.account}`)).toEqual([
      'alice=alice',
      'alice_=alice',
      'bob=bob',
      'dave=dave',
    ]);
    expect(db.channels.map(({ name, founder, topic }) => ({ name, founder, topic }))).toEqual([
      { name: '#baton', founder: 'alice', topic: 'handover tonight' },
      { name: '#ops', founder: 'bob', topic: undefined },
    ]);
    expect(db.chanacs).toHaveLength(3);
    expect(db.chanacs[1]).toEqual({
      channel: '#baton',
      target: 'bob',
      flags: '+AV',
      modifiedAt: 1700001200,
      setter: 'alice',
      line: 16,
    });
    expect(db.recordCounts).toMatchObject({ MU: 3, MN: 4, MC: 2, CA: 3, HR: 1 });
    expect(db.lines).toBe(SEED.length);
  });

  it('keeps no password hash in what it returns', () => {
    const db = parseAthemeDb(SEED.join('\n'));
    const text = JSON.stringify(db);
    for (const hash of HASHES) expect(text).not.toContain(hash);
  });

  it('fingerprints the same data equally whatever the line order and timestamps', () => {
    const base = fingerprint(parseAthemeDb(SEED.join('\n')));
    expect(base).toMatchObject({ accounts: 3, nicks: 4, channels: 2, chanacs: 3 });
    expect(base.sha256).toMatch(/^[0-9a-f]{64}$/);

    // Other order, other last-login and last-used times, flags in another order.
    const reordered = [
      'DBV 12',
      'MDEP groupserv/main',
      'MDEP hostserv/request',
      'CF +AFHORVabefhioqrstv',
      'LUID AAAAAAAAF',
      `MU AAAAAAAAC dave ${HASHES[2]} dave@baton.test 1700000900 1800000000 +C default`,
      'MN dave dave 1700000900 1800000000',
      `MU AAAAAAAAB bob ${HASHES[1]} bob@baton.test 1700000500 1800000000 +C default`,
      'MN bob bob 1700000500 1800000000',
      `MU AAAAAAAAA alice ${HASHES[0]} alice@baton.test 1700000000 1800000000 +C default`,
      'MN alice alice_ 1700000010 1800000000',
      'MN alice alice 1700000000 1800000000',
      'MC #ops 1700002000 1800000000 +v 272 0 0',
      'CA #ops bob +AFORaefhioqrstv 1700002000 *',
      'MC #baton 1700001000 1800000000 +v 272 0 0',
      'CA #baton bob +AV 1700001200 alice',
      'CA #baton alice +vtsrqoihfeaROFA 1700001000 *',
      'HR dave dave.users.baton.test 1700003000 dave',
      'QID 0',
    ];
    expect(fingerprint(parseAthemeDb(reordered.join('\n')))).toEqual(base);

    const another = (row: string): string => fingerprint(parseAthemeDb(seedWith(row))).sha256;
    expect(another('MU AAAAAAAAD carol h carol@baton.test 1 1 +C default')).not.toBe(base.sha256);
    expect(another('MN bob bobby 1 1')).not.toBe(base.sha256);
    expect(another('MC #new 1 1 +v 272 0 0')).not.toBe(base.sha256);
    expect(
      fingerprint(parseAthemeDb(SEED.join('\n').replace('CA #baton bob +AV', 'CA #baton bob +AOV')))
        .sha256,
    ).not.toBe(base.sha256);
  });

  for (const { title, row, message } of CORRUPT) {
    it(`reports ${title} as Atheme does`, () => {
      expect(faultOf(seedWith(row))?.message).toBe(message);
    });
  }

  it('throws an AthemeDbError naming line, token and record type, without the line itself', () => {
    const err = (() => {
      try {
        parseAthemeDb(seedWith(CORRUPT[0]!.row), { file: FILE });
      } catch (e) {
        return e;
      }
    })() as AthemeDbError;
    expect(err).toBeInstanceOf(AthemeDbError);
    expect(err.code).toBe('DB_CORRUPT');
    expect(err.message).toBe(
      `db-read-time: needed int at file ${FILE} line 21 token 6 (a MU record)`,
    );
    expect(err.hint).toMatch(/Repair or remove line 21/);
    expect(err.message + err.hint).not.toContain('carolsecret');
    expect(err.fault).toMatchObject({ kind: 'needed', line: 21, token: 6, reader: 'db-read-time' });
  });

  for (const { title, row, accounts, chanacs } of ACCEPTED) {
    it(`accepts ${title} as Atheme does`, () => {
      const check = checkAthemeDb(seedWith(row));
      expect(check.ok).toBe(true);
      if (check.ok) expect(check.fingerprint).toMatchObject({ accounts, chanacs });
    });
  }

  it('refuses a module record when the file does not say the module was loaded', () => {
    const text = SEED.filter((r) => r !== 'MDEP hostserv/request').join('\n');
    expect(faultOf(text)?.message).toBe(`db ${FILE}:19: unknown directive 'HR'`);
    expect(checkAthemeDb(text, { modules: ['hostserv/request'] }).ok).toBe(true);
  });

  it('says what failed as conditions a runbook prints', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'baton-db-'));
    try {
      const path = join(dir, 'services.db');
      await writeFile(path, SEED.join('\n') + '\n');
      const db = await readAthemeDb(path);
      expect(db.file).toBe(path);
      const good = checkAthemeDb(SEED.join('\n'));
      expect(dbCondition('nebula', good)).toMatchObject({
        ok: true,
        name: 'services.db on nebula parses as Atheme reads it',
      });
      const bad = dbCondition('nebula', checkAthemeDb(seedWith(CORRUPT[0]!.row), { file: FILE }));
      expect(bad).toEqual({
        name: 'services.db on nebula parses as Atheme reads it',
        ok: false,
        expected: 'every record readable',
        found: CORRUPT[0]!.message,
        remedy:
          'Atheme on nebula would refuse to start with this file: repair or remove line 21 (a MU record) or restore the newest copy that parses.',
      });
      const fp = fingerprint(db);
      expect(fingerprintCondition('emergency1', fp, fp).ok).toBe(true);
      const other = fingerprint(parseAthemeDb(seedWith('MN bob bobby 1 1')));
      const differs = fingerprintCondition('emergency1', fp, other);
      expect(differs.ok).toBe(false);
      expect(differs.expected).toMatch(
        /^3 accounts, 4 nicks, 2 channels, 3 access entries, sha256 [0-9a-f]{16}$/,
      );
      expect(differs.found).toMatch(/^3 accounts, 5 nicks/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

const missing = athemeUnavailable();

describe.skipIf(skipUnless(missing, 'services.db against real Atheme'))(
  'services.db against real Atheme 7.2',
  () => {
    let config: string;

    beforeAll(async () => {
      assertPrerequisite(missing);
      // Nothing listens on this port: Atheme loads the db, then fails to reach its uplink and retries.
      const port = await freePort();
      config = athemeConfig({
        serverName: 'services.baton.test',
        uplink: { name: 'irc.baton.test', port, password: 'linkpass' },
        modules: ['hostserv/main', 'hostserv/request', 'groupserv/main'],
      });
    });

    it('loads the seeded file and saves it back with the same accounts, nicks and channels', async () => {
      const seed = SEED.join('\n') + '\n';
      const result = await loadAndSave(config, seed);
      if (!result.loaded) throw new Error(`Atheme refused the seed:\n${result.output.join('\n')}`);
      // Atheme rewrote it: its own header, module list, last-login times.
      expect(result.saved).not.toBe(seed);
      expect(result.saved).toMatch(/^GRVER 1 \nDBV 12 \nMDEP /);
      const saved = parseAthemeDb(result.saved, { file: result.dbPath });
      expect(fingerprint(saved)).toEqual(fingerprint(parseAthemeDb(seed)));
      expect(fingerprint(saved)).toMatchObject({ accounts: 3, nicks: 4, channels: 2, chanacs: 3 });
      expect(saved.channels.find((c) => c.name === '#baton')).toMatchObject({
        founder: 'alice',
        topic: 'handover tonight',
      });
    });

    it('refuses the corrupt field exactly where the parser does (line and token)', async () => {
      const { row } = CORRUPT[0]!;
      const result = await loadAndSave(config, seedWith(row));
      expect(result.loaded).toBe(false);
      if (result.loaded) return;
      expect(result.exitCode).toBe(1);
      const atheme = result.output.find((l) => l.startsWith('db-read-time:'));
      expect(atheme).toBe(`db-read-time: needed int at file ${result.dbPath} line 21 token 6`);
      expect(result.output).toContain('db-read-time: exiting to avoid data loss');
      expect(checkAthemeDb(seedWith(row), { file: result.dbPath })).toMatchObject({
        ok: false,
        fault: { line: 21, token: 6, message: atheme },
      });
    });

    it('agrees with Atheme on every corrupt row: the same message, line and token', async () => {
      const results = await pool(CORRUPT, 4, async ({ row }) => {
        const result = await loadAndSave(config, seedWith(row));
        const printed = result.output.find(
          (l) => /^db[- ]/.test(l) && !/schema version|grammar version/.test(l),
        );
        const ours = checkAthemeDb(seedWith(row), { file: result.dbPath });
        return {
          row,
          atheme: result.loaded ? 'loaded' : printed,
          ours: ours.ok ? 'loaded' : ours.fault.message,
          path: result.dbPath,
        };
      });
      for (const r of results) expect(r.ours, r.row).toBe(r.atheme);
      // And the measured table above still holds for this Atheme.
      expect(results.map((r) => r.atheme?.replace(r.path, FILE))).toEqual(
        CORRUPT.map((c) => c.message),
      );
    });

    it('agrees with Atheme on rows it accepts: the saved file fingerprints as the parser read the input', async () => {
      const results = await pool(ACCEPTED, 4, async ({ row }) => {
        const result = await loadAndSave(config, seedWith(row));
        return { row, result };
      });
      for (const { row, result } of results) {
        if (!result.loaded)
          throw new Error(`Atheme refused ${JSON.stringify(row)}:\n${result.output.join('\n')}`);
        expect(fingerprint(parseAthemeDb(result.saved)), row).toEqual(
          fingerprint(parseAthemeDb(seedWith(row))),
        );
      }
    });
  },
);

async function pool<T, R>(items: T[], size: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: size }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await work(items[i]!);
      }
    }),
  );
  return out;
}
