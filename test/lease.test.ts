import { leaseTiming, leaseTimingConditions, parseLeaseConf } from '../lib/steps/lease.ts';
import { describe, expect, it } from 'vitest';
import {
  describeLease,
  formatLease,
  leaseExpired,
  leaseOf,
  movedLease,
  notOlder,
  parseLease,
  renewedLease,
} from '../lib/core/lease.ts';

const at = (iso: string): Date => new Date(iso);

describe('the lease record', () => {
  it('reads holder, generation and expiry, and writes them back the same', () => {
    const text = 'holder=emergency1 gen=7 expires=2026-12-01T23:00:00Z';
    const lease = parseLease(text);
    expect(lease).toEqual({ holder: 'emergency1', gen: 7, expires: at('2026-12-01T23:00:00Z') });
    expect(formatLease(lease!)).toBe(text);
  });

  it('reads a record of the first format, the holder alone, as generation 0 without expiry', () => {
    expect(parseLease('nebula')).toEqual({ holder: 'nebula', gen: 0 });
    expect(leaseExpired(parseLease('nebula')!, at('2999-01-01T00:00:00Z'))).toBe(false);
    expect(() => formatLease({ holder: 'nebula', gen: 0 })).toThrow(/expiry/);
  });

  it('is no lease when a field is missing, doubled, unknown or malformed, or when there are several values', () => {
    for (const bad of [
      '',
      'holder=nebula gen=1',
      'holder=nebula gen=1 expires=2026-12-01T23:00:00Z gen=2',
      'holder=nebula gen=-1 expires=2026-12-01T23:00:00Z',
      'holder=nebula gen=1 expires=tomorrow',
      'holder=nebula gen=1 expires=2026-12-01T23:00:00Z owner=x',
      'holder=neb;ula gen=1 expires=2026-12-01T23:00:00Z',
      'two words',
    ])
      expect([bad, parseLease(bad)]).toEqual([bad, undefined]);
    expect(leaseOf(['nebula', 'emergency1'])).toBeUndefined();
    expect(leaseOf([])).toBeUndefined();
    expect(leaseOf(['holder=nebula gen=2 expires=2026-12-01T23:00:00Z'])?.gen).toBe(2);
  });

  it('moves to the next generation and renews keeping it, to the second', () => {
    const now = at('2026-12-01T22:59:30.750Z');
    const held = parseLease('holder=nebula gen=7 expires=2026-12-01T23:00:00Z')!;
    const moved = movedLease(held, 'emergency1', now, 30);
    expect(formatLease(moved)).toBe('holder=emergency1 gen=8 expires=2026-12-01T23:00:00Z');
    const renewed = renewedLease(moved, at('2026-12-01T23:00:10Z'), 30);
    expect(formatLease(renewed)).toBe('holder=emergency1 gen=8 expires=2026-12-01T23:00:40Z');
    expect(formatLease(movedLease(parseLease('nebula')!, 'emergency1', now, 30))).toMatch(
      /^holder=emergency1 gen=1 /,
    );
  });

  it('orders by generation: a lower one is a stale answer', () => {
    const lease = parseLease('holder=nebula gen=7 expires=2026-12-01T23:00:00Z')!;
    expect(notOlder(lease, 7)).toBe(true);
    expect(notOlder(lease, 6)).toBe(true);
    expect(notOlder(lease, 8)).toBe(false);
  });

  it('has run out at its expiry, not before', () => {
    const lease = parseLease('holder=nebula gen=7 expires=2026-12-01T23:00:00Z')!;
    expect(leaseExpired(lease, at('2026-12-01T22:59:59Z'))).toBe(false);
    expect(leaseExpired(lease, at('2026-12-01T23:00:00Z'))).toBe(true);
    expect(describeLease(lease)).toBe('held by nebula (gen 7, until 2026-12-01T23:00:00Z)');
  });
});

describe("a run's lease timing", () => {
  const conf = [
    '# baton lease settings',
    'LEASE_INTERVAL=2',
    'LEASE_SECONDS=15 # renewed every interval',
    "LEASE_GRACE='6'",
    '#LEASE_SECONDS=99',
  ].join('\n');

  it('reads LEASE_SECONDS and LEASE_GRACE from a lease.conf as the scripts source it', () => {
    expect(parseLeaseConf(conf)).toEqual({ seconds: 15, grace: 6 });
    expect(parseLeaseConf('LEASE_SERVER=192.0.2.53\n')).toEqual({});
    expect(parseLeaseConf('LEASE_SECONDS=$((10 * 3))\n')).toEqual({});
  });

  it("goes by the target's lease.conf, then the parameters, then 30 s and 10 s", () => {
    const onHost = {
      leaseConf: { host: 'emergency1', path: '/etc/baton/lease.conf', seconds: 15, grace: 6 },
    };
    expect(leaseTiming(onHost, {})).toEqual({ seconds: 15, grace: 6 });
    expect(leaseTiming({}, { leaseSeconds: 20, leaseGrace: 5 })).toEqual({ seconds: 20, grace: 5 });
    expect(leaseTiming({}, {})).toEqual({ seconds: 30, grace: 10 });
    expect(
      leaseTiming(
        { leaseConf: { host: 'emergency1', path: '/etc/baton/lease.conf', grace: 6 } },
        {},
      ),
    ).toEqual({ seconds: 30, grace: 6 });
  });

  it('refuses a parameter that disagrees with the host, naming both', () => {
    const facts = {
      to: 'emergency1',
      leaseConf: { host: 'emergency1', path: '/etc/baton/lease.conf', seconds: 15, grace: 6 },
    };
    expect(leaseTimingConditions(facts, {})).toEqual([]);
    expect(leaseTimingConditions(facts, { leaseSeconds: 15 }).map((c) => c.ok)).toEqual([true]);
    const [wrong] = leaseTimingConditions(facts, { leaseGrace: 10 });
    expect(wrong).toMatchObject({
      ok: false,
      name: 'leaseGrace agrees with LEASE_GRACE in /etc/baton/lease.conf on emergency1',
      expected: '6',
      found: '--param leaseGrace=10',
    });
    expect(leaseTimingConditions({}, { leaseGrace: 10 })).toEqual([]);
  });
});
