/**
 * What a rehearsal adds to a run on the local testnet: the secrets the testnet
 * generated, passed by reference (`@file:`) so they never appear anywhere.
 */
import { existsSync } from 'node:fs';
import type { AnyRunbook } from '../core/runbook.ts';
import { ircSecretPaths } from './irc.ts';

/** `--param` arguments for the runbook's parameters the testnet has secrets for, unless given. */
export function rehearsalParams(runbook: AnyRunbook, given: readonly string[]): string[] {
  const secrets = ircSecretPaths();
  const known: Record<string, string> = {
    tsigKey: secrets.tsigKey,
    opsPassword: secrets.batonopsPassword,
    canaryPassword: secrets.alicePassword,
    linkPassword: secrets.servicesLinkPassword,
  };
  const shape = runbook.params.shape as Record<string, unknown>;
  const named = new Set(given.map((p) => p.slice(0, p.indexOf('='))));
  return Object.entries(known)
    .filter(([name, file]) => name in shape && !named.has(name) && existsSync(file))
    .map(([name, file]) => `${name}=@file:${file}`);
}
