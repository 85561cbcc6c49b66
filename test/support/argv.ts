/** What anyone on this machine sees of its processes' command lines. */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** `ps -ww -eo args`, then every /proc/<pid>/cmdline, one process a line. */
export function everyCommandLine(): string {
  const ps = execFileSync('ps', ['-ww', '-eo', 'args'], { maxBuffer: 64 * 2 ** 20 }).toString();
  let proc = '';
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      proc += readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ') + '\n';
    } catch {
      // The process ended meanwhile.
    }
  }
  return ps + proc;
}
