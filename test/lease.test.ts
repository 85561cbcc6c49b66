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
} from '../lib/lease.ts';

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
