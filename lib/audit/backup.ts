/**
 * Backups, checked from the backup target itself and independently of the
 * backup job: how old the newest backup is (incident 004: a month, because
 * the nightly job was never re-enabled), and whether it holds every required
 * item and restores (incidents 000 and 001: backups that silently lacked
 * the databases). The restore goes into a scratch directory on the backup
 * host that the check makes and removes; nothing else is written anywhere.
 */
import { posix } from 'node:path';
import { checkAthemeDb, fingerprint, type AthemeDb } from '../integrations/atheme/db.ts';
import { BatonError, errorMessage } from '../core/errors.ts';
import { sh } from '../core/shell.ts';
import type { AuditCheck, CheckContext, Finding, HostProbe, Verdict } from './check.ts';
import { worst } from './check.ts';
import type { BackupConfig, BackupItem } from './config.ts';
import { formatBytes, formatDuration, parseDuration } from './duration.ts';

export interface BackupEntry {
  name: string;
  path: string;
  /** Modification time, Unix seconds. */
  mtime: number;
  bytes: number;
  type: 'file' | 'dir' | 'other';
}

export interface BackupListing {
  /** The backup host's clock when it listed, Unix seconds. */
  hostNow: number;
  /** Newest first. */
  backups: BackupEntry[];
}

const iso = (seconds: number): string =>
  new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** The backups in `dir` matching `pattern` (not `exclude`), newest first, with the host's clock. */
export async function listBackups(
  probe: HostProbe,
  b: Pick<BackupConfig, 'dir' | 'pattern' | 'exclude' | 'format'>,
): Promise<BackupListing> {
  const excludes = b.exclude.flatMap((x) => ['!', '-name', x]);
  const out = await probe(
    sh`date +%s && find ${b.dir} -mindepth 1 -maxdepth 1 -name ${b.pattern} ${excludes} -printf '%T@ %s %y %f\\0'`,
  );
  const [clock, ...rest] = out.stdout.split('\n');
  const body = rest.join('\n');
  const backups: BackupEntry[] = [];
  for (const record of body.split('\0')) {
    const m = /^(\d+)(?:\.\d+)? (\d+) (\S) (.+)$/s.exec(record);
    if (!m) continue;
    const type = m[3] === 'f' ? 'file' : m[3] === 'd' ? 'dir' : 'other';
    backups.push({
      name: m[4]!,
      path: posix.join(b.dir, m[4]!),
      mtime: Number(m[1]),
      bytes: Number(m[2]),
      type,
    });
  }
  const wanted = b.format === 'dir' ? 'dir' : 'file';
  return {
    hostNow: Number(clock),
    backups: backups.filter((e) => e.type === wanted).sort((x, y) => y.mtime - x.mtime),
  };
}

/** Warn past 1.5 intervals, fail past 2: one missed run is a warning, two are a failure. */
export function freshnessVerdict(ageMs: number, intervalMs: number): Verdict {
  if (ageMs > 2 * intervalMs) return 'fail';
  if (ageMs > 1.5 * intervalMs) return 'warn';
  return 'pass';
}

export function backupFreshnessCheck(service: string, b: BackupConfig): AuditCheck {
  return {
    id: `backup-freshness:${service}`,
    kind: 'backup-freshness',
    title: `Newest backup of ${service} is recent (${b.host}:${b.dir})`,
    targets: [b.host],
    incident: '004: the newest backup was a month old; the nightly job was never re-enabled',
    async run(ctx) {
      const interval = parseDuration(b.interval)!;
      const policy = `policy: a backup every ${formatDuration(interval)}; warn above ${formatDuration(1.5 * interval)}, fail above ${formatDuration(2 * interval)}`;
      const where = `${b.host}:${b.dir}`;
      const listing = await listed(ctx, b);
      if ('missing' in listing) return listing.missing;
      const newest = listing.backups[0];
      if (!newest) {
        return {
          verdict: 'fail',
          summary: `no backup of ${service} in ${where}`,
          evidence: [
            `no ${b.format === 'dir' ? 'directory' : 'file'} matching ${b.pattern} in ${where}`,
            policy,
          ],
          remedy: `Check that the backup job of ${service} is enabled and writes to ${where}, then run it now.`,
          metrics: { backups: 0, intervalSeconds: interval / 1000 },
        };
      }
      const ageMs = Math.max(0, (listing.hostNow - newest.mtime) * 1000);
      const verdict = freshnessVerdict(ageMs, interval);
      const oldest = listing.backups[listing.backups.length - 1]!;
      return {
        verdict,
        summary: `newest backup ${formatDuration(ageMs)} old (policy every ${formatDuration(interval)})`,
        evidence: [
          `newest backup: ${b.host}:${newest.path}, modified ${iso(newest.mtime)}, ${formatDuration(ageMs)} old by ${b.host}'s clock (${formatBytes(newest.bytes)})`,
          policy,
          `${listing.backups.length} backup${listing.backups.length === 1 ? '' : 's'} in ${where}, the oldest from ${iso(oldest.mtime)}`,
        ],
        ...(verdict === 'pass'
          ? {}
          : {
              remedy: `No backup of ${service} for ${formatDuration(ageMs)}: check that the backup job is enabled and succeeds (incident 004: it was not re-enabled after a change), then take a backup now.`,
            }),
        metrics: {
          ageSeconds: Math.round(ageMs / 1000),
          intervalSeconds: interval / 1000,
          backups: listing.backups.length,
          newest: `${b.host}:${newest.path}`,
        },
      };
    },
  };
}

async function listed(
  ctx: CheckContext,
  b: BackupConfig,
): Promise<BackupListing | { missing: Finding }> {
  const probe = ctx.probe(b.host);
  const exists = await probe(sh`test -d ${b.dir}`, { allowFail: true });
  if (exists.exitCode !== 0) {
    return {
      missing: {
        verdict: 'fail',
        summary: `backup directory ${b.host}:${b.dir} does not exist`,
        evidence: [`${b.host}:${b.dir}: no such directory`],
        remedy: `Check the backup target: the job of this service should write to ${b.host}:${b.dir}.`,
      },
    };
  }
  return listBackups(probe, b);
}

interface ItemReport {
  verdict: Verdict;
  lines: string[];
  /** The line that says what is wrong, when the verdict is not pass. */
  problem?: string;
  remedy?: string;
}

/** Accounts and channels: what a services.db holds that people would miss. */
interface DbFacts {
  db: AthemeDb;
  line: string;
}

function dbFacts(text: string, file: string): DbFacts | { fault: string } {
  const check = checkAthemeDb(text, { file });
  if (!check.ok) return { fault: check.fault.message };
  const f = check.fingerprint;
  return {
    db: check.db,
    line: `${f.accounts} accounts, ${f.nicks} nicks, ${f.channels} channels, ${f.chanacs} access entries, fingerprint ${f.sha256.slice(0, 16)}`,
  };
}

function names(list: string[]): string {
  return list.length > 5
    ? `${list.slice(0, 5).join(', ')} and ${list.length - 5} more`
    : list.join(', ');
}

/** The backup's services.db against the live one: what the live data has that the backup should have had. */
export function compareAtheme(
  backup: AthemeDb,
  live: AthemeDb,
  takenAt: number,
): { verdict: Verdict; lines: string[] } {
  const fpB = fingerprint(backup);
  const fpL = fingerprint(live);
  if (fpB.sha256 === fpL.sha256)
    return {
      verdict: 'pass',
      lines: ['the live data holds the same accounts, nicks and channels'],
    };
  const lines: string[] = [];
  let verdict: Verdict = 'pass';
  const inBackup = {
    accounts: new Set(backup.accounts.map((a) => a.name.toLowerCase())),
    channels: new Set(backup.channels.map((c) => c.name.toLowerCase())),
  };
  const missing = {
    accounts: live.accounts.filter((a) => !inBackup.accounts.has(a.name.toLowerCase())),
    channels: live.channels.filter((c) => !inBackup.channels.has(c.name.toLowerCase())),
  };
  // Registered a minute or more before the backup was written: the backup should hold it.
  const before = (t: number): boolean => t < takenAt - 60;
  const lostAccounts = missing.accounts.filter((a) => before(a.registeredAt)).map((a) => a.name);
  const lostChannels = missing.channels.filter((c) => before(c.registeredAt)).map((c) => c.name);
  const newer =
    missing.accounts.length - lostAccounts.length + missing.channels.length - lostChannels.length;
  if (backup.accounts.length === 0 && backup.channels.length === 0 && fpL.accounts + fpL.channels) {
    verdict = 'fail';
    lines.push(
      `the backup holds no accounts and no channels; the live data has ${fpL.accounts} accounts and ${fpL.channels} channels`,
    );
  } else if (lostAccounts.length || lostChannels.length) {
    verdict = 'warn';
    if (lostAccounts.length)
      lines.push(
        `live accounts registered before the backup but missing from it: ${names(lostAccounts)}`,
      );
    if (lostChannels.length)
      lines.push(
        `live channels registered before the backup but missing from it: ${names(lostChannels)}`,
      );
  }
  if (newer > 0)
    lines.push(
      `${newer} account${newer === 1 ? '' : 's'} or channel${newer === 1 ? '' : 's'} registered since the backup (the next backup takes them)`,
    );
  const dropped =
    backup.accounts.filter(
      (a) => !live.accounts.some((l) => l.name.toLowerCase() === a.name.toLowerCase()),
    ).length +
    backup.channels.filter(
      (c) => !live.channels.some((l) => l.name.toLowerCase() === c.name.toLowerCase()),
    ).length;
  if (dropped > 0) lines.push(`${dropped} account(s) or channel(s) dropped since the backup`);
  if (lines.length === 0) lines.push('same accounts and channels; nicks or access entries changed');
  return { verdict, lines };
}

export function backupContentCheck(service: string, b: BackupConfig): AuditCheck {
  const hosts = [b.host, ...b.items.flatMap((i) => (i.live ? [i.live.host] : []))];
  return {
    id: `backup-content:${service}`,
    kind: 'backup-content',
    title: `Newest backup of ${service} holds ${b.items.map((i) => i.name).join(', ')} and restores`,
    targets: [...new Set(hosts)],
    incident:
      '000 and 001: backups that silently lacked the databases; only a test restore shows it',
    timeoutMs: 300_000,
    async run(ctx) {
      const listing = await listed(ctx, b);
      if ('missing' in listing) return listing.missing;
      const newest = listing.backups[0];
      if (!newest) {
        return {
          verdict: 'fail',
          summary: `no backup of ${service} to restore`,
          evidence: [`no backup matching ${b.pattern} in ${b.host}:${b.dir}`],
          remedy: `Run the backup job of ${service}, then audit again.`,
        };
      }
      const probe = ctx.probe(b.host);
      const evidence: string[] = [
        `newest backup: ${b.host}:${newest.path} (${formatBytes(newest.bytes)}, ${iso(newest.mtime)})`,
      ];
      const verdicts: Verdict[] = [];
      const problems: string[] = [];
      const remedies: string[] = [];
      if (b.format !== 'dir') {
        const sum = await probe(
          sh`cd ${b.dir} && if test -e ${`${newest.name}.sha256`}; then sha256sum -c --status ${`${newest.name}.sha256`} && echo match || echo mismatch; else echo none; fi`,
          { allowFail: true },
        );
        const said = sum.stdout.trim();
        if (said === 'mismatch') {
          verdicts.push('fail');
          const line = `${newest.name}.sha256 does not match the backup: it changed after it was written`;
          evidence.push(line);
          problems.push(line);
          remedies.push('Do not rely on this backup: take a new one and find what altered it.');
        } else if (said === 'match') evidence.push(`sha256 matches ${newest.name}.sha256`);
      }
      const scratch = await makeScratch(probe, b.scratch);
      try {
        const restore =
          b.format === 'file'
            ? sh`cp -- ${newest.path} ${`${scratch}/${newest.name}`}`
            : b.format === 'tar'
              ? sh`tar -xf ${newest.path} -C ${scratch}`
              : sh`cp -a -- ${`${newest.path}/.`} ${`${scratch}/`}`;
        const restored = await probe(restore, { allowFail: true, timeoutMs: 240_000 });
        if (restored.exitCode !== 0) {
          return {
            verdict: 'fail',
            summary: `the test restore of ${newest.name} failed`,
            evidence: [
              ...evidence,
              `test restore into ${b.host}:${scratch} failed (exit ${restored.exitCode}): ${lastLines(restored.stderr)}`,
            ],
            remedy: `The newest backup of ${service} does not restore: fix the backup job, take a new backup and audit again.`,
          };
        }
        evidence.push(
          `test restore into ${b.host}:${scratch} (${b.format === 'tar' ? 'tar -x' : 'cp'}), removed afterwards`,
        );
        for (const item of b.items) {
          const path =
            b.format === 'file'
              ? `${scratch}/${newest.name}`
              : posix.join(scratch, posix.normalize(item.path!).replace(/^(\.\.?\/)+|^\/+/g, ''));
          let report: ItemReport;
          try {
            report = await checkItem(ctx, probe, item, path, newest.mtime);
          } catch (e) {
            report = {
              verdict: 'fail',
              lines: [`${item.name}: could not be checked: ${errorMessage(e)}`],
            };
          }
          verdicts.push(report.verdict);
          evidence.push(...report.lines);
          if (report.verdict !== 'pass') problems.push(report.problem ?? report.lines[0]!);
          if (report.remedy) remedies.push(report.remedy);
        }
      } finally {
        await probe(sh`rm -rf -- ${scratch}`, { allowFail: true });
      }
      const verdict = worst(verdicts);
      const count = b.items.length;
      return {
        verdict,
        summary:
          verdict === 'pass'
            ? `${newest.name} restores and holds ${count === 1 ? b.items[0]!.name : `all ${count} items`}`
            : `${newest.name}: ${problems[0] ?? 'see the evidence'}`,
        evidence,
        ...(remedies.length ? { remedy: [...new Set(remedies)].join(' ') } : {}),
        metrics: { backup: `${b.host}:${newest.path}`, items: b.items.length },
      };
    },
  };
}

async function makeScratch(probe: HostProbe, base: string): Promise<string> {
  const made = await probe(sh`mktemp -d ${`${base}/baton-audit-restore.XXXXXX`}`);
  const dir = made.stdout.trim();
  if (!dir.startsWith(`${base}/baton-audit-restore.`))
    throw new BatonError(
      'COMMAND_FAILED',
      `mktemp returned ${JSON.stringify(dir)}, not a directory under ${base}`,
    );
  return dir;
}

function lastLines(text: string): string {
  return text.trim().split('\n').slice(-3).join(' | ') || 'no output';
}

async function checkItem(
  ctx: CheckContext,
  probe: HostProbe,
  item: BackupItem,
  path: string,
  takenAt: number,
): Promise<ItemReport> {
  const stat = await probe(sh`stat -c '%s %F' -- ${path}`, { allowFail: true });
  if (stat.exitCode !== 0) {
    return {
      verdict: 'fail',
      lines: [`${item.name}: missing: not in the backup (${item.path ?? posix.basename(path)})`],
      remedy: `The backup does not contain ${item.name}: add it to the backup job's list (incident 000: a missing config file left the databases out), take a new backup and audit again.`,
    };
  }
  const [size, ...typeWords] = stat.stdout.trim().split(' ');
  const type = typeWords.join(' ');
  const bytes = Number(size);
  const lines: string[] = [];
  let verdict: Verdict = 'pass';
  let remedy: string | undefined;
  let problem: string | undefined;
  if (item.kind === 'dir') {
    if (type !== 'directory') {
      return {
        verdict: 'fail',
        lines: [`${item.name}: is a ${type} in the backup, not a directory`],
        remedy: `Back up the directory ${item.name} itself.`,
      };
    }
    const count = await probe(
      sh`find ${path} -type f -printf '%s\n' | awk '{ n++; s += $1 } END { print n + 0; print s + 0 }'`,
    );
    const [files, total] = count.stdout.trim().split('\n').map(Number);
    if (!files) {
      return {
        verdict: 'fail',
        lines: [`${item.name}: empty directory in the backup`],
        remedy: `The backup holds ${item.name} but none of its files: check the backup job's includes.`,
      };
    }
    lines.push(`${item.name}: ${files} files, ${formatBytes(total ?? 0)} restored`);
    if (item.live) {
      const live = await ctx
        .probe(item.live.host)(sh`find ${item.live.path} -type f | wc -l`, { allowFail: true })
        .then((r) => (r.exitCode === 0 ? Number(r.stdout.trim()) : undefined));
      if (live !== undefined) lines.push(`live ${item.live.host}:${item.live.path}: ${live} files`);
    }
  } else {
    if (!/regular/.test(type)) {
      return {
        verdict: 'fail',
        lines: [`${item.name}: is a ${type} in the backup, not a file`],
        remedy: `Back up the file ${item.name} itself.`,
      };
    }
    if (bytes === 0) {
      return {
        verdict: 'fail',
        lines: [`${item.name}: empty (0 bytes) in the backup`],
        remedy: `The backup holds an empty ${item.name}: the job read nothing (a wrong path, a dump that failed). Fix it, take a new backup and audit again.`,
      };
    }
    if (item.kind === 'atheme-db') {
      const text = (await probe(sh`cat -- ${path}`, { timeoutMs: 120_000 })).stdout;
      const facts = dbFacts(text, item.name);
      if ('fault' in facts) {
        return {
          verdict: 'fail',
          lines: [`${item.name}: restored, but Atheme would refuse it: ${facts.fault}`],
          remedy: `Atheme would exit on this backup ("exiting to avoid data loss"): find why the job wrote a damaged file and take a new backup.`,
        };
      }
      lines.push(`${item.name}: restored and parses as Atheme reads it: ${facts.line}`);
      if (item.live) {
        const liveText = (
          await ctx.probe(item.live.host)(sh`cat -- ${item.live.path}`, { timeoutMs: 120_000 })
        ).stdout;
        const live = dbFacts(liveText, item.live.path);
        if ('fault' in live) {
          problem = `live ${item.live.host}:${item.live.path} does not parse: ${live.fault}`;
          lines.push(problem);
          verdict = 'warn';
          remedy = `The live services.db on ${item.live.host} would not load: see the handover's database check.`;
        } else {
          lines.push(`live ${item.live.host}:${item.live.path}: ${live.line}`);
          const cmp = compareAtheme(facts.db, live.db, takenAt);
          lines.push(...cmp.lines);
          verdict = cmp.verdict;
          if (cmp.verdict !== 'pass') {
            problem = `${item.name}: ${cmp.lines[0]}`;
            remedy = `The backup lacks data the live services.db had when it was taken: check what the job copies (and when), then take a new backup.`;
          }
        }
      }
    } else {
      const sum = await probe(sh`sha256sum -- ${path} | cut -d' ' -f1`);
      const digest = sum.stdout.trim();
      lines.push(`${item.name}: ${formatBytes(bytes)}, sha256 ${digest.slice(0, 16)}`);
      if (item.live) {
        const live = await ctx.probe(item.live.host)(
          sh`sha256sum -- ${item.live.path} | cut -d' ' -f1`,
          { allowFail: true },
        );
        lines.push(
          live.exitCode !== 0
            ? `live ${item.live.host}:${item.live.path}: cannot be read`
            : live.stdout.trim() === digest
              ? `live ${item.live.host}:${item.live.path}: identical`
              : `live ${item.live.host}:${item.live.path}: differs (changed since the backup)`,
        );
      }
    }
  }
  if (item.command) {
    const run = await probe(sh`sh -c ${item.command} sh ${path}`, {
      allowFail: true,
      timeoutMs: 120_000,
    });
    if (run.exitCode !== 0) {
      return {
        verdict: 'fail',
        lines: [
          ...lines,
          `${item.name}: its check command failed (exit ${run.exitCode}): ${lastLines(run.stderr || run.stdout)}`,
        ],
        problem: `${item.name}: its check command failed (exit ${run.exitCode})`,
        remedy: `The restored ${item.name} does not pass its own check: take a new backup and find why.`,
      };
    }
    lines.push(`${item.name}: its check command passed`);
  }
  return { verdict, lines, ...(problem ? { problem } : {}), ...(remedy ? { remedy } : {}) };
}
