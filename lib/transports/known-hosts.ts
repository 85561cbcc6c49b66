/**
 * Host keys the operator's OpenSSH client already trusts, read from its
 * known_hosts files with OpenSSH's matching rules: hashed names, wildcard and
 * negated patterns, `[host]:port` for other ports, and `@revoked` keys.
 */
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';

export interface KnownHostKey {
  /** `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, ... */
  type: string;
  blob: Buffer;
  revoked: boolean;
  /** `file:line`, for messages. */
  source: string;
}

export type HostKeyVerdict =
  | { kind: 'known' }
  | { kind: 'unknown' }
  | { kind: 'changed'; known: KnownHostKey[] }
  | { kind: 'revoked'; source: string };

/** The name OpenSSH files a host under: `host`, or `[host]:port` off port 22. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** Every key the files list for `name` (see knownHostsName); missing files are skipped, as ssh does. */
export function knownHostKeys(files: string[], name: string): KnownHostKey[] {
  const keys: KnownHostKey[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    text.split('\n').forEach((raw, i) => {
      const fields = raw.trim().split(/\s+/);
      if (!fields[0] || fields[0].startsWith('#')) return;
      let revoked = false;
      if (fields[0].startsWith('@')) {
        // Host certificates need a CA check the ssh2 client does not do: such lines vouch for nothing here.
        if (fields[0] !== '@revoked') return;
        revoked = true;
        fields.shift();
      }
      const [patterns, type, base64] = fields;
      if (!patterns || !type || !base64) return;
      if (!hostMatches(patterns, name)) return;
      keys.push({ type, blob: Buffer.from(base64, 'base64'), revoked, source: `${file}:${i + 1}` });
    });
  }
  return keys;
}

/** Whether `presented` (a public key blob) is a key the files trust for the host. */
export function verifyKnownHost(keys: KnownHostKey[], presented: Buffer): HostKeyVerdict {
  const revoked = keys.find((k) => k.revoked && k.blob.equals(presented));
  if (revoked) return { kind: 'revoked', source: revoked.source };
  const trusted = keys.filter((k) => !k.revoked);
  if (trusted.some((k) => k.blob.equals(presented))) return { kind: 'known' };
  if (trusted.length === 0) return { kind: 'unknown' };
  return { kind: 'changed', known: trusted };
}

/** The host key algorithms (as ssh2 names them) that can produce one of these keys. */
export function hostKeyAlgorithms(keys: KnownHostKey[]): string[] {
  const names = new Set<string>();
  for (const k of keys) {
    if (k.revoked) continue;
    if (k.type === 'ssh-rsa')
      ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'].forEach((n) => names.add(n));
    else names.add(k.type);
  }
  return [...names];
}

/** OpenSSH's match_hostname over one known_hosts host field. */
function hostMatches(field: string, name: string): boolean {
  if (field.startsWith('|1|')) {
    const [, , salt, hash] = field.split('|');
    if (!salt || !hash) return false;
    const mac = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64');
    return mac === hash;
  }
  const lower = name.toLowerCase();
  let matched = false;
  for (const pattern of field.toLowerCase().split(',')) {
    const negated = pattern.startsWith('!');
    if (!globMatches(negated ? pattern.slice(1) : pattern, lower)) continue;
    if (negated) return false;
    matched = true;
  }
  return matched;
}

function globMatches(pattern: string, text: string): boolean {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${re}$`).test(text);
}
