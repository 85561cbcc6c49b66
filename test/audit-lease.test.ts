import { describe, expect, it } from 'vitest';
import type { CheckContext, HostProbe } from '../lib/audit/check.ts';
import { execPrograms, leaseGuardCheck } from '../lib/audit/lease.ts';
import { leaseGuardSchema } from '../lib/audit/config.ts';
import {
  athemeUnit,
  leaseWatchdogScript,
  leaseWatchdogUnit,
  leaseCheckScript,
} from '../lib/testnet/irc-config.ts';

interface FakeHost {
  units: Record<string, string>;
  files: Record<string, string>;
  enabled: string[];
  active: string[];
}

/** A services host as the testnet provisions it. */
const guarded = (): FakeHost => ({
  units: { atheme: athemeUnit(), 'baton-lease-watchdog': leaseWatchdogUnit() },
  files: {
    '/etc/atheme/lease-check': leaseCheckScript(),
    '/usr/local/sbin/baton-lease-watchdog': leaseWatchdogScript(),
    '/etc/baton/lease.conf': 'LEASE_SERVER=192.0.2.53\n',
  },
  enabled: ['atheme', 'baton-lease-watchdog'],
  active: ['baton-lease-watchdog'],
});

/** Answers the few commands the check sends, from the host's files and units. */
function context(hosts: Record<string, FakeHost>): CheckContext {
  const probe =
    (name: string): HostProbe =>
    async (cmd) => {
      const h = hosts[name]!;
      const text = cmd.text;
      const ok = (stdout: string) => ({ exitCode: 0, stdout, stderr: '' });
      const no = (stdout = '') => ({ exitCode: 1, stdout, stderr: '' });
      let m: RegExpExecArray | null;
      if ((m = /^systemctl cat (\S+)$/.exec(text)))
        return (h.units[m[1]!] !== undefined ? ok(h.units[m[1]!]!) : no()) as never;
      if ((m = /^systemctl is-enabled (\S+)$/.exec(text)))
        return (h.enabled.includes(m[1]!) ? ok('enabled\n') : no('disabled\n')) as never;
      if ((m = /^systemctl is-active (\S+)$/.exec(text)))
        return (h.active.includes(m[1]!) ? ok('active\n') : no('inactive\n')) as never;
      if ((m = /^test -x (\S+) && head -c 4096 \S+$/.exec(text)))
        return (h.files[m[1]!] !== undefined ? ok(h.files[m[1]!]!) : no()) as never;
      if ((m = /^test -r (\S+)$/.exec(text)))
        return (h.files[m[1]!] !== undefined ? ok('') : no()) as never;
      throw new Error(`unexpected command on ${name}: ${text}`);
    };
  return { probe } as unknown as CheckContext;
}

describe('the lease-guard audit check', () => {
  const g = leaseGuardSchema.parse({});

  it('reads the programs of ExecStartPre= and ExecStart= without systemd prefixes', () => {
    expect(execPrograms(athemeUnit(), 'ExecStartPre')).toEqual(['/etc/atheme/lease-check']);
    expect(execPrograms(leaseWatchdogUnit(), 'ExecStart')).toEqual([
      '/usr/local/sbin/baton-lease-watchdog',
    ]);
  });

  it('passes when every services host has the lease check and an enabled, active watchdog', async () => {
    const f = await leaseGuardCheck('atheme', g, ['nebula', 'emergency1']).run(
      context({ nebula: guarded(), emergency1: guarded() }),
    );
    expect(f.verdict).toBe('pass');
    expect(f.summary).toBe('2 of 2 services hosts run the lease check and an active watchdog');
    expect(f.evidence).toContain(
      'nebula: atheme runs the lease check /etc/atheme/lease-check before it starts',
    );
  });

  it('fails, naming the host and what is missing: no lease check, a stopped or disabled watchdog', async () => {
    const bare = guarded();
    bare.units.atheme = athemeUnit().replace(/^ExecStartPre=.*\n/m, '');
    const stopped = guarded();
    stopped.active = [];
    stopped.enabled = ['atheme'];
    const f = await leaseGuardCheck('atheme', g, ['nebula', 'emergency1']).run(
      context({ nebula: bare, emergency1: stopped }),
    );
    expect(f.verdict).toBe('fail');
    expect(f.summary).toBe('nebula, emergency1 are not guarded by the lease');
    expect(f.evidence).toEqual(
      expect.arrayContaining([
        'nebula: atheme has no lease check as ExecStartPre (none)',
        'emergency1: baton-lease-watchdog is disabled: it would not run after a reboot',
        'emergency1: baton-lease-watchdog is inactive: nothing stops services when the lease is lost',
      ]),
    );
    expect(f.remedy).toContain('docs/lease.md');
  });

  it('does not take any ExecStartPre for the lease check, nor any program for the watchdog', async () => {
    const fake = guarded();
    fake.files['/etc/atheme/lease-check'] = '#!/bin/sh\nexit 0\n';
    fake.files['/usr/local/sbin/baton-lease-watchdog'] = '#!/bin/sh\nsleep infinity\n';
    const f = await leaseGuardCheck('atheme', g, ['nebula']).run(context({ nebula: fake }));
    expect(f.verdict).toBe('fail');
    expect(f.evidence).toEqual([
      'nebula: atheme has no lease check as ExecStartPre (found /etc/atheme/lease-check)',
      'nebula: baton-lease-watchdog does not run the baton lease watchdog (ExecStart /usr/local/sbin/baton-lease-watchdog)',
      'nebula: baton-lease-watchdog enabled and active',
    ]);
  });
});
