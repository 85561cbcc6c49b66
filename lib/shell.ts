/**
 * POSIX sh quoting and the `sh` tagged template. ssh sends one string to the
 * remote shell, so every interpolated value is quoted here and nowhere else.
 */

/** A command line whose interpolated values are already quoted. */
export class Cmd {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export type ShellValue =
  string | number | bigint | boolean | Cmd | readonly (string | number | Cmd)[];

const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Quote one argument for POSIX sh (dash, busybox, bash in sh mode). */
export function quote(arg: string): string {
  if (arg === '') return "''";
  if (SAFE.test(arg)) return arg;
  return "'" + quotedText(arg) + "'";
}

/** `arg` as `quote` writes it between its single quotes. */
export function quotedText(arg: string): string {
  return arg.replaceAll("'", "'\\''");
}

function render(value: ShellValue): string {
  if (value instanceof Cmd) return value.text;
  if (Array.isArray(value)) return value.map((v) => render(v as ShellValue)).join(' ');
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') {
    return quote(String(value));
  }
  throw new TypeError(`cannot interpolate ${typeof value} into a shell command`);
}

/**
 * Build a command: `sh\`cp ${src} ${dst}\`` quotes `src` and `dst`; arrays are
 * quoted item by item; a nested `sh` command is inserted as it is.
 */
export function sh(strings: TemplateStringsArray, ...values: ShellValue[]): Cmd {
  let out = strings[0] ?? '';
  values.forEach((value, i) => {
    out += render(value) + (strings[i + 1] ?? '');
  });
  return new Cmd(out);
}

/** Insert trusted text without quoting (an operator, a redirection). */
export function raw(text: string): Cmd {
  return new Cmd(text);
}

export function isTemplateCall(args: unknown[]): args is [TemplateStringsArray, ...ShellValue[]] {
  const first = args[0];
  return Array.isArray(first) && Object.prototype.hasOwnProperty.call(first, 'raw');
}
