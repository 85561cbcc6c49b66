/** Processes and mounts of the testnet, found through /proc (never by name). */
import { readdirSync, readFileSync, statSync } from 'node:fs';

/** Inode of a namespace file (/run/netns/X, a bind-mounted ns file, /proc/PID/ns/net). */
export function nsInode(path: string): number | undefined {
  try {
    const st = statSync(path);
    // Only a real namespace (on nsfs) counts, never a plain placeholder file.
    return st.dev === NSFS_DEV ? st.ino : undefined;
  } catch {
    return undefined;
  }
}

const NSFS_DEV = statSync('/proc/self/ns/net').dev;

/** Pids whose network or mount namespace is one of `nsFiles`. */
export function pidsInNamespaces(nsFiles: { net?: string; mnt?: string }[]): number[] {
  const net = new Set(nsFiles.map((f) => (f.net ? nsInode(f.net) : undefined)).filter(isNumber));
  const mnt = new Set(nsFiles.map((f) => (f.mnt ? nsInode(f.mnt) : undefined)).filter(isNumber));
  if (net.size === 0 && mnt.size === 0) return [];
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    const n = nsInode(`/proc/${pid}/ns/net`);
    const m = nsInode(`/proc/${pid}/ns/mnt`);
    if ((n !== undefined && net.has(n)) || (m !== undefined && mnt.has(m))) pids.push(pid);
  }
  return pids;
}

/** Whether `pid` lives in the network namespace `netnsFile`. */
export function pidInNetns(pid: number | undefined, netnsFile: string): boolean {
  if (!pid) return false;
  const want = nsInode(netnsFile);
  return want !== undefined && nsInode(`/proc/${pid}/ns/net`) === want;
}

export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
  } catch {
    return '';
  }
}

/** SIGKILL every process in the namespaces, repeating until none is left (forks race the kill). */
export async function killNamespaces(nsFiles: { net?: string; mnt?: string }[]): Promise<number> {
  let killed = 0;
  for (let round = 0; round < 50; round++) {
    const pids = pidsInNamespaces(nsFiles);
    if (pids.length === 0) return killed;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
        killed++;
      } catch {
        // Already gone.
      }
    }
    await new Promise((r) => setTimeout(r, 20 + round * 10));
  }
  const left = pidsInNamespaces(nsFiles);
  if (left.length > 0) {
    throw new Error(`processes ${left.join(', ')} survived SIGKILL`);
  }
  return killed;
}

/** Mount points (as the controller sees them) at or under `dir`. */
export function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const target = line.split(' ')[4];
    if (!target) continue;
    const path = target.replace(/\\(\d{3})/g, (_m, oct: string) =>
      String.fromCharCode(parseInt(oct, 8)),
    );
    if (path === dir || path.startsWith(dir + '/')) out.push(path);
  }
  return out;
}

export function isMountPoint(path: string): boolean {
  return mountsUnder(path).includes(path);
}

function isNumber(v: number | undefined): v is number {
  return v !== undefined;
}
