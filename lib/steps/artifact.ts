/**
 * A program built statically from source, then checked, shipped and proven:
 * build it on the controller with a static toolchain, verify its ELF for each
 * target host (policy `static`), ship it with its sha256 and install it by
 * rename, and run it on each target in an empty root. Incident 003's services
 * binary needed libraries only its build host had; the empty root is where
 * that shows, before a handover depends on it.
 */
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { dirname, join, posix, resolve } from 'node:path';
import { CONTROLLER } from '../engine/engine.ts';
import { checkPortability, readElfFile } from '../integrations/elf.ts';
import { BatonError } from '../core/errors.ts';
import { CommandError } from '../core/exec.ts';
import type { Host } from '../core/inventory.ts';
import {
  condition,
  type Condition,
  type FactsContext,
  type ProbeContext,
  type StepDef,
} from '../core/runbook.ts';
import { raw, sh, type Cmd } from '../core/shell.ts';

export type StaticToolchain = 'musl-gcc' | 'gcc';

/** Compile C sources with `TOOLCHAIN -static`. */
export interface CompileRecipe {
  kind: 'compile';
  /** C source files, absolute. The first one's directory is mapped to `.` in the binary. */
  sources: string[];
  /** Tried in order; the first that links a static program on the controller builds. Default musl-gcc, then gcc. */
  toolchains?: StaticToolchain[];
  /** Flags before the sources (`-static` is always given); default `-O2 -s`. */
  cflags?: string[];
  /** Flags after the sources, such as libraries. */
  ldflags?: string[];
}

/** The operator's own build: a command that leaves the program at a declared path. */
export interface CommandRecipe {
  kind: 'command';
  /** Run by sh in `cwd` with SOURCE_DATE_EPOCH set, e.g. sh`./configure … && make`. */
  command: Cmd;
  cwd: string;
  /** The file the command produces: absolute, or relative to `cwd`. */
  output: string;
  /** Files and directories whose content decides the build; they key the build directory. */
  inputs: string[];
  /** Programs the command needs on the controller, checked before anything runs. */
  tools?: string[];
  /** `uname -m` of the machine the output runs on, when the command cross-compiles. */
  machine?: string;
}

export type BuildRecipe = CompileRecipe | CommandRecipe;

/** What counts as "the program ran" in the empty root. */
export interface ProofExpectation {
  /** Exit statuses accepted; default [0]. */
  exitCodes: number[];
  /** An extended regular expression (grep -E) that its output (stdout and stderr) must match. */
  output?: string;
}

type ByParams<P, T> = T | ((params: P) => T);

export interface StaticArtifactSpec<P, F> {
  /** Prefix of the step ids (`ID-build`, `ID-verify`, `ID-ship`, `ID-prove`); default `name`. */
  id?: string;
  /** The program's file name, in the build directory and in the empty root. */
  name: string;
  recipe: ByParams<P, BuildRecipe>;
  /** Directory on the controller holding one directory per build key. */
  buildRoot: ByParams<P, string>;
  /** The hosts it is shipped to and proven on. */
  targets: { role: string } | { hosts: string[] };
  /** Final path on each host; its directory also holds the staging file, the previous binary and the empty root. */
  installPath: string | ((host: Host, params: P) => string);
  /** SOURCE_DATE_EPOCH for the build (timestamps a compiler embeds); default 0. */
  sourceDateEpoch?: number;
  prove?: {
    args?: string[] | ((ctx: ProbeContext<P, F>) => string[]);
    expect?: ProofExpectation | ((ctx: ProbeContext<P, F>) => ProofExpectation);
    /** The program is killed after this long; default 30. */
    timeoutSeconds?: number;
  };
  /** Where the runbook keeps what `gather` returned. */
  facts: (facts: F) => ArtifactFacts;
}

/** What a target host has, read before any change. */
export interface ArtifactHostFacts {
  /** `uname -m`. */
  machine: string;
  uid: number;
  installPath: string;
  /** sha256 of the file at installPath before the run, or null when there was none. */
  previous: string | null;
  /** Something that is not a regular file is at installPath (`a directory`, `a symbolic link`). */
  blocked: string | null;
  /** Programs the steps need that the host lacks. */
  missing: string[];
}

export interface ToolchainProbe {
  name: StaticToolchain;
  /** Its path, or undefined when it is not installed. */
  path?: string;
  /** Whether it linked a static program; otherwise why not. */
  links: boolean;
  error?: string;
  version?: string;
}

/** Everything the steps decide from, gathered before any change and kept in the journal. */
export interface ArtifactFacts {
  name: string;
  /** sha256 over the recipe, the toolchain and every input: names the build directory. */
  key: string;
  buildDir: string;
  /** The built program: `buildDir/name`. */
  output: string;
  /** The output already existed when the plan was made: it is not built again. */
  cached: boolean;
  /** Compile recipes: every toolchain tried, and the one that builds. */
  toolchains: ToolchainProbe[];
  toolchain: ToolchainProbe | null;
  /** Command recipes: tools the controller lacks. */
  missingTools: string[];
  missingInputs: string[];
  /** `uname -m` the build produces a program for. */
  machine: string;
  hosts: Record<string, ArtifactHostFacts>;
}

export interface StaticArtifact<P, F> {
  /** Call from the runbook's `facts`; keep the result where `spec.facts` finds it. */
  gather(ctx: FactsContext<P>): Promise<ArtifactFacts>;
  build: StepDef<P, F>;
  verify: StepDef<P, F>;
  ship: StepDef<P, F>;
  prove: StepDef<P, F>;
  /** build, verify, ship, prove. */
  steps: Array<StepDef<P, F>>;
}

const NEEDED_ON_HOST = ['sha256sum', 'chroot', 'timeout'];

const INSTALL_HINT: Record<StaticToolchain, string> = {
  'musl-gcc': 'musl-tools (Debian/Ubuntu: apt-get install musl-tools)',
  gcc: 'gcc with a static C library (Debian/Ubuntu: apt-get install gcc libc6-dev)',
};

function byParams<P, T>(value: ByParams<P, T>, params: P): T {
  return typeof value === 'function' ? (value as (p: P) => T)(params) : value;
}

function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Hash files and directory trees: relative path, executable bit, content; symlinks by their text. */
function hashInputs(paths: string[], into: ReturnType<typeof createHash>): string[] {
  const missing: string[] = [];
  const walk = (path: string, shown: string): void => {
    const st = lstatSync(path);
    if (st.isSymbolicLink()) {
      into.update(`link\0${shown}\0${readlinkSync(path)}\0`);
    } else if (st.isDirectory()) {
      into.update(`dir\0${shown}\0`);
      for (const entry of readdirSync(path).sort()) walk(join(path, entry), `${shown}/${entry}`);
    } else if (st.isFile()) {
      into.update(`file\0${shown}\0${st.mode & 0o111 ? 'x' : '-'}\0`);
      into.update(readFileSync(path));
    }
  };
  for (const p of paths) {
    if (!existsSync(p)) {
      missing.push(p);
      continue;
    }
    walk(p, p);
  }
  return missing;
}

function hostFacts(facts: ArtifactFacts, host: Host): ArtifactHostFacts {
  const h = facts.hosts[host.name];
  if (!h) {
    throw new BatonError(
      'INVALID_INPUT',
      `artifact ${facts.name}: no facts for host ${host.name}`,
      'The step targets a host the runbook did not gather facts for; give gather() and the steps the same targets.',
    );
  }
  return h;
}

/** The paths a ship and a proof use on a host, all beside the installed file. */
export function artifactPaths(installPath: string): {
  final: string;
  staging: string;
  backup: string;
  root: string;
} {
  const dir = posix.dirname(installPath);
  const base = posix.basename(installPath);
  return {
    final: installPath,
    staging: posix.join(dir, `.${base}.new`),
    backup: posix.join(dir, `.${base}.previous`),
    root: posix.join(dir, `.${base}.root`),
  };
}

/** The exact build command for a recipe, as the plan shows it. */
export function buildCommand(
  recipe: BuildRecipe,
  facts: ArtifactFacts,
  sourceDateEpoch: number,
): Cmd {
  const tmp = join(facts.buildDir, `.${facts.name}.tmp`);
  if (recipe.kind === 'compile') {
    const cc = facts.toolchain?.path ?? recipe.toolchains?.[0] ?? 'musl-gcc';
    const srcDir = dirname(recipe.sources[0] ?? '.');
    const args = [
      '-static',
      `-ffile-prefix-map=${srcDir}=.`,
      ...(recipe.cflags ?? ['-O2', '-s']),
      '-o',
      tmp,
      ...recipe.sources,
      ...(recipe.ldflags ?? []),
    ];
    return sh`mkdir -p ${facts.buildDir} && env SOURCE_DATE_EPOCH=${sourceDateEpoch} TZ=UTC LC_ALL=C ${cc} ${args} && mv -f ${tmp} ${facts.output}`;
  }
  const output = resolve(recipe.cwd, recipe.output);
  return sh`mkdir -p ${facts.buildDir} && (cd ${recipe.cwd} && export SOURCE_DATE_EPOCH=${sourceDateEpoch} && ${recipe.command}) && cp -f ${output} ${tmp} && mv -f ${tmp} ${facts.output}`;
}

/** The command that runs the program in an empty root and judges its exit status and output. */
export function proofCommand(
  root: string,
  name: string,
  args: string[],
  expectation: ProofExpectation,
  timeoutSeconds: number,
): Cmd {
  const codes = expectation.exitCodes.length > 0 ? expectation.exitCodes : [0];
  for (const code of codes) {
    if (!Number.isInteger(code) || code < 0 || code > 255) {
      throw new BatonError(
        'INVALID_INPUT',
        `the proof of ${name} accepts exit status ${code}, which no process can have`,
        'Give exit statuses from 0 to 255.',
      );
    }
  }
  const accepted = codes.join(' or ');
  const run = sh`out=$(timeout -k 5 ${timeoutSeconds} chroot ${root} ${`/${name}`} ${args} 2>&1); rc=$?; printf '%s\\n' "$out"; case $rc in ${raw(codes.join('|'))}) ;; *) echo "exit $rc, expected ${raw(accepted)}" >&2; exit 1 ;; esac`;
  if (!expectation.output) return run;
  return sh`${run}; printf '%s\\n' "$out" | grep -Eq ${expectation.output} || { echo ${`output does not match ${expectation.output}`} >&2; exit 1; }`;
}

/** Why a proof failed, in words an operator acts on. */
function proofFailure(
  e: CommandError,
  name: string,
  host: string,
  expectation: ProofExpectation,
): BatonError {
  const output = e.stdout.trim().split('\n').slice(-3).join(' | ');
  const said = e.stderr.trim().split('\n').at(-1) ?? '';
  const status = /^exit (\d+),/.exec(said)?.[1];
  const why =
    status === '127'
      ? 'exit 127: it could not be started there. A dynamically linked program finds no program interpreter or libraries in an empty root, so it is not self-contained'
      : status === '126'
        ? 'exit 126: it could not be executed (a binary for another machine, or a file system mounted noexec)'
        : status === '124' || status === '137'
          ? `exit ${status}: it did not finish in time and was killed`
          : said || `\`${e.command}\` exited ${e.exitCode}`;
  const todo =
    status === '127'
      ? `Build ${name} statically (musl-gcc -static, or gcc -static) and ship that build; the verify step names what it needs.`
      : `Run it by hand in an empty root on ${host} to see why.`;
  return new BatonError(
    'STEP_FAILED',
    `${name} did not pass its proof in an empty root on ${host}: ${why}` +
      (output ? `; it printed: ${output}` : '; it printed nothing') +
      ` (accepted: exit ${expectation.exitCodes.join(' or ')}${expectation.output ? `, output matching ${expectation.output}` : ''}). ${todo}`,
    `${todo} Rollback puts back the file that was installed before.`,
    { cause: e },
  );
}

/** The build output's bytes on the controller, or undefined before it is built. */
function builtBytes(output: string): Buffer | undefined {
  try {
    return readFileSync(output);
  } catch {
    return undefined;
  }
}

/**
 * Steps that build a program statically, verify it, ship it and prove it on
 * each target. Compose them in a runbook with its facts:
 *
 *   const probe = staticArtifact<Params, Facts>({ name, recipe, …, facts: (f) => f.artifact });
 *   defineRunbook({ facts: async (ctx) => ({ artifact: await probe.gather(ctx) }), steps: probe.steps, … })
 */
export function staticArtifact<P, F>(spec: StaticArtifactSpec<P, F>): StaticArtifact<P, F> {
  const id = spec.id ?? spec.name;
  const name = spec.name;
  const epoch = spec.sourceDateEpoch ?? 0;
  if (!/^[A-Za-z0-9._+-]+$/.test(name) || name.startsWith('.')) {
    throw new BatonError(
      'INVALID_INPUT',
      `artifact name ${JSON.stringify(name)} is not a plain file name`,
      'Name the program as its file is named: letters, digits, dot, dash, underscore or plus, not starting with a dot.',
    );
  }
  const installPathOf = (host: Host, params: P): string => {
    const path =
      typeof spec.installPath === 'function' ? spec.installPath(host, params) : spec.installPath;
    if (!posix.isAbsolute(path) || path.endsWith('/')) {
      throw new BatonError(
        'INVALID_INPUT',
        `artifact ${name}: install path ${path} for ${host.name} is not an absolute file path`,
        'Give the full path of the file to install, e.g. /var/lib/baton/bin/NAME.',
      );
    }
    return path;
  };
  const factsOf = (ctx: { facts: F }): ArtifactFacts => spec.facts(ctx.facts);
  const targets = spec.targets;

  async function gather(ctx: FactsContext<P>): Promise<ArtifactFacts> {
    const recipe = byParams(spec.recipe, ctx.params);
    const controller = ctx.probe(CONTROLLER);
    const uname = await controller`uname -m`;
    const toolchains: ToolchainProbe[] = [];
    let toolchain: ToolchainProbe | null = null;
    const missingTools: string[] = [];
    if (recipe.kind === 'compile') {
      for (const tc of recipe.toolchains ?? ['musl-gcc', 'gcc']) {
        const found = await controller(sh`command -v ${tc}`, { allowFail: true });
        const path = found.exitCode === 0 ? found.stdout.trim().split('\n')[0] : undefined;
        if (!path) {
          toolchains.push({ name: tc, links: false, error: `${tc} is not installed` });
          continue;
        }
        const linked = await controller(
          sh`echo ${'int main(void) { return 0; }'} | ${path} -static -x c -o /dev/null -`,
          { allowFail: true },
        );
        const version = await controller(sh`${path} -dumpfullversion -dumpversion`, {
          allowFail: true,
        });
        const probe: ToolchainProbe = {
          name: tc,
          path,
          links: linked.exitCode === 0,
          version: version.stdout.trim(),
          ...(linked.exitCode === 0
            ? {}
            : {
                error: `${path} -static cannot link a program: ${linked.stderr.trim().split('\n').slice(-2).join(' | ')}`,
              }),
        };
        toolchains.push(probe);
        if (probe.links && !toolchain) toolchain = probe;
      }
    } else {
      for (const tool of recipe.tools ?? []) {
        const found = await controller(sh`command -v ${tool}`, { allowFail: true });
        if (found.exitCode !== 0) missingTools.push(tool);
      }
    }

    const hash = createHash('sha256');
    hash.update(`baton static artifact 1\0${name}\0${epoch}\0`);
    let missingInputs: string[];
    if (recipe.kind === 'compile') {
      hash.update(
        JSON.stringify({
          toolchain: toolchain ? [toolchain.name, toolchain.path, toolchain.version] : null,
          cflags: recipe.cflags ?? null,
          ldflags: recipe.ldflags ?? null,
          sources: recipe.sources,
        }),
      );
      missingInputs = hashInputs(recipe.sources, hash);
    } else {
      hash.update(
        JSON.stringify({
          command: recipe.command.text,
          cwd: recipe.cwd,
          output: recipe.output,
          inputs: recipe.inputs,
        }),
      );
      missingInputs = hashInputs(recipe.inputs, hash);
    }
    const key = hash.digest('hex');
    const buildRoot = resolve(byParams(spec.buildRoot, ctx.params));
    const buildDir = join(buildRoot, `${name}-${key.slice(0, 16)}`);
    const output = join(buildDir, name);
    const cached = (await controller(sh`test -f ${output}`, { allowFail: true })).exitCode === 0;

    const hosts: Record<string, ArtifactHostFacts> = {};
    const targetHosts =
      'role' in targets ? ctx.hosts(targets.role) : targets.hosts.map((h) => ctx.hostNamed(h));
    await Promise.all(
      targetHosts.map(async (host) => {
        const installPath = installPathOf(host, ctx.params);
        const probe = ctx.probe(host);
        const ids = await probe`uname -m && id -u`;
        const [machine = '', uid = ''] = ids.stdout.trim().split('\n');
        const state =
          await probe`for t in ${NEEDED_ON_HOST}; do command -v "$t" >/dev/null 2>&1 || echo "missing $t"; done; if [ -L ${installPath} ]; then echo 'at symlink'; elif [ -d ${installPath} ]; then echo 'at directory'; elif [ -e ${installPath} ]; then echo "at $(sha256sum < ${installPath} | cut -c1-64)"; else echo 'at none'; fi`;
        const lines = state.stdout.trim().split('\n');
        const at = lines.find((l) => l.startsWith('at '))?.slice(3) ?? 'none';
        hosts[host.name] = {
          machine: machine.trim(),
          uid: Number(uid),
          installPath,
          previous: /^[0-9a-f]{64}$/.test(at) ? at : null,
          blocked: at === 'symlink' ? 'a symbolic link' : at === 'directory' ? 'a directory' : null,
          missing: lines.filter((l) => l.startsWith('missing ')).map((l) => l.slice(8)),
        };
      }),
    );
    return {
      name,
      key,
      buildDir,
      output,
      cached,
      toolchains,
      toolchain,
      missingTools,
      missingInputs,
      machine: (recipe.kind === 'command' && recipe.machine) || uname.stdout.trim(),
      hosts,
    };
  }

  async function staticConditions(facts: ArtifactFacts, host: Host): Promise<Condition[]> {
    const h = hostFacts(facts, host);
    const elf = await readElfFile(facts.output);
    const report = await checkPortability(
      elf,
      { host: host.name, machine: h.machine, firstExisting: async () => undefined },
      { policy: 'static', installPath: h.installPath },
    );
    return report.conditions;
  }

  const build: StepDef<P, F> = {
    id: `${id}-build`,
    title: `Build ${name} statically on the controller`,
    targets: 'controller',
    state: `${name} built on the controller`,
    async check(ctx) {
      const facts = factsOf(ctx);
      const recipe = byParams(spec.recipe, ctx.params);
      const conditions: Condition[] = [];
      conditions.push(
        condition(`sources of ${name} are readable`, facts.missingInputs.length === 0, {
          expected: 'every input exists on the controller',
          found:
            facts.missingInputs.length === 0
              ? 'all present'
              : `missing ${facts.missingInputs.join(', ')}`,
          remedy: 'Check out the sources, or correct the paths in the recipe.',
        }),
      );
      if (facts.cached) {
        conditions.push(
          condition(`build of ${name}`, true, {
            expected: 'a build for this key, or a toolchain to make one',
            found: `already built: ${facts.output}`,
          }),
        );
      } else if (recipe.kind === 'compile') {
        const tried = facts.toolchains.map((t) => t.error ?? `${t.name}: links`).join('; ');
        conditions.push(
          condition(`a static C toolchain on the controller`, facts.toolchain !== null, {
            expected: `one of ${facts.toolchains.map((t) => t.name).join(', ')} linking with -static`,
            found: facts.toolchain
              ? `${facts.toolchain.path} ${facts.toolchain.version ?? ''}`.trim()
              : tried,
            remedy: `Install ${facts.toolchains.map((t) => INSTALL_HINT[t.name]).join(', or ')}.`,
          }),
        );
      } else {
        conditions.push(
          condition(
            `tools of the ${name} build on the controller`,
            facts.missingTools.length === 0,
            {
              expected: (recipe.tools ?? []).join(', ') || 'none declared',
              found:
                facts.missingTools.length === 0
                  ? 'all present'
                  : `missing ${facts.missingTools.join(', ')}`,
              remedy: `Install ${facts.missingTools.join(', ')} on the controller.`,
            },
          ),
        );
      }
      return conditions;
    },
    async apply(ctx) {
      const facts = factsOf(ctx);
      if (facts.cached) {
        ctx.log(`${name}: using the earlier build ${facts.output}`);
        return;
      }
      await ctx.$(buildCommand(byParams(spec.recipe, ctx.params), facts, epoch));
    },
    async verify(ctx) {
      const facts = factsOf(ctx);
      const bytes = builtBytes(facts.output);
      if (!bytes) {
        return condition(`${name} was built`, false, {
          expected: `${facts.output} on the controller`,
          found: 'no such file',
        });
      }
      const elf = await readElfFile(facts.output);
      const sha = sha256Hex(bytes);
      ctx.log(`${name}: ${bytes.length} bytes, ${elf.linkage}, ${elf.machineName}, sha256 ${sha}`);
      return condition(`${name} was built`, true, {
        expected: `an ELF program at ${facts.output}`,
        found: `${bytes.length} bytes, ${elf.linkage} ${elf.machineName}, sha256 ${sha}`,
      });
    },
    async undo(ctx) {
      const facts = factsOf(ctx);
      if (!facts.cached) await ctx.$`rm -rf ${facts.buildDir}`;
    },
  };

  const verify: StepDef<P, F> = {
    id: `${id}-verify`,
    title: `Check that ${name} is statically linked for each host's machine`,
    targets,
    async check(ctx) {
      const facts = factsOf(ctx);
      const h = hostFacts(facts, ctx.host);
      const conditions = [
        condition(`${ctx.host.name} runs ${facts.machine} programs`, h.machine === facts.machine, {
          expected: `uname -m ${facts.machine}, what the build produces`,
          found: `uname -m ${h.machine || '(unknown)'}`,
          remedy: `Build ${name} for ${h.machine} (a cross toolchain in a command recipe, with its machine declared), or leave ${ctx.host.name} out.`,
        }),
      ];
      // A build made earlier can be judged before anything changes.
      if (facts.cached) conditions.push(...(await staticConditions(facts, ctx.host)));
      return conditions;
    },
    async verify(ctx) {
      const facts = factsOf(ctx);
      const conditions = await staticConditions(facts, ctx.host);
      const bytes = builtBytes(facts.output);
      if (bytes) {
        conditions.push(
          condition(`sha256 of the ${name} shipped to ${ctx.host.name}`, true, {
            expected: 'recorded',
            found: sha256Hex(bytes),
          }),
        );
      }
      return conditions;
    },
  };

  const ship: StepDef<P, F> = {
    id: `${id}-ship`,
    title: `Ship ${name} with its sha256 and install it by rename`,
    targets,
    state: `${name} installed on the target hosts; the previous file kept beside it`,
    async check(ctx) {
      const h = hostFacts(factsOf(ctx), ctx.host);
      const lacks = h.missing.filter((m) => m === 'sha256sum');
      return [
        condition(`${h.installPath} on ${ctx.host.name} can take a file`, h.blocked === null, {
          expected: 'a regular file or nothing',
          found: h.blocked ?? (h.previous ? `a file, sha256 ${h.previous}` : 'nothing'),
          remedy: `Move ${h.blocked ?? 'it'} away from ${h.installPath}, or install elsewhere.`,
        }),
        condition(`sha256sum on ${ctx.host.name}`, lacks.length === 0, {
          expected: 'sha256sum (coreutils) to check the upload',
          found: lacks.length === 0 ? 'present' : 'missing',
          remedy: `Install coreutils on ${ctx.host.name}.`,
        }),
      ];
    },
    async apply(ctx) {
      const facts = factsOf(ctx);
      const h = hostFacts(facts, ctx.host);
      const p = artifactPaths(h.installPath);
      const bytes = builtBytes(facts.output) ?? Buffer.alloc(0);
      const sha = sha256Hex(bytes);
      await ctx.$(sh`mkdir -p ${posix.dirname(p.final)} && cat > ${p.staging}`, { input: bytes });
      await ctx.$(sh`sha256sum -c --strict -`, { input: `${sha}  ${p.staging}\n` });
      await ctx.$(
        h.previous
          ? sh`chmod 0755 ${p.staging} && ln -f ${p.final} ${p.backup} && mv -f ${p.staging} ${p.final}`
          : sh`chmod 0755 ${p.staging} && mv -f ${p.staging} ${p.final}`,
      );
    },
    async verify(ctx) {
      const facts = factsOf(ctx);
      const h = hostFacts(facts, ctx.host);
      const bytes = builtBytes(facts.output);
      const want = bytes ? sha256Hex(bytes) : '(the build output is missing)';
      const out = await ctx.probe(
        sh`sha256sum < ${h.installPath} | cut -c1-64; stat -c %a ${h.installPath}`,
        {
          allowFail: true,
        },
      );
      const [sha = '', mode = ''] = out.stdout.trim().split('\n');
      return [
        condition(`${h.installPath} on ${ctx.host.name} is the build`, sha === want, {
          expected: `sha256 ${want}`,
          found: sha ? `sha256 ${sha}` : out.stderr.trim() || 'no file',
        }),
        condition(`${h.installPath} on ${ctx.host.name} is executable`, mode === '755', {
          expected: 'mode 755',
          found: mode ? `mode ${mode}` : 'no file',
        }),
      ];
    },
    async undo(ctx) {
      const h = hostFacts(factsOf(ctx), ctx.host);
      const p = artifactPaths(h.installPath);
      if (!h.previous) {
        await ctx.$`rm -f ${p.staging} ${p.final}`;
        return;
      }
      await ctx.$`rm -f ${p.staging} && if printf '%s  %s\\n' ${h.previous} ${p.final} | sha256sum -c --status -; then :; elif printf '%s  %s\\n' ${h.previous} ${p.backup} | sha256sum -c --status -; then mv -f ${p.backup} ${p.final}; else echo ${`neither ${p.final} nor ${p.backup} has sha256 ${h.previous}`} >&2; exit 1; fi`;
    },
  };

  const prove: StepDef<P, F> = {
    id: `${id}-prove`,
    title: `Run ${name} on each host in an empty root`,
    targets,
    state: `${name} installed and proven on the target hosts`,
    // A proof changes nothing it does not remove: its apply makes the empty root afresh,
    // so a host that was down during it is proven again by a resume.
    idempotent: true,
    async check(ctx) {
      const h = hostFacts(factsOf(ctx), ctx.host);
      const lacks = h.missing.filter((m) => m === 'chroot' || m === 'timeout');
      return [
        condition(`root on ${ctx.host.name}, to chroot`, h.uid === 0, {
          expected: 'uid 0',
          found: `uid ${Number.isNaN(h.uid) ? '(unknown)' : h.uid}`,
          remedy: `Log in to ${ctx.host.name} as root: only root may chroot into the empty root.`,
        }),
        condition(`chroot and timeout on ${ctx.host.name}`, lacks.length === 0, {
          expected: 'chroot and timeout (coreutils)',
          found: lacks.length === 0 ? 'present' : `missing ${lacks.join(', ')}`,
          remedy: `Install coreutils on ${ctx.host.name}.`,
        }),
      ];
    },
    async apply(ctx) {
      const h = hostFacts(factsOf(ctx), ctx.host);
      const p = artifactPaths(h.installPath);
      const args =
        typeof spec.prove?.args === 'function' ? spec.prove.args(ctx) : (spec.prove?.args ?? []);
      const given =
        typeof spec.prove?.expect === 'function'
          ? spec.prove.expect(ctx)
          : (spec.prove?.expect ?? { exitCodes: [0] });
      const expected = { ...given, exitCodes: given.exitCodes.length > 0 ? given.exitCodes : [0] };
      const seconds = spec.prove?.timeoutSeconds ?? 30;
      await ctx.$`rm -rf ${p.root} && mkdir -m 0700 ${p.root} && cp ${p.final} ${posix.join(p.root, name)}`;
      let proofError: unknown;
      try {
        await ctx.$(proofCommand(p.root, name, args, expected, seconds), {
          timeoutMs: (seconds + 15) * 1000,
          logOutput: `${name} in an empty root on ${ctx.host.name}`,
        });
      } catch (e) {
        proofError = e;
      }
      // The empty root goes in every case; a proof that failed is reported after.
      await ctx.$`rm -rf ${p.root}`;
      if (proofError instanceof CommandError) {
        throw proofFailure(proofError, name, ctx.host.name, expected);
      }
      if (proofError) throw proofError;
    },
    async verify(ctx) {
      const h = hostFacts(factsOf(ctx), ctx.host);
      const p = artifactPaths(h.installPath);
      const left = await ctx.probe(sh`test -e ${p.root}`, { allowFail: true });
      return condition(`the empty root on ${ctx.host.name} is removed`, left.exitCode !== 0, {
        expected: `no ${p.root}`,
        found: left.exitCode === 0 ? 'it is still there' : 'removed',
      });
    },
    async undo(ctx) {
      const h = hostFacts(factsOf(ctx), ctx.host);
      await ctx.$`rm -rf ${artifactPaths(h.installPath).root}`;
    },
  };

  return { gather, build, verify, ship, prove, steps: [build, verify, ship, prove] };
}
