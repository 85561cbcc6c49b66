/**
 * The passphrase on file must open its device, not merely exist (incident
 * 000: an audit looked only for missing passphrases; one changed in
 * maintenance was found wrong at the next power loss). The passphrase is
 * read on the controller and reaches `cryptsetup open --test-passphrase` on
 * the host through stdin: never argv, never any output.
 */
import { readFileSync } from 'node:fs';
import { errorMessage } from '../core/errors.ts';
import { sh } from '../core/shell.ts';
import type { AuditCheck, Finding } from './check.ts';
import type { EncryptedDevice } from './config.ts';

/** Read a passphrase reference on the controller; a reference that cannot be read is a finding, not a crash. */
export function readPassphrase(ref: string): { value: string } | { error: string } {
  if (ref.startsWith('@env:')) {
    const value = process.env[ref.slice(5)];
    if (value === undefined)
      return { error: `the environment variable ${ref.slice(5)} is not set` };
    if (value === '') return { error: `the environment variable ${ref.slice(5)} is empty` };
    return { value };
  }
  if (!ref.startsWith('@file:'))
    return { error: `${ref} is not a reference (@file:PATH, @env:VAR)` };
  const path = ref.slice(6);
  try {
    const value = readFileSync(path, 'utf8').replace(/\r?\n$/, '');
    return value === '' ? { error: `${path} is empty` } : { value };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return {
      error:
        code === 'ENOENT'
          ? `${path} does not exist`
          : code === 'EACCES'
            ? `${path} cannot be read (permission denied)`
            : `${path} cannot be read: ${errorMessage(e)}`,
    };
  }
}

/** `cryptsetup luksDump` key slot numbers in use (LUKS1 and LUKS2). */
export function keySlotsInUse(dump: string): number[] {
  const slots: number[] = [];
  for (const m of dump.matchAll(/^Key Slot (\d+): ENABLED/gm)) slots.push(Number(m[1]));
  const luks2 = /^Keyslots:\n((?:[ \t].*\n?)*)/m.exec(dump)?.[1] ?? '';
  for (const m of luks2.matchAll(/^ {2}(\d+): luks2/gm)) slots.push(Number(m[1]));
  return slots;
}

export function passphraseCheck(device: EncryptedDevice): AuditCheck {
  const where = `${device.host}:${device.device}`;
  return {
    id: `passphrase:${device.name}`,
    kind: 'passphrase',
    title: `The passphrase on file opens ${where}`,
    targets: [device.host],
    incident: '000: the passphrase on file was wrong, and the audit only looked for missing ones',
    async run(ctx): Promise<Finding> {
      const probe = ctx.probe(device.host);
      const secret = readPassphrase(device.passphrase);
      if ('value' in secret) ctx.redactor.add(`passphrase:${device.name}`, secret.value);
      const present = await probe(
        sh`test -e ${device.device} || exit 3; cryptsetup isLuks ${device.device} || exit 4; cryptsetup luksDump ${device.device}`,
        { allowFail: true },
      );
      if (present.exitCode !== 0) {
        const why =
          present.exitCode === 3
            ? 'does not exist'
            : present.exitCode === 4
              ? 'is not a LUKS device'
              : `cannot be read (exit ${present.exitCode}: ${present.stderr.trim().split('\n').pop() ?? ''})`;
        return {
          verdict: 'fail',
          summary: `${where} ${why}`,
          evidence: [`${where} ${why}`],
          remedy: `Fix the audit config's encryptedDevices entry ${device.name}, or find out where the device went.`,
        };
      }
      const version = /^Version:\s*(\d+)/m.exec(present.stdout)?.[1];
      const slots = keySlotsInUse(present.stdout);
      const header = `${where}: LUKS${version ?? '?'}, ${slots.length} key slot${slots.length === 1 ? '' : 's'} in use${slots.length ? ` (${slots.join(', ')})` : ''}`;
      if ('error' in secret) {
        return {
          verdict: 'fail',
          summary: `the passphrase on file for ${where} cannot be read`,
          evidence: [header, `passphrase on file ${device.passphrase}: ${secret.error}`],
          remedy: `Restore the passphrase file (or variable) ${device.passphrase} from the team's secrets store; without it ${where} cannot be opened after a reboot.`,
        };
      }
      const slot = device.keySlot === undefined ? [] : ['--key-slot', String(device.keySlot)];
      const started = performance.now();
      // No --key-file: cryptsetup reads stdin up to the first newline, as a person types it at boot.
      const test = await probe(
        sh`cryptsetup open --test-passphrase --verbose --tries 1 ${slot} ${device.device}`,
        { input: `${secret.value}\n`, allowFail: true, timeoutMs: 120_000 },
      );
      const ms = Math.round(performance.now() - started);
      const unlocked = /Key slot (\d+) unlocked/.exec(test.stdout + test.stderr)?.[1];
      if (test.exitCode === 0) {
        return {
          verdict: 'pass',
          summary: `the passphrase from ${device.passphrase} opens key slot ${unlocked ?? '?'}`,
          evidence: [
            header,
            `cryptsetup open --test-passphrase: key slot ${unlocked ?? '?'} unlocked with the passphrase from ${device.passphrase} (${ms} ms)`,
          ],
          metrics: {
            keySlot: unlocked === undefined ? null : Number(unlocked),
            slotsInUse: slots.length,
          },
        };
      }
      const reason =
        test.exitCode === 2
          ? `no key slot${device.keySlot === undefined ? '' : ` (tried slot ${device.keySlot})`} opens with the passphrase from ${device.passphrase}`
          : `cryptsetup exited ${test.exitCode}: ${test.stderr.trim().split('\n').pop() ?? ''}`;
      return {
        verdict: 'fail',
        summary: `the passphrase on file does NOT open ${where}`,
        evidence: [header, `cryptsetup open --test-passphrase: ${reason} (exit ${test.exitCode})`],
        remedy: `The passphrase on file is wrong: recover the current one from a running machine (or whoever changed it) and store it in ${device.passphrase} now, before a reboot needs it.`,
        metrics: { exitCode: test.exitCode, slotsInUse: slots.length },
      };
    },
  };
}
