/**
 * Moving IRC services (Atheme) between hosts: the parameters, facts and steps
 * the handover, failback and failover runbooks are made of. Every fact is
 * gathered before the first change; every change has its check, verify and undo.
 */
import { posix } from 'node:path';
import { z } from 'zod';
import { checkPortability, readRemoteElf, remoteResolver } from '../integrations/elf.ts';
import { BUILTIN_TESTNETS, type Host } from '../core/inventory.ts';
import { canRecordActiveHost, recordActiveHost } from '../integrations/pulumi-stack.ts';
import { includes, servicesTrust, type ServicesTrust } from '../integrations/inspircd/config.ts';
import { secret } from '../core/params.ts';
import {
  condition,
  type ApplyContext,
  type Condition,
  type Exec,
  type FactsContext,
  type StepDef,
} from '../core/runbook.ts';
import { sh, type Cmd } from '../core/shell.ts';
import { BatonError } from '../core/errors.ts';
import { dnsParams, duration, gatherDnsFacts, type DnsFacts } from './dns.ts';
import { activeUnit, hostParams, reachable, roomStep, type MoveFacts } from './host.ts';
import { gatherLeaseFacts, leaseParams, type LeaseState } from './lease.ts';
import { absolutePath, port, unitName, userName } from './params.ts';
import { serviceParams } from './service.ts';
import { recordedSha256, sha256Of, transferStep, type HostFile } from './transfer.ts';
import {
  describeDb,
  incompleteCopy,
  lostSince,
  mostComplete,
  readDb,
  type DbSummary,
} from './atheme.ts';
import {
  identifyEverywhere,
  operServ,
  topicEverywhere,
  trustFrom,
  waitForServices,
} from './irc.ts';

const ircName = z
  .string()
  .regex(
    /^[A-Za-z0-9_`^{}|\[\]\\-]{1,32}$/,
    'must be an IRC account name (letters, digits, _-[]{}|^`)',
  );
const ircChannel = z
  .string()
  .regex(
    /^[#&][^\x00-\x20,\x07:]{1,49}$/,
    'must be a channel name (#name, no spaces or control characters)',
  );
/** Sent inside an IRC line: a newline would end the line and start another command. */
const ircPassword = z
  .string()
  .min(1)
  .regex(/^[^\x00-\x1f\x7f ]+$/, 'must not contain spaces or control characters');
export const servicesParams = z.object({
  from: hostParams.shape.from,
  to: hostParams.shape.to,
  unit: serviceParams.shape.unit,
  binary: absolutePath
    .default('/usr/bin/atheme-services')
    .describe('the services binary on the target'),
  config: absolutePath.default('/etc/atheme/atheme.conf'),
  db: absolutePath.default('/var/lib/atheme/services.db'),
  dbOwner: userName.default('atheme').describe('owner of the services.db'),
  startFlags: absolutePath
    .default('/etc/atheme/start.env')
    .describe(
      'the EnvironmentFile of the services unit whose ATHEME_FLAGS the ExecStart passes on: -r starts services read-only',
    ),
  ircdConfig: absolutePath.default('/etc/inspircd/inspircd.conf'),
  ircdUnit: unitName.default('inspircd'),
  servicesLink: absolutePath
    .default('/etc/inspircd/services-link.conf')
    .describe('the include file with the services <link> block'),
  ircPort: port.default(6667),
  binaryPolicy: z.enum(['resolvable', 'static']).default('resolvable'),
  window: hostParams.shape.window,
  maxLeadMinutes: hostParams.shape.maxLeadMinutes,
  maxTtl: dnsParams.shape.maxTtl,
  maxTtlWait: dnsParams.shape.maxTtlWait,
  maxClockSkew: hostParams.shape.maxClockSkew,
  lease: leaseParams.shape.lease,
  leaseConf: leaseParams.shape.leaseConf,
  leaseSeconds: leaseParams.shape.leaseSeconds,
  leaseGrace: leaseParams.shape.leaseGrace,
  opsAccount: ircName.default('batonops'),
  opsPassword: secret(ircPassword).describe('password of the services operator account'),
  canary: ircName
    .default('alice')
    .describe('an account registered before the move, identified after it'),
  canaryPassword: secret(ircPassword),
  canaryChannel: ircChannel
    .default('#ops')
    .describe('a channel the canary account may set the topic of'),
  tsigKey: dnsParams.shape.tsigKey,
  linkPassword: secret(
    z
      .string()
      .min(1)
      .regex(
        /^[^\x00-\x1f\x7f"<>]+$/,
        'must not contain quotes, angle brackets or control characters',
      ),
  )
    .optional()
    .describe("the services link password, needed when the primary's link block cannot be copied"),
  linkPort: port.default(7000),
  backupDir: absolutePath
    .default('/srv/backup/atheme')
    .describe('where backup hosts keep services.db copies'),
  maxCopyAgeHours: z.number().min(0).default(48).describe('oldest copy a failover may start from'),
  maxCopyShrinkPercent: z
    .number()
    .min(0)
    .max(100)
    .default(2)
    .describe(
      'how many fewer accounts, nicks or channels than the most complete copy a copy may hold and still be used',
    ),
  maxSplitWait: z
    .number()
    .int()
    .min(0)
    .default(300)
    .describe('seconds a failover waits for the network to drop the dead primary'),
});

export type ServicesParams = z.output<typeof servicesParams>;

export interface IrcdFacts extends ServicesTrust {
  files: string[];
}

/** Everything the IRC services steps decide from: the move, its DNS and lease, and Atheme's data. */
export interface ServicesFacts extends MoveFacts, DnsFacts, LeaseState {
  servicesName: string;
  primaryDb?: DbSummary;
  ircds: Record<string, IrcdFacts>;
  standbyHasDb: boolean;
  standbyHasLink: boolean;
  /** Size of the data to move: the primary's db, or the copy a failover starts from. */
  dbBytes: number;
  /** Failover: the newest copy that verified, on the standby or a backup host. */
  copy?: { host: string; path: string; takenAt: string; ageSeconds: number; summary: string };
  /** Failover: copies that did not verify, and why. */
  rejectedCopies?: string[];
  snapshot: string;
  incoming: string;
  /** A pulumi CLI and infra/ are here, so the stack can be told which host is active. */
  pulumi: boolean;
}

type Step = StepDef<ServicesParams, ServicesFacts>;

async function ircdFacts(probe: Exec, config: string, servicesName: string): Promise<IrcdFacts> {
  const files: Array<{ file: string; text: string }> = [];
  const queue = [config];
  while (queue.length && files.length < 20) {
    const file = queue.shift()!;
    if (files.some((f) => f.file === file)) continue;
    const r = await probe(sh`cat ${file}`, { allowFail: true });
    if (r.exitCode !== 0) continue;
    files.push({ file, text: r.stdout });
    queue.push(...includes(r.stdout, file));
  }
  return { ...servicesTrust(files, servicesName), files: files.map((f) => f.file) };
}

export interface FactOptions {
  /** `handover`: the primary is reachable; `failover`: it may not be. */
  kind: 'handover' | 'failover';
  /** Role of the default target when `to` is not given. */
  toRole: string;
}

/** Gather everything the steps decide from, before any check or change. */
export async function gatherServicesFacts(
  ctx: FactsContext<ServicesParams>,
  options: FactOptions,
): Promise<ServicesFacts> {
  const { params, inventory } = ctx;
  const ircds = ctx.hosts('ircd');
  const candidates = inventory.hosts.filter((h) =>
    h.roles.some((r) => ['ircd', 'services', 'primary', 'standby'].includes(r)),
  );
  const reach = new Map<string, boolean>();
  await Promise.all(
    candidates.map(async (h) => reach.set(h.name, await reachable(ctx.probe(h), h.name))),
  );
  let from = params.from;
  if (!from) {
    const active: string[] = [];
    for (const h of candidates)
      if (reach.get(h.name) && (await activeUnit(ctx.probe(h), params.unit))) active.push(h.name);
    if (active.length === 1) from = active[0];
    else if (active.length === 0 && options.kind === 'failover') {
      from = inventory.hosts.find((h) => h.roles.includes('services') && !reach.get(h.name))?.name;
    }
    if (!from) {
      throw new Error(
        active.length > 1
          ? `services (${params.unit}) are active on ${active.join(' and ')}: two instances; stop one by hand before anything else`
          : `services (${params.unit}) are not active on any reachable host; say which host had them with --param from=HOST`,
      );
    }
  }
  const fromHost = ctx.hostNamed(from);
  const to =
    params.to ??
    inventory.hosts.find((h) => h.roles.includes(options.toRole) && h.name !== from)?.name;
  if (!to)
    throw new Error(
      `no host with role ${options.toRole} to move services to; pass --param to=HOST`,
    );
  if (to === from) throw new Error(`from and to are both ${to}`);
  const toHost = ctx.hostNamed(to);
  const fromReachable = reach.get(from) ?? (await reachable(ctx.probe(fromHost), from));

  const configHost = fromReachable ? fromHost : toHost;
  const conf = await ctx.probe(configHost)(sh`cat ${params.config}`);
  const servicesName = /serverinfo\s*\{[^}]*?\bname\s*=\s*"([^"]+)"/s.exec(conf.stdout)?.[1];
  if (!servicesName)
    throw new Error(`${params.config} on ${configHost.name} names no serverinfo name`);

  const dns = await gatherDnsFacts(ctx, fromHost);
  const lease = await gatherLeaseFacts(ctx, to);

  const ircdInfo: Record<string, IrcdFacts> = {};
  for (const h of ircds) {
    if (!reach.get(h.name) && !(await reachable(ctx.probe(h), h.name))) continue;
    ircdInfo[h.name] = await ircdFacts(ctx.probe(h), params.ircdConfig, servicesName);
  }
  const toIrcd = ircdInfo[to];
  const primaryDb = fromReachable ? await readDb(ctx.probe(fromHost), params.db) : undefined;
  return {
    from,
    to,
    servicesName,
    ...dns,
    ...(primaryDb ? { primaryDb } : {}),
    ircds: ircdInfo,
    ...lease,
    standbyHasDb:
      (await ctx.probe(toHost)(sh`test -e ${params.db}`, { allowFail: true })).exitCode === 0,
    standbyHasLink: Boolean(toIrcd && toIrcd.links.length > 0),
    fromReachable,
    dbBytes: primaryDb?.bytes ?? 0,
    pulumi: canRecordActiveHost(),
    // Fixed names: a plan must not change with the run id, or no approval would ever match it.
    snapshot: `${params.db}.handover`,
    incoming: `${params.db}.incoming`,
  };
}

// ---- preflight -------------------------------------------------------------

export function databaseStep(): Step {
  return {
    id: 'database',
    title: 'The primary services.db loads completely',
    targets: (ctx) => [ctx.facts.from],
    async check({ facts, host: h }) {
      const db = facts.primaryDb!;
      return condition(`services.db on ${h.name} parses as Atheme reads it`, !db.fault, {
        expected: 'every record readable',
        found: describeDb(db),
        remedy: `Atheme on ${h.name} would refuse this file on its next start. Repair the record named, then plan again.`,
      });
    },
  };
}

export function binaryStep(): Step {
  return {
    id: 'binary',
    title: 'The services binary will run on the standby',
    targets: (ctx) => [ctx.facts.to],
    async check({ probe, params, host: h }) {
      const exists = await probe(sh`test -x ${params.binary}`, { allowFail: true });
      if (exists.exitCode !== 0) {
        return condition(`${params.binary} on ${h.name}`, false, {
          expected: 'an executable services binary',
          found: 'none',
          remedy: `Install the services binary on ${h.name} (a static build: see docs/static-builds.md).`,
        });
      }
      const elf = await readRemoteElf(probe, params.binary);
      const resolver = await remoteResolver(h.name, probe);
      const report = await checkPortability(elf, resolver, {
        policy: params.binaryPolicy,
        installPath: params.binary,
      });
      return report.conditions;
    },
  };
}

export function trustStep(kind: 'handover' | 'failover'): Step {
  return {
    id: 'trust',
    title: 'Every ircd trusts the services server name (U-line)',
    targets: (ctx) => Object.keys(ctx.facts.ircds),
    concurrency: 4,
    async check(ctx) {
      const { facts, host: h, params } = ctx;
      const info = facts.ircds[h.name]!;
      const conditions: Condition[] = [
        condition(`${h.name} U-lines ${facts.servicesName}`, info.uline, {
          expected: `<uline server="${facts.servicesName}"> in ${info.files.join(', ') || params.ircdConfig}`,
          found: info.uline ? 'present' : 'absent',
          remedy: `Add <uline server="${facts.servicesName}" silent="yes"> to ${h.name}'s configuration and rehash it; every server must trust services, not only their uplink.`,
        }),
      ];
      if (kind === 'handover' && info.uline) {
        const [live] = await trustFrom(ctx, [h], params.ircPort, facts.servicesName);
        conditions.push(live!.condition);
      }
      return conditions;
    },
  };
}

// ---- changes ---------------------------------------------------------------

/** OperServ answers that prove a command took effect (or found it in effect). */
const OPERSERV = {
  'READONLY ON': /now running in read-?only mode|read-?only mode is already enabled/i,
  'READONLY OFF': /no longer running in read-?only mode|read-?only mode is already disabled/i,
  UPDATE: /updat|sav/i,
} as const;

/** One OperServ command on a host's services, as a planned, journaled action. */
async function operServAct(
  ctx: ApplyContext<ServicesParams, ServicesFacts>,
  command: keyof typeof OPERSERV,
  hooks: { before?: () => Promise<unknown>; after?: (said: string) => void } = {},
): Promise<void> {
  const { params, host: h } = ctx;
  await ctx.act(
    `irc ${h.name}: OperServ ${command} (as ${params.opsAccount})`,
    { host: h.name, port: params.ircPort, account: params.opsAccount, command },
    async (d) => {
      await hooks.before?.();
      const r = await operServ(
        ctx,
        h,
        d.port,
        d.account,
        params.opsPassword,
        [d.command],
        OPERSERV[d.command],
      );
      const said = r.replies.join(' / ');
      hooks.after?.(said);
      return said;
    },
  );
}

export function freezeStep(): Step {
  return {
    id: 'freeze',
    title: 'Freeze writes on the primary (OperServ READONLY ON)',
    targets: (ctx) => [ctx.facts.from],
    state: 'services read-only on the source host',
    idempotent: true,
    frozen: 'begins',
    async apply(ctx) {
      // A retry after a dropped connection finds its own freeze: that one is this run's.
      const retried = Boolean(ctx.notes.freezing);
      await operServAct(ctx, 'READONLY ON', {
        before: async () => ctx.note({ freezing: true }),
        after: (said) => {
          if (/already enabled/i.test(said) && !retried) {
            ctx.note({ alreadyReadOnly: true });
            throw new BatonError(
              'PRECONDITION_FAILED',
              `services on ${ctx.host.name} were already read-only before this run froze them (OperServ: ${said})`,
              'Someone else froze them: another run or a person. Find out who before anything else; baton does not lift a freeze it did not set.',
            );
          }
          ctx.note({ froze: true });
        },
      });
    },
    async undo(ctx) {
      // Only a freeze this run set (or sent, and lost the answer to) is lifted; a resume knows it from the journal.
      if (ctx.notes.alreadyReadOnly || !(ctx.notes.froze || ctx.notes.freezing)) return;
      // After a rollback restarted services, they take a few seconds to link again.
      await operServAct(ctx, 'READONLY OFF', {
        before: () =>
          waitForServices(
            ctx,
            ctx.host,
            ctx.params.ircPort,
            ctx.facts.servicesName,
            30_000,
            ctx.sleep,
          ),
      });
    },
  };
}

export function saveStep(): Step {
  return {
    id: 'save',
    title: 'Force a save (OperServ UPDATE writes even when read-only)',
    targets: (ctx) => [ctx.facts.from],
    idempotent: true,
    async apply(ctx) {
      await operServAct(ctx, 'UPDATE');
    },
    // A save changes no state a person relies on; there is nothing to undo.
    async undo() {},
  };
}

export function snapshotStep(): Step {
  return {
    id: 'snapshot',
    title: 'Snapshot the saved db and prove it loads, while the primary still runs',
    targets: (ctx) => [ctx.facts.from],
    idempotent: true,
    state: 'snapshot taken; services read-only on the source host',
    async apply({ $, params, facts }) {
      await $`cp -p ${params.db} ${facts.snapshot} && sha256sum ${facts.snapshot} > ${`${facts.snapshot}.sha256`}`;
    },
    async verify({ probe, facts, host: h }) {
      const snap = await readDb(probe, facts.snapshot);
      if (snap.fault) {
        return condition(`the snapshot on ${h.name} loads`, false, {
          expected: 'every record readable',
          found: snap.fault,
          remedy: `The primary's on-disk services.db would not survive a restart: do not restart services on ${h.name}. Repair the record named, save again (OperServ UPDATE) and plan again.`,
        });
      }
      const lost = lostSince(facts.primaryDb!, snap);
      return [
        condition(`the snapshot on ${h.name} loads`, true, {
          expected: 'every record readable',
          found: describeDb(snap),
        }),
        condition('the snapshot keeps what the primary held at planning', lost.length === 0, {
          expected: `everything in ${describeDb(facts.primaryDb!)}`,
          found: lost.length ? `missing ${lost.join('; ')}` : 'all present',
          remedy: 'Find out why the save lost data before moving anything.',
        }),
      ];
    },
    async undo({ $, facts }) {
      await $`rm -f ${facts.snapshot} ${`${facts.snapshot}.sha256`}`;
    },
  };
}

export function stopPrimaryStep(): Step {
  return {
    id: 'stop-primary',
    title: 'Stop services on the primary cleanly',
    targets: (ctx) => [ctx.facts.from],
    state: 'services stopped on the source host; snapshot taken',
    async apply(ctx) {
      const { $, params, facts } = ctx;
      // Atheme accepts changes while read-only and only forgets to save them (measured):
      // lift the freeze just before the stop, whose save then keeps every change it accepted.
      await operServAct(ctx, 'READONLY OFF');
      await $`systemctl stop ${params.unit}`;
      await $`cp -p ${params.db} ${facts.snapshot} && sha256sum ${facts.snapshot} > ${`${facts.snapshot}.sha256`}`;
    },
    async verify({ probe, params, facts, host: h }) {
      const state = (
        await probe(sh`systemctl is-active ${params.unit}`, { allowFail: true })
      ).stdout.trim();
      const snap = await readDb(probe, facts.snapshot);
      const disk = await readDb(probe, params.db);
      const lost = facts.primaryDb ? lostSince(facts.primaryDb, disk) : [];
      return [
        condition(`${params.unit} on ${h.name} is stopped`, state !== 'active', {
          expected: 'inactive',
          found: state,
        }),
        condition(`the db ${h.name} saved as it stopped loads`, !disk.fault, {
          expected: 'every record readable',
          found: describeDb(disk),
          remedy: `Do not start services from it. Repair the record named on ${h.name}, then plan again.`,
        }),
        condition(
          'the snapshot is the db saved at the stop',
          disk.fingerprint?.sha256 === snap.fingerprint?.sha256,
          {
            expected: describeDb(disk),
            found: describeDb(snap),
            remedy: 'Something wrote after the stop; find out what before going on.',
          },
        ),
        condition('the saved db keeps what the primary held at planning', lost.length === 0, {
          expected: facts.primaryDb ? `everything in ${describeDb(facts.primaryDb)}` : 'nothing',
          found: lost.length ? `missing ${lost.join('; ')}` : 'all present',
          remedy: 'Find out why the stop lost data before moving anything.',
        }),
      ];
    },
    async undo({ $, params }) {
      await $`systemctl start ${params.unit}`;
    },
  };
}

/** How the packs (host, dns, lease, service) find their facts in ServicesFacts. */
export const servicesAccess = {
  move: (f: ServicesFacts): MoveFacts => f,
  dns: (f: ServicesFacts): DnsFacts => f,
  lease: (f: ServicesFacts): LeaseState => f,
};

/** The standby has room for twice the data: the arriving copy and the db it replaces. */
export function servicesRoomStep(): Step {
  return roomStep<ServicesParams, ServicesFacts>({
    move: servicesAccess.move,
    dir: (params) => posix.dirname(params.db),
    bytes: (facts) => facts.dbBytes,
  });
}

function copyOf(facts: ServicesFacts): HostFile {
  if (!facts.copy) throw new Error('no verified copy was chosen');
  return facts.copy;
}

/** The snapshot (handover) or the newest verified copy (failover), streamed to the standby and proven to load. */
export function athemeTransferStep(source: 'snapshot' | 'copy'): Step {
  return transferStep<ServicesParams, ServicesFacts>({
    title:
      source === 'snapshot'
        ? 'Transfer the snapshot straight to the standby'
        : 'Transfer the newest verified copy to the standby',
    source: (facts) =>
      source === 'snapshot' ? { host: facts.from, path: facts.snapshot } : copyOf(facts),
    target: (facts) => ({ host: facts.to, path: facts.incoming }),
    owner: (params) => params.dbOwner,
    async verify(ctx, from, to) {
      const [src, dst] = await Promise.all([
        readDb(ctx.on(from.host).probe, from.path),
        readDb(ctx.probe, to.path),
      ]);
      return [
        condition(`the copy on ${ctx.host.name} loads`, !dst.fault, {
          expected: 'every record readable',
          found: describeDb(dst),
        }),
        condition(
          `the copy on ${ctx.host.name} holds what ${from.host} holds`,
          !!dst.fingerprint && dst.fingerprint.sha256 === src.fingerprint?.sha256,
          {
            expected: describeDb(src),
            found: describeDb(dst),
            remedy: 'Transfer again; do not start services from this copy.',
          },
        ),
      ];
    },
  });
}

export function installStep(): Step {
  return {
    id: 'install',
    title: 'Put the transferred db in place on the standby',
    targets: (ctx) => [ctx.facts.to],
    state: 'the data in place on the target host; services not started there',
    async apply({ $, params, facts }) {
      if (facts.standbyHasDb) await $`mv -f ${params.db} ${`${facts.incoming}.before`}`;
      await $`mv -f ${facts.incoming} ${params.db} && sha256sum ${params.db} > ${`${params.db}.sha256`}`;
    },
    async verify(ctx) {
      const { probe, params, facts, host: h } = ctx;
      const from = facts.copy ?? { host: facts.from, path: facts.snapshot };
      const [db, want, got] = await Promise.all([
        readDb(probe, params.db),
        recordedSha256(ctx.on(from.host).probe, from.path),
        sha256Of(probe, params.db),
      ]);
      return [
        condition(
          `services.db on ${h.name} is byte for byte the copy from ${from.host}`,
          want === got,
          {
            expected: `sha256 ${want}`,
            found: `sha256 ${got}`,
            remedy:
              'The file changed after it was verified: do not start services from it; transfer again.',
          },
        ),
        condition(`services.db on ${h.name} loads`, !db.fault, {
          expected: 'every record readable',
          found: describeDb(db),
        }),
      ];
    },
    async undo({ $, params, facts }) {
      await $`rm -f ${`${params.db}.sha256`} && { test ! -e ${params.db} || mv -f ${params.db} ${facts.incoming}; }`;
      if (facts.standbyHasDb)
        await $`test ! -e ${`${facts.incoming}.before`} || mv -f ${`${facts.incoming}.before`} ${params.db}`;
    },
  };
}

export function linkStep(): Step {
  return {
    id: 'link',
    title:
      "Let services link to the standby's ircd (validated, rehashed); from here the new instance may take writes",
    targets: (ctx) => [ctx.facts.to],
    when: ({ facts }) =>
      !facts.standbyHasLink || `${facts.to} already has a link block for ${facts.servicesName}`,
    idempotent: true,
    // Once linked, the new instance answers users, and Atheme accepts changes even
    // read-only: an undo would discard them, so the run only goes forward.
    commit: true,
    marksCommit: true,
    state: 'services linked on the target host, read-only',
    async check({ facts, params, probe }) {
      const before = `${params.servicesLink}.before`;
      const stale = await probe(
        sh`test ! -e ${before} || cmp -s ${before} ${params.servicesLink}`,
        { allowFail: true },
      );
      return [
        condition(
          'a services link block to install',
          facts.fromReachable || Boolean(params.linkPassword),
          {
            expected: `the primary's ${params.servicesLink}, or --param linkPassword`,
            found: facts.fromReachable
              ? 'the primary is reachable'
              : 'the primary is unreachable and no link password was given',
            remedy:
              'Pass --param linkPassword=@file:PATH (the services link password from your secrets store).',
          },
        ),
        condition(`no stale backup ${before}`, stale.exitCode === 0, {
          expected: `no ${before}, or one equal to ${params.servicesLink}`,
          found: `${before} from an earlier run, different from ${params.servicesLink}`,
          remedy: `Compare the two files and remove or move aside ${before}; baton keeps the first backup it makes and will not take one over.`,
        }),
      ];
    },
    async apply({ $, pipe, params, facts, commit }) {
      const target = sh`umask 077 && cat > ${`${params.servicesLink}.new`} && chown --reference=${`${params.servicesLink}.before`} ${`${params.servicesLink}.new`} && chmod --reference=${`${params.servicesLink}.before`} ${`${params.servicesLink}.new`} && mv -f ${`${params.servicesLink}.new`} ${params.servicesLink}`;
      // A retry keeps the backup of the file as it was before the first attempt.
      await $`test -e ${`${params.servicesLink}.before`} || cp -p ${params.servicesLink} ${`${params.servicesLink}.before`}`;
      if (facts.fromReachable) {
        await pipe({ host: facts.from, command: sh`cat ${params.servicesLink}` }, target);
      } else {
        const pw = params.linkPassword ?? '';
        const block =
          `# services link, written by baton\n<link name="${facts.servicesName}" ipaddr="127.0.0.1" allowmask="127.0.0.0/8" ` +
          `port="${params.linkPort}" sendpass="${pw}" recvpass="${pw}">\n`;
        await $(target, { input: block });
      }
      // The rehash links services: until it, a failure still rolls back.
      commit();
      await $`systemctl reload ${params.ircdUnit}`;
    },
    async verify(ctx) {
      const { probe, params, facts, host: h } = ctx;
      const info = await ircdFacts(probe, params.ircdConfig, facts.servicesName);
      const state = (
        await probe(sh`systemctl is-active ${params.ircdUnit}`, { allowFail: true })
      ).stdout.trim();
      const conditions = [
        condition(`${h.name} has a <link> for ${facts.servicesName}`, info.links.length > 0, {
          expected: 'a link block',
          found: `${info.links.length}`,
        }),
        condition(`${params.ircdUnit} on ${h.name} runs after the rehash`, state === 'active', {
          expected: 'active',
          found: state,
        }),
      ];
      if (conditions.some((c) => !c.ok)) return conditions;
      const trust = await waitForServices(
        ctx,
        h,
        params.ircPort,
        facts.servicesName,
        45_000,
        ctx.sleep,
      );
      return [...conditions, trust.condition];
    },
    async undo({ $, params }) {
      await $`test ! -e ${`${params.servicesLink}.before`} || mv -f ${`${params.servicesLink}.before`} ${params.servicesLink}`;
      await $`systemctl reload ${params.ircdUnit}`;
    },
  };
}

export function startStandbyStep(): Step {
  return {
    id: 'start-standby',
    title: 'Start services on the standby, read-only (atheme-services -r) until proven',
    targets: (ctx) => [ctx.facts.to],
    state: 'services running read-only on the target host',
    // Where the standby's ircd already has the services link, they link as they start.
    commit: ({ facts }) => facts.standbyHasLink,
    // Past the point once services run from the verified copy: a copy changed at rest stops the run before it.
    marksCommit: true,
    async check({ probe, params, host: h }) {
      const unit = await probe(sh`systemctl cat ${params.unit}`, { allowFail: true });
      const flags = new RegExp(`^EnvironmentFile=-?${escapeRegExp(params.startFlags)}\\s*$`, 'm');
      const ok =
        unit.exitCode === 0 &&
        flags.test(unit.stdout) &&
        /^ExecStart=.*\$\{?ATHEME_FLAGS\}?/m.test(unit.stdout);
      return condition(`${params.unit} on ${h.name} can start read-only`, ok, {
        expected: `EnvironmentFile=-${params.startFlags} and $ATHEME_FLAGS on its ExecStart`,
        found: unit.exitCode === 0 ? 'not both in the unit' : `no unit: ${unit.stderr.trim()}`,
        remedy: `Add \`EnvironmentFile=-${params.startFlags}\` and \`$ATHEME_FLAGS\` at the end of ExecStart to ${params.unit}.service on ${h.name}, then systemctl daemon-reload: baton starts the new instance read-only until it is proven.`,
      });
    },
    async apply({ $, params, commit }) {
      const sum = `${params.db}.sha256`;
      // The data must still be what install verified: not one byte changed at rest since.
      await $`sha256sum -c --status ${sum} || { echo ${`${params.db} changed after it was verified; services not started`} >&2; exit 1; }`;
      await $`umask 022 && printf 'ATHEME_FLAGS=-r\n' > ${`${params.startFlags}.new`} && mv -f ${`${params.startFlags}.new`} ${params.startFlags}`;
      await $`systemctl enable ${params.unit}`;
      // A start its lease check refuses runs nothing: it is tried again twice, 2 s apart (a DNS
      // answer lost under load), and a refusal that lasts is reported with what the unit said.
      await $`for try in 1 2 3; do systemctl start ${params.unit} && exit 0; systemctl reset-failed ${params.unit} 2>/dev/null; [ "$try" = 3 ] || sleep 2; done; echo ${`${params.unit} did not start:`} "$(systemctl status ${params.unit} 2>&1 | tail -n 5 | tr '\n' ' ')" >&2; exit 1`;
      // Read-only, Atheme never writes its db: unchanged now, it is what services loaded.
      // A byte changed between the check above and their start is caught here, before
      // anyone could write to them, and the run goes back to the primary.
      await $`sha256sum -c --status ${sum} || { systemctl stop ${params.unit}; echo ${`${params.db} changed while services started; they are stopped again`} >&2; exit 1; }`;
      commit();
    },
    async verify(ctx) {
      const { probe, params, facts, host: h } = ctx;
      const state = (
        await probe(sh`systemctl is-active ${params.unit}`, { allowFail: true })
      ).stdout.trim();
      if (state !== 'active') {
        const log = await probe(sh`systemctl status ${params.unit}`, { allowFail: true });
        return condition(`${params.unit} on ${h.name} runs`, false, {
          expected: 'active',
          found: `${state}: ${log.stdout.trim().split('\n').slice(-3).join(' | ')}`,
        });
      }
      const args = await probe(
        sh`pid=$(systemctl show -p MainPID --value ${params.unit}) && xargs -0 < /proc/"$pid"/cmdline`,
        { allowFail: true },
      );
      // Until the new primary is writable, its db is still the copy install verified.
      const sum = await probe(
        sh`test ! -e ${`${params.db}.sha256`} || sha256sum -c --status ${`${params.db}.sha256`}`,
        { allowFail: true },
      );
      const conditions = [
        condition(`${params.unit} on ${h.name} runs`, true, { expected: 'active', found: state }),
        condition(`${params.db} on ${h.name} is the copy install verified`, sum.exitCode === 0, {
          expected: `the sha256 in ${params.db}.sha256`,
          found: 'changed since',
          remedy: `Stop ${params.unit} on ${h.name}: it may have loaded a changed copy.`,
        }),
        condition(
          `${params.unit} on ${h.name} runs read-only`,
          /(^|\s)-r(\s|$)/.test(args.stdout),
          {
            expected: 'atheme-services … -r',
            found: args.stdout.trim() || args.stderr.trim() || 'no process',
          },
        ),
      ];
      if (!facts.standbyHasLink) return conditions;
      const trust = await waitForServices(
        ctx,
        h,
        params.ircPort,
        facts.servicesName,
        45_000,
        ctx.sleep,
      );
      return [...conditions, trust.condition];
    },
    async undo({ $, params }) {
      await $`systemctl stop ${params.unit} && systemctl disable ${params.unit} && rm -f ${params.startFlags}`;
    },
  };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function proveStep(): Step {
  return {
    id: 'prove',
    title:
      'Prove services from every ircd: NickServ identifies, ChanServ sets a topic all servers see',
    targets: (ctx) => [ctx.facts.to],
    async verify(ctx) {
      const { params, facts, host: h } = ctx;
      const ircds = Object.keys(facts.ircds)
        .filter((n) => n !== facts.from || facts.fromReachable)
        .map((n) => ctx.hostNamed(n));
      const trust = await trustFrom(ctx, ircds, params.ircPort, facts.servicesName);
      const identify = await identifyEverywhere(
        ctx,
        ircds,
        params.ircPort,
        params.canary,
        params.canaryPassword,
      );
      const topic = await topicEverywhere(
        ctx,
        h,
        ircds,
        params.ircPort,
        params.canaryChannel,
        params.canary,
        params.canaryPassword,
      );
      return [...trust.map((t) => t.condition), ...identify, ...topic];
    },
  };
}

/**
 * Services on the new primary running, linked and writable: started again if
 * they stopped (under the lease check), READONLY OFF once linked, and no
 * read-only flag for the next start. The same work serves twice: right after
 * the link (`writable`) and as the run's last step (`unfreeze`).
 */
function writableOnTarget(id: string, title: string, state: string, frozen?: 'ends'): Step {
  return {
    id,
    title,
    state,
    ...(frozen ? { frozen } : {}),
    targets: (ctx) => [ctx.facts.to],
    idempotent: true,
    async apply(ctx) {
      const { params } = ctx;
      await ctx.$`systemctl is-active --quiet ${params.unit} || systemctl start ${params.unit}`;
      await operServAct(ctx, 'READONLY OFF', {
        before: () =>
          waitForServices(ctx, ctx.host, params.ircPort, ctx.facts.servicesName, 45_000, ctx.sleep),
      });
      // A restart of the new primary must come up writable too; its db changes from now on.
      await ctx.$`rm -f ${params.startFlags} ${`${params.db}.sha256`}`;
    },
    async verify({ probe, params, host: h }) {
      const flags = await probe(sh`test ! -e ${params.startFlags}`, { allowFail: true });
      const state = (
        await probe(sh`systemctl is-active ${params.unit}`, { allowFail: true })
      ).stdout.trim();
      return [
        condition(`${params.unit} on ${h.name} runs`, state === 'active', {
          expected: 'active',
          found: state || 'unknown',
        }),
        condition(`${params.unit} on ${h.name} starts writable`, flags.exitCode === 0, {
          expected: `no ${params.startFlags}`,
          found: flags.exitCode === 0 ? 'none' : 'still there',
        }),
      ];
    },
  };
}

/**
 * Right after the link. Linked, the new instance takes writes, read-only or
 * not (Atheme answers "registered" and keeps it in memory), and read-only it
 * saves nothing: a stop then (its watchdog fencing it during a DNS outage, a
 * crash) would lose them. So the freeze ends here, not after the proofs.
 */
export function writableStep(): Step {
  return writableOnTarget(
    'writable',
    'Make the new primary writable as soon as it links (OperServ READONLY OFF), so that a stop keeps what users wrote',
    'services linked and writable on the target host, the source host fenced',
    'ends',
  );
}

/**
 * The last step. Past the point of no return the run only goes forward:
 * services its watchdog stopped since (it could not renew the lease while DNS
 * was down) start again here, under the lease check, so that `baton resume`
 * finishes with services running.
 */
export function unfreezeStep(): Step {
  return writableOnTarget(
    'unfreeze',
    'Services on the new primary running and writable (started again if they stopped since)',
    'handed over: services run on the target host, writable, DNS names it, the source host is fenced',
  );
}

// ---- failover ----------------------------------------------------------------

interface Candidate {
  host: string;
  path: string;
  mtime: number;
}

/** Facts for a failover: those of a handover, plus the newest copy that verifies. */
export async function gatherFailoverFacts(
  ctx: FactsContext<ServicesParams>,
): Promise<ServicesFacts> {
  const facts = await gatherServicesFacts(ctx, { kind: 'failover', toRole: 'standby' });
  const { params } = ctx;
  const candidates: Candidate[] = [];
  const list = async (h: Host, pattern: Cmd): Promise<void> => {
    const r = await ctx.probe(h)(pattern, { allowFail: true });
    for (const line of r.stdout.split('\n')) {
      const m = /^(\d+) (.+)$/.exec(line.trim());
      if (m) candidates.push({ host: h.name, mtime: Number(m[1]), path: m[2]! });
    }
  };
  for (const h of ctx.hosts('backup')) {
    await list(
      h,
      sh`for f in ${params.backupDir}/services.db.*; do case $f in *.sha256) ;; *) test -f "$f" && stat -c '%Y %n' "$f";; esac; done`,
    );
  }
  await list(ctx.hostNamed(facts.to), sh`test -f ${params.db} && stat -c '%Y %n' ${params.db}`);
  candidates.sort((a, b) => b.mtime - a.mtime);
  const rejected: string[] = [];
  const loaded: Array<{ c: Candidate; db: DbSummary }> = [];
  for (const c of candidates.slice(0, 10)) {
    const probe = ctx.probe(c.host);
    const sum = await probe(
      sh`test ! -e ${`${c.path}.sha256`} || (cd ${posix.dirname(c.path)} && sha256sum -c --quiet ${`${posix.basename(c.path)}.sha256`})`,
      { allowFail: true },
    );
    if (sum.exitCode !== 0) {
      rejected.push(`${c.host}:${c.path}: sha256 does not match its .sha256 file`);
      continue;
    }
    loaded.push({ c, db: await readDb(probe, c.path) });
  }
  // A copy must hold what the most complete copy holds: a backup cut short still parses.
  const reference = mostComplete(
    loaded
      .filter((l) => l.db.bytes > 0 && !l.db.fault)
      .map((l) => ({ where: `${l.c.host}:${l.c.path}`, counts: l.db.fingerprint! })),
  );
  for (const { c, db } of loaded) {
    const why = incompleteCopy(db, reference, params.maxCopyShrinkPercent);
    if (why) {
      rejected.push(`${c.host}:${c.path}: ${why}`);
      continue;
    }
    const age = Math.max(0, Math.round(ctx.now().getTime() / 1000 - c.mtime));
    return {
      ...facts,
      dbBytes: db.bytes,
      copy: {
        host: c.host,
        path: c.path,
        takenAt: new Date(c.mtime * 1000).toISOString(),
        ageSeconds: age,
        summary: describeDb(db),
      },
      rejectedCopies: rejected,
    };
  }
  return { ...facts, rejectedCopies: rejected };
}

export function primaryDownStep(): Step {
  return {
    id: 'primary-down',
    title: 'The primary is unreachable (otherwise this is a handover)',
    targets: 'controller',
    async check({ facts }) {
      return condition(`${facts.from} is unreachable`, !facts.fromReachable, {
        expected: `${facts.from} not answering over ssh`,
        found: facts.fromReachable ? `${facts.from} answers` : 'no answer',
        remedy: `${facts.from} is up: use \`baton run handover\`, which keeps every change, instead of a failover from a copy.`,
      });
    },
  };
}

export function copyStep(): Step {
  return {
    id: 'copy',
    title: 'Pick the newest verified copy of the services data',
    targets: 'controller',
    async check({ facts, params }) {
      const c = facts.copy;
      if (!c) {
        return condition('a verified copy of services.db', false, {
          expected: `a copy on ${facts.to} or in ${params.backupDir} on a backup host that parses and matches its sha256`,
          found: facts.rejectedCopies?.length
            ? `none verified: ${facts.rejectedCopies.join('; ')}`
            : 'no copies',
          remedy: 'Find a copy of services.db that Atheme can load; nothing has been changed.',
        });
      }
      return {
        ...condition(
          `newest verified copy, ${duration(c.ageSeconds)} old`,
          c.ageSeconds <= params.maxCopyAgeHours * 3600,
          {
            expected: `at most ${params.maxCopyAgeHours} h old`,
            found: `${c.host}:${c.path}, taken ${c.takenAt}, ${duration(c.ageSeconds)} old: ${c.summary}${facts.rejectedCopies?.length ? `; newer copies refused: ${facts.rejectedCopies.join('; ')}` : ''}`,
            remedy: `Everything since ${c.takenAt} would be lost. If that is accepted, pass --param maxCopyAgeHours=${Math.ceil(c.ageSeconds / 3600)}.`,
          },
        ),
        notice: true,
      };
    },
  };
}

/**
 * Failover: the network must have dropped the dead primary, and the services
 * it carried, before services start elsewhere under the same name; otherwise
 * the new link is refused ("Server ID already exists") or, worse, two
 * instances meet when the split heals.
 */
export function networkDropsPrimaryStep(): Step {
  return {
    id: 'network-drops-primary',
    title: 'Wait until no ircd still sees services on the dead primary',
    targets: (ctx) => [ctx.facts.to],
    async verify(ctx) {
      const { params, facts } = ctx;
      const ircds = Object.keys(facts.ircds)
        .filter((n) => n !== facts.from)
        .map((n) => ctx.hostNamed(n));
      const until = ctx.now().getTime() + params.maxSplitWait * 1000;
      for (;;) {
        const seen = await trustFrom(ctx, ircds, params.ircPort, facts.servicesName);
        const still = seen.filter((t) => t.present).map((t) => t.host);
        if (still.length === 0 || ctx.now().getTime() >= until) {
          return condition(`no ircd sees ${facts.servicesName} any more`, still.length === 0, {
            expected: `${facts.from} and its services gone from the network within ${params.maxSplitWait} s`,
            found: still.length ? `still seen from ${still.join(', ')}` : 'gone from every ircd',
            remedy: `${facts.from} may not be dead: check it from outside before going on; if it is, SQUIT it from an oper on the hub, then run the failover again.`,
          });
        }
        await ctx.sleep(2_000);
      }
    },
  };
}

/**
 * After a cut, the Pulumi stack must say which host is active, or the next
 * `pulumi up` points the records back (infra/README.md: DNS cutover vs pulumi up).
 */
export function recordActiveHostStep(): Step {
  const manual = (facts: ServicesFacts, stack: string): string =>
    `cd infra && pulumi config set baton:activeHost ${facts.to} --stack ${stack}`;
  return {
    id: 'record-active-host',
    title: 'Record the new active host in the Pulumi stack, so the next pulumi up keeps the cut',
    targets: 'controller',
    idempotent: true,
    when: ({ stack, facts }) =>
      BUILTIN_TESTNETS.includes(stack)
        ? `stack ${stack} is not a Pulumi stack`
        : facts.pulumi ||
          `no pulumi CLI or infra/ here: after the run, \`${manual(facts, stack)}\`, or the next pulumi up undoes the cut`,
    async apply({ act, facts, stack }) {
      await act(
        `pulumi config set baton:activeHost ${facts.to} --stack ${stack}`,
        { stack, activeHost: facts.to },
        (d) => recordActiveHost(d.stack, d.activeHost),
      );
    },
    async undo({ act, facts, stack }) {
      await act(
        `pulumi config set baton:activeHost ${facts.from} --stack ${stack}`,
        { stack, activeHost: facts.from },
        (d) => recordActiveHost(d.stack, d.activeHost),
      );
    },
  };
}
