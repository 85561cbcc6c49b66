/**
 * The local testnet as the rest of baton sees it: the `local` stack (`--stack
 * local` loads the inventory `testnet up` wrote) and the ssh route through the
 * testnet's relay. An app (lib/app/app.ts) asks them first.
 */
import { canonicalJson } from '../core/hash.ts';
import { existsSync, readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import { BatonError } from '../core/errors.ts';
import type { ProjectRef } from '../core/project.ts';
import {
  demoInventory,
  parseInventory,
  type Host,
  type Inventory,
  type StackSource,
} from '../core/inventory.ts';
import type { SshRoute } from '../transports/ssh.ts';
import { dialRelay } from './relay.ts';
import { readState, testnetPaths } from './state.ts';
import { inTestnetRange } from './topology.ts';

export const LOCAL_STACK = 'local';

/** The inventory of the testnet of a project (its baton home), or undefined when none is up. */
export function readTestnetInventory(at: ProjectRef = process.cwd()): Inventory | undefined {
  const file = testnetPaths(at).inventoryFile;
  if (!existsSync(file)) return undefined;
  return parseInventory(JSON.parse(readFileSync(file, 'utf8')), file);
}

export type TestnetOrigin = { testnet: true; by: string } | { testnet: false; why: string };

/**
 * Whether an inventory is a testnet, from what made it and never from the
 * stack's name: baton's built-in demo stack (directories on this machine), or
 * hosts made by `baton testnet up` here, each with the address and host key
 * the testnet's own state recorded (addresses in 192.0.2.0/24, which baton
 * reaches only through the testnet's relay).
 */
export function testnetOrigin(inventory: Inventory, at: ProjectRef = process.cwd()): TestnetOrigin {
  if (canonicalJson(inventory) === canonicalJson(demoInventory()))
    return { testnet: true, by: "baton's built-in demo stack (directories on this machine)" };
  const not = (why: string): TestnetOrigin => ({
    testnet: false,
    why: `stack ${inventory.stack} is not a testnet: ${why}`,
  });
  if (!inventory.testnet)
    return not(
      inventory.stack === LOCAL_STACK
        ? 'its hosts were not made by `baton testnet up` (a testnet brought up before testnets were marked: run `sudo npx baton testnet up` again)'
        : 'its hosts were not made by `baton testnet up`',
    );
  const paths = testnetPaths(at);
  const state = readState(paths);
  if (!state || state.id !== inventory.testnet.id || paths.id !== inventory.testnet.id)
    return not(
      `it says it was made by testnet ${inventory.testnet.id}, and ${state ? `the testnet here is ${state.id}` : `no testnet is up in ${paths.dir}`}`,
    );
  for (const host of inventory.hosts) {
    const known = state.hosts[host.name];
    if (!known) return not(`the testnet has no host ${host.name}`);
    if (host.address !== known.address || !inTestnetRange(host.address))
      return not(
        `host ${host.name} is at ${host.address}, and the testnet's ${host.name} is at ${known.address}`,
      );
    const keys = host.ssh?.hostKeys ?? [];
    if (host.connection !== 'ssh' || keys.length === 0 || keys.some((k) => k !== known.hostKey))
      return not(`host ${host.name} does not pin the host key the testnet recorded for it`);
  }
  return {
    testnet: true,
    by: `the testnet ${state.id} that \`baton testnet up\` made in ${paths.dir}`,
  };
}

export const testnetStackSource: StackSource = {
  describe: 'the local testnet (stack local, written by `baton testnet up`)',
  async load(stack, at) {
    if (stack !== LOCAL_STACK) return undefined;
    const inventory = readTestnetInventory(at);
    if (!inventory) {
      throw new BatonError(
        'PRECONDITION_FAILED',
        `stack local is the local testnet, and none is up here (${testnetPaths(at).dir})`,
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
