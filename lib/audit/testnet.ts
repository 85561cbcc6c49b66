/**
 * The audit of the local irc testnet (`baton audit --stack local`): the
 * config an operator of that network would keep, generated from the
 * testnet's contract (lib/testnet/irc.ts), and the one thing the testnet
 * does not provision itself: a LUKS2 container on vault whose passphrase is
 * kept on file beside the testnet's other secrets.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { BatonError } from '../core/errors.ts';
import { findHost, type Inventory } from '../core/inventory.ts';
import { sh } from '../core/shell.ts';
import type { Transports } from '../transports/index.ts';
import {
  ATHEME,
  BACKUP,
  BACKUP_HOST,
  INSPIRCD,
  IRC_CLIENT_PORT,
  LEASE,
  LEASE_RECORD,
  SERVICES_PRIMARY,
  SERVICES_SERVER,
  SERVICES_STANDBY,
  ircSecretPaths,
} from '../testnet/irc.ts';
import { testnetPaths, type TestnetPaths } from '../testnet/state.ts';
import { parseAuditConfig, type AuditConfig, type AuditConfigInput } from './config.ts';

/** The encrypted container on vault: a file, so no loop device is needed (`--test-passphrase` only reads its header). */
export const TESTNET_LUKS = {
  host: BACKUP_HOST,
  device: '/srv/crypt/backup.luks',
  /** Sparse; LUKS2's header takes 16 MiB. */
  size: '24M',
} as const;

export function testnetLuksPassphraseFile(paths: TestnetPaths = testnetPaths()): string {
  return join(ircSecretPaths(paths).dir, 'luks-passphrase');
}

/** What an operator of the irc testnet's network would audit. */
export function testnetAuditConfigInput(paths: TestnetPaths = testnetPaths()): AuditConfigInput {
  const secrets = ircSecretPaths(paths);
  return {
    services: {
      atheme: {
        backup: {
          host: BACKUP_HOST,
          dir: BACKUP.dir,
          pattern: 'services.db.*',
          format: 'file',
          interval: '24h',
          scratch: '/var/tmp',
          items: [
            {
              name: 'services.db',
              kind: 'atheme-db',
              live: { host: SERVICES_PRIMARY, path: ATHEME.db },
            },
          ],
        },
        standby: {
          primary: SERVICES_PRIMARY,
          standby: SERVICES_STANDBY,
          binary: '/usr/bin/atheme-services',
          policy: 'resolvable',
          servicesName: SERVICES_SERVER,
          ircdConfig: INSPIRCD.config,
          ircPort: IRC_CLIENT_PORT,
          copies: [
            { host: SERVICES_STANDBY, path: ATHEME.db, kind: 'atheme-db' },
            { host: BACKUP_HOST, path: `${BACKUP.dir}/services.db.*`, kind: 'atheme-db' },
          ],
          primaryPath: ATHEME.db,
          maxCopyAge: '48h',
          lease: { unit: ATHEME.unit, watchdogUnit: LEASE.watchdogUnit, conf: LEASE.conf },
          dns: {
            records: [
              { name: 'irc', type: 'A', maxTtl: 300 },
              { name: 'services', type: 'A', maxTtl: 300 },
              { name: LEASE_RECORD, type: 'TXT', maxTtl: 300 },
            ],
          },
        },
      },
    },
    encryptedDevices: [
      {
        name: 'vault-backup',
        host: TESTNET_LUKS.host,
        device: TESTNET_LUKS.device,
        passphrase: `@file:${testnetLuksPassphraseFile(paths)}`,
      },
    ],
    // The testnet's hosts share the machine's disk: thresholds for a developer's machine, not a server.
    filesystems: [
      { host: SERVICES_PRIMARY, path: ATHEME.dataDir },
      { host: SERVICES_PRIMARY, path: '/var/log' },
      { host: SERVICES_STANDBY, path: ATHEME.dataDir },
      { host: BACKUP_HOST, path: '/srv/backup' },
    ].map((f) => ({ ...f, warnFreePercent: 10, failFreePercent: 2, warnDays: 7, failDays: 1 })),
    secrets: [
      secrets.tsigKey,
      secrets.batonopsPassword,
      secrets.alicePassword,
      secrets.bobPassword,
      secrets.carolPassword,
      secrets.serverLinkPassword,
      secrets.servicesLinkPassword,
    ].map((f) => `@file:${f}`),
  };
}

export function testnetAuditConfig(
  inventory: Inventory,
  paths: TestnetPaths = testnetPaths(),
): AuditConfig {
  return parseAuditConfig(testnetAuditConfigInput(paths), 'the irc testnet', inventory);
}

/**
 * Make the LUKS container on vault if it is missing, with the passphrase on
 * file (made once). A container that exists is left as it is, even when the
 * passphrase on file does not open it: that is what the audit must find.
 * Returns whether it made the container.
 */
export async function ensureTestnetLuks(
  inventory: Inventory,
  transports: Transports,
  paths: TestnetPaths = testnetPaths(),
): Promise<boolean> {
  const file = testnetLuksPassphraseFile(paths);
  if (!existsSync(ircSecretPaths(paths).dir)) {
    throw new BatonError(
      'PRECONDITION_FAILED',
      `the irc testnet's secrets directory ${ircSecretPaths(paths).dir} does not exist`,
      'Bring the irc testnet up first: `sudo npx baton testnet up`.',
    );
  }
  const host = findHost(inventory, TESTNET_LUKS.host);
  const transport = transports.transportFor(host);
  const exists = await transport.exec(host, sh`cryptsetup isLuks ${TESTNET_LUKS.device}`.text, {
    timeoutMs: 30_000,
  });
  if (exists.exitCode === 0) return false;
  if (!existsSync(file) || readFileSync(file, 'utf8').trim() === '') {
    writeFileSync(file, `${randomBytes(18).toString('base64url')}\n`, { mode: 0o600 });
  }
  const passphrase = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  // pbkdf2 with few iterations: a test container must open in milliseconds, not seconds.
  const made = await transport.exec(
    host,
    sh`mkdir -p /srv/crypt && rm -f ${TESTNET_LUKS.device} && truncate -s ${TESTNET_LUKS.size} ${TESTNET_LUKS.device} && chmod 600 ${TESTNET_LUKS.device} && cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 ${TESTNET_LUKS.device}`
      .text,
    { input: `${passphrase}\n`, timeoutMs: 60_000 },
  );
  if (made.exitCode !== 0) {
    throw new BatonError(
      'COMMAND_FAILED',
      `making the testnet's LUKS container ${TESTNET_LUKS.host}:${TESTNET_LUKS.device} failed (exit ${made.exitCode}): ${made.stderr.trim().split('\n').pop() ?? ''}`,
      'Check that cryptsetup is installed (debian-packages.txt lists it).',
    );
  }
  return true;
}
