/** Picks the transport for a host: the controller's own shell, or ssh with pinned keys. */
import type { Transport } from '../core/exec.ts';
import type { Host } from '../core/inventory.ts';
import { localTransport } from './local.ts';
import { SshPool } from './ssh.ts';

export interface Transports {
  transportFor(host: Host): Transport;
  close(): Promise<void>;
}

export function defaultTransports(): Transports {
  const local = localTransport();
  let ssh: SshPool | undefined;
  return {
    transportFor: (host) => (host.connection === 'local' ? local : (ssh ??= new SshPool())),
    async close() {
      await Promise.all([local.close(), ssh?.close()]);
    },
  };
}
