/**
 * The services lease as its TXT record holds it: the one host allowed to run
 * services, a generation that only grows (the fencing token) and an expiry
 * its holder renews: `holder=emergency1 gen=7 expires=2026-12-01T23:00:00Z`.
 * A record of the first format, the holder's name alone (`nebula`), reads as
 * generation 0 without an expiry. Pure: parse, format, order, expire.
 */

export interface Lease {
  /** Short host name of the holder. */
  holder: string;
  /** Fencing token: every move of the lease writes a higher one. */
  gen: number;
  /** When the lease runs out unless its holder renews it; absent in a record of the first format. */
  expires?: Date;
}

const HOST = /^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/;

/** The lease a TXT value holds, or undefined when the value is not a lease. */
export function parseLease(text: string): Lease | undefined {
  const value = text.trim();
  if (HOST.test(value)) return { holder: value, gen: 0 };
  const fields = new Map<string, string>();
  for (const part of value.split(/\s+/)) {
    const m = /^([a-z]+)=(\S+)$/.exec(part);
    if (!m || fields.has(m[1]!)) return undefined;
    fields.set(m[1]!, m[2]!);
  }
  const holder = fields.get('holder');
  const gen = fields.get('gen');
  const expires = fields.get('expires');
  if (fields.size !== 3 || !holder || !HOST.test(holder) || !gen || !expires) return undefined;
  if (!/^\d{1,15}$/.test(gen)) return undefined;
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(expires)) return undefined;
  const at = new Date(expires);
  if (Number.isNaN(at.getTime())) return undefined;
  return { holder, gen: Number(gen), expires: at };
}

/** The TXT value of a lease, always in the current format (an absent expiry is refused). */
export function formatLease(lease: Lease): string {
  if (!HOST.test(lease.holder)) throw new Error(`lease holder ${lease.holder} is not a host name`);
  if (!Number.isSafeInteger(lease.gen) || lease.gen < 0)
    throw new Error(`lease generation ${lease.gen} is not a whole number`);
  if (!lease.expires) throw new Error('a lease is written with an expiry');
  return `holder=${lease.holder} gen=${lease.gen} expires=${isoSeconds(lease.expires)}`;
}

/** UTC to the second, as the record and the hosts' `date -u +%Y-%m-%dT%H:%M:%SZ` write it. */
export function isoSeconds(at: Date): string {
  return new Date(Math.floor(at.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** Whether the lease has run out at `now`. A lease of the first format never does. */
export function leaseExpired(lease: Lease, now: Date): boolean {
  return lease.expires !== undefined && now.getTime() >= lease.expires.getTime();
}

/** The lease moved to `holder`: the next generation, running `seconds` from `now`. */
export function movedLease(current: Lease, holder: string, now: Date, seconds: number): Lease {
  return { holder, gen: current.gen + 1, expires: new Date(now.getTime() + seconds * 1000) };
}

/** The same lease, renewed by its holder: the generation stays, the expiry moves. */
export function renewedLease(current: Lease, now: Date, seconds: number): Lease {
  return { ...current, expires: new Date(now.getTime() + seconds * 1000) };
}

/** Whether `lease` may stand after `seen`: a lower generation is a stale answer. */
export function notOlder(lease: Lease, seen: number): boolean {
  return lease.gen >= seen;
}

/** `nebula gen 7, until 2026-12-01T23:00:00Z` for messages. */
export function describeLease(lease: Lease | undefined): string {
  if (!lease) return 'no lease';
  return `held by ${lease.holder} (gen ${lease.gen}${lease.expires ? `, until ${isoSeconds(lease.expires)}` : ', no expiry'})`;
}

/** The one lease a TXT record set holds: none, or several values, or a value that is not a lease, is no lease. */
export function leaseOf(values: readonly string[]): Lease | undefined {
  return values.length === 1 ? parseLease(values[0]!) : undefined;
}
