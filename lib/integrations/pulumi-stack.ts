/**
 * `--stack NAME` from a Pulumi stack: runs `pulumi stack output --json
 * --show-secrets=false --stack NAME` in infra/ and reads its `inventory`
 * output. Where no `pulumi` CLI is installed, or it does not know the stack,
 * the source answers nothing and the next one (the saved outputs file
 * `<baton home>/stacks/<stack>.json`) is asked.
 *
 * An app (lib/app/app.ts) asks this source after the testnet's and before
 * the saved outputs file.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { $ } from 'zx/core';
import { BatonError, InvalidInputError } from '../core/errors.ts';
import { parseInventory, type Inventory, type StackSource } from '../core/inventory.ts';
import { projectOf, type ProjectRef } from '../core/project.ts';
import { sh, type Cmd } from '../core/shell.ts';
import { findExecutable } from '../transports/which.ts';

export interface PulumiStackOptions {
  /** The Pulumi project directory; default `$BATON_INFRA_DIR` (relative to the cwd), else `infra/` in the project root. */
  infraDir?: string;
  /** Environment for finding and running `pulumi`; default `process.env`. */
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

const STACK = /^[A-Za-z0-9][A-Za-z0-9._/-]*$/;
const NO_SUCH_STACK =
  /no stack named|stack .*not found|could not find (a )?stack|no stack .* found/i;

/** Whether `recordActiveHost` can run here: a pulumi CLI and the Pulumi project of infra/. */
export function canRecordActiveHost(
  options: PulumiStackOptions & { cwd?: ProjectRef } = {},
): boolean {
  const dir = infraDirFor(options.cwd ?? process.cwd(), options);
  return (
    Boolean(findExecutable('pulumi', options.env ?? process.env)) &&
    existsSync(join(dir, 'Pulumi.yaml'))
  );
}

export function infraDirFor(at: ProjectRef, options: PulumiStackOptions = {}): string {
  const env = options.env ?? process.env;
  const project = projectOf(at, env);
  const given = options.infraDir ?? env['BATON_INFRA_DIR'];
  return given ? resolve(project.cwd, given) : join(project.root, 'infra');
}

async function runPulumi(
  cmd: Cmd,
  cwd: string,
  options: PulumiStackOptions,
): Promise<{ exitCode: number | null; stdout: string; stderr: string }> {
  const out = await $({
    cwd,
    env: options.env ?? process.env,
    nothrow: true,
    quiet: true,
    verbose: false,
    timeout: options.timeoutMs ?? 120_000,
    input: '',
  })`sh -c ${cmd.text}`;
  return { exitCode: out.exitCode, stdout: out.stdout, stderr: out.stderr };
}

function lastLine(text: string): string {
  return text.trim().split('\n').slice(-1)[0] ?? '';
}

/** A StackSource backed by the `pulumi` CLI in the infra project. */
export function pulumiStackSource(options: PulumiStackOptions = {}): StackSource {
  return {
    describe: 'pulumi stack output (infra/)',
    async load(stack: string, at: ProjectRef): Promise<Inventory | undefined> {
      if (!STACK.test(stack)) return undefined;
      const dir = infraDirFor(at, options);
      if (!existsSync(join(dir, 'Pulumi.yaml'))) return undefined;
      const bin = findExecutable('pulumi', options.env ?? process.env);
      if (!bin) return undefined;
      const cmd = sh`${bin} stack output --json --show-secrets=false --stack ${stack}`;
      const out = await runPulumi(cmd, dir, options);
      if (out.exitCode !== 0) {
        if (NO_SUCH_STACK.test(out.stderr + out.stdout)) return undefined;
        throw new BatonError(
          'PRECONDITION_FAILED',
          `\`pulumi stack output\` for stack ${stack} in ${dir} exited ${out.exitCode}: ${lastLine(out.stderr || out.stdout)}`,
          'Log in to the stack backend (pulumi login) and check the stack name; baton does not fall back to a saved copy when Pulumi fails.',
        );
      }
      let outputs: unknown;
      try {
        outputs = JSON.parse(out.stdout);
      } catch (e) {
        throw new InvalidInputError(
          `\`pulumi stack output --json\` for stack ${stack} printed no JSON: ${(e as Error).message}`,
        );
      }
      const inventory = (outputs as { inventory?: unknown } | null)?.inventory;
      if (inventory === undefined) {
        throw new InvalidInputError(
          `stack ${stack} has no \`inventory\` output`,
          `Run \`pulumi up --stack ${stack}\` in ${dir}, which exports it.`,
        );
      }
      if (inventory === '[secret]') {
        throw new InvalidInputError(
          `stack ${stack}'s \`inventory\` output is a secret`,
          'The inventory must not depend on secret values; see infra/README.md.',
        );
      }
      return parseInventory(inventory, `pulumi stack ${stack}`);
    },
  };
}

/**
 * Record a cutover in the stack: `pulumi config set baton:activeHost HOST`, so
 * the next `pulumi up` declares the records the cut step already changed.
 */
export async function recordActiveHost(
  stack: string,
  host: string,
  options: PulumiStackOptions & { cwd?: ProjectRef } = {},
): Promise<void> {
  if (!STACK.test(stack)) throw new InvalidInputError(`stack name ${stack} is not valid`);
  if (!/^[a-z][a-z0-9-]*$/.test(host))
    throw new InvalidInputError(`host name ${host} is not valid`);
  const dir = infraDirFor(options.cwd ?? process.cwd(), options);
  const bin = findExecutable('pulumi', options.env ?? process.env);
  const manual = `cd ${dir} && pulumi config set baton:activeHost ${host} --stack ${stack}`;
  if (!bin || !existsSync(join(dir, 'Pulumi.yaml'))) {
    throw new BatonError(
      'MISSING_PREREQUISITE',
      `cannot record the active host ${host} in stack ${stack}: no pulumi CLI or no Pulumi project at ${dir}`,
      `Run this where Pulumi is installed, or the next pulumi up will undo the cutover: ${manual}`,
    );
  }
  const out = await runPulumi(
    sh`${bin} config set baton:activeHost ${host} --stack ${stack}`,
    dir,
    options,
  );
  if (out.exitCode !== 0) {
    throw new BatonError(
      'COMMAND_FAILED',
      `\`pulumi config set baton:activeHost ${host}\` for stack ${stack} exited ${out.exitCode}: ${lastLine(out.stderr || out.stdout)}`,
      `Run it by hand, or the next pulumi up will undo the cutover: ${manual}`,
    );
  }
}
