/**
 * The `transfer` pack: a file streamed from one host straight into another
 * (never held whole on the controller), private on arrival, and verified
 * byte for byte against the sha256 its source recorded when the copy was
 * made. A format adds what "the copy is usable" means for it.
 */
import {
  condition,
  type Condition,
  type Exec,
  type ProbeContext,
  type StepDef,
} from '../core/runbook.ts';
import { sh } from '../core/shell.ts';

/** A file on a host. */
export interface HostFile {
  host: string;
  path: string;
}

export async function sha256Of(probe: Exec, path: string): Promise<string> {
  const r = await probe(sh`sha256sum ${path}`, { allowFail: true });
  return r.exitCode === 0 ? r.stdout.slice(0, 64) : `unreadable: ${r.stderr.trim()}`;
}

/** The sha256 the source recorded when the copy was made (its .sha256 file), else its sha256 now. */
export async function recordedSha256(probe: Exec, path: string): Promise<string> {
  const r = await probe(sh`cat ${`${path}.sha256`}`, { allowFail: true });
  const recorded = /^[0-9a-f]{64}/.exec(r.stdout)?.[0];
  return recorded ?? sha256Of(probe, path);
}

export interface TransferSpec<P, F> {
  /** Step id; default `transfer`. */
  id?: string;
  title: string;
  source: (facts: F) => HostFile;
  target: (facts: F) => HostFile;
  /** The user that owns the file on arrival. */
  owner: (params: P) => string;
  /** Further conditions on the arrived copy (it loads, it holds what the source holds). */
  verify?: (ctx: ProbeContext<P, F>, from: HostFile, to: HostFile) => Promise<Condition[]>;
}

export function transferStep<P, F>(spec: TransferSpec<P, F>): StepDef<P, F> {
  return {
    id: spec.id ?? 'transfer',
    title: spec.title,
    targets: (ctx) => [spec.target(ctx.facts).host],
    idempotent: true,
    async apply({ pipe, facts, params }) {
      const from = spec.source(facts);
      const to = spec.target(facts);
      await pipe(
        { host: from.host, command: sh`cat ${from.path}` },
        sh`umask 077 && cat > ${to.path} && chown ${spec.owner(params)} ${to.path}`,
      );
    },
    async verify(ctx) {
      const from = spec.source(ctx.facts);
      const to = spec.target(ctx.facts);
      const [want, got] = await Promise.all([
        recordedSha256(ctx.on(from.host).probe, from.path),
        sha256Of(ctx.probe, to.path),
      ]);
      return [
        condition(`the copy on ${ctx.host.name} is byte for byte ${from.host}'s`, want === got, {
          expected: `sha256 ${want}`,
          found: `sha256 ${got}`,
          remedy:
            'A byte changed on the way or at rest: transfer again, and do not start services from this copy.',
        }),
        ...(spec.verify ? await spec.verify(ctx, from, to) : []),
      ];
    },
    async undo({ $, facts }) {
      await $`rm -f ${spec.target(facts).path}`;
    },
  };
}
