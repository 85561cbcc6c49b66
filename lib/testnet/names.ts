/** The testnet's names the command line offers, without loading the testnet itself. */
import type { FaultKind } from './state.ts';

export const FAULT_KINDS: readonly FaultKind[] = [
  'host-down',
  'link-down',
  'partition',
  'slow',
  'disk-full',
];

export const TOPOLOGY_NAMES = ['irc', 'solo'] as const;
export type TopologyName = (typeof TOPOLOGY_NAMES)[number];
