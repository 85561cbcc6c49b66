/**
 * Headroom of each filesystem that holds service data, logs or backups: free
 * space now, and days until full at the recent growth rate, with the file
 * that grew the most named (incident 002: a log rewritten on every retry
 * filled the disk over a week, and nobody looked at the slope).
 */
import { BatonError } from '../core/errors.ts';
import { sh } from '../core/shell.ts';
import type { AuditCheck, Finding, Verdict } from './check.ts';
import { worst } from './check.ts';
import type { FilesystemConfig } from './config.ts';
import { formatBytes, formatDuration, parseDuration } from './duration.ts';
import type { DiskMeasurement, GrownFile } from './history.ts';

/** Growth over less than this is noise, not a rate. */
const MIN_SPAN_MS = 5 * 60_000;
const DAY_MS = 86_400_000;

export interface Growth {
  since: DiskMeasurement;
  spanMs: number;
  grewBytes: number;
  bytesPerDay: number;
  /** Undefined when the filesystem is not growing. */
  daysUntilFull: number | undefined;
}

/** The growth rate from the oldest measurement inside the window (at least MIN_SPAN_MS old). */
export function growthRate(
  now: DiskMeasurement,
  past: readonly DiskMeasurement[],
  windowMs: number,
): Growth | undefined {
  const t = Date.parse(now.at);
  const usable = past.filter((m) => {
    const age = t - Date.parse(m.at);
    return age >= MIN_SPAN_MS && age <= windowMs && m.sizeBytes === now.sizeBytes;
  });
  const since = usable[0];
  if (!since) return undefined;
  const spanMs = t - Date.parse(since.at);
  const grewBytes = now.usedBytes - since.usedBytes;
  const bytesPerDay = (grewBytes / spanMs) * DAY_MS;
  return {
    since,
    spanMs,
    grewBytes,
    bytesPerDay,
    daysUntilFull: bytesPerDay > 0 ? now.availBytes / bytesPerDay : undefined,
  };
}

/** The file that grew the most since `previous`; a file not measured then counts by its size. */
export function runawayFile(
  files: readonly GrownFile[],
  previous: DiskMeasurement | undefined,
): { path: string; bytes: number; grewBytes: number | undefined } | undefined {
  const before = new Map((previous?.files ?? []).map((f) => [f.path, f.bytes]));
  const ranked = files.map((f) => {
    const was = before.get(f.path);
    return { ...f, grewBytes: was === undefined ? undefined : f.bytes - was };
  });
  ranked.sort((a, b) => (b.grewBytes ?? b.bytes) - (a.grewBytes ?? a.bytes));
  return ranked[0];
}

function percent(part: number, whole: number): number {
  return whole > 0 ? (part / whole) * 100 : 0;
}

export function diskCheck(fs: FilesystemConfig): AuditCheck {
  const where = `${fs.host}:${fs.path}`;
  return {
    id: `disk:${where}`,
    kind: 'disk',
    title: `Headroom of ${where}`,
    targets: [fs.host],
    incident: '002: a log rewritten on every retry filled the disk over a week',
    async run(ctx): Promise<Finding> {
      const probe = ctx.probe(fs.host);
      const now = ctx.now();
      const past = ctx.history.of(fs.host, fs.path);
      const previous = past[past.length - 1];
      const sinceSeconds = previous
        ? Math.floor(Date.parse(previous.at) / 1000)
        : Math.floor(now.getTime() / 1000) - 86_400;
      const df = await probe(sh`df -P -B1 -- ${fs.path} | tail -n 1`);
      const cols = df.stdout.trim().split(/\s+/);
      const [source, size, used, avail] = [
        cols[0],
        Number(cols[1]),
        Number(cols[2]),
        Number(cols[3]),
      ];
      const mount = cols.slice(5).join(' ');
      if (!Number.isFinite(size) || !Number.isFinite(avail)) {
        throw new BatonError(
          'COMMAND_FAILED',
          `df on ${fs.host} printed nothing usable for ${fs.path}: ${df.stdout.trim()}`,
        );
      }
      // The biggest files modified since the last look, on this filesystem only.
      // Bounded on the host: a huge tree costs the runaway file's name, not the check.
      const found = await probe(
        sh`timeout 50 find ${fs.path} -xdev -type f -newermt ${`@${sinceSeconds}`} -printf '%s %p\\0' 2>/dev/null | sort -z -rn | head -z -n 10`,
        { allowFail: true, timeoutMs: 70_000 },
      );
      const files: GrownFile[] = found.stdout
        .split('\0')
        .map((r) => /^(\d+) (.+)$/s.exec(r))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => ({ bytes: Number(m[1]), path: m[2]! }));
      const measurement: DiskMeasurement = {
        at: now.toISOString(),
        host: fs.host,
        path: fs.path,
        sizeBytes: size!,
        usedBytes: used!,
        availBytes: avail!,
        files,
      };
      ctx.history.add(measurement);

      const freePct = percent(avail!, size!);
      const freeVerdict: Verdict =
        freePct < fs.failFreePercent ? 'fail' : freePct < fs.warnFreePercent ? 'warn' : 'pass';
      const evidence = [
        `${where} (${source} on ${mount}): ${formatBytes(avail!)} free of ${formatBytes(size!)} (${freePct.toFixed(1)} %); warn below ${fs.warnFreePercent} %, fail below ${fs.failFreePercent} %`,
      ];
      const growth = growthRate(measurement, past, parseDuration(fs.growthWindow)!);
      let trendVerdict: Verdict = 'pass';
      if (!growth) {
        evidence.push(
          past.length === 0
            ? 'growth rate: first measurement here; the next audit has a trend'
            : `growth rate: no measurement between 5 min and ${formatDuration(parseDuration(fs.growthWindow)!)} ago to compare with`,
        );
      } else if (growth.daysUntilFull === undefined) {
        evidence.push(
          `growth rate: ${growth.grewBytes < 0 ? 'shrank' : 'grew'} ${formatBytes(Math.abs(growth.grewBytes))} in ${formatDuration(growth.spanMs)}: not filling`,
        );
      } else {
        const days = growth.daysUntilFull;
        trendVerdict = days < fs.failDays ? 'fail' : days < fs.warnDays ? 'warn' : 'pass';
        const fullAt = new Date(now.getTime() + days * DAY_MS).toISOString().slice(0, 16) + 'Z';
        evidence.push(
          `growth rate: grew ${formatBytes(growth.grewBytes)} in ${formatDuration(growth.spanMs)} (${formatBytes(growth.bytesPerDay)}/day): full in ${days < 1 ? formatDuration(days * DAY_MS) : `${days.toFixed(1)} days`} (about ${fullAt}); warn under ${fs.warnDays} days, fail under ${fs.failDays}`,
        );
      }
      const runaway = runawayFile(files, previous);
      if (runaway) {
        const grew =
          runaway.grewBytes === undefined
            ? `written in the last ${formatDuration(now.getTime() - sinceSeconds * 1000)}`
            : `+${formatBytes(runaway.grewBytes)} since ${previous!.at.slice(0, 16)}Z`;
        evidence.push(
          `biggest recently grown file: ${runaway.path}, ${formatBytes(runaway.bytes)} (${grew})`,
        );
      } else evidence.push('no file under it was modified since the last measurement');
      const verdict = worst([freeVerdict, trendVerdict]);
      const days = growth?.daysUntilFull;
      return {
        verdict,
        summary:
          `${formatBytes(avail!)} free (${freePct.toFixed(1)} %)` +
          (days !== undefined
            ? `, full in ${days < 1 ? formatDuration(days * DAY_MS) : `${days.toFixed(1)} days`}`
            : '') +
          (verdict !== 'pass' && runaway ? `; growing: ${runaway.path}` : ''),
        evidence,
        ...(verdict === 'pass'
          ? {}
          : {
              remedy: `Free space on ${where} before it fills${runaway ? `: look at ${runaway.path} first (what writes it, and why so much)` : ''}. A full disk stops services that cannot write; stop safely before it does.`,
            }),
        metrics: {
          sizeBytes: size!,
          availBytes: avail!,
          freePercent: Number(freePct.toFixed(2)),
          bytesPerDay: growth ? Math.round(growth.bytesPerDay) : null,
          daysUntilFull: days === undefined ? null : Number(days.toFixed(3)),
          runaway: runaway?.path ?? null,
        },
      };
    },
  };
}
