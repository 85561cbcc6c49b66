/**
 * Removes secret values from every string that leaves the process, in every
 * form baton itself writes them: as given, quoted for sh by lib/core/shell.ts, and
 * escaped inside a JSON string, nested up to three deep (a quoted command
 * quoted again for `sh -c`, then written as JSON). Texts are clipped only
 * after they are redacted, and never inside a marker.
 */
import { quotedText } from './shell.ts';

const ENCODINGS: ReadonlyArray<(text: string) => string> = [
  quotedText,
  (text) => JSON.stringify(text).slice(1, -1),
];
const DEPTH = 3;

function formsOf(value: string): Set<string> {
  const all = new Set([value]);
  let level = all;
  for (let i = 0; i < DEPTH; i++) {
    const next = new Set<string>();
    for (const v of level) for (const encode of ENCODINGS) next.add(encode(v));
    for (const v of next) all.add(v);
    level = next;
  }
  return all;
}

const marker = (name: string): string => `[redacted:${name}]`;
const MARKER = /\[redacted:[^\]\n]*\]/g;

export class Redactor {
  private readonly values = new Set<string>();
  /** Every form of every secret, to the name it is redacted as. */
  private readonly forms = new Map<string, string>();
  private pattern: RegExp | undefined;

  add(name: string, value: string): void {
    if (value.length === 0) return;
    this.values.add(value);
    for (const form of formsOf(value)) if (!this.forms.has(form)) this.forms.set(form, name);
    this.pattern = undefined;
  }

  get size(): number {
    return this.values.size;
  }

  /** Whether `text` holds a secret in any of its forms. */
  holds(text: string): boolean {
    if (this.size === 0) return false;
    for (const m of text.matchAll(this.regex())) if (this.forms.has(m[0])) return true;
    return false;
  }

  redact(text: string): string {
    if (this.size === 0) return text;
    return text.replace(this.regex(), (found) => {
      const name = this.forms.get(found);
      return name === undefined ? found : marker(name);
    });
  }

  /**
   * Redact a text whose end was cut off before it could be redacted (a
   * bounded buffer): a secret's beginning left at the cut goes as well.
   */
  redactCut(text: string): string {
    if (this.size === 0) return text;
    const re = this.regex();
    re.lastIndex = 0;
    let afterLast = 0;
    for (let m = re.exec(text); m; m = re.exec(text)) afterLast = m.index + m[0].length;
    const rest = text.slice(afterLast);
    let partial = 0;
    let name = '';
    for (const [form, owner] of this.forms) {
      for (let k = Math.min(form.length - 1, rest.length); k > partial; k--) {
        if (rest.endsWith(form.slice(0, k))) {
          partial = k;
          name = owner;
          break;
        }
      }
    }
    if (partial === 0) return this.redact(text);
    return this.redact(text.slice(0, text.length - partial)) + marker(name);
  }

  /** Redact an error's message, hint and stack in place, for an error that leaves the run. */
  redactError<T>(error: T, depth = 0): T {
    if (this.size === 0 || !(error instanceof Error)) return error;
    error.message = this.redact(error.message);
    if (error.stack) error.stack = this.redact(error.stack);
    const hinted = error as { hint?: unknown };
    if (typeof hinted.hint === 'string') hinted.hint = this.redact(hinted.hint);
    // A wrapped error keeps the original as its cause, which BATON_DEBUG=1 prints.
    if (depth < 3) this.redactError(error.cause, depth + 1);
    return error;
  }

  redactDeep<T>(value: T): T {
    if (this.size === 0) return value;
    return JSON.parse(
      JSON.stringify(value, (_k, v: unknown) => (typeof v === 'string' ? this.redact(v) : v)),
    ) as T;
  }

  /**
   * One pass, longest form first, so a secret containing another goes whole.
   * Markers of this redactor's names match first and stay as they are, so a
   * text redacted twice (a secret such as "redacted") comes out the same.
   */
  private regex(): RegExp {
    if (this.pattern) return this.pattern;
    const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const names = [...new Set(this.forms.values())].map((n) => escape(marker(n)));
    const forms = [...this.forms.keys()].sort((a, b) => b.length - a.length).map(escape);
    this.pattern = new RegExp([...names, ...forms].join('|'), 'g');
    return this.pattern;
  }
}

/** A cut at `at` that would split a redaction marker moves to the marker's start (or end). */
function outsideMarkers(text: string, at: number, toward: 'start' | 'end'): number {
  for (const m of text.matchAll(MARKER)) {
    const end = m.index + m[0].length;
    if (m.index < at && at < end) return toward === 'start' ? m.index : end;
    if (m.index >= at) break;
  }
  return at;
}

/** At most the first `keep` characters of a redacted text, then `ellipsis` if it was longer. */
export function clipHead(text: string, keep: number, ellipsis = '…'): string {
  if (text.length <= keep) return text;
  return text.slice(0, outsideMarkers(text, keep, 'start')) + ellipsis;
}

/** `ellipsis`, then at most the last `keep` characters of a redacted text, if it was longer. */
export function clipTail(text: string, keep: number, ellipsis = '…'): string {
  if (text.length <= keep) return text;
  return ellipsis + text.slice(outsideMarkers(text, text.length - keep, 'end'));
}
