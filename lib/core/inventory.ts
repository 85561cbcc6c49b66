/**
 * The Inventory: every host a runbook may touch, and the DNS it may cut. A
 * Pulumi stack exports it (infra/), the local testnet writes it, and runbooks
 * consume nothing else about the world.
 */
import { canonicalJson, sha256 } from './hash.ts';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { InvalidInputError } from './errors.ts';
import { projectOf, type ProjectRef } from './project.ts';

export const hostSchema = z.object({
  /** Short name used in runbooks, journals and reports. */
  name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'lowercase letters, digits and dashes'),
  /** Roles such as `ircd`, `services`, `dns`, `backup`, `primary`, `standby`. */
  roles: z.array(z.string().min(1)),
  /** IP address or DNS name the controller connects to. */
  address: z.string().min(1),
  /** `ssh`: reached over ssh with a pinned host key. `local`: commands run on the controller itself. */
  connection: z.enum(['ssh', 'local']).default('ssh'),
  ssh: z
    .object({
      /**
       * Login user and ssh port. Set here, they win over the operator's ssh
       * config; unset, they are what `ssh ADDRESS` would use (root and 22 when
       * no OpenSSH client is installed). See lib/transports/ssh.ts, `route`.
       */
      user: z.string().min(1).optional(),
      port: z.number().int().min(1).max(65535).optional(),
      /** Pinned host key fingerprints, `SHA256:...` as `ssh-keygen -lf` prints them. */
      hostKeys: z.array(
        z.string().regex(/^SHA256:[A-Za-z0-9+/]{43}$/, 'SHA256:<base64> fingerprint'),
      ),
      /** Private key to log in with; otherwise the ssh config's IdentityFile and agent. */
      identityFile: z.string().optional(),
    })
    .optional(),
  /** Cloud provider and region, for policy checks (standby not beside primary). */
  provider: z.string().optional(),
  region: z.string().optional(),
});

export const dnsRecordSchema = z.object({
  name: z.string().min(1),
  type: z.enum(['A', 'AAAA', 'CNAME', 'TXT']),
  ttl: z.number().int().min(0),
  value: z.string().min(1),
});

export const dnsSchema = z.object({
  zone: z.string().min(1),
  /** `rfc2136`, `linode` or `azure`. */
  provider: z.string().min(1),
  /** Authoritative servers to verify an answer on. */
  servers: z.array(
    z.object({ name: z.string(), address: z.string(), port: z.number().int().default(53) }),
  ),
  records: z.array(dnsRecordSchema),
});

export const inventorySchema = z.object({
  stack: z.string().min(1),
  hosts: z.array(hostSchema).min(1),
  dns: dnsSchema.optional(),
  /** Set by `baton testnet up`: the id of the testnet that made these hosts (checked against its state). */
  testnet: z
    .object({ id: z.string().min(1) })
    .strict()
    .optional(),
});

export type Host = z.infer<typeof hostSchema>;
export type DnsRecord = z.infer<typeof dnsRecordSchema>;
export type DnsInventory = z.infer<typeof dnsSchema>;
export type Inventory = z.infer<typeof inventorySchema>;

/** Validate an inventory from any source, naming the field that is wrong. */
export function parseInventory(data: unknown, source: string): Inventory {
  const parsed = inventorySchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InvalidInputError(
      `inventory from ${source} is invalid at ${issue.path.join('.') || '(top)'}: ${issue.message}`,
      'Fix the stack outputs (or the saved outputs file) and try again.',
    );
  }
  const names = new Set<string>();
  for (const host of parsed.data.hosts) {
    if (names.has(host.name)) {
      throw new InvalidInputError(`inventory from ${source} names host ${host.name} twice`);
    }
    names.add(host.name);
    if (host.connection === 'ssh' && !host.ssh) {
      throw new InvalidInputError(
        `inventory from ${source}: host ${host.name} is reached over ssh but has no ssh section`,
        'Add ssh.user, ssh.port and the pinned ssh.hostKeys fingerprints.',
      );
    }
  }
  return parsed.data;
}

export function inventoryHash(inventory: Inventory): string {
  return sha256(canonicalJson(inventory));
}

export function hostsWithRole(inventory: Inventory, role: string): Host[] {
  return inventory.hosts.filter((h) => h.roles.includes(role));
}

export function findHost(inventory: Inventory, name: string): Host {
  const host = inventory.hosts.find((h) => h.name === name);
  if (!host) {
    throw new InvalidInputError(
      `stack ${inventory.stack} has no host named ${name}`,
      `Known hosts: ${inventory.hosts.map((h) => h.name).join(', ')}.`,
    );
  }
  return host;
}

/** The built-in `demo` stack: three hosts that are the controller itself, for trying baton safely. */
export function demoInventory(): Inventory {
  const local = (name: string, roles: string[]): Host => ({
    name,
    roles,
    address: 'localhost',
    connection: 'local',
  });
  return {
    stack: 'demo',
    hosts: [
      local('alpha', ['web', 'primary']),
      local('beta', ['web', 'standby']),
      local('gamma', ['web']),
    ],
  };
}

export interface StackSource {
  /**
   * Returns the inventory if this source knows the stack, undefined otherwise.
   * `at`: the project (an app), or a directory to find it from.
   */
  load(stack: string, at: ProjectRef): Promise<Inventory | undefined>;
  describe: string;
}

/** `<baton home>/stacks/<stack>.json`: a saved copy of a stack's outputs (`pulumi stack output --json`). */
export const savedOutputsSource: StackSource = {
  describe: '.baton/stacks/<stack>.json',
  async load(stack, at) {
    const file = join(projectOf(at).home, 'stacks', `${stack}.json`);
    if (!existsSync(file)) return undefined;
    let data: unknown;
    try {
      data = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new InvalidInputError(`${file} is not valid JSON: ${(e as Error).message}`);
    }
    const outputs = data as { inventory?: unknown };
    return parseInventory(outputs.inventory ?? data, file);
  },
};

export const builtinSource: StackSource = {
  describe: 'built-in stack demo',
  async load(stack) {
    return stack === 'demo' ? demoInventory() : undefined;
  },
};

/** The inventory of a stack from the first of `sources` that knows it (an app's sources: lib/app/app.ts). */
export async function loadInventory(
  stack: string,
  at: ProjectRef = process.cwd(),
  sources: readonly StackSource[] = [savedOutputsSource, builtinSource],
): Promise<Inventory> {
  const project = projectOf(at);
  for (const source of sources) {
    const inventory = await source.load(stack, project);
    if (inventory) return inventory;
  }
  throw new InvalidInputError(
    `unknown stack ${stack}`,
    `baton looked in: ${sources.map((s) => s.describe).join('; ')}.`,
  );
}

/** Stack names that are never Pulumi stacks. Not what makes a stack a testnet: see testnetOrigin. */
export const BUILTIN_TESTNETS = ['local', 'demo', 'testnet'];
