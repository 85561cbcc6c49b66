/** Picks the transport for a host: the controller's own shell, or ssh with pinned keys. */
import type { Transport } from '../core/exec.ts';
import type { Host } from '../core/inventory.ts';
import { localTransport } from './local.ts';
import { SshPool, type SshRoute } from './ssh.ts';

export interface Transports {
  transportFor(host: Host): Transport;
  close(): Promise<void>;
}

/** The controller's shell for local hosts, and one ssh pool (reaching hosts over `routes` first) for the rest. */
export function defaultTransports(options: { routes?: SshRoute[] } = {}): Transports {
  const local = localTransport();
  let ssh: SshPool | undefined;
  return {
    transportFor: (host) =>
      host.connection === 'local' ? local : (ssh ??= new SshPool({ routes: options.routes ?? [] })),
    async close() {
      await Promise.all([local.close(), ssh?.close()]);
    },
  };
}
