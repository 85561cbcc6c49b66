/** The checks an audit config asks for, in the order people read them. */
import type { Inventory } from '../core/inventory.ts';
import type { Project } from '../core/project.ts';
import { runsDir } from '../app/paths.ts';
import { hostsWithRole } from '../core/inventory.ts';
import { backupContentCheck, backupFreshnessCheck } from './backup.ts';
import type { AuditCheck } from './check.ts';
import type { AuditConfig } from './config.ts';
import { countersignatureCheck, soloEmergencyRuns } from './countersign.ts';
import { diskCheck } from './disk.ts';
import { leaseGuardCheck } from './lease.ts';
import { passphraseCheck } from './passphrase.ts';
import { dnsTtlCheck, standbyBinaryCheck, standbyCopyCheck, trustCheck } from './standby.ts';

export function auditChecks(
  config: AuditConfig,
  inventory: Inventory,
  project?: Project,
): AuditCheck[] {
  const checks: AuditCheck[] = [];
  for (const [name, service] of Object.entries(config.services)) {
    if (service.backup) {
      checks.push(backupFreshnessCheck(name, service.backup));
      checks.push(backupContentCheck(name, service.backup));
    }
  }
  for (const device of config.encryptedDevices) checks.push(passphraseCheck(device));
  for (const fs of config.filesystems) checks.push(diskCheck(fs));
  for (const [name, service] of Object.entries(config.services)) {
    const s = service.standby;
    if (!s) continue;
    checks.push(standbyCopyCheck(name, s));
    checks.push(standbyBinaryCheck(name, s));
    const ircds = s.ircds ?? hostsWithRole(inventory, 'ircd').map((h) => h.name);
    if (ircds.length) checks.push(trustCheck(name, s, ircds));
    if (s.lease)
      checks.push(leaseGuardCheck(name, s.lease, s.lease.hosts ?? [s.primary, s.standby]));
    if (s.dns && inventory.dns) {
      const servers = inventory.dns.servers.map((x) => ({
        name: x.name,
        address: x.address,
        port: x.port,
      }));
      const via =
        s.dns.via ??
        inventory.hosts.find((h) => servers.some((x) => x.address === h.address))?.name;
      checks.push(dnsTtlCheck(name, s, { zone: inventory.dns.zone, servers }, via));
    }
  }
  const solo = project ? soloEmergencyRuns(runsDir(project), inventory.stack) : [];
  if (project && solo.length) checks.push(countersignatureCheck(inventory.stack, project, solo));
  return checks;
}
