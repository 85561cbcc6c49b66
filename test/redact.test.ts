import { describe, expect, it } from 'vitest';
import { Redactor } from '../lib/redact.ts';

describe('Redactor', () => {
  it('replaces every occurrence of a secret, naming the parameter', () => {
    const r = new Redactor();
    r.add('token', 's3cr3t');
    expect(r.redact('a s3cr3t b s3cr3t')).toBe('a [redacted:token] b [redacted:token]');
  });

  it('replaces the longest secret first when one contains another', () => {
    const r = new Redactor();
    r.add('short', 'abc');
    r.add('long', 'abcdef');
    expect(r.redact('xabcdefx abc')).toBe('x[redacted:long]x [redacted:short]');
  });

  it('walks nested values', () => {
    const r = new Redactor();
    r.add('pw', 'hunter2');
    expect(r.redactDeep({ a: ['hunter2'], b: { c: 'x hunter2' }, n: 1 })).toEqual({
      a: ['[redacted:pw]'],
      b: { c: 'x [redacted:pw]' },
      n: 1,
    });
  });
});
