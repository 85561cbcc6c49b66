/** Local commands the testnet machinery runs on the controller (ip, nsenter, nft ...), argv only. */
import { $ } from 'zx/core';
import { BatonError } from '../core/errors.ts';

export interface SysResult {
  stdout: string;
  stderr: string;
  exitCode: number | null;
}

export interface SysOptions {
  input?: string;
  /** Return the result instead of throwing on a non-zero exit. */
  nothrow?: boolean;
  timeoutMs?: number;
}

/** Run `argv` (no shell of ours in between); throws BatonError naming the command on failure. */
export async function sys(argv: readonly string[], options: SysOptions = {}): Promise<SysResult> {
  const out = await $({
    quiet: true,
    verbose: false,
    nothrow: true,
    ...(options.input !== undefined ? { input: options.input } : {}),
    ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}),
  })`${argv}`;
  const result = { stdout: out.stdout, stderr: out.stderr, exitCode: out.exitCode };
  if (!options.nothrow && out.exitCode !== 0) {
    const detail = out.stderr.trim().split('\n').slice(-3).join(' | ') || `exit ${out.exitCode}`;
    throw new BatonError(
      'COMMAND_FAILED',
      `testnet: \`${argv.join(' ')}\` failed: ${detail}`,
      'Run `baton testnet down` and `baton testnet up` to rebuild the testnet from scratch.',
    );
  }
  return result;
}

/** Run a script with /bin/sh inside a host's namespaces (its "console"), arguments as $1... */
export function inHostArgv(
  ns: { net: string; mnt: string; uts: string },
  script: string,
  args: readonly string[] = [],
): string[] {
  return [
    'nsenter',
    `--net=${ns.net}`,
    `--mount=${ns.mnt}`,
    `--uts=${ns.uts}`,
    '--',
    '/bin/sh',
    '-c',
    script,
    'sh',
    ...args,
  ];
}
