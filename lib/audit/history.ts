/**
 * Disk measurements kept between audits (`history.jsonl`), so headroom is
 * judged by its trend as well as its level: incident 002's log filled the
 * disk over a week, and one look a day would have seen the slope.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface GrownFile {
  path: string;
  bytes: number;
}

export interface DiskMeasurement {
  /** UTC ISO time of the measurement (the controller's clock). */
  at: string;
  host: string;
  path: string;
  sizeBytes: number;
  usedBytes: number;
  availBytes: number;
  /** The biggest files modified since the previous measurement. */
  files: GrownFile[];
}

export interface DiskHistory {
  /** Measurements of `host:path`, oldest first. */
  of(host: string, path: string): DiskMeasurement[];
  add(m: DiskMeasurement): void;
}

/** Measurements kept per filesystem: enough for a growth rate over weeks of hourly audits. */
const KEEP_PER_FILESYSTEM = 1000;

export function fileHistory(file: string): DiskHistory {
  let loaded: DiskMeasurement[] | undefined;
  const load = (): DiskMeasurement[] => {
    if (loaded) return loaded;
    loaded = [];
    if (existsSync(file)) {
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        if (!line.trim()) continue;
        try {
          const m = JSON.parse(line) as DiskMeasurement;
          if (typeof m.at === 'string' && typeof m.usedBytes === 'number') loaded.push(m);
        } catch {
          // A torn last line (a killed audit) costs one measurement, not the history.
        }
      }
    }
    return loaded;
  };
  return {
    of: (host, path) => load().filter((m) => m.host === host && m.path === path),
    add(m) {
      const all = load();
      all.push(m);
      mkdirSync(dirname(file), { recursive: true });
      const mine = all.filter((x) => x.host === m.host && x.path === m.path);
      if (mine.length > KEEP_PER_FILESYSTEM) {
        const drop = new Set(mine.slice(0, mine.length - KEEP_PER_FILESYSTEM));
        loaded = all.filter((x) => !drop.has(x));
        writeFileSync(file, loaded.map((x) => JSON.stringify(x) + '\n').join(''), { mode: 0o600 });
      } else appendFileSync(file, JSON.stringify(m) + '\n', { mode: 0o600 });
    },
  };
}

export function memoryHistory(initial: DiskMeasurement[] = []): DiskHistory {
  const all = [...initial];
  return {
    of: (host, path) => all.filter((m) => m.host === host && m.path === path),
    add: (m) => void all.push(m),
  };
}
