/**
 * The stack configuration (`baton:*` keys in Pulumi.<stack>.yaml), validated
 * before any resource is declared so a typo fails `pulumi preview`, not a cutover.
 */
import * as pulumi from '@pulumi/pulumi';
import { z } from 'zod';

export const cloudProviders = ['linode', 'azure'] as const;
export type CloudProvider = (typeof cloudProviders)[number];

const hostName = z
  .string()
  .regex(/^[a-z][a-z0-9-]{1,30}[a-z0-9]$/, '3-32 lowercase letters, digits and dashes');

export const servicePortSchema = z.object({
  /** Port opened to the world. */
  port: z.number().int().min(1).max(65535),
  protocol: z.enum(['tcp', 'udp']).default('tcp'),
});
export type ServicePort = z.infer<typeof servicePortSchema>;

export const hostConfigSchema = z.object({
  name: hostName,
  provider: z.enum(cloudProviders),
  /** Linode region (`us-east`) or Azure location (`westeurope`). */
  region: z.string().min(1),
  /** Linode type (`g6-standard-2`) or Azure VM size (`Standard_B2s`). */
  size: z.string().min(1),
  /** Linode image, or an Azure image URN `publisher:offer:sku:version`; defaults per provider. */
  image: z.string().min(1).optional(),
  roles: z.array(z.string().min(1)).min(1),
  /** Ports the service on this host needs open to the world. */
  servicePorts: z.array(servicePortSchema).default([]),
  /** Provider backups of the whole disk (Linode Backups, Azure Backup). */
  backups: z.boolean().default(true),
});
export type HostConfig = z.infer<typeof hostConfigSchema>;

export const recordConfigSchema = z.object({
  /** Name relative to the zone (`irc`), or `@` for the apex. */
  name: z.string().min(1),
  type: z.literal('A').default('A'),
  ttl: z.number().int().min(1),
  /** `active`: follows the services lease's holder (a record the runbooks cut); otherwise a host name. */
  target: z.string().min(1),
});
export type RecordConfig = z.infer<typeof recordConfigSchema>;

export const dnsConfigSchema = z.object({
  zone: z.string().regex(/^([a-z0-9-]+\.)+[a-z]{2,}$/, 'a zone like example.net'),
  provider: z.enum(cloudProviders).default('linode'),
  /** Create the zone in this stack; by default it already exists in the account and is looked up. */
  createZone: z.boolean().default(false),
  /** SOA e-mail, needed only when a Linode zone is created. */
  soaEmail: z.string().optional(),
  /** Azure resource group holding the zone (Azure DNS only). */
  resourceGroup: z.string().optional(),
  /** Authoritative servers to verify a cut on; default: the provider's name servers. */
  servers: z
    .array(
      z.object({
        name: z.string().min(1),
        address: z.string().min(1),
        port: z.number().int().default(53),
      }),
    )
    .optional(),
  /** The services lease TXT record, relative to the zone; the `active` records follow its holder. */
  lease: z
    .string()
    .regex(
      /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/,
      'a name relative to the zone, like _lease.services',
    )
    .default('_lease.services'),
  /** The highest TTL a record that runbooks cut may have (seconds). */
  maxCutTtl: z.number().int().min(1).default(300),
  records: z.array(recordConfigSchema).default([]),
});
export type DnsConfig = z.infer<typeof dnsConfigSchema>;

export const stackConfigSchema = z
  .object({
    hosts: z.array(hostConfigSchema).min(1),
    /** CIDRs ssh is open to (the operators' addresses). Never 0.0.0.0/0. */
    operatorCidrs: z.array(z.string().regex(/^[0-9a-fA-F:.]+\/\d{1,3}$/, 'a CIDR')).min(1),
    /** OpenSSH public keys that may log in as `sshUser`. */
    sshAuthorizedKeys: z.array(z.string().regex(/^(ssh-|ecdsa-|sk-)\S+ \S+/)).min(1),
    sshUser: z
      .string()
      .regex(/^[a-z_][a-z0-9_-]*$/)
      .refine((u) => u !== 'root', 'must not be root (Azure refuses it; use a sudo user)')
      .default('baton'),
    sshPort: z.number().int().min(1).max(65535).default(22),
    /**
     * The host the `active` records point to when the services lease cannot be
     * read; the runbooks set it with `pulumi config set` after a cut.
     */
    activeHost: hostName.optional(),
    dns: dnsConfigSchema.optional(),
  })
  .superRefine((cfg, ctx) => {
    const names = new Set<string>();
    for (const h of cfg.hosts) {
      if (names.has(h.name)) ctx.addIssue({ code: 'custom', message: `host ${h.name} twice` });
      names.add(h.name);
    }
    const records = cfg.dns?.records ?? [];
    // Not required by `active` records: the lease names the host; this is the fallback.
    if (cfg.activeHost && !names.has(cfg.activeHost)) {
      ctx.addIssue({
        code: 'custom',
        path: ['activeHost'],
        message: `${cfg.activeHost} is not one of the hosts`,
      });
    }
    for (const r of records) {
      if (r.target !== 'active' && !names.has(r.target)) {
        ctx.addIssue({
          code: 'custom',
          path: ['dns', 'records'],
          message: `record ${r.name} targets unknown host ${r.target}`,
        });
      }
    }
    if (cfg.dns?.provider === 'azure' && !cfg.dns.resourceGroup) {
      ctx.addIssue({
        code: 'custom',
        path: ['dns', 'resourceGroup'],
        message: 'required for Azure DNS',
      });
    }
  });
export type StackConfig = z.infer<typeof stackConfigSchema>;

const objectKeys = ['hosts', 'operatorCidrs', 'sshAuthorizedKeys', 'dns'] as const;
const stringKeys = ['sshUser', 'activeHost'] as const;

/** The config keys this program reads, all in the `baton` namespace. */
export const configKeys: readonly string[] = [...objectKeys, ...stringKeys, 'sshPort'];

/** Validate raw config values (already parsed from JSON), naming the key that is wrong. */
export function parseStackConfig(raw: Record<string, unknown>): StackConfig {
  const parsed = stackConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = issue.path.length ? `baton:${issue.path.join('.')}` : 'baton config';
    throw new pulumi.RunError(
      `stack config ${key} is invalid: ${issue.message}. See infra/README.md for every key.`,
    );
  }
  return parsed.data;
}

/** Read the `baton:*` keys of the running stack. */
export function readStackConfig(config = new pulumi.Config('baton')): StackConfig {
  const raw: Record<string, unknown> = {};
  for (const key of objectKeys) {
    const value = config.getObject<unknown>(key);
    if (value !== undefined) raw[key] = value;
  }
  for (const key of stringKeys) {
    const value = config.get(key);
    if (value !== undefined) raw[key] = value;
  }
  const sshPort = config.getNumber('sshPort');
  if (sshPort !== undefined) raw['sshPort'] = sshPort;
  return parseStackConfig(raw);
}
