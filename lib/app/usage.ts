/**
 * The command tree as data, read from the commander definitions in cli.ts.
 * The README's CLI block and the shell completions are made from it, so
 * neither can drift from what baton accepts.
 */
import type { Command, Option } from 'commander';

export interface ArgSpec {
  name: string;
  required: boolean;
  variadic: boolean;
  choices?: string[];
}

export interface OptionSpec {
  /** `--stack`; every baton option has a long form. */
  long: string;
  short?: string;
  /** The value's name (`<file>` gives `file`), for an option that takes one. */
  value?: string;
  repeatable: boolean;
  /** Must be given (commander's `requiredOption`). */
  mandatory: boolean;
  choices?: string[];
  description: string;
}

export interface CommandSpec {
  /** Words after `baton`: `[]` for baton itself, `['testnet', 'up']`. */
  path: string[];
  description: string;
  args: ArgSpec[];
  /** Including `--help` (and `--version` on baton itself). */
  options: OptionSpec[];
  subcommands: Array<{ name: string; description: string }>;
}

export function commandTree(program: Command): CommandSpec[] {
  const out: CommandSpec[] = [];
  const walk = (cmd: Command, path: string[]): void => {
    const help = cmd.createHelp();
    // commander adds an implicit `help` command; `--help` is the form baton documents.
    const subs = help.visibleCommands(cmd).filter((c) => c.name() !== 'help');
    out.push({
      path,
      description: cmd.description(),
      // Not help.visibleArguments: it lists arguments only when one has a description.
      args: cmd.registeredArguments.map((a) => ({
        name: a.name(),
        required: a.required,
        variadic: a.variadic,
        ...(a.argChoices ? { choices: [...a.argChoices] } : {}),
      })),
      options: help.visibleOptions(cmd).map(optionSpec),
      subcommands: subs.map((c) => ({ name: c.name(), description: c.description() })),
    });
    for (const c of subs) walk(c, [...path, c.name()]);
  };
  walk(program, []);
  return out;
}

function optionSpec(o: Option): OptionSpec {
  const value = /[<[]([^>\]]+)[>\]]/.exec(o.flags)?.[1]?.replace(/\.\.\.$/, '');
  return {
    long: o.long ?? o.short!,
    ...(o.short && o.long ? { short: o.short } : {}),
    ...(value ? { value } : {}),
    repeatable: o.variadic || Array.isArray(o.defaultValue),
    mandatory: o.mandatory,
    ...(o.argChoices ? { choices: [...o.argChoices] } : {}),
    description: o.description,
  };
}

const BUILT_IN = new Set(['--help', '--version']);

/** `baton plan <runbook> [--param <name=value>]… [--stack <name>] [--out <file>] [--json]` */
export function synopsis(spec: CommandSpec): string[] {
  const words = ['baton', ...spec.path];
  for (const a of spec.args) {
    const name = `${a.choices ? a.choices.join('|') : a.name}${a.variadic ? '...' : ''}`;
    words.push(a.required ? `<${name}>` : `[${name}]`);
  }
  for (const o of spec.options) {
    if (BUILT_IN.has(o.long)) continue;
    const value = o.choices ? ` <${o.choices.join('|')}>` : o.value ? ` <${o.value}>` : '';
    const text = `${o.long}${value}`;
    words.push(`${o.mandatory ? text : `[${text}]`}${o.repeatable ? '…' : ''}`);
  }
  return words;
}

/** A command worth a line of its own: it takes something, or has nothing under it. */
function runnable(spec: CommandSpec): boolean {
  if (spec.path.length === 0) return false;
  return (
    spec.subcommands.length === 0 ||
    spec.args.length > 0 ||
    spec.options.some((o) => !BUILT_IN.has(o.long))
  );
}

const WIDTH = 100;

function wrap(words: string[], first: string, rest: string): string[] {
  const lines: string[] = [];
  let line = first;
  let empty = true;
  for (const w of words) {
    if (!empty && line.length + 1 + w.length > WIDTH) {
      lines.push(line);
      line = rest + w;
    } else line += (empty ? '' : ' ') + w;
    empty = false;
  }
  lines.push(line);
  return lines;
}

/** Every command: its synopsis, then its description, indented; a blank line between. */
export function renderUsage(program: Command): string {
  return commandTree(program)
    .filter(runnable)
    .map((spec) =>
      [
        ...wrap(synopsis(spec), '', '      '),
        ...wrap(spec.description.split(/\s+/), '    ', '    '),
      ].join('\n'),
    )
    .join('\n\n');
}

export const USAGE_BEGIN =
  '<!-- baton-cli: generated from the command definitions by `npm run readme:cli`; edit lib/app/cli.ts, not this block -->';
export const USAGE_END = '<!-- /baton-cli -->';

/** The text between the markers, as it stands in the README. */
export function usageBlock(readme: string): string | undefined {
  const start = readme.indexOf(USAGE_BEGIN);
  const end = readme.indexOf(USAGE_END);
  if (start < 0 || end < start) return undefined;
  return readme.slice(start + USAGE_BEGIN.length, end);
}

/** The README with the block between the markers replaced by this usage. */
export function withUsage(readme: string, usage: string): string {
  if (usageBlock(readme) === undefined) {
    throw new Error(
      `the README has no ${USAGE_BEGIN} … ${USAGE_END} markers; put them where the CLI block goes`,
    );
  }
  const start = readme.indexOf(USAGE_BEGIN) + USAGE_BEGIN.length;
  return `${readme.slice(0, start)}\n\n${fenced(usage)}\n\n${readme.slice(readme.indexOf(USAGE_END))}`;
}

export function fenced(usage: string): string {
  return '```\n' + usage + '\n```';
}
