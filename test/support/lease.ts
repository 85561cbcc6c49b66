/**
 * Moving the services lease from a test the way an operator (or another
 * controller) would: compare-and-set over the value just read. The holder's
 * watchdog renews the expiry every few seconds, so a write can lose to a
 * renewal; it is then read again and retried, and the change is computed from
 * what the record holds now.
 */
import { DnsConflictError, type DnsProvider } from '../../lib/integrations/dns/provider.ts';
import { formatLease, parseLease, type Lease } from '../../lib/core/lease.ts';

export async function rewriteLease(
  dns: DnsProvider,
  name: string,
  change: (current: Lease) => { holder: string; gen: number; seconds?: number },
): Promise<{ before: Lease; written: string }> {
  for (let attempt = 1; ; attempt++) {
    const read = (await dns.readRecord(name, 'TXT')).values[0];
    const before = read === undefined ? undefined : parseLease(read);
    if (!read || !before) throw new Error(`${name} TXT holds no lease: ${JSON.stringify(read)}`);
    const next = change(before);
    const written = formatLease({
      holder: next.holder,
      gen: next.gen,
      expires: new Date(Date.now() + (next.seconds ?? 30) * 1000),
    });
    try {
      await dns.compareAndSet(name, 'TXT', read, written);
      return { before, written };
    } catch (e) {
      if (!(e instanceof DnsConflictError) || attempt >= 5) throw e;
    }
  }
}
