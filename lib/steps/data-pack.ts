/**
 * The data steps, the same for every DataFormat: check the data and the
 * tools on both hosts, freeze the source and prove a write is refused,
 * snapshot it with its sha256, stream it to the target (the transfer pack),
 * restore it there into a scratch place and compare its fingerprint with the
 * frozen source's, then install it. Every step has its undo: a rollback
 * puts back what install replaced, removes every file and scratch place the
 * run made, and thaws only a freeze the run set.
 */
import { posix } from 'node:path';
import type { Host } from '../core/inventory.ts';
import {
  condition,
  type ApplyContext,
  type Condition,
  type FactsContext,
  type ProbeContext,
  type StepDef,
} from '../core/runbook.ts';
import { sh } from '../core/shell.ts';
import type { DataFormat, Fingerprint, FormatApply, FormatProbe } from './data.ts';
import type { MoveOf } from './host.ts';
import { transferStep } from './transfer.ts';

/** What the data steps decide from, gathered before any change. */
export interface DataFacts {
  /** The source's data at planning. */
  planned: Fingerprint;
  /** The snapshot file on the source, and where it arrives on the target (fixed names, so plans compare). */
  snapshot: string;
  incoming: string;
}

export interface DataPackSpec<P, F, FP> {
  format: DataFormat<FP>;
  /** Prefix of the step ids (`ID-freeze`, …); default the format's name. */
  id?: string;
  move: MoveOf<F>;
  data: (facts: F) => DataFacts;
  /** The format's parameters as they hold on a host (a standby may keep its data elsewhere). */
  on: (params: P, host: Host) => FP;
  /** Directory on each host for the snapshot and the arriving copy. */
  workDir: (params: P) => string;
  /** Owner of the arriving copy. */
  owner: (params: P) => string;
}

export interface DataPack<P, F> {
  /** Call from the runbook's `facts`; keep the result where `spec.data` finds it. */
  gather(ctx: FactsContext<P>, from: Host): Promise<DataFacts>;
  check: StepDef<P, F>;
  freeze: StepDef<P, F>;
  snapshot: StepDef<P, F>;
  transfer: StepDef<P, F>;
  verify: StepDef<P, F>;
  install: StepDef<P, F>;
  /** In order: check, freeze, snapshot, transfer, verify, install. */
  steps: Array<StepDef<P, F>>;
}

function probeIo<P, F>(ctx: ProbeContext<P, F>): FormatProbe {
  return { host: ctx.host, probe: ctx.probe };
}

function applyIo<P, F>(ctx: ApplyContext<P, F>): FormatApply {
  return {
    host: ctx.host,
    probe: ctx.probe,
    $: ctx.$,
    act: ctx.act as FormatApply['act'],
    note: ctx.note,
    get notes() {
      return ctx.notes;
    },
  };
}

/** Gather the data facts: the source's fingerprint now, and the file names the steps use. */
export async function gatherDataFacts<P, F, FP>(
  ctx: FactsContext<P>,
  spec: DataPackSpec<P, F, FP>,
  from: Host,
): Promise<DataFacts> {
  const id = spec.id ?? spec.format.name;
  const dir = spec.workDir(ctx.params);
  return {
    planned: await spec.format.fingerprint(
      { host: from, probe: ctx.probe(from) },
      spec.on(ctx.params, from),
    ),
    snapshot: posix.join(dir, `${id}.snapshot`),
    incoming: posix.join(dir, `${id}.incoming`),
  };
}

/** The copy holds exactly what the frozen source holds: the same parts, rows and content. */
export function sameData(what: string, copy: Fingerprint, source: Fingerprint): Condition[] {
  const parts = new Set([...Object.keys(copy.counts), ...Object.keys(source.counts)]);
  const differ = [...parts]
    .sort()
    .filter((p) => copy.counts[p] !== source.counts[p])
    .map(
      (p) => `${p}: ${copy.counts[p] ?? 'missing'} rows, the source ${source.counts[p] ?? 'none'}`,
    );
  return [
    condition(`${what} reads back`, !copy.fault, {
      expected: 'every part readable',
      found: copy.fault ?? copy.summary,
      remedy: 'Do not use this copy: transfer it again, and find out what damaged it.',
    }),
    condition(
      `${what} holds every part and row of the source`,
      !copy.fault && differ.length === 0,
      {
        expected: source.summary,
        found: differ.length ? differ.join('; ') : copy.summary,
        remedy:
          'Do not use this copy: the snapshot or its restore lost data. Find out why before going on.',
      },
    ),
    condition(`${what} has the source's content`, !copy.fault && copy.content === source.content, {
      expected: `content sha256 ${source.content}`,
      found: `content sha256 ${copy.content}`,
      remedy: 'A row differs: do not use this copy; take the snapshot again.',
    }),
  ];
}

export function dataPack<P, F, FP>(spec: DataPackSpec<P, F, FP>): DataPack<P, F> {
  const { format } = spec;
  const id = spec.id ?? format.name;
  const what = (params: P, host: Host): string => format.describe(spec.on(params, host));
  /** The frozen source's data now, read from the step on the target. */
  const sourceNow = async (ctx: ProbeContext<P, F>): Promise<Fingerprint> => {
    const from = ctx.hostNamed(spec.move(ctx.facts).from);
    return format.fingerprint({ host: from, probe: ctx.on(from).probe }, spec.on(ctx.params, from));
  };

  const check: StepDef<P, F> = {
    id: `${id}-data`,
    title: `The ${format.name} data reads completely, and both hosts have the tools to move it`,
    targets: (ctx) => [spec.move(ctx.facts).from, spec.move(ctx.facts).to],
    async check(ctx) {
      const { host: h, params, facts } = ctx;
      const tools = format.tools(spec.on(params, h));
      const r = await ctx.probe(
        sh`for t in ${tools}; do command -v "$t" >/dev/null 2>&1 || echo "$t"; done`,
        { allowFail: true },
      );
      const lacking = r.stdout.split('\n').filter(Boolean);
      const conditions: Condition[] = [
        condition(`${h.name} has what the ${format.name} steps run`, lacking.length === 0, {
          expected: tools.join(', '),
          found: lacking.length ? `missing ${lacking.join(', ')}` : 'all present',
          remedy: `Install ${lacking.join(', ')} on ${h.name}, then plan again.`,
        }),
      ];
      if (h.name === spec.move(facts).from) {
        const planned = spec.data(facts).planned;
        conditions.push(
          condition(`${what(params, h)} on ${h.name} reads completely`, !planned.fault, {
            expected: 'every part readable',
            found: planned.fault ?? planned.summary,
            remedy: `Repair the data on ${h.name} before moving it; nothing was changed.`,
          }),
        );
      }
      return conditions;
    },
  };

  const freeze: StepDef<P, F> = {
    id: `${id}-freeze`,
    title: `Freeze writes to the ${format.name} data on the source, and prove a write is refused`,
    targets: (ctx) => [spec.move(ctx.facts).from],
    state: `${format.name} writes refused on the source host`,
    idempotent: true,
    frozen: 'begins',
    async apply(ctx) {
      await format.freeze(applyIo(ctx), spec.on(ctx.params, ctx.host));
    },
    async verify(ctx) {
      return format.proveFrozen(probeIo(ctx), spec.on(ctx.params, ctx.host));
    },
    async undo(ctx) {
      await format.thaw(applyIo(ctx), spec.on(ctx.params, ctx.host));
    },
  };

  const snapshot: StepDef<P, F> = {
    id: `${id}-snapshot`,
    title: `Snapshot the frozen ${format.name} data on the source, with its sha256`,
    targets: (ctx) => [spec.move(ctx.facts).from],
    idempotent: true,
    async apply(ctx) {
      const { snapshot: file } = spec.data(ctx.facts);
      const tmp = `${file}.part`;
      const dump = format.snapshot(spec.on(ctx.params, ctx.host));
      // Written under another name and renamed: a cut-short snapshot never has the final name.
      await ctx.$`umask 077 && mkdir -p ${posix.dirname(file)} && (${dump}) > ${tmp} && sha256sum < ${tmp} > ${`${file}.sha256`} && mv -f ${tmp} ${file}`;
    },
    async verify(ctx) {
      const { snapshot: file } = spec.data(ctx.facts);
      const r = await ctx.probe(sh`stat -c %s ${file} && cat ${`${file}.sha256`}`, {
        allowFail: true,
      });
      const [size] = r.stdout.split('\n');
      return condition(`a snapshot on ${ctx.host.name}`, r.exitCode === 0 && Number(size) > 0, {
        expected: `${file}, not empty, with its sha256`,
        found: r.exitCode === 0 ? `${size} bytes` : r.stderr.trim() || 'none',
      });
    },
    async undo(ctx) {
      const { snapshot: file } = spec.data(ctx.facts);
      await ctx.$`rm -f ${file} ${`${file}.part`} ${`${file}.sha256`}`;
    },
  };

  const transfer = transferStep<P, F>({
    id: `${id}-transfer`,
    title: `Stream the ${format.name} snapshot straight to the target`,
    source: (facts) => ({ host: spec.move(facts).from, path: spec.data(facts).snapshot }),
    target: (facts) => ({ host: spec.move(facts).to, path: spec.data(facts).incoming }),
    owner: spec.owner,
  });
  // The arriving file's directory must exist before the stream.
  const transferApply = transfer.apply!;
  transfer.apply = async (ctx) => {
    await ctx.$`mkdir -p ${posix.dirname(spec.data(ctx.facts).incoming)}`;
    await transferApply(ctx);
  };

  const verify: StepDef<P, F> = {
    id: `${id}-verify`,
    title: `Restore the copy into a scratch place on the target and compare it with the frozen source`,
    targets: (ctx) => [spec.move(ctx.facts).to],
    idempotent: true,
    async apply(ctx) {
      await format.restoreScratch(
        applyIo(ctx),
        spec.data(ctx.facts).incoming,
        spec.on(ctx.params, ctx.host),
      );
    },
    async verify(ctx) {
      const [copy, source] = await Promise.all([
        format.fingerprintScratch(probeIo(ctx), spec.on(ctx.params, ctx.host)),
        sourceNow(ctx),
      ]);
      return sameData(`the restored copy on ${ctx.host.name}`, copy, source);
    },
    async undo(ctx) {
      await format.dropScratch(applyIo(ctx), spec.on(ctx.params, ctx.host));
    },
  };

  const install: StepDef<P, F> = {
    id: `${id}-install`,
    title: `Put the verified ${format.name} copy in place on the target, keeping what was there`,
    targets: (ctx) => [spec.move(ctx.facts).to],
    idempotent: true,
    state: `the ${format.name} data in place on the target host; the source frozen`,
    async apply(ctx) {
      await format.install(applyIo(ctx), spec.on(ctx.params, ctx.host));
      await ctx.$`rm -f ${spec.data(ctx.facts).incoming}`;
    },
    async verify(ctx) {
      const [live, source] = await Promise.all([
        format.fingerprint(probeIo(ctx), spec.on(ctx.params, ctx.host)),
        sourceNow(ctx),
      ]);
      return sameData(`${what(ctx.params, ctx.host)} on ${ctx.host.name}`, live, source);
    },
    async undo(ctx) {
      await format.uninstall(applyIo(ctx), spec.on(ctx.params, ctx.host));
    },
  };

  const steps = [check, freeze, snapshot, transfer, verify, install];
  return {
    gather: (ctx, from) => gatherDataFacts(ctx, spec, from),
    check,
    freeze,
    snapshot,
    transfer,
    verify,
    install,
    steps,
  };
}
