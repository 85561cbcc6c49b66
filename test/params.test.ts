import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { InvalidInputError } from '../lib/errors.ts';
import { parseParamArgs, secret, validateParams } from '../lib/params.ts';

const schema = z.object({
  ttl: z.number().int().min(60),
  name: z.string().regex(/^[a-z]+$/, 'lowercase letters only'),
  dryish: z.boolean().default(false),
  key: secret(z.string().min(8)).optional(),
});

const validate = (args: string[]) => validateParams(schema, parseParamArgs(args), 'demo');

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
    expect(() => validate(['ttl=300', 'name=abc', 'key=short'])).toThrow(
      /parameter key of runbook demo is invalid: Too small/,
    );
    try {
      validate(['ttl=300', 'name=abc', 'key=short']);
    } catch (e) {
      expect((e as Error).message).not.toContain('short');
    }
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
});
