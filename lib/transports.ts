/** Picks the transport for a host: the controller's own shell, or ssh with pinned keys. */
import { BatonError } from './errors.ts';
import type { CommandResult, ExecOptions, Transport } from './exec.ts';
import type { Host } from './inventory.ts';
import { localTransport } from './local.ts';

export interface Transports {
  transportFor(host: Host): Transport;
  close(): Promise<void>;
}

export function defaultTransports(): Transports {
  const local = localTransport();
  let ssh: Promise<Transport> | undefined;
  const loadSsh = (): Promise<Transport> => {
    // ssh2 is loaded only when a run touches an ssh host, keeping the demo and plan start-up light.
    const path = './ssh.ts';
    ssh ??= import(path).then((mod: { SshPool?: new () => Transport }) => {
      if (!mod.SshPool)
        throw new BatonError('MISSING_PREREQUISITE', 'the ssh transport is not available');
      return new mod.SshPool();
    });
    return ssh;
  };
  const remote: Transport = {
    async exec(host: Host, command: string, options?: ExecOptions): Promise<CommandResult> {
      return (await loadSsh()).exec(host, command, options);
    },
    async close() {
      if (ssh) await (await ssh).close();
    },
  };
  return {
    transportFor: (host) => (host.connection === 'local' ? local : remote),
    async close() {
      await Promise.all([local.close(), remote.close()]);
    },
  };
}
