import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { quote, raw, sh } from '../lib/shell.ts';

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
