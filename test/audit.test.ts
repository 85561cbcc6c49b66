import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAthemeDb } from '../lib/integrations/atheme/db.ts';
import {
  alertFailures,
  acknowledge,
  alertMessage,
  planAlerts,
  readAlertState,
  type AlertState,
} from '../lib/audit/alert.ts';
import { runAudit, type AuditReport } from '../lib/audit/audit.ts';
import { compareAtheme, freshnessVerdict } from '../lib/audit/backup.ts';
import type { CheckResult } from '../lib/audit/check.ts';
import { alertSchema, parseAuditConfig, type AuditConfigInput } from '../lib/audit/config.ts';
import { growthRate, runawayFile } from '../lib/audit/disk.ts';
import { formatBytes, formatDuration, parseDuration } from '../lib/audit/duration.ts';
import { memoryHistory, type DiskMeasurement } from '../lib/audit/history.ts';
import { escapeHtml, renderHtml } from '../lib/audit/html.ts';
import { keySlotsInUse } from '../lib/audit/passphrase.ts';
import { renderTable } from '../lib/audit/render.ts';
import { auditPaths } from '../lib/audit/state.ts';
import { localAuditInventory, servicesDb } from './support/audit.ts';

const HOUR = 3_600_000;
const now0 = Math.floor(Date.now() / 1000);

const made: string[] = [];
function scratch(): string {
  const dir = mkdtempSync(join(tmpdir(), 'baton-audit-'));
  made.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

const inventory = localAuditInventory(['vault', 'nebula']);

const seed = {
  accounts: [
    { name: 'alice', registeredAt: now0 - 86_400 },
    { name: 'bob', registeredAt: now0 - 80_000 },
  ],
  channels: [{ name: '#ops', founder: 'alice', registeredAt: now0 - 70_000 }],
};

describe('audit config', () => {
  const valid = (): AuditConfigInput => ({
    services: {
      atheme: {
        backup: {
          host: 'vault',
          dir: '/srv/backup/atheme',
          pattern: 'services.db.*',
          interval: '24h',
          items: [{ name: 'services.db', kind: 'atheme-db' }],
        },
      },
    },
    encryptedDevices: [
      { name: 'disk', host: 'vault', device: '/dev/vdb', passphrase: '@file:/etc/pp' },
    ],
  });

  it('accepts a config and fills in the defaults', () => {
    const c = parseAuditConfig(valid(), 'test', inventory);
    expect(c.services.atheme!.backup).toMatchObject({
      format: 'file',
      exclude: ['*.sha256', '.*'],
      scratch: '/var/tmp',
    });
    expect(c.filesystems).toEqual([]);
  });

  it.each([
    [
      (c: AuditConfigInput) => (c.services!.atheme!.backup!.interval = 'daily'),
      'services.atheme.backup.interval: a duration such as "90s", "30m", "24h", "7d" or "1w"',
    ],
    [
      (c: AuditConfigInput) => (c.encryptedDevices![0]!.passphrase = 'hunter2'),
      'encryptedDevices[0].passphrase: a reference, @file:PATH or @env:VAR: secrets are never written in the audit config',
    ],
    [
      (c: AuditConfigInput) => (c.services!.atheme!.backup!.host = 'nope'),
      'services.atheme.backup.host: no host "nope" in stack audit-local',
    ],
    [
      (c: AuditConfigInput) => (c.services!.atheme!.backup!.dir = 'srv/backup'),
      'services.atheme.backup.dir: an absolute path',
    ],
    [
      (c: AuditConfigInput) => (c.services!.atheme!.backup!.format = 'tar'),
      'services.atheme.backup.items[0].path: required when the backup format is tar',
    ],
  ])('names the wrong field: %#', (mutate, message) => {
    const c = valid();
    mutate(c);
    expect(() => parseAuditConfig(c, 'baton.audit.json', inventory)).toThrow(
      `audit config baton.audit.json: ${message}`,
    );
  });

  it('never echoes a literal passphrase in its error', () => {
    const c = valid();
    c.encryptedDevices![0]!.passphrase = 'correct horse battery';
    try {
      parseAuditConfig(c, 'x', inventory);
      expect.unreachable();
    } catch (e) {
      expect(String((e as Error).message)).not.toContain('correct horse');
    }
  });
});

describe('durations and verdicts', () => {
  it('reads and writes durations', () => {
    expect(parseDuration('24h')).toBe(24 * HOUR);
    expect(parseDuration('1.5d')).toBe(36 * HOUR);
    expect(parseDuration('daily')).toBeUndefined();
    expect(formatDuration(36 * HOUR)).toBe('36 h');
    expect(formatDuration(74 * HOUR)).toBe('3 d 2 h');
    expect(formatDuration(90_000)).toBe('1 min');
    expect(formatBytes(48 * 2 ** 20)).toBe('48.0 MiB');
  });

  it('warns past 1.5 intervals and fails past 2', () => {
    expect(freshnessVerdict(35 * HOUR, 24 * HOUR)).toBe('pass');
    expect(freshnessVerdict(37 * HOUR, 24 * HOUR)).toBe('warn');
    expect(freshnessVerdict(49 * HOUR, 24 * HOUR)).toBe('fail');
  });
});

describe('comparing a backup with the live services.db', () => {
  const backup = parseAthemeDb(servicesDb(seed));
  it('passes when they hold the same', () => {
    expect(compareAtheme(backup, parseAthemeDb(servicesDb(seed)), now0).verdict).toBe('pass');
  });

  it('passes, and says so, when the live data only gained registrations after the backup', () => {
    const live = parseAthemeDb(
      servicesDb({ ...seed, accounts: [...seed.accounts, { name: 'dave', registeredAt: now0 }] }),
    );
    const cmp = compareAtheme(backup, live, now0 - 3600);
    expect(cmp.verdict).toBe('pass');
    expect(cmp.lines).toContain(
      '1 account or channel registered since the backup (the next backup takes them)',
    );
  });

  it('warns when the backup lacks accounts registered before it was taken', () => {
    const live = parseAthemeDb(
      servicesDb({
        ...seed,
        accounts: [...seed.accounts, { name: 'erin', registeredAt: now0 - 90_000 }],
      }),
    );
    const cmp = compareAtheme(backup, live, now0);
    expect(cmp.verdict).toBe('warn');
    expect(cmp.lines[0]).toBe(
      'live accounts registered before the backup but missing from it: erin',
    );
  });

  it('fails a backup that holds nothing while the live data has accounts', () => {
    const empty = parseAthemeDb(servicesDb({ accounts: [], channels: [] }));
    expect(compareAtheme(empty, backup, now0).verdict).toBe('fail');
  });
});

describe('backup checks on local hosts', () => {
  function setup(): { dir: string; config: AuditConfigInput; live: string } {
    const dir = scratch();
    mkdirSync(join(dir, 'backup'));
    mkdirSync(join(dir, 'live'));
    mkdirSync(join(dir, 'tmp'));
    const live = join(dir, 'live', 'services.db');
    writeFileSync(live, servicesDb(seed));
    const config: AuditConfigInput = {
      services: {
        atheme: {
          backup: {
            host: 'vault',
            dir: join(dir, 'backup'),
            pattern: 'services.db.*',
            interval: '24h',
            scratch: join(dir, 'tmp'),
            items: [
              { name: 'services.db', kind: 'atheme-db', live: { host: 'nebula', path: live } },
            ],
          },
        },
      },
    };
    return { dir, config, live };
  }

  const audit = async (dir: string, config: AuditConfigInput): Promise<AuditReport> =>
    runAudit({
      config: parseAuditConfig(config, 'test', inventory),
      inventory,
      paths: auditPaths(dir, {}),
      history: memoryHistory(),
    });

  const backupAt = (dir: string, name: string, text: string, ageHours: number): void => {
    const file = join(dir, 'backup', name);
    writeFileSync(file, text);
    execFileSync('sh', ['-c', `cd ${dir}/backup && sha256sum ${name} > ${name}.sha256`]);
    const t = now0 - ageHours * 3600;
    utimesSync(file, t, t);
  };

  it('passes a fresh backup that restores and matches the live data, and removes its scratch dir', async () => {
    const { dir, config, live } = setup();
    backupAt(dir, 'services.db.1', readFileSync(live, 'utf8'), 2);
    const report = await audit(dir, config);
    expect(report.checks.map((c) => [c.id, c.verdict])).toEqual([
      ['backup-freshness:atheme', 'pass'],
      ['backup-content:atheme', 'pass'],
    ]);
    const content = report.checks[1]!;
    expect(content.evidence).toContain('sha256 matches services.db.1.sha256');
    expect(content.evidence.join('\n')).toMatch(
      /services\.db: restored and parses as Atheme reads it: 2 accounts, 2 nicks, 1 channels, 1 access entries/,
    );
    expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
    expect(
      JSON.parse(readFileSync(join(dir, '.baton', 'audit', 'last.json'), 'utf8')).counts,
    ).toEqual({ pass: 2, warn: 0, fail: 0 });
  });

  it('keeps the newest result of every check in last.json, also after a partial run', async () => {
    const { dir, config, live } = setup();
    backupAt(dir, 'services.db.1', readFileSync(live, 'utf8'), 72);
    await audit(dir, config);
    backupAt(dir, 'services.db.1', readFileSync(live, 'utf8'), 1);
    const partial = await runAudit({
      config: parseAuditConfig(config, 'test', inventory),
      inventory,
      paths: auditPaths(dir, {}),
      history: memoryHistory(),
      only: ['backup-freshness'],
    });
    expect(partial.checks.map((c) => c.id)).toEqual(['backup-freshness:atheme']);
    const last = JSON.parse(
      readFileSync(join(dir, '.baton', 'audit', 'last.json'), 'utf8'),
    ) as AuditReport;
    expect(last.checks.map((c) => [c.id, c.verdict]).sort()).toEqual([
      ['backup-content:atheme', 'pass'],
      ['backup-freshness:atheme', 'pass'],
    ]);
  });

  it('warns at 1.5 intervals and fails at 2, naming the newest backup and its age', async () => {
    const { dir, config, live } = setup();
    backupAt(dir, 'services.db.1', readFileSync(live, 'utf8'), 40);
    let r = (await audit(dir, config)).checks[0]!;
    expect(r.verdict).toBe('warn');
    backupAt(dir, 'services.db.1', readFileSync(live, 'utf8'), 72);
    r = (await audit(dir, config)).checks[0]!;
    expect(r.verdict).toBe('fail');
    expect(r.summary).toBe('newest backup 3 d old (policy every 24 h)');
    expect(r.evidence[0]).toContain(`vault:${dir}/backup/services.db.1`);
    expect(r.evidence[1]).toBe('policy: a backup every 24 h; warn above 36 h, fail above 2 d');
  });

  it('fails when there is no backup at all, or no backup directory', async () => {
    const { dir, config } = setup();
    let r = await audit(dir, config);
    expect(r.checks.map((c) => c.verdict)).toEqual(['fail', 'fail']);
    expect(r.checks[0]!.summary).toBe(`no backup of atheme in vault:${dir}/backup`);
    config.services!.atheme!.backup!.dir = join(dir, 'nowhere');
    r = await audit(dir, config);
    expect(r.checks[0]!.evidence).toEqual([`vault:${dir}/nowhere: no such directory`]);
  });

  it('fails a fresh backup that is empty: the job ran and backed up nothing', async () => {
    const { dir, config, live } = setup();
    backupAt(dir, 'services.db.1', readFileSync(live, 'utf8'), 30);
    backupAt(dir, 'services.db.2', '', 0);
    const r = await audit(dir, config);
    expect(r.checks[0]!.verdict).toBe('pass');
    expect(r.checks[1]!.verdict).toBe('fail');
    expect(r.checks[1]!.summary).toBe('services.db.2: services.db: empty (0 bytes) in the backup');
  });

  it('fails a backup Atheme would refuse, and one changed after its checksum', async () => {
    const { dir, config, live } = setup();
    backupAt(dir, 'services.db.1', readFileSync(live, 'utf8').replace(' 0 0\n', ' 0 BROKEN\n'), 1);
    let r = (await audit(dir, config)).checks[1]!;
    expect(r.verdict).toBe('fail');
    expect(r.summary).toMatch(
      /Atheme would refuse it: db-read-uint: needed int at file services.db line 7 token 8/,
    );
    backupAt(dir, 'services.db.1', readFileSync(live, 'utf8'), 1);
    writeFileSync(join(dir, 'backup', 'services.db.1'), 'DBV 12\n', { flag: 'a' });
    r = (await audit(dir, config)).checks[1]!;
    expect(r.summary).toBe(
      'services.db.1: services.db.1.sha256 does not match the backup: it changed after it was written',
    );
  });

  it('restores a tar backup and finds a database left out of it (incident 000)', async () => {
    const { dir, live } = setup();
    const src = join(dir, 'src');
    mkdirSync(join(src, 'etc', 'atheme'), { recursive: true });
    mkdirSync(join(src, 'var', 'lib', 'atheme'), { recursive: true });
    writeFileSync(join(src, 'etc', 'atheme', 'atheme.conf'), 'serverinfo { };\n');
    writeFileSync(join(src, 'var', 'lib', 'atheme', 'services.db'), readFileSync(live));
    const config: AuditConfigInput = {
      services: {
        atheme: {
          backup: {
            host: 'vault',
            dir: join(dir, 'backup'),
            pattern: 'atheme-*.tar.gz',
            format: 'tar',
            interval: '24h',
            scratch: join(dir, 'tmp'),
            items: [
              { name: 'services.db', path: 'var/lib/atheme/services.db', kind: 'atheme-db' },
              { name: '/etc/atheme', path: 'etc/atheme', kind: 'dir' },
            ],
          },
        },
      },
    };
    execFileSync('tar', ['-czf', join(dir, 'backup', 'atheme-1.tar.gz'), '-C', src, 'etc', 'var']);
    let r = (await audit(dir, config)).checks[1]!;
    expect(r.evidence).toContain('/etc/atheme: 1 files, 16 B restored');
    expect(r.verdict).toBe('pass');
    execFileSync('tar', ['-czf', join(dir, 'backup', 'atheme-2.tar.gz'), '-C', src, 'etc']);
    const t = now0 + 5;
    utimesSync(join(dir, 'backup', 'atheme-2.tar.gz'), t, t);
    r = (await audit(dir, config)).checks[1]!;
    expect(r.verdict).toBe('fail');
    expect(r.summary).toBe(
      'atheme-2.tar.gz: services.db: missing: not in the backup (var/lib/atheme/services.db)',
    );
    expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
  });

  it('runs an item’s own check command on the restored copy', async () => {
    const { dir, live } = setup();
    const config: AuditConfigInput = {
      services: {
        app: {
          backup: {
            host: 'vault',
            dir: join(dir, 'backup'),
            pattern: 'dump.*',
            interval: '1d',
            scratch: join(dir, 'tmp'),
            items: [{ name: 'dump', kind: 'file', command: 'grep -q "^DBV 12" "$1"' }],
          },
        },
      },
    };
    writeFileSync(join(dir, 'backup', 'dump.1'), readFileSync(live));
    expect((await audit(dir, config)).checks[1]!.verdict).toBe('pass');
    writeFileSync(join(dir, 'backup', 'dump.1'), 'not a dump\n');
    const r = (await audit(dir, config)).checks[1]!;
    expect(r.verdict).toBe('fail');
    expect(r.summary).toBe('dump.1: dump: its check command failed (exit 1)');
  });

  it('a check whose host cannot be reached is a failure with that evidence, never a skip', async () => {
    const dir = scratch();
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'key')]);
    // Nothing listens on port 1 of the loopback: the connection is refused.
    const inv = {
      stack: 'far',
      hosts: [
        {
          name: 'gone',
          roles: [],
          address: '127.0.0.1',
          connection: 'ssh' as const,
          ssh: {
            user: 'root',
            port: 1,
            hostKeys: [`SHA256:${'A'.repeat(43)}`],
            identityFile: join(dir, 'key'),
          },
        },
      ],
    };
    const report = await runAudit({
      config: parseAuditConfig({ filesystems: [{ host: 'gone', path: '/srv' }] }, 'test', inv),
      inventory: inv,
      paths: auditPaths(dir, {}),
      history: memoryHistory(),
    });
    const r = report.checks[0]!;
    expect(r.verdict).toBe('fail');
    expect(r.summary).toBe('could not reach gone: the check could not look');
    expect(r.evidence[0]).toMatch(/^unreachable: /);
  });
});

describe('disk headroom', () => {
  const m = (at: number, used: number, files: DiskMeasurement['files'] = []): DiskMeasurement => ({
    at: new Date(at).toISOString(),
    host: 'h',
    path: '/p',
    sizeBytes: 1000 * 2 ** 20,
    usedBytes: used,
    availBytes: 1000 * 2 ** 20 - used,
    files,
  });

  it('computes days until full from the oldest measurement in the window', () => {
    const t = Date.parse('2026-11-21T12:00:00Z');
    const past = [
      m(t - 10 * 86_400_000, 0),
      m(t - 2 * 86_400_000, 100 * 2 ** 20),
      m(t - 60_000, 0),
    ];
    const g = growthRate(m(t, 300 * 2 ** 20), past, 7 * 86_400_000)!;
    expect(g.since.at).toBe(past[1]!.at);
    expect(g.bytesPerDay).toBe(100 * 2 ** 20);
    expect(g.daysUntilFull).toBe(7);
    expect(growthRate(m(t, 0), [m(t - 60_000, 0)], 7 * 86_400_000)).toBeUndefined();
  });

  it('names the file that grew the most since the last measurement', () => {
    const prev = m(0, 0, [
      { path: '/p/retry.log', bytes: 10 },
      { path: '/p/big.db', bytes: 900 },
    ]);
    const now = [
      { path: '/p/big.db', bytes: 910 },
      { path: '/p/retry.log', bytes: 500 },
    ];
    expect(runawayFile(now, prev)).toEqual({ path: '/p/retry.log', bytes: 500, grewBytes: 490 });
  });

  it('measures a local filesystem, keeps the measurement and finds a growing file on the next look', async () => {
    const dir = scratch();
    const history = memoryHistory();
    let clock = Date.now();
    const config = parseAuditConfig(
      { filesystems: [{ host: 'vault', path: dir, warnDays: 1e6, failDays: 0 }] },
      'test',
      inventory,
    );
    const run = (): Promise<AuditReport> =>
      runAudit({
        config,
        inventory,
        paths: auditPaths(dir, {}),
        history,
        now: () => new Date(clock),
      });
    let r = (await run()).checks[0]!;
    expect(r.verdict).toBe('pass');
    expect(r.evidence[1]).toBe('growth rate: first measurement here; the next audit has a trend');
    writeFileSync(join(dir, 'retry.log'), Buffer.alloc(8 * 2 ** 20, 1));
    clock += 3600_000;
    r = (await run()).checks[0]!;
    expect(r.verdict).toBe('warn');
    expect(r.evidence[1]).toMatch(
      /^growth rate: grew [\d.]+ MiB in 1 h \([\d.]+ MiB\/day\): full in /,
    );
    expect(r.evidence[2]).toMatch(
      new RegExp(`^biggest recently grown file: ${dir}/retry.log, 8.0 MiB`),
    );
    expect(history.of('vault', dir)).toHaveLength(2);
  });
});

describe('alerting', () => {
  const policy = alertSchema.parse({
    command: 'true',
    escalateAfter: 3,
    repeat: '1h',
    maxRepeat: '4h',
  });
  const result = (id: string, verdict: CheckResult['verdict'], at: number): CheckResult => ({
    id,
    kind: 'backup-freshness',
    title: id,
    targets: ['vault'],
    incident: '004',
    verdict,
    summary: `${id} is ${verdict}`,
    evidence: [`evidence of ${id}`],
    remedy: 'do something',
    measuredAt: new Date(at).toISOString(),
    durationMs: 1,
  });

  it('repeats an unacknowledged failure with growing pauses, escalates on the third alert, stops when acknowledged', () => {
    let state: AlertState = { version: 1, failures: {} };
    const t0 = Date.parse('2026-11-21T00:00:00Z');
    const levels: string[] = [];
    for (const hours of [0, 0.5, 1, 2, 3, 5, 9, 13, 17]) {
      const t = t0 + hours * HOUR;
      const plan = planAlerts(state, [result('a', 'fail', t)], policy, new Date(t));
      levels.push(`${hours}h:${plan.due.map((d) => `${d.level}#${d.count}`).join(',') || '-'}`);
      state = plan.next;
    }
    // Pauses 1 h, 2 h, 4 h, then 4 h (maxRepeat): not once an hour forever.
    expect(levels).toEqual([
      '0h:alert#1',
      '0.5h:-',
      '1h:alert#2',
      '2h:-',
      '3h:escalated#3',
      '5h:-',
      '9h:escalated#4',
      '13h:escalated#5',
      '17h:escalated#6',
    ]);
    state.failures['a']!.ack = { at: 'now', by: 'alice' };
    const acked = planAlerts(
      state,
      [result('a', 'fail', t0 + 40 * HOUR)],
      policy,
      new Date(t0 + 40 * HOUR),
    );
    expect(acked.due).toEqual([]);
    expect(acked.quiet).toEqual([{ id: 'a', why: 'acknowledged by alice at now' }]);
    const passed = planAlerts(
      acked.next,
      [result('a', 'pass', t0 + 41 * HOUR)],
      policy,
      new Date(t0 + 41 * HOUR),
    );
    expect(passed.due.map((d) => d.level)).toEqual(['resolved']);
    expect(passed.next.failures).toEqual({});
  });

  it('sends the failures on stdin, escalates to a second command, and counts no alert whose command failed', async () => {
    const dir = scratch();
    const file = join(dir, 'alerts.json');
    const primary = join(dir, 'primary.txt');
    const second = join(dir, 'second.txt');
    const p = alertSchema.parse({
      command: `cat >> ${primary}; echo "level=$BATON_AUDIT_LEVEL" >> ${primary}`,
      escalateCommand: `cat > ${second}`,
      escalationContact: 'oncall@example.org',
      escalateAfter: 2,
      repeat: '1s',
      maxRepeat: '1s',
    });
    const report = (t: number, verdict: CheckResult['verdict'] = 'fail'): AuditReport => ({
      stack: 'test',
      startedAt: new Date(t).toISOString(),
      finishedAt: new Date(t).toISOString(),
      durationMs: 1,
      verdict,
      counts: { pass: 0, warn: 0, fail: 1 },
      checks: [result('disk:vault:/srv', verdict, t)],
    });
    const t0 = Date.now();
    let out = await alertFailures(report(t0), p, file, new Date(t0));
    expect(out.sent.map((s) => s.level)).toEqual(['alert']);
    expect(readFileSync(primary, 'utf8')).toContain(
      'FAIL disk:vault:/srv: disk:vault:/srv is fail',
    );
    expect(readFileSync(primary, 'utf8')).toContain('acknowledge: baton audit ack disk:vault:/srv');
    out = await alertFailures(report(t0 + 2000), p, file, new Date(t0 + 2000));
    expect(out.sent.map((s) => s.level)).toEqual(['escalated']);
    expect(readFileSync(second, 'utf8')).toContain('Escalated to oncall@example.org');
    expect(readFileSync(second, 'utf8')).toContain('ESCALATED FAIL disk:vault:/srv');
    expect(readFileSync(primary, 'utf8')).toContain('level=escalated');
    const broken = { ...p, command: 'exit 3', escalateCommand: undefined };
    out = await alertFailures(report(t0 + 4000), broken, file, new Date(t0 + 4000));
    expect(out.deliveries).toEqual([{ command: 'alert', items: 1, exitCode: 3, error: 'exit 3' }]);
    expect(readAlertState(file).failures['disk:vault:/srv']!.alerts).toBe(2);
    acknowledge(file, undefined, 'disk:vault:/srv', { at: 'then', by: 'bob', note: 'on it' });
    out = await alertFailures(report(t0 + 6000), p, file, new Date(t0 + 6000));
    expect(out.sent).toEqual([]);
    expect(() => acknowledge(file, undefined, 'nothing', { at: 'x', by: 'y' })).toThrow(
      'nothing is not failing: nothing to acknowledge',
    );
    out = await alertFailures(report(t0 + 8000, 'pass'), p, file, new Date(t0 + 8000));
    expect(out.sent.map((s) => s.level)).toEqual(['resolved']);
    expect(readAlertState(file).failures).toEqual({});
  });

  it('writes an alert a person can act on', () => {
    const text = alertMessage(
      { stack: 'production', finishedAt: '2026-11-21T00:00:00Z' },
      [{ id: 'a', level: 'alert', count: 1, failingSince: 'x', result: result('a', 'fail', 0) }],
      policy,
    );
    expect(text).toBe(
      [
        'baton audit, stack production, 2026-11-21T00:00:00Z: 1 failing check',
        '',
        'FAIL a: a is fail',
        '  1st alert; failing since x; measured 1970-01-01T00:00:00.000Z',
        '  - evidence of a',
        '  what to do: do something',
        '  acknowledge: baton audit ack a',
        '',
      ].join('\n'),
    );
  });
});

describe('output', () => {
  const report: AuditReport = {
    stack: 'test',
    startedAt: '2026-11-21T00:00:00.000Z',
    finishedAt: '2026-11-21T00:00:01.000Z',
    durationMs: 1000,
    verdict: 'fail',
    counts: { pass: 1, warn: 0, fail: 1 },
    checks: [
      {
        id: 'trust:atheme',
        kind: 'trust',
        title: 'Every ircd trusts <services>',
        targets: ['paralysis'],
        incident: '003',
        verdict: 'fail',
        summary: 'paralysis does not trust services.irc.test',
        evidence: ['paralysis: no <uline server="services.irc.test">'],
        remedy: 'Add the U-line & rehash.',
        measuredAt: '2026-11-21T00:00:00.500Z',
        durationMs: 12,
      },
      {
        id: 'dns-ttl:atheme',
        kind: 'dns-ttl',
        title: 'TTLs',
        targets: ['ns1'],
        incident: '004',
        verdict: 'pass',
        summary: 'fine',
        evidence: ['TTL 300 s'],
        measuredAt: '2026-11-21T00:00:00.600Z',
        durationMs: 3,
      },
    ],
  };

  it('prints a table, with evidence and remedy for what failed', () => {
    const text = renderTable(report);
    expect(text.split('\n').slice(0, 5)).toEqual([
      'baton audit of stack test at 2026-11-21T00:00:01Z: 2 checks: 1 pass, 0 warn, 1 fail (1 s)',
      '',
      '        CHECK           FOUND',
      '  FAIL  trust:atheme    paralysis does not trust services.irc.test',
      '  pass  dns-ttl:atheme  fine',
    ]);
    expect(text).toContain('  - paralysis: no <uline server="services.irc.test">');
    expect(text).toContain('  what to do: Add the U-line & rehash.');
    expect(text).not.toContain('TTL 300 s');
    expect(text.trimEnd().split('\n').pop()).toBe('The audit FAILED: 1 check failed.');
  });

  it('writes a self-contained page that escapes what it shows', () => {
    const html = renderHtml(report);
    expect(html).toContain('<title>test status: FAIL</title>');
    expect(html).toContain('&lt;uline server=&quot;services.irc.test&quot;&gt;');
    expect(html).toContain('Add the U-line &amp; rehash.');
    expect(html).not.toMatch(/<(link|img|iframe)\b|src=|https?:\/\//);
    expect(escapeHtml(`<a href="x">'`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;');
  });

  it('reads the key slots of a LUKS dump', () => {
    expect(
      keySlotsInUse('Version: 2\nKeyslots:\n  0: luks2\n\tKey: 512 bits\n  3: luks2\nTokens:\n'),
    ).toEqual([0, 3]);
    expect(keySlotsInUse('Key Slot 0: ENABLED\nKey Slot 1: DISABLED\n')).toEqual([0]);
  });

  it('keeps state under .baton/audit or $BATON_HOME/audit', () => {
    expect(auditPaths('/w', {}).history).toBe('/w/.baton/audit/history.jsonl');
    expect(auditPaths('/w', { BATON_HOME: '/h' }).alerts).toBe('/h/audit/alerts.json');
    expect(existsSync('/w')).toBe(false);
  });
});
