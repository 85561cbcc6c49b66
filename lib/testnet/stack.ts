/**
 * Registers the local testnet with the rest of baton: the `local` stack
 * (`--stack local` loads the inventory `testnet up` wrote) and the ssh route
 * through the testnet's relay. Import this module for its effect.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import { BatonError } from '../errors.ts';
import {
  parseInventory,
  stackSources,
  type Host,
  type Inventory,
  type StackSource,
} from '../inventory.ts';
import { sshRoutes, type SshRoute } from '../ssh.ts';
import { dialRelay } from './relay.ts';
import { testnetPaths } from './state.ts';
import { inTestnetRange } from './topology.ts';

export const LOCAL_STACK = 'local';

/** The inventory of the testnet for `cwd` (and BATON_HOME), or undefined when none is up. */
export function readTestnetInventory(cwd = process.cwd()): Inventory | undefined {
  const file = testnetPaths(cwd).inventoryFile;
  if (!existsSync(file)) return undefined;
  return parseInventory(JSON.parse(readFileSync(file, 'utf8')), file);
}

export const testnetStackSource: StackSource = {
  describe: 'the local testnet (stack local, written by `baton testnet up`)',
  async load(stack, cwd) {
    if (stack !== LOCAL_STACK) return undefined;
    const inventory = readTestnetInventory(cwd);
    if (!inventory) {
      throw new BatonError(
        'PRECONDITION_FAILED',
        `stack local is the local testnet, and none is up here (${testnetPaths(cwd).dir})`,
        'Start it with `sudo npx baton testnet up`.',
      );
    }
    return inventory;
  },
};

/**
 * Every 192.0.2.0/24 address is reached through the testnet's relay, never
 * by a TCP connection from the controller: on a machine whose own network
 * uses that range, a direct connection would leave the machine.
 */
export const testnetRoute: SshRoute = {
  describe: 'the local testnet relay',
  async dial(host: Host): Promise<Duplex | undefined> {
    if (!inTestnetRange(host.address)) return undefined;
    const paths = testnetPaths();
    if (!existsSync(paths.relaySocket)) {
      throw new BatonError(
        'PRECONDITION_FAILED',
        `${host.name} (${host.address}) is a testnet address, but no testnet is up in ${paths.dir}`,
        'Start it with `sudo npx baton testnet up`, from the same directory (or BATON_HOME).',
      );
    }
    return dialRelay(paths.relaySocket, host.address, host.ssh?.port ?? 22);
  },
};

// First: `local` always means this testnet, never a Pulumi stack or a saved file of that name.
if (!stackSources.includes(testnetStackSource)) stackSources.unshift(testnetStackSource);
if (!sshRoutes.includes(testnetRoute)) sshRoutes.unshift(testnetRoute);
