/**
 * Is the standby ready to take over now? Incident 003 found out during the
 * outage: the copy it started from was 48 hours old, the binary would not
 * start there, and only one ircd trusted the standby's services. Each part
 * is its own check: the age of the newest usable copy (the RPO a failover
 * now would have), the binary's portability on the standby, the U-line on
 * every ircd, and the TTLs of the records a failover cuts.
 */
import { posix } from 'node:path';
import { checkAthemeDb, type AthemeDb } from '../integrations/atheme/db.ts';
import { verifyAnswer } from '../integrations/dns/index.ts';
import type { CommandRunner } from '../integrations/dns/command.ts';
import { localRunner } from '../integrations/dns/command.ts';
import { checkPortability, readRemoteElf, remoteResolver } from '../integrations/elf.ts';
import { BatonError, errorMessage } from '../core/errors.ts';
import { includes, parseTags } from '../integrations/inspircd/config.ts';
import { verifyServiceTrust } from '../integrations/irc/verify.ts';
import { sh } from '../core/shell.ts';
import { incompleteCopy, mostComplete, type Counts } from '../steps/atheme.ts';
import { compareAtheme } from './backup.ts';
import type { AuditCheck, CheckContext, Finding, HostProbe, Verdict } from './check.ts';
import { worst } from './check.ts';
import type { StandbyConfig } from './config.ts';
import { formatBytes, formatDuration, parseDuration } from './duration.ts';

interface Copy {
  host: string;
  kind: 'atheme-db' | 'file';
  path: string;
  mtime: number;
  bytes: number;
  hostNow: number;
}

const iso = (seconds: number): string =>
  new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** Files matching a path that may be a glob (`/srv/backup/atheme/services.db.*`), without checksum files. */
async function listCopies(
  probe: HostProbe,
  host: string,
  path: string,
  kind: Copy['kind'],
): Promise<Copy[]> {
  const dir = posix.dirname(path);
  const name = posix.basename(path);
  const out = await probe(
    sh`date +%s; test -d ${dir} && find ${dir} -mindepth 1 -maxdepth 1 -type f -name ${name} ! -name '*.sha256' ! -name '.*' -printf '%T@ %s %p\\0'`,
    { allowFail: true },
  );
  const [clock, ...rest] = out.stdout.split('\n');
  const hostNow = Number(clock);
  return rest
    .join('\n')
    .split('\0')
    .map((r) => /^(\d+)(?:\.\d+)? (\d+) (.+)$/s.exec(r))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ host, kind, path: m[3]!, mtime: Number(m[1]), bytes: Number(m[2]), hostNow }));
}

export function standbyCopyCheck(service: string, s: StandbyConfig): AuditCheck {
  const max = parseDuration(s.maxCopyAge)!;
  const warnAt = s.warnCopyAge ? parseDuration(s.warnCopyAge)! : max / 2;
  return {
    id: `standby-copy:${service}`,
    kind: 'standby-copy',
    title: `A recent copy of ${service}'s data is ready for ${s.standby} (the RPO of a failover now)`,
    targets: [...new Set([...s.copies.map((c) => c.host), ...(s.primaryPath ? [s.primary] : [])])],
    incident: '003: the backup services ran on a 48-hour-old database',
    async run(ctx): Promise<Finding> {
      const candidates: Copy[] = [];
      const unreachable: string[] = [];
      for (const c of s.copies) {
        try {
          candidates.push(...(await listCopies(ctx.probe(c.host), c.host, c.path, c.kind)));
        } catch (e) {
          unreachable.push(`${c.host}:${c.path}: cannot be listed: ${errorMessage(e)}`);
        }
      }
      candidates.sort((a, b) => b.mtime - a.mtime);
      const rejected: string[] = [];
      // The complete-copy rule: a copy must hold what the most complete copy (or the live primary) holds.
      const { reference, read } = await referenceCounts(ctx, s, candidates.slice(0, 10));
      const policy = `policy: a copy at most ${formatDuration(max)} old (warn above ${formatDuration(warnAt)})`;
      for (const c of candidates.slice(0, 10)) {
        const probe = ctx.probe(c.host);
        const sum = await probe(
          sh`test ! -e ${`${c.path}.sha256`} || (cd ${posix.dirname(c.path)} && sha256sum -c --status ${`${posix.basename(c.path)}.sha256`})`,
          { allowFail: true },
        );
        if (sum.exitCode !== 0) {
          rejected.push(`${c.host}:${c.path}: does not match its .sha256`);
          continue;
        }
        let detail = formatBytes(c.bytes);
        const against: string[] = [];
        if (c.kind === 'atheme-db') {
          const check =
            read.get(`${c.host}:${c.path}`) ??
            checkAthemeDb((await probe(sh`cat -- ${c.path}`, { timeoutMs: 120_000 })).stdout, {
              file: c.path,
            });
          if (!check.ok) {
            rejected.push(`${c.host}:${c.path}: Atheme would refuse it: ${check.fault.message}`);
            continue;
          }
          const short = incompleteCopy(
            { bytes: c.bytes, fingerprint: check.fingerprint },
            reference,
            s.maxShrinkPercent,
          );
          if (short) {
            rejected.push(`${c.host}:${c.path}: ${short}`);
            continue;
          }
          detail = `${check.fingerprint.accounts} accounts, ${check.fingerprint.channels} channels`;
          if (s.primaryPath) against.push(await againstPrimary(ctx, s, check.db, c.mtime));
        } else if (c.bytes === 0) {
          rejected.push(`${c.host}:${c.path}: empty`);
          continue;
        }
        const ageMs = Math.max(0, (c.hostNow - c.mtime) * 1000);
        const verdict: Verdict = ageMs > max ? 'fail' : ageMs > warnAt ? 'warn' : 'pass';
        return {
          verdict,
          summary: `newest usable copy is ${formatDuration(ageMs)} old: a failover now loses up to ${formatDuration(ageMs)}`,
          evidence: [
            `newest usable copy: ${c.host}:${c.path}, modified ${iso(c.mtime)}, ${formatDuration(ageMs)} old by ${c.host}'s clock (${detail})`,
            `RPO of a failover to ${s.standby} now: ${formatDuration(ageMs)} of changes lost`,
            ...against,
            policy,
            ...rejected.map((r) => `refused: ${r}`),
            ...unreachable,
          ],
          ...(verdict === 'pass'
            ? {}
            : {
                remedy: `The data ${s.standby} would start from is ${formatDuration(ageMs)} old: check the job that copies it (and the backups), and copy it now.`,
              }),
          metrics: {
            ageSeconds: Math.round(ageMs / 1000),
            maxSeconds: max / 1000,
            copy: `${c.host}:${c.path}`,
          },
        };
      }
      return {
        verdict: 'fail',
        summary: `no usable copy of ${service}'s data for ${s.standby}`,
        evidence: [
          candidates.length
            ? `none of the ${candidates.length} copies verified`
            : `no copy at ${s.copies.map((c) => `${c.host}:${c.path}`).join(', ')}`,
          ...rejected.map((r) => `refused: ${r}`),
          ...unreachable,
          policy,
        ],
        remedy: `A failover to ${s.standby} would have nothing to start from: copy the data there (or fix the backups) now.`,
      };
    },
  };
}

/** The most complete of the copies that load, and of the primary's live data when it can be read. */
async function referenceCounts(
  ctx: CheckContext,
  s: StandbyConfig,
  copies: Copy[],
): Promise<{
  reference: { counts: Counts; from: string } | undefined;
  /** The copies as parsed, by `host:path`, so that each is read once. */
  read: Map<string, ReturnType<typeof checkAthemeDb>>;
}> {
  const seen: Array<{ where: string; counts: Counts }> = [];
  const read = new Map<string, ReturnType<typeof checkAthemeDb>>();
  for (const c of copies) {
    if (c.kind !== 'atheme-db' || c.bytes === 0) continue;
    const r = await ctx.probe(c.host)(sh`cat -- ${c.path}`, {
      allowFail: true,
      timeoutMs: 120_000,
    });
    if (r.exitCode !== 0) continue;
    const check = checkAthemeDb(r.stdout, { file: c.path });
    read.set(`${c.host}:${c.path}`, check);
    if (check.ok) seen.push({ where: `${c.host}:${c.path}`, counts: check.fingerprint });
  }
  if (s.primaryPath) {
    try {
      const r = await ctx.probe(s.primary)(sh`cat -- ${s.primaryPath}`, {
        allowFail: true,
        timeoutMs: 30_000,
      });
      const live = r.exitCode === 0 ? checkAthemeDb(r.stdout, { file: s.primaryPath }) : undefined;
      if (live?.ok)
        seen.push({ where: `the primary ${s.primary}:${s.primaryPath}`, counts: live.fingerprint });
    } catch {
      // An unreachable primary gives no reference; the copies still do.
    }
  }
  return { reference: mostComplete(seen), read };
}

/** What the copy lacks of the primary's live data, in one line; an unreachable primary is said, not failed. */
async function againstPrimary(
  ctx: CheckContext,
  s: StandbyConfig,
  copy: AthemeDb,
  takenAt: number,
): Promise<string> {
  const where = `${s.primary}:${s.primaryPath}`;
  try {
    const r = await ctx.probe(s.primary)(sh`cat -- ${s.primaryPath!}`, {
      allowFail: true,
      timeoutMs: 30_000,
    });
    if (r.exitCode !== 0) return `primary ${where}: cannot be read (exit ${r.exitCode})`;
    const live = checkAthemeDb(r.stdout, { file: s.primaryPath! });
    if (!live.ok) return `primary ${where}: does not parse: ${live.fault.message}`;
    return `against the primary ${where}: ${compareAtheme(copy, live.db, takenAt).lines.join('; ')}`;
  } catch (e) {
    return `primary ${where}: unreachable (${errorMessage(e).split('\n')[0]}): nothing to compare with`;
  }
}

export function standbyBinaryCheck(service: string, s: StandbyConfig): AuditCheck {
  return {
    id: `standby-binary:${service}`,
    kind: 'standby-binary',
    title: `${posix.basename(s.binary)} will start on ${s.standby} (policy ${s.policy})`,
    targets: [s.standby],
    incident: '003: the services binary was dynamically linked and would not start on the standby',
    async run(ctx): Promise<Finding> {
      const probe = ctx.probe(s.standby);
      const exists = await probe(sh`test -x ${s.binary}`, { allowFail: true });
      if (exists.exitCode !== 0) {
        return {
          verdict: 'fail',
          summary: `${s.standby} has no executable ${s.binary}`,
          evidence: [`${s.standby}:${s.binary}: missing or not executable`],
          remedy: `Install the services binary on ${s.standby} (a static build: docs/static-builds.md).`,
        };
      }
      const elf = await readRemoteElf(probe, s.binary);
      const resolver = await remoteResolver(s.standby, probe);
      const report = await checkPortability(elf, resolver, {
        policy: s.policy,
        installPath: s.binary,
      });
      const linkage = elf.interpreter
        ? `dynamic (interpreter ${elf.interpreter}, ${elf.needed.length} libraries needed: ${elf.needed.join(', ')})`
        : 'static';
      const evidence = [
        `${s.standby}:${s.binary}: ELF${elf.class} ${elf.machineName}, ${linkage}`,
        ...report.conditions.map(
          (c) => `${c.ok ? 'ok' : 'FAILS'}: ${c.name}: expected ${c.expected}; found ${c.found}`,
        ),
      ];
      const failed = report.conditions.filter((c) => !c.ok);
      return {
        verdict: report.ok ? 'pass' : 'fail',
        summary: report.ok
          ? `${posix.basename(s.binary)} resolves every need on ${s.standby} (${elf.interpreter ? 'dynamic' : 'static'})`
          : `${posix.basename(s.binary)} would not start on ${s.standby}: ${failed[0]?.found ?? 'see evidence'}`,
        evidence,
        ...(report.ok
          ? {}
          : {
              remedy:
                failed.map((c) => c.remedy).filter(Boolean)[0] ??
                `Ship a binary that runs on ${s.standby} (docs/static-builds.md).`,
            }),
        metrics: { linkage: elf.interpreter ? 'dynamic' : 'static', needs: elf.needed.length },
      };
    },
  };
}

interface IrcdConfigFacts {
  files: string[];
  /** file:line of each `<uline>` naming the services. */
  ulines: string[];
}

async function readIrcdConfig(
  probe: HostProbe,
  config: string,
  servicesName: string,
): Promise<IrcdConfigFacts> {
  const files: string[] = [];
  const ulines: string[] = [];
  const queue = [config];
  const wanted = servicesName.toLowerCase();
  while (queue.length && files.length < 20) {
    const file = queue.shift()!;
    if (files.includes(file)) continue;
    const r = await probe(sh`cat -- ${file}`, { allowFail: true });
    if (r.exitCode !== 0) {
      if (file === config)
        throw new BatonError('COMMAND_FAILED', `cannot read ${config}: ${r.stderr.trim()}`);
      continue;
    }
    files.push(file);
    // Only tag names and the uline's line leave this function: link blocks hold passwords.
    for (const tag of parseTags(r.stdout, file)) {
      if (tag.name === 'uline' && tag.attrs.server?.toLowerCase() === wanted)
        ulines.push(`${file}:${tag.line}`);
    }
    queue.push(...includes(r.stdout, file));
  }
  return { files, ulines };
}

export function trustCheck(service: string, s: StandbyConfig, ircds: string[]): AuditCheck {
  return {
    id: `trust:${service}`,
    kind: 'trust',
    title: `Every ircd trusts ${s.servicesName} (U-line), wherever services run`,
    targets: ircds,
    incident: '003: only the ircd services linked to trusted the backup services',
    async run(ctx): Promise<Finding> {
      const perHost = await Promise.all(
        ircds.map(async (name) => {
          const lines: string[] = [];
          let verdict: Verdict = 'pass';
          try {
            const facts = await readIrcdConfig(ctx.probe(name), s.ircdConfig, s.servicesName);
            if (facts.ulines.length) {
              lines.push(
                `${name}: <uline server="${s.servicesName}"> at ${facts.ulines.join(', ')}`,
              );
            } else {
              verdict = 'fail';
              lines.push(
                `${name}: no <uline server="${s.servicesName}"> in ${facts.files.join(', ')}`,
              );
            }
          } catch (e) {
            verdict = 'fail';
            lines.push(`${name}: configuration cannot be read: ${errorMessage(e)}`);
          }
          if (s.liveTrust) {
            const live = await liveTrust(ctx, name, s);
            if (live.verdict === 'fail') verdict = 'fail';
            else if (live.verdict === 'warn' && verdict === 'pass') verdict = 'warn';
            lines.push(live.line);
          }
          return { name, verdict, lines };
        }),
      );
      const failing = perHost.filter((h) => h.verdict !== 'pass').map((h) => h.name);
      const untrusting = perHost.filter((h) => h.verdict === 'fail').map((h) => h.name);
      const verdict = worst(perHost.map((h) => h.verdict));
      const summary =
        verdict === 'pass'
          ? `${ircds.length} of ${ircds.length} ircds U-line ${s.servicesName}`
          : verdict === 'warn'
            ? `every ircd U-lines ${s.servicesName} in its configuration; not provable live on ${failing.join(', ')}`
            : `${untrusting.join(', ')} ${untrusting.length === 1 ? 'does' : 'do'} not trust ${s.servicesName}`;
      return {
        verdict,
        summary,
        evidence: perHost.flatMap((h) => h.lines),
        ...(verdict === 'pass'
          ? {}
          : {
              remedy:
                verdict === 'warn'
                  ? `${s.servicesName} is not on the network (services down or not linked), so trust cannot be proven live: start or relink services, then audit again.`
                  : `Add <uline server="${s.servicesName}" silent="yes"> to ${untrusting.join(', ')} and rehash: every server must trust services, not only their uplink, or a failover leaves part of the network ignoring them.`,
            }),
        metrics: { ircds: ircds.length, untrusting: untrusting.length },
      };
    },
  };
}

async function liveTrust(
  ctx: CheckContext,
  name: string,
  s: StandbyConfig,
): Promise<{ verdict: Verdict; line: string }> {
  const transport = ctx.transport(name);
  if (!transport.forward) {
    return {
      verdict: 'pass',
      line: `${name}: live probe skipped: its transport cannot open a connection to the ircd`,
    };
  }
  const host = ctx.host(name);
  const trust = await verifyServiceTrust(
    {
      host: name,
      address: '127.0.0.1',
      port: s.ircPort,
      connect: () => transport.forward!(host, s.ircPort),
    },
    s.servicesName,
    { timeoutMs: 10_000 },
  );
  if (trust.trusted) return { verdict: 'pass', line: `${name}: live: ${trust.condition.found}` };
  if (!trust.present && trust.refusal === undefined && trust.server === undefined) {
    return {
      verdict: 'fail',
      line: `${name}: live: cannot ask the ircd: ${trust.condition.found}`,
    };
  }
  if (!trust.present) {
    // Services are down or unlinked: the U-line cannot be proven from outside now.
    return {
      verdict: 'warn',
      line: `${name}: live: not provable: ${trust.condition.found} (services down or not linked?)`,
    };
  }
  return { verdict: 'fail', line: `${name}: live: ${trust.condition.found}` };
}

export function dnsTtlCheck(
  service: string,
  s: StandbyConfig,
  dns: { zone: string; servers: Array<{ name: string; address: string; port: number }> },
  via: string | undefined,
): AuditCheck {
  const records = s.dns!.records;
  return {
    id: `dns-ttl:${service}`,
    kind: 'dns-ttl',
    title: `TTLs of ${records.map((r) => r.name).join(', ')} let a failover take effect quickly`,
    targets: via ? [via] : ['controller'],
    incident: '004: the DNS change to the new server took 24 hours',
    async run(ctx): Promise<Finding> {
      const run: CommandRunner = via
        ? async (command, options = {}) => {
            const r = await ctx.probe(via)(command, {
              allowFail: true,
              ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
            });
            return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr };
          }
        : localRunner;
      const evidence: string[] = [];
      const verdicts: Verdict[] = [];
      const bad: string[] = [];
      for (const r of records) {
        const name = r.name.endsWith('.') ? r.name.slice(0, -1) : `${r.name}.${dns.zone}`;
        const result = await verifyAnswer(dns.servers, name, r.type, [], { run });
        for (const a of result.answers) {
          const at = `${a.server} (${a.address}${via ? ` via ${via}` : ''})`;
          if (a.error || a.ttl === undefined) {
            verdicts.push('fail');
            bad.push(name);
            evidence.push(
              `${name} ${r.type} at ${at}: ${a.error ?? `no answer (${a.status ?? 'no status'})`}`,
            );
            continue;
          }
          const ok = a.ttl <= r.maxTtl;
          verdicts.push(ok ? 'pass' : 'fail');
          if (!ok) bad.push(name);
          evidence.push(
            `${name} ${r.type} ${a.values.join(' ')} at ${at}: TTL ${a.ttl} s (max ${r.maxTtl} s)${ok ? '' : ': TOO LONG'}`,
          );
        }
      }
      const verdict = worst(verdicts);
      const longest = Math.max(0, ...evidence.map((l) => Number(/TTL (\d+) s/.exec(l)?.[1] ?? 0)));
      return {
        verdict,
        summary:
          verdict === 'pass'
            ? `every record within its TTL limit: resolvers follow a cut within ${formatDuration(longest * 1000)}`
            : `${[...new Set(bad)].join(', ')}: TTL too long or no answer`,
        evidence,
        ...(verdict === 'pass'
          ? {}
          : {
              remedy: `Lower the TTL of ${[...new Set(bad)].join(', ')} (or fix the answer): after a cut, resolvers keep the old address for the whole TTL.`,
            }),
        metrics: { longestTtl: longest },
      };
    },
  };
}
