/** Removes secret values from every string that leaves the process. */
export class Redactor {
  private readonly secrets = new Map<string, string>();

  add(name: string, value: string): void {
    if (value.length === 0) return;
    this.secrets.set(value, name);
  }

  get size(): number {
    return this.secrets.size;
  }

  redact(text: string): string {
    let out = text;
    // Longest first, so a secret containing another is replaced whole.
    const values = [...this.secrets.keys()].sort((a, b) => b.length - a.length);
    for (const value of values) {
      if (out.includes(value)) out = out.split(value).join(`[redacted:${this.secrets.get(value)}]`);
    }
    return out;
  }

  redactDeep<T>(value: T): T {
    if (this.secrets.size === 0) return value;
    return JSON.parse(
      JSON.stringify(value, (_k, v: unknown) => (typeof v === 'string' ? this.redact(v) : v)),
    ) as T;
  }
}
