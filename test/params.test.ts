import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { InvalidInputError } from '../lib/core/errors.ts';
import { parseParamArgs, secret, validateParams, withoutParamValues } from '../lib/core/params.ts';

const schema = z.object({
  ttl: z.number().int().min(60),
  name: z.string().regex(/^[a-z]+$/, 'lowercase letters only'),
  dryish: z.boolean().default(false),
  key: secret(z.string().regex(/^\S+$/, 'no spaces')).optional(),
});

const validate = (args: string[]) => validateParams(schema, parseParamArgs(args), 'demo');

function thrown(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    const error = e as InvalidInputError;
    return `${error.message}\n${error.hint ?? ''}`;
  }
  throw new Error('expected a throw');
}

describe('params', () => {
  it('reads numbers and booleans from the command line', () => {
    expect(validate(['ttl=300', 'name=abc', 'dryish=yes']).params).toEqual({
      ttl: 300,
      name: 'abc',
      dryish: true,
    });
  });

  it('rejects a bad value naming the parameter and the rule', () => {
    expect(() => validate(['ttl=5', 'name=abc'])).toThrow(
      'parameter ttl of runbook demo is invalid: Too small: expected number to be >=60 (got "5")',
    );
    expect(() => validate(['ttl=300', 'name=ABC'])).toThrow(
      'parameter name of runbook demo is invalid: lowercase letters only (got "ABC")',
    );
  });

  it('rejects a missing required parameter', () => {
    expect(() => validate(['name=abc'])).toThrow(
      /parameter ttl of runbook demo is invalid: .* \(not given\)/,
    );
  });

  it('rejects an unknown parameter, listing the known ones', () => {
    try {
      validate(['ttl=300', 'name=abc', 'tll=3']);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(InvalidInputError);
      expect((e as InvalidInputError).message).toBe('runbook demo has no parameter tll');
      expect((e as InvalidInputError).hint).toContain('ttl, name, dryish, key');
    }
  });

  it('rejects a malformed --param', () => {
    expect(() => parseParamArgs(['ttl'])).toThrow('--param "ttl" is not of the form name=value');
  });

  it('never shows a secret value, even when it is invalid', () => {
    const attempt = () => validate(['ttl=300', 'name=abc', 'key=has spaces in it']);
    expect(attempt).toThrow('parameter key of runbook demo is invalid: no spaces');
    expect(thrown(attempt)).not.toMatch(/spaces in/);
  });

  it.each(['x', 'Qz7', 'seven77', ''])(
    'refuses a secret of %j: shorter than 8 characters, named, its value not shown',
    (value) => {
      const attempt = () => validate(['ttl=300', 'name=abc', `key=${value}`]);
      expect(attempt).toThrow(InvalidInputError);
      const message = thrown(attempt);
      expect(message).toContain(
        'secret parameter key of runbook demo is shorter than 8 characters',
      );
      expect(message).not.toContain(`key=${value}`);
      if (value.length > 1) expect(message).not.toContain(value);
    },
  );

  it('takes a secret of 8 characters', () => {
    expect(validate(['ttl=300', 'name=abc', 'key=eight888']).params.key).toBe('eight888');
  });

  it('refuses an inline secret where runs need approvals, and takes one by reference', () => {
    process.env.BATON_PARAMS_KEY = 'abcdefghij';
    const raw = (key: string) => parseParamArgs(['ttl=300', 'name=abc', `key=${key}`]);
    const refuse = { inlineSecrets: 'refuse' } as const;
    const attempt = () => validateParams(schema, raw('abcdefghij'), 'demo', refuse);
    expect(attempt).toThrow(
      'secret parameter key of runbook demo is given inline, and runs on this stack need approvals',
    );
    expect(thrown(attempt)).not.toContain('abcdefghij');
    expect(validateParams(schema, raw('@env:BATON_PARAMS_KEY'), 'demo', refuse).params.key).toBe(
      'abcdefghij',
    );
    expect(validateParams(schema, raw('abcdefghij'), 'demo').params.key).toBe('abcdefghij');
    const plain = parseParamArgs(['ttl=300', 'name=abc']);
    expect(validateParams(schema, plain, 'demo', refuse).params.name).toBe('abc');
  });

  it('keeps a secret mark through describe, optional and default', () => {
    const shape = z.object({
      a: secret(z.string()).describe('a secret'),
      b: secret(z.string().min(1)).optional().describe('b secret'),
      c: secret(z.string()).default('x').describe('c secret'),
      d: z.string().describe('plain'),
    });
    const v = validateParams(
      shape,
      parseParamArgs(['a=alpha-value', 'b=beta-value', 'd=delta']),
      'demo',
    );
    expect(v.secretNames).toEqual(['a', 'b', 'c']);
    expect(v.recorded).toMatchObject({ a: '[redacted:a]', b: '[redacted:b]', d: 'delta' });
    expect(v.redactor.redact('alpha-value beta-value')).toBe('[redacted:a] [redacted:b]');
  });

  it('records secrets by reference or as redacted, never by value', () => {
    process.env.BATON_PARAMS_KEY = 'abcdefghij';
    const byRef = validate(['ttl=300', 'name=abc', 'key=@env:BATON_PARAMS_KEY']);
    expect(byRef.params.key).toBe('abcdefghij');
    expect(byRef.recorded.key).toBe('@env:BATON_PARAMS_KEY');
    const inline = validate(['ttl=300', 'name=abc', 'key=abcdefghij']);
    expect(inline.recorded.key).toBe('[redacted:key]');
    expect(inline.redactor.redact('x abcdefghij')).toBe('x [redacted:key]');
  });

  it('hides every inline --param value from the command line ps shows, and keeps references', () => {
    expect(
      withoutParamValues([
        'node',
        'bin/baton.js',
        'run',
        'handover',
        '--param',
        'opsPassword=hunter2hunter2',
        '--param=linkPassword=swordfish1',
        '--param',
        'tsigKey=@env:BATON_TSIG_KEY',
        '--param',
        'canaryPassword=@file:/secure/canary',
        '--stack',
        'production',
      ]),
    ).toEqual([
      'node',
      'bin/baton.js',
      'run',
      'handover',
      '--param',
      'opsPassword=…',
      '--param=linkPassword=…',
      '--param',
      'tsigKey=@env:BATON_TSIG_KEY',
      '--param',
      'canaryPassword=@file:/secure/canary',
      '--stack',
      'production',
    ]);
  });
});
