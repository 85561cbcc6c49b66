/**
 * The Debian packages the testnet needs, from debian-packages.txt (which CI
 * reads too); missing ones are installed with apt-get after a notice.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { BatonError } from '../core/errors.ts';
import { batonFile } from '../core/package-root.ts';
import { sys } from './system.ts';

export const PACKAGE_LIST = batonFile('debian-packages.txt');

export function requiredPackages(file = PACKAGE_LIST): string[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim())
    .filter(Boolean);
}

export async function missingPackages(packages: string[]): Promise<string[]> {
  if (packages.length === 0) return [];
  const out = await sys(
    ['dpkg-query', '-W', '-f', '${Package} ${db:Status-Abbrev}\\n', ...packages],
    {
      nothrow: true,
    },
  );
  const installed = new Set(
    out.stdout
      .split('\n')
      .filter((line) => / ii\s*$/.test(line))
      .map((line) => line.split(' ')[0]!.split(':')[0]),
  );
  return packages.filter((p) => !installed.has(p));
}

/**
 * Install what is missing. Services those packages start by default (the
 * machine's own sshd, knotd ...) are kept from starting with a temporary
 * policy-rc.d: the testnet runs its own copies inside its hosts.
 */
export async function ensurePackages(log: (line: string) => void): Promise<string[]> {
  if (!existsSync('/usr/bin/dpkg-query') || !existsSync('/usr/bin/apt-get')) {
    throw new BatonError(
      'MISSING_PREREQUISITE',
      'the testnet needs a Debian (or derived) machine with dpkg and apt-get',
      `Install the packages listed in ${PACKAGE_LIST} by other means.`,
    );
  }
  const missing = await missingPackages(requiredPackages());
  if (missing.length === 0) return [];
  log(`testnet: installing missing Debian packages with apt-get: ${missing.join(' ')}`);
  const policy = '/usr/sbin/policy-rc.d';
  const ownPolicy = !existsSync(policy);
  if (ownPolicy)
    writeFileSync(
      policy,
      '#!/bin/sh\n# baton testnet: package installs start no services\nexit 101\n',
      { mode: 0o755 },
    );
  try {
    await sys(['apt-get', 'update', '-qq'], { timeoutMs: 300_000 });
    await sys(
      [
        'env',
        'DEBIAN_FRONTEND=noninteractive',
        'apt-get',
        'install',
        '-y',
        '-qq',
        '--no-install-recommends',
        ...missing,
      ],
      { timeoutMs: 900_000 },
    );
  } catch (e) {
    throw new BatonError(
      'MISSING_PREREQUISITE',
      `installing ${missing.join(' ')} failed: ${(e as Error).message}`,
      `Install them by hand (apt-get install ${missing.join(' ')}) and run testnet up again.`,
    );
  } finally {
    if (ownPolicy) rmSync(policy, { force: true });
  }
  if (missing.includes('openssh-server')) {
    log(
      "testnet: note: the openssh-server package enables the machine's own ssh service for the next boot; baton only uses its sshd binary (`systemctl disable ssh` undoes that)",
    );
  }
  return missing;
}
