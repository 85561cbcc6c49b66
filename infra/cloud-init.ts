/**
 * Host keys pinned from birth: the program generates each host's ed25519 key,
 * cloud-init installs it before sshd first starts, and the fingerprint goes into
 * the Inventory, so the first connection is already verified.
 */
import { createHash } from 'node:crypto';

/** `SHA256:<base64, unpadded>` of an OpenSSH public key, as `ssh-keygen -lf` prints it. */
export function sshFingerprint(publicKeyOpenssh: string): string {
  const blob = publicKeyOpenssh.trim().split(/\s+/)[1];
  if (!blob || !/^[A-Za-z0-9+/]+=*$/.test(blob)) {
    throw new Error(`not an OpenSSH public key: ${publicKeyOpenssh.slice(0, 40)}`);
  }
  const digest = createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64');
  return `SHA256:${digest.replace(/=+$/, '')}`;
}

export interface CloudInitOptions {
  hostName: string;
  sshUser: string;
  sshPort: number;
  authorizedKeys: string[];
  hostKeyPrivateOpenssh: string;
  hostKeyPublicOpenssh: string;
}

/**
 * The cloud-config document for a host. JSON is valid YAML, so the document is
 * rendered with JSON.stringify: no quoting mistakes with keys and PEM blocks.
 */
export function renderCloudInit(o: CloudInitOptions): string {
  const sshdConfig = [
    `Port ${o.sshPort}`,
    'HostKey /etc/ssh/ssh_host_ed25519_key',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin no',
    '',
  ].join('\n');
  const doc = {
    hostname: o.hostName,
    preserve_hostname: false,
    // Replace the image's keys with the pinned one and generate no others.
    ssh_deletekeys: true,
    ssh_genkeytypes: [],
    ssh_keys: {
      ed25519_private: o.hostKeyPrivateOpenssh,
      ed25519_public: o.hostKeyPublicOpenssh.trim(),
    },
    ssh_pwauth: false,
    disable_root: true,
    users: [
      {
        name: o.sshUser,
        shell: '/bin/bash',
        sudo: 'ALL=(ALL) NOPASSWD:ALL',
        lock_passwd: true,
        ssh_authorized_keys: o.authorizedKeys,
      },
    ],
    write_files: [
      { path: '/etc/ssh/sshd_config.d/10-baton.conf', permissions: '0644', content: sshdConfig },
    ],
    runcmd: [['systemctl', 'restart', 'ssh']],
  };
  return `#cloud-config\n${JSON.stringify(doc, null, 2)}\n`;
}
