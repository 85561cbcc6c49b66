/**
 * The complete-copy rule, for the failover's choice of copy and the audit's
 * standby check: an empty or half-empty copy is never "verified".
 */
import { mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkAthemeDb, type AthemeFingerprint } from '../lib/integrations/atheme/db.ts';
import { probeFor, type CheckContext } from '../lib/audit/check.ts';
import { parseAuditConfig } from '../lib/audit/config.ts';
import { memoryHistory } from '../lib/audit/history.ts';
import { standbyCopyCheck } from '../lib/audit/standby.ts';
import { findHost } from '../lib/core/inventory.ts';
import { localTransport } from '../lib/transports/local.ts';
import { Redactor } from '../lib/core/redact.ts';
import { incompleteCopy, mostComplete } from '../lib/steps/atheme.ts';
import { localAuditInventory, servicesDb } from './support/audit.ts';

const at = 1_700_000_000;
const names = ['alice', 'bob', 'carol', 'dave'];
const full = servicesDb({
  accounts: names.map((name) => ({ name, registeredAt: at })),
  channels: [
    { name: '#ops', founder: 'alice', registeredAt: at },
    { name: '#lobby', founder: 'bob', registeredAt: at },
  ],
});
/** A backup cut at a record boundary: it parses, and half the accounts are gone. */
const half = full
  .split('\n')
  .filter((l) => !/^MU \S+ (carol|dave) /.test(l) && !/^MN (carol|dave) /.test(l))
  .join('\n');

function fingerprintOf(text: string): AthemeFingerprint {
  const check = checkAthemeDb(text);
  if (!check.ok) throw new Error(`the fixture does not parse: ${check.fault.message}`);
  return check.fingerprint;
}

const summary = (text: string): { bytes: number; fingerprint: AthemeFingerprint } => ({
  bytes: Buffer.byteLength(text),
  fingerprint: fingerprintOf(text),
});

describe('the complete-copy rule', () => {
  it('refuses a 0-byte copy, although it parses as an empty db', () => {
    expect(checkAthemeDb('').ok).toBe(true);
    expect(incompleteCopy(summary(''), undefined, 2)).toBe(
      'empty (0 bytes): nothing to start from',
    );
  });

  it('refuses a copy cut at a record boundary, naming the numbers missing', () => {
    const copies = [full, half].map((text, i) => ({
      where: `vault:copy${i}`,
      counts: fingerprintOf(text),
    }));
    const reference = mostComplete(copies)!;
    expect(reference.from).toBe('vault:copy0');
    expect(incompleteCopy(summary(half), reference, 2)).toBe(
      'incomplete: holds 2 of 4 accounts (2 missing), 2 of 4 nicks (2 missing) of what vault:copy0 holds; at most 2% fewer is accepted',
    );
    expect(incompleteCopy(summary(full), reference, 2)).toBeUndefined();
    // The operator may accept a loss knowingly.
    expect(incompleteCopy(summary(half), reference, 50)).toBeUndefined();
  });
});

describe("the audit's standby copy check", () => {
  it('fails an empty newest copy and a half-empty one, and names the complete one it would use', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-copies-'));
    const file = (name: string, text: string, age: number): void => {
      writeFileSync(join(dir, name), text);
      const t = Date.now() / 1000 - age;
      utimesSync(join(dir, name), t, t);
    };
    file('services.db.3', '', 60);
    file('services.db.2', half, 3600);
    file('services.db.1', full, 7200);
    const inventory = localAuditInventory(['nebula', 'emergency1', 'vault']);
    const config = parseAuditConfig(
      {
        services: {
          atheme: {
            standby: {
              primary: 'nebula',
              standby: 'emergency1',
              binary: '/bin/true',
              servicesName: 'services.irc.test',
              copies: [{ host: 'vault', path: join(dir, 'services.db.*') }],
            },
          },
        },
      },
      'test',
      inventory,
    );
    const transport = localTransport();
    const redactor = new Redactor();
    const ctx: CheckContext = {
      probe: (h) => probeFor(transport, findHost(inventory, h), redactor),
      host: (h) => findHost(inventory, h),
      inventory,
      transport: () => transport,
      now: () => new Date(),
      history: memoryHistory(),
      redactor,
    };
    const finding = await standbyCopyCheck('atheme', config.services!['atheme']!.standby!).run(ctx);
    expect(finding.evidence).toContain(
      `refused: vault:${join(dir, 'services.db.3')}: empty (0 bytes): nothing to start from`,
    );
    expect(finding.evidence.join('\n')).toContain(
      `refused: vault:${join(dir, 'services.db.2')}: incomplete: holds 2 of 4 accounts (2 missing)`,
    );
    expect(finding.evidence[0]).toContain(
      `newest usable copy: vault:${join(dir, 'services.db.1')}`,
    );
    expect(finding.evidence[0]).toContain('4 accounts, 2 channels');
  });
});
