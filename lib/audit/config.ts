/**
 * `baton.audit.json`: what the audit looks at, kept by the operator beside
 * their runbooks. Validated with zod; an error names the field and the rule.
 * Secrets are only references (`@file:PATH`, `@env:VAR`), never values.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { InvalidInputError } from '../core/errors.ts';
import type { Inventory } from '../core/inventory.ts';
import { projectOf, type ProjectRef } from '../core/project.ts';
import { DURATION_PATTERN } from './duration.ts';

const duration = z
  .string()
  .regex(DURATION_PATTERN, 'a duration such as "90s", "30m", "24h", "7d" or "1w"');
const absolutePath = z
  .string()
  .regex(/^\/[^\0]*$/, 'an absolute path')
  .refine((p) => !p.split('/').includes('..'), 'a path without ..');
const hostName = z.string().min(1, 'a host of the stack');
const slug = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]*$/, 'lowercase letters, digits, dots, dashes or underscores');
const secretRef = z
  .string()
  .regex(
    /^@(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$/,
    'a reference, @file:PATH or @env:VAR: secrets are never written in the audit config',
  );

export const backupItemSchema = z.object({
  /** What the item is, as the evidence names it (`services.db`, `/etc/atheme`). */
  name: z.string().min(1),
  /** Path inside the restored backup (format tar or dir); the backup file itself for format file. */
  path: z.string().min(1).optional(),
  /** How to fingerprint it: an Atheme services.db, any non-empty file, or a non-empty directory. */
  kind: z.enum(['atheme-db', 'file', 'dir']).default('file'),
  /** A command run on the backup host with the restored path as $1; exit 0 means it is usable. */
  command: z.string().min(1).optional(),
  /** The live data to compare with (an atheme-db is compared by accounts and channels). */
  live: z.object({ host: hostName, path: absolutePath }).optional(),
});

export const backupSchema = z.object({
  /** The backup target, independent of the service hosts. */
  host: hostName,
  dir: absolutePath,
  /** Shell glob of one backup's name in `dir`. */
  pattern: z.string().min(1).default('*'),
  /** Names in `dir` that are not backups (checksums, partial uploads). */
  exclude: z.array(z.string().min(1)).default(['*.sha256', '.*']),
  /** `file`: each backup is one file (a dump); `tar`: an archive; `dir`: a directory. */
  format: z.enum(['file', 'tar', 'dir']).default('file'),
  /** How often the job should run: warn at 1.5 times this age, fail at 2 times. */
  interval: duration,
  /** Where the test restore happens on the backup host (a directory made and removed by the audit). */
  scratch: absolutePath.default('/var/tmp'),
  items: z.array(backupItemSchema).min(1, 'at least one required item'),
});

export const dnsRecordCheckSchema = z.object({
  name: z.string().min(1),
  type: z.enum(['A', 'AAAA', 'CNAME', 'TXT']).default('A'),
  /** Longest TTL a failover can live with: resolvers keep the old address this long. */
  maxTtl: z.number().int().min(0),
});

export const leaseGuardSchema = z.object({
  /** The services unit whose ExecStartPre must be the lease check. */
  unit: z.string().min(1).default('atheme'),
  watchdogUnit: z.string().min(1).default('baton-lease-watchdog'),
  conf: absolutePath.default('/etc/baton/lease.conf'),
  /** Hosts that can run services; default the primary and the standby. */
  hosts: z.array(hostName).optional(),
});

export type LeaseGuardConfig = z.output<typeof leaseGuardSchema>;

export const standbySchema = z.object({
  primary: hostName,
  standby: hostName,
  /** The services binary as the standby would start it. */
  binary: absolutePath,
  policy: z.enum(['resolvable', 'static']).default('resolvable'),
  /** The services' server name every ircd must U-line. */
  servicesName: z.string().min(1),
  /** Ircds to check; default every host with role ircd. */
  ircds: z.array(hostName).optional(),
  ircdConfig: absolutePath.default('/etc/inspircd/inspircd.conf'),
  ircPort: z.number().int().min(1).max(65535).default(6667),
  /** Also ask each ircd with a real client (SQUERY) whether it treats services as a network service. */
  liveTrust: z.boolean().default(true),
  /** Copies a failover to the standby could start from (a path or a glob), newest verified wins. */
  copies: z
    .array(
      z.object({
        host: hostName,
        path: absolutePath,
        kind: z.enum(['atheme-db', 'file']).default('atheme-db'),
      }),
    )
    .min(1, 'at least one copy'),
  /** The primary's live data (an Atheme services.db): what the copy lacks of it is named. */
  primaryPath: absolutePath.optional(),
  /** The oldest copy acceptable: past it a failover loses more than you agreed to (fail). */
  maxCopyAge: duration.default('48h'),
  /** Warn past this age; default half of maxCopyAge. */
  warnCopyAge: duration.optional(),
  /** A copy holding this many percent fewer accounts, nicks or channels than the most complete one (or the live primary) fails. */
  maxShrinkPercent: z.number().min(0).max(100).default(2),
  /** Check that every services host has the lease check and watchdog (docs/lease.md). */
  lease: leaseGuardSchema.optional(),
  dns: z
    .object({
      /** Host to run dig on; default the inventory host with the server's address, else the controller. */
      via: hostName.optional(),
      records: z.array(dnsRecordCheckSchema).min(1),
    })
    .optional(),
});

export const serviceSchema = z.object({
  backup: backupSchema.optional(),
  standby: standbySchema.optional(),
});

export const encryptedDeviceSchema = z.object({
  name: slug,
  host: hostName,
  /** A block device or a LUKS container file. */
  device: absolutePath,
  /** Where the passphrase on file is: `@file:PATH` or `@env:VAR`, read on the controller. */
  passphrase: secretRef,
  keySlot: z.number().int().min(0).max(31).optional(),
});

export const filesystemSchema = z.object({
  host: hostName,
  path: absolutePath,
  warnFreePercent: z.number().min(0).max(100).default(15),
  failFreePercent: z.number().min(0).max(100).default(5),
  /** Days until full, at the recent growth rate. */
  warnDays: z.number().min(0).default(14),
  failDays: z.number().min(0).default(3),
  /** How far back the growth rate looks. */
  growthWindow: duration.default('7d'),
});

export const alertSchema = z.object({
  /** Receives the failures on stdin (run with /bin/sh -c on the controller). */
  command: z.string().min(1).optional(),
  /** Also receives them from the `escalateAfter`-th alert of a failure nobody acknowledged. */
  escalateCommand: z.string().min(1).optional(),
  /** Named in escalated alerts. */
  escalationContact: z.string().min(1).optional(),
  escalateAfter: z.number().int().min(1).default(3),
  /** Time between repeats of an unacknowledged failure; it doubles after each repeat up to maxRepeat. */
  repeat: duration.default('1h'),
  maxRepeat: duration.default('8h'),
});

export const auditConfigSchema = z.object({
  $schema: z.string().optional(),
  services: z.record(slug, serviceSchema).default({}),
  encryptedDevices: z.array(encryptedDeviceSchema).default([]),
  filesystems: z.array(filesystemSchema).default([]),
  alert: alertSchema.optional(),
  /** Further secrets (service passwords, link passwords) kept out of every output, as references. */
  secrets: z.array(secretRef).default([]),
});

export type AuditConfig = z.output<typeof auditConfigSchema>;
export type AuditConfigInput = z.input<typeof auditConfigSchema>;
export type BackupConfig = z.output<typeof backupSchema>;
export type BackupItem = z.output<typeof backupItemSchema>;
export type StandbyConfig = z.output<typeof standbySchema>;
export type EncryptedDevice = z.output<typeof encryptedDeviceSchema>;
export type FilesystemConfig = z.output<typeof filesystemSchema>;
export type AlertConfig = z.output<typeof alertSchema>;

function fieldPath(path: readonly PropertyKey[]): string {
  return (
    path.reduce<string>(
      (s, p) => (typeof p === 'number' ? `${s}[${p}]` : s ? `${s}.${String(p)}` : String(p)),
      '',
    ) || '(top)'
  );
}

/** Validate an audit config against the schema and the stack's hosts, naming the first wrong field. */
export function parseAuditConfig(
  data: unknown,
  source: string,
  inventory?: Inventory,
): AuditConfig {
  const parsed = auditConfigSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InvalidInputError(
      `audit config ${source}: ${fieldPath(issue.path)}: ${issue.message}`,
      'Fix that field; docs/audit.md describes every field with an example.',
    );
  }
  const config = parsed.data;
  const problems: string[] = [];
  const where = (field: string, host: string | undefined): void => {
    if (host === undefined || !inventory) return;
    if (!inventory.hosts.some((h) => h.name === host))
      problems.push(`${field}: no host ${JSON.stringify(host)} in stack ${inventory.stack}`);
  };
  for (const [name, service] of Object.entries(config.services)) {
    const b = service.backup;
    if (b) {
      where(`services.${name}.backup.host`, b.host);
      b.items.forEach((item, i) => {
        where(`services.${name}.backup.items[${i}].live.host`, item.live?.host);
        if (b.format !== 'file' && !item.path)
          problems.push(
            `services.${name}.backup.items[${i}].path: required when the backup format is ${b.format}`,
          );
        if (b.format === 'file' && item.kind === 'dir')
          problems.push(
            `services.${name}.backup.items[${i}].kind: a backup of format file holds one file, not a directory`,
          );
      });
      if (b.format === 'file' && b.items.length !== 1)
        problems.push(
          `services.${name}.backup.items: a backup of format file is one item (use format tar or dir for several)`,
        );
    }
    const s = service.standby;
    if (s) {
      where(`services.${name}.standby.primary`, s.primary);
      where(`services.${name}.standby.standby`, s.standby);
      s.ircds?.forEach((h, i) => where(`services.${name}.standby.ircds[${i}]`, h));
      s.copies.forEach((c, i) => where(`services.${name}.standby.copies[${i}].host`, c.host));
      where(`services.${name}.standby.dns.via`, s.dns?.via);
      if (s.dns && inventory && !inventory.dns)
        problems.push(
          `services.${name}.standby.dns: stack ${inventory.stack} has no DNS section to ask`,
        );
    }
  }
  config.encryptedDevices.forEach((d, i) => where(`encryptedDevices[${i}].host`, d.host));
  config.filesystems.forEach((f, i) => {
    where(`filesystems[${i}].host`, f.host);
    if (f.failFreePercent > f.warnFreePercent)
      problems.push(`filesystems[${i}].failFreePercent: above warnFreePercent`);
  });
  const names = new Set<string>();
  for (const d of config.encryptedDevices) {
    if (names.has(d.name)) problems.push(`encryptedDevices: the name ${d.name} is used twice`);
    names.add(d.name);
  }
  if (problems.length > 0) {
    throw new InvalidInputError(
      `audit config ${source}: ${problems[0]}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}`,
      inventory
        ? `Hosts of stack ${inventory.stack}: ${inventory.hosts.map((h) => h.name).join(', ')}.`
        : 'Fix that field; docs/audit.md describes every field.',
    );
  }
  return config;
}

/**
 * The config file for a stack: `--config` (relative to where baton was
 * started), else baton.audit.<stack>.json, else baton.audit.json, in the
 * project root.
 */
export function findAuditConfigFile(
  stack: string,
  given: string | undefined,
  at: ProjectRef = process.cwd(),
): string | undefined {
  const project = projectOf(at);
  if (given) return resolve(project.cwd, given);
  for (const name of [`baton.audit.${stack}.json`, 'baton.audit.json']) {
    const file = join(project.root, name);
    if (existsSync(file)) return file;
  }
  return undefined;
}

export function readAuditConfig(file: string, inventory?: Inventory): AuditConfig {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new InvalidInputError(
      `audit config ${file} cannot be read as JSON: ${(e as Error).message}`,
      'Write the audit config as JSON; docs/audit.md has an example.',
    );
  }
  return parseAuditConfig(data, file, inventory);
}
