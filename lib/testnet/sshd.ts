/** OpenSSH server configuration and keys for testnet hosts (and the ssh tests' own sshd). */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { fingerprint } from '../transports/ssh.ts';

const run = promisify(execFile);

export interface SshdConfigOptions {
  listenAddress: string;
  port: number;
  hostKey: string;
  pidFile: string;
  /** Path pattern as sshd_config takes it, e.g. `.ssh/authorized_keys` or an absolute file. */
  authorizedKeysFile: string;
  /** Needed when keys live under a world-writable directory such as /tmp. */
  strictModes?: boolean;
  /** Sessions one connection may open at once; default 128. */
  maxSessions?: number;
}

/** An sshd_config for a key-only root login, SFTP and many sessions per connection. */
export function sshdConfig(o: SshdConfigOptions): string {
  return [
    `Port ${o.port}`,
    `ListenAddress ${o.listenAddress}`,
    `HostKey ${o.hostKey}`,
    `PidFile ${o.pidFile}`,
    `AuthorizedKeysFile ${o.authorizedKeysFile}`,
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    `StrictModes ${o.strictModes === false ? 'no' : 'yes'}`,
    'PrintMotd no',
    'PrintLastLog no',
    'UseDNS no',
    // The ssh layer multiplexes many channels over one connection per host.
    `MaxSessions ${o.maxSessions ?? 128}`,
    'MaxStartups 64:30:128',
    'ClientAliveInterval 15',
    'ClientAliveCountMax 4',
    'Subsystem sftp internal-sftp',
    'AcceptEnv LANG LC_*',
    '',
  ].join('\n');
}

/** Generate an ed25519 key pair at `path` (and `path.pub`); returns the public key's fingerprint. */
export async function generateKey(path: string, comment: string): Promise<string> {
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path]);
  return publicKeyFingerprint(`${path}.pub`);
}

/** The `SHA256:` fingerprint of an OpenSSH public key file. */
export async function publicKeyFingerprint(pubPath: string): Promise<string> {
  const text = await readFile(pubPath, 'utf8');
  const blob = text.trim().split(/\s+/)[1];
  if (!blob) throw new Error(`${pubPath} is not an OpenSSH public key`);
  return fingerprint(Buffer.from(blob, 'base64'));
}
