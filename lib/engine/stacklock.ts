/**
 * One run per stack, whichever controller starts it. The lock lives on the
 * stack's own hosts, where every controller of a team meets: a directory
 * holding the holder's record, made by one rename (atomic on each host). A run holds
 * the lock when a majority of the stack's places granted it, so two
 * controllers can never both hold it, and a failover still gets it with its
 * primary down. Hosts reached without ssh are this machine: they count as one
 * place, under BATON_HOME. A lock is never taken over silently: a stale one is
 * broken with `baton unlock <stack> <lock-id>`, which is journaled.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { BatonError, errorMessage, InvalidInputError } from '../core/errors.ts';
import type { Transport } from '../core/exec.ts';
import type { Host, Inventory } from '../core/inventory.ts';
import { sh, type Cmd } from '../core/shell.ts';

export const holderSchema = z.object({
  lockId: z.string(),
  stack: z.string(),
  runId: z.string(),
  runbook: z.string(),
  operator: z.string(),
  controller: z.string(),
  pid: z.number(),
  takenAt: z.string(),
});

export type LockHolder = z.infer<typeof holderSchema>;

export interface LockPlace {
  /** A host name, or `controller` for the hosts that are this machine. */
  name: string;
  host: Host;
  /** The lock directory on that place. */
  dir: Cmd;
}

export interface LockDeps {
  transportFor(host: Host): Transport;
  now(): Date;
  /** BATON_HOME: where hosts reached without ssh keep their lock. */
  home: string;
}

export interface PlaceResult {
  place: string;
  outcome: 'taken' | 'held' | 'unreachable';
  holder?: LockHolder;
  error?: string;
}

export function newLockId(): string {
  return randomBytes(4).toString('hex');
}

const STACK_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** The places a stack's lock lives: every ssh host, and this machine once for the local ones. */
export function lockPlaces(inventory: Inventory, home: string): LockPlace[] {
  if (!STACK_NAME.test(inventory.stack))
    throw new InvalidInputError(`${JSON.stringify(inventory.stack)} is not a stack name`);
  const file = `${inventory.stack}.lock`;
  const places: LockPlace[] = [];
  const local = inventory.hosts.find((h) => h.connection === 'local');
  if (local)
    places.push({ name: 'controller', host: local, dir: sh`${join(home, 'locks', file)}` });
  for (const host of inventory.hosts) {
    if (host.connection === 'local') continue;
    places.push({
      name: host.name,
      host,
      // root keeps it with the host's own state; another login user in its home.
      dir: sh`"$(if [ "$(id -u)" = 0 ]; then echo /var/lib/baton/locks; else echo "$HOME/.local/state/baton/locks"; fi)"/${file}`,
    });
  }
  return places;
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const r = holderSchema.safeParse(JSON.parse(text));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

async function onPlace(
  deps: LockDeps,
  place: LockPlace,
  command: Cmd,
): Promise<{ ok: true; stdout: string } | { ok: false; error: string }> {
  try {
    const r = await deps.transportFor(place.host).exec(place.host, command.text, {
      timeoutMs: 15_000,
    });
    if (r.exitCode !== 0)
      return { ok: false, error: r.stderr.trim() || `exit ${r.exitCode ?? r.signal}` };
    return { ok: true, stdout: r.stdout };
  } catch (e) {
    return { ok: false, error: errorMessage(e) };
  }
}

async function takeOn(deps: LockDeps, place: LockPlace, me: LockHolder): Promise<PlaceResult> {
  const record = JSON.stringify(me);
  const r = await onPlace(
    deps,
    place,
    // The lock directory appears with its holder inside, in one rename: no one ever sees it
    // without the holder (and `baton unlock` can always name it). A rename onto a lock that
    // holds a holder fails; one onto an empty directory (an older baton's, cut short) takes it.
    sh`l=${place.dir} && t="$l.$$.new" && mkdir -p "$(dirname "$l")" && rm -rf "$t" && mkdir "$t" && printf '%s\n' ${record} > "$t/holder" && if mv -T "$t" "$l" 2>/dev/null; then echo taken; else rm -rf "$t"; echo held; cat "$l/holder" 2>/dev/null; fi`,
  );
  if (!r.ok) return { place: place.name, outcome: 'unreachable', error: r.error };
  const [first, ...rest] = r.stdout.split('\n');
  if (first?.trim() === 'taken') return { place: place.name, outcome: 'taken', holder: me };
  const holder = parseHolder(rest.join('\n').trim());
  // Our own lock from before the controller stopped (a resume): it is still ours.
  if (holder && holder.lockId === me.lockId && holder.runId === me.runId)
    return { place: place.name, outcome: 'taken', holder };
  return { place: place.name, outcome: 'held', ...(holder ? { holder } : {}) };
}

async function releaseOn(deps: LockDeps, place: LockPlace, lockId: string): Promise<boolean> {
  const r = await onPlace(
    deps,
    place,
    sh`l=${place.dir} && if [ -e "$l" ] && grep -qF ${`"lockId":"${lockId}"`} "$l/holder" 2>/dev/null; then rm -rf "$l" && echo released; fi`,
  );
  return r.ok && r.stdout.trim() === 'released';
}

export interface StackLock {
  holder: LockHolder;
  places: PlaceResult[];
  release(): Promise<void>;
}

function age(takenAt: string, now: Date): string {
  const s = Math.max(0, Math.round((now.getTime() - Date.parse(takenAt)) / 1000));
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
}

export function describeHolder(h: LockHolder, now: Date): string {
  return `run ${h.runId} (${h.runbook}) by ${h.operator} on controller ${h.controller}, pid ${h.pid}, taken ${age(h.takenAt, now)} ago at ${h.takenAt}; lock id ${h.lockId}`;
}

/**
 * Take the stack's lock on a majority of its places, or release what was
 * taken and refuse, naming who holds it.
 */
export async function acquireStackLock(
  inventory: Inventory,
  holder: Omit<LockHolder, 'controller' | 'pid' | 'takenAt' | 'stack'> &
    Partial<Pick<LockHolder, 'takenAt'>>,
  deps: LockDeps,
): Promise<StackLock> {
  const places = lockPlaces(inventory, deps.home);
  const me: LockHolder = {
    ...holder,
    stack: inventory.stack,
    controller: hostname(),
    pid: process.pid,
    takenAt: holder.takenAt ?? deps.now().toISOString(),
  };
  const results = await Promise.all(places.map((p) => takeOn(deps, p, me)));
  const taken = results.filter((r) => r.outcome === 'taken');
  const need = Math.floor(places.length / 2) + 1;
  const release = async (): Promise<void> => {
    await Promise.all(
      places
        .filter((p) => results.some((r) => r.place === p.name && r.outcome === 'taken'))
        .map((p) => releaseOn(deps, p, me.lockId)),
    );
  };
  if (taken.length >= need) return { holder: me, places: results, release };
  await release();
  const others = new Map<string, LockHolder>();
  for (const r of results)
    if (r.holder && r.outcome === 'held') others.set(r.holder.lockId, r.holder);
  const held = results.filter((r) => r.outcome === 'held');
  const unreachable = results.filter((r) => r.outcome === 'unreachable');
  const now = deps.now();
  if (held.length > 0) {
    const who = [...others.values()].map((h) => describeHolder(h, now));
    throw new BatonError(
      'STACK_LOCKED',
      `stack ${inventory.stack} is locked by ${who.length ? who.join('; and by ') : 'a run whose record could not be read'} (held on ${held.map((r) => r.place).join(', ')})`,
      `Wait for that run to end. If its controller is gone for good, resume it (\`baton resume RUN-ID\` from that controller), or break the lock: \`baton unlock ${inventory.stack} ${[...others.keys()][0] ?? 'LOCK-ID'}\`.`,
    );
  }
  throw new BatonError(
    'STACK_LOCKED',
    `cannot lock stack ${inventory.stack}: ${taken.length} of ${places.length} places granted the lock, ${need} needed; unreachable: ${unreachable.map((r) => `${r.place} (${r.error})`).join('; ')}`,
    'Bring a majority of the stack hosts back within reach, then run again. Nothing was changed.',
  );
}

/** Who holds the stack's lock, place by place. */
export async function readStackLock(inventory: Inventory, deps: LockDeps): Promise<PlaceResult[]> {
  return Promise.all(
    lockPlaces(inventory, deps.home).map(async (place): Promise<PlaceResult> => {
      const r = await onPlace(
        deps,
        place,
        sh`l=${place.dir} && cat "$l/holder" 2>/dev/null || true`,
      );
      if (!r.ok) return { place: place.name, outcome: 'unreachable', error: r.error };
      const holder = parseHolder(r.stdout.trim());
      return holder
        ? { place: place.name, outcome: 'held', holder }
        : { place: place.name, outcome: 'taken' };
    }),
  );
}

/**
 * Break a lock by its id, on every place that holds it, and leave a line
 * saying who broke it in each place's log. Returns the places it was removed from.
 */
export async function breakStackLock(
  inventory: Inventory,
  lockId: string,
  by: string,
  deps: LockDeps,
): Promise<{ removed: string[]; unreachable: string[]; holder?: LockHolder }> {
  if (!/^[0-9a-f]{8}$/.test(lockId))
    throw new InvalidInputError(
      `${JSON.stringify(lockId)} is not a lock id`,
      'A lock id is 8 hex digits; the refusal that named the lock shows it.',
    );
  const places = lockPlaces(inventory, deps.home);
  const now = deps.now().toISOString();
  const removed: string[] = [];
  const unreachable: string[] = [];
  let holder: LockHolder | undefined;
  await Promise.all(
    places.map(async (place) => {
      const line = `${now} lock ${lockId} of stack ${inventory.stack} broken by ${by}`;
      const r = await onPlace(
        deps,
        place,
        sh`l=${place.dir} && if [ -e "$l" ] && grep -qF ${`"lockId":"${lockId}"`} "$l/holder" 2>/dev/null; then cat "$l/holder"; rm -rf "$l" && printf '%s\n' ${line} >> "$l.log"; fi`,
      );
      if (!r.ok) unreachable.push(place.name);
      else if (r.stdout.trim()) {
        removed.push(place.name);
        holder ??= parseHolder(r.stdout.trim());
      }
    }),
  );
  return { removed, unreachable, ...(holder ? { holder } : {}) };
}
