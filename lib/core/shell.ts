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

/**
 * A fixed program for `sh -c` that reads a script from stdin (a line with its
 * number of lines, then the lines) and runs it in the same shell, leaving the
 * rest of stdin to the script. A command holding a secret runs this way, so
 * no argv, local or remote, shows it. `read` takes one byte at a time from a
 * pipe, so nothing past the script is consumed; a script that arrives short is
 * not run at all.
 */
export const STDIN_SCRIPT =
  'IFS= read -r __baton_n && __baton_s= && ' +
  'while [ "$__baton_n" -gt 0 ] && IFS= read -r __baton_l; do __baton_s="$__baton_s$__baton_l\n"; __baton_n=$((__baton_n - 1)); done; ' +
  '[ "$__baton_n" = 0 ] || { echo "baton: the command did not arrive whole on stdin" >&2; exit 125; }; ' +
  'unset __baton_l; eval "unset __baton_n __baton_s\n$__baton_s"';

/** What goes on stdin ahead of the command's own input when it runs as STDIN_SCRIPT. */
export function scriptFrame(command: string): Buffer {
  const script = command.endsWith('\n') ? command : command + '\n';
  const lines = script.split('\n').length - 1;
  return Buffer.from(`${lines}\n${script}`);
}
