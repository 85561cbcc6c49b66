/**
 * Backups of services.db on the backup target: the file streams from the
 * services host to vault through the controller (`cat` on one end,
 * /srv/backup/bin/backup-atheme on the other), never held whole, and the
 * sha256 computed in passing must equal the one vault wrote beside it.
 */
import { BatonError } from '../core/errors.ts';
import { findHost, type Inventory } from '../core/inventory.ts';
import { sh } from '../core/shell.ts';
import type { SshPool } from '../transports/ssh.ts';
import { ATHEME, BACKUP, BACKUP_HOST, SERVICES_PRIMARY } from './irc.ts';

export interface AthemeBackup {
  /** The backup target (vault). */
  host: string;
  /** The services host the copy was read from. */
  from: string;
  /** /srv/backup/atheme/services.db.<UTC timestamp>; `<path>.sha256` is beside it. */
  path: string;
  sha256: string;
  bytes: number;
}

/**
 * Copy `from`'s services.db to vault as a new timestamped backup. Atheme
 * writes the file whole and renames it into place, so a copy taken while it
 * runs is a complete save; run `OS UPDATE` first for the newest state.
 */
export async function backupAtheme(
  pool: SshPool,
  inventory: Inventory,
  from: string = SERVICES_PRIMARY,
): Promise<AthemeBackup> {
  const result = await pool.stream(
    { host: findHost(inventory, from), command: sh`cat ${ATHEME.db}`.text },
    { host: findHost(inventory, BACKUP_HOST), command: sh`${BACKUP.script}`.text },
    { timeoutMs: 120_000 },
  );
  const [name, sum] = result.to.stdout.trim().split(' ');
  if (result.from.exitCode !== 0 || result.to.exitCode !== 0 || !name || !sum) {
    const why = [result.from.stderr, result.to.stderr].join(' ').trim() || 'no output';
    throw new BatonError(
      'COMMAND_FAILED',
      `backing up ${ATHEME.db} from ${from} to ${BACKUP_HOST} failed: ${why}`,
      `Check that ${ATHEME.db} exists on ${from} and that ${BACKUP.script} is on ${BACKUP_HOST} (\`baton testnet up\` installs it).`,
    );
  }
  if (sum !== result.sha256) {
    throw new BatonError(
      'COMMAND_FAILED',
      `the backup ${BACKUP.dir}/${name} on ${BACKUP_HOST} has sha256 ${sum}, but ${result.sha256} left ${from}`,
      'Do not rely on this copy; take another backup.',
    );
  }
  return {
    host: BACKUP_HOST,
    from,
    path: `${BACKUP.dir}/${name}`,
    sha256: sum,
    bytes: result.bytes,
  };
}
