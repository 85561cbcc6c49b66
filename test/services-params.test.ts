/**
 * Bad input changes nothing: every parameter of the IRC runbooks is checked
 * by its real type before the stack is even loaded, and a newline, the way
 * one finding took a testnet down, is refused with exit 2.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { main } from '../lib/app/cli.ts';
import { isSecretParam } from '../lib/core/params.ts';
import { servicesParams } from '../lib/steps/services.ts';
import { captureIo, inDir, workspace } from './helpers.ts';

const shape = servicesParams.shape as Record<string, z.ZodType>;
const base = (s: z.ZodType): z.ZodType =>
  s instanceof z.ZodOptional || s instanceof z.ZodDefault ? base(s.unwrap() as z.ZodType) : s;
const strings = Object.entries(shape)
  .filter(([, s]) => !isSecretParam(s) && base(s) instanceof z.ZodString)
  .map(([name]) => name);

/** The required secrets, valid, so that the parameter under test is the one refused. */
const REQUIRED = ['opsPassword=long-enough-1', 'canaryPassword=long-enough-2'];

async function plan(...params: string[]): Promise<{ code: number; text: string }> {
  const given = new Set(params.map((p) => p.slice(0, p.indexOf('='))));
  params = [...REQUIRED.filter((p) => !given.has(p.slice(0, p.indexOf('=')))), ...params];
  const ws = workspace();
  const io = captureIo();
  // A stack that does not exist: the parameters must be refused before it is looked for.
  const code = await inDir(ws.cwd, () =>
    main(['plan', 'handover', '--stack', 'nowhere', ...params.flatMap((p) => ['--param', p])], io),
  );
  return { code, text: io.text() };
}

describe('the IRC runbooks refuse bad input before anything runs', () => {
  it('has string parameters to try', () => {
    expect(strings).toEqual(
      expect.arrayContaining(['canaryChannel', 'unit', 'db', 'from', 'lease']),
    );
  });

  for (const name of strings) {
    it(`refuses a newline in ${name} with exit 2`, async () => {
      const r = await plan(`${name}=ok\nQUIT :gone`);
      expect(r.code).toBe(2);
      expect(r.text).toContain(`parameter ${name} of runbook handover is invalid`);
      expect(r.text).not.toContain('unknown stack');
    });
  }

  it.each([
    ['canaryChannel', 'ops', 'must be a channel name'],
    ['unit', '-atheme', 'must be a systemd unit name'],
    ['db', 'services.db', 'must be an absolute path'],
    ['db', '/var/lib/../../etc/shadow', 'must not contain ..'],
    ['ircPort', '70000', 'Too big'],
    ['from', 'nebula;reboot', 'must be a host name'],
    ['lease', '_lease services', 'must be a DNS name'],
    ['canary', 'alice bob', 'must be an IRC account name'],
  ])('refuses %s=%j by its type', async (name, value, why) => {
    const r = await plan(`${name}=${value}`);
    expect(r.code).toBe(2);
    expect(r.text).toContain(`parameter ${name} of runbook handover is invalid`);
    expect(r.text.toLowerCase()).toContain(why.toLowerCase());
  });

  it('refuses a services password that would end the IRC line it is sent in', async () => {
    const r = await plan('opsPassword=correct horse\r\nPRIVMSG #ops :hi');
    expect(r.code).toBe(2);
    expect(r.text).toContain('parameter opsPassword of runbook handover is invalid');
    expect(r.text).not.toContain('correct horse');
  });
});
