import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { quote, raw, scriptFrame, sh, STDIN_SCRIPT } from '../lib/core/shell.ts';

const hostile = [
  '; rm -rf /',
  "it's",
  '"double"',
  '$(touch /tmp/baton-pwned)',
  '`id`',
  'new\nline',
  'tab\there',
  'ünïcødé ✓',
  '',
  '-n',
  '*',
  '\\',
];

describe('quote', () => {
  it('leaves plain words alone so plans stay readable', () => {
    expect(quote('/var/lib/atheme/services.db')).toBe('/var/lib/atheme/services.db');
  });

  it.each(hostile)('round-trips %j through a real POSIX sh unchanged', (value) => {
    const out = execFileSync('sh', ['-c', sh`printf '%s' ${value}`.text]);
    expect(out.toString()).toBe(value);
  });

  it('quotes arrays item by item', () => {
    const out = execFileSync('sh', ['-c', sh`printf '<%s>' ${hostile}`.text]).toString();
    expect(out).toBe(hostile.map((v) => `<${v}>`).join(''));
  });

  it('inserts nested commands and raw fragments as they are', () => {
    const inner = sh`echo ${'a b'}`;
    expect(sh`${inner} ${raw('|')} wc -c`.text).toBe("echo 'a b' | wc -c");
  });
});

/** The shells a remote login may run the bootstrap in, those installed here. */
const shells = ['sh', 'dash', 'bash', 'busybox sh', 'zsh'].filter((s) =>
  existsSync(`/usr/bin/${s.split(' ')[0]}`),
);

function viaStdin(shell: string, input: Buffer): { status: number | null; stdout: string } {
  const [file, ...args] = shell.split(' ');
  const r = spawnSync(file!, [...args, '-c', STDIN_SCRIPT], { input });
  return { status: r.status, stdout: r.stdout.toString() };
}

describe.each(shells)('a script sent on stdin to %s', (shell) => {
  it('runs in the shell that reads it, and leaves the rest of stdin to it', () => {
    const command = sh`printf '<%s>' ${hostile}; cat`.text;
    const rest = Buffer.from('the rest\nof stdin\n');
    const r = viaStdin(shell, Buffer.concat([scriptFrame(command), rest]));
    expect(r).toEqual({
      status: 0,
      stdout: hostile.map((v) => `<${v}>`).join('') + 'the rest\nof stdin\n',
    });
  });

  it('exits with the script status, and leaves it none of its own variables', () => {
    const probe = '[ -z "${__baton_n+x}${__baton_s+x}${__baton_l+x}" ] && echo clean; exit 7';
    expect(viaStdin(shell, scriptFrame(probe))).toEqual({ status: 7, stdout: 'clean\n' });
  });

  it('runs none of a script that arrives short', () => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-frame-'));
    const frame = scriptFrame(sh`touch ${join(dir, 'one')}\ntouch ${join(dir, 'two')}`.text);
    const short = frame.subarray(0, frame.lastIndexOf('touch'));
    expect(viaStdin(shell, short).status).toBe(125);
    expect(existsSync(join(dir, 'one'))).toBe(false);
    expect(viaStdin(shell, Buffer.alloc(0)).status).toBe(125);
  });
});
