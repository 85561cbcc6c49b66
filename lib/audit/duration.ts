/** Durations as an operator writes them in the audit config (`90s`, `30m`, `24h`, `7d`, `1w`) and as people read them. */

const UNITS: Record<string, number> = {
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

export const DURATION_PATTERN = /^(\d+(?:\.\d+)?)\s*([smhdw])$/;

/** Milliseconds of `24h`, `90m`, `7d`; undefined when the text is not a duration. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION_PATTERN.exec(text.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * UNITS[m[2]!]!);
}

/** `3 d 2 h`, `5 h 12 min`, `4 min`, `12 s`: two units at most, for evidence lines. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3_600);
  const m = Math.floor((s % 3_600) / 60);
  if (d >= 2) return h ? `${d} d ${h} h` : `${d} d`;
  const hours = Math.floor(s / 3_600);
  if (hours > 0) return m ? `${hours} h ${m} min` : `${hours} h`;
  if (m > 0) return `${m} min`;
  return `${s} s`;
}

/** Bytes for people: `1.5 GiB`, `12.0 MiB`, `512 B`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = Math.abs(bytes);
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  const sign = bytes < 0 ? '-' : '';
  return i === 0 ? `${sign}${value} B` : `${sign}${value.toFixed(1)} ${units[i]}`;
}
