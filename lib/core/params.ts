/**
 * Runbook parameters: parsed from `--param k=v`, validated by the runbook's zod
 * schema before anything runs. Secret parameters are marked with `secret()`
 * and never leave the process.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { InvalidInputError } from './errors.ts';
import { Redactor } from './redact.ts';

export { withoutParamValues } from './process-title.ts';

/**
 * Mark a parameter as secret: redacted from output, journal and reports. The
 * mark is zod metadata, so it survives `.describe()`, `.optional()` and `.default()`.
 */
export function secret<T extends z.ZodType>(schema: T): T {
  return schema.meta({ ...(z.globalRegistry.get(schema) ?? {}), secret: true }) as T;
}

function marked(schema: z.ZodType): boolean {
  return (z.globalRegistry.get(schema) as { secret?: unknown } | undefined)?.secret === true;
}

export function isSecretParam(schema: z.ZodType): boolean {
  let s = schema;
  for (;;) {
    if (marked(s)) return true;
    if (s instanceof z.ZodOptional || s instanceof z.ZodDefault || s instanceof z.ZodNullable) {
      s = s.unwrap() as z.ZodType;
    } else return false;
  }
}

function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  for (;;) {
    if (s instanceof z.ZodOptional || s instanceof z.ZodDefault || s instanceof z.ZodNullable) {
      s = s.unwrap() as z.ZodType;
    } else return s;
  }
}

export function secretParamNames(schema: z.ZodObject): string[] {
  return Object.entries(schema.shape)
    .filter(([, s]) => isSecretParam(s as z.ZodType))
    .map(([k]) => k);
}

/** A raw value as given: inline, or a reference resolved at use (`@env:NAME`, `@file:PATH`). */
export interface RawParam {
  value: string;
  /** `@env:NAME` or `@file:PATH` when given by reference. */
  ref?: string;
}

export function parseParamArgs(args: readonly string[]): Map<string, RawParam> {
  const out = new Map<string, RawParam>();
  for (const arg of args) {
    const eq = arg.indexOf('=');
    if (eq <= 0) {
      throw new InvalidInputError(
        `--param ${JSON.stringify(arg)} is not of the form name=value`,
        'Write --param name=value, or name=@env:VAR / name=@file:PATH for secrets.',
      );
    }
    const name = arg.slice(0, eq);
    const given = arg.slice(eq + 1);
    if (out.has(name)) throw new InvalidInputError(`--param ${name} is given twice`);
    out.set(name, resolveRef(name, given));
  }
  return out;
}

export function resolveRef(name: string, given: string): RawParam {
  if (given.startsWith('@env:')) {
    const variable = given.slice(5);
    const value = process.env[variable];
    if (value === undefined) {
      throw new InvalidInputError(
        `parameter ${name}: environment variable ${variable} is not set`,
        `Export ${variable} or pass the value another way.`,
      );
    }
    return { value, ref: given };
  }
  if (given.startsWith('@file:')) {
    const path = given.slice(6);
    try {
      return { value: readFileSync(path, 'utf8').replace(/\r?\n$/, ''), ref: given };
    } catch (e) {
      throw new InvalidInputError(
        `parameter ${name}: cannot read ${path}: ${(e as Error).message}`,
      );
    }
  }
  return { value: given };
}

export interface ValidatedParams<P> {
  params: P;
  redactor: Redactor;
  /** The params as they may be recorded: secrets replaced by their reference or a marker. */
  recorded: Record<string, unknown>;
  secretNames: string[];
}

/**
 * Shorter secrets are refused: they are guessed, and redacting one would
 * rewrite every ordinary word that happens to contain it.
 */
export const MIN_SECRET_LENGTH = 8;

export interface ValidateOptions {
  /**
   * `refuse` where runs need approvals: a value on baton's command line is in
   * `ps` for the whole run, so secrets are taken only as `@env:` or `@file:`.
   */
  inlineSecrets?: 'allow' | 'refuse';
}

/** Validate raw params against the schema; the first bad one is named with its rule. */
export function validateParams<S extends z.ZodObject>(
  schema: S,
  raw: Map<string, RawParam>,
  runbook: string,
  options: ValidateOptions = {},
): ValidatedParams<z.output<S>> {
  const shape = schema.shape as Record<string, z.ZodType>;
  const known = Object.keys(shape);
  const redactor = new Redactor();
  const secretNames = secretParamNames(schema);
  for (const name of secretNames) {
    const given = raw.get(name);
    if (!given) continue;
    if (options.inlineSecrets === 'refuse' && !given.ref) {
      throw new InvalidInputError(
        `secret parameter ${name} of runbook ${runbook} is given inline, and runs on this stack need approvals: secrets are taken only by reference`,
        `Pass --param ${name}=@file:PATH (or @env:VAR); a value on the command line is visible in ps to every user of the machine for the whole run.`,
      );
    }
    if (given.value.length < MIN_SECRET_LENGTH) {
      throw new InvalidInputError(
        `secret parameter ${name} of runbook ${runbook} is shorter than ${MIN_SECRET_LENGTH} characters`,
        `Use a secret of at least ${MIN_SECRET_LENGTH} characters: a shorter one is guessed, and cannot be told apart from ordinary output to redact it.`,
      );
    }
    redactor.add(name, given.value);
  }
  const input: Record<string, unknown> = {};
  for (const [name, given] of raw) {
    const field = shape[name];
    if (!field) {
      throw new InvalidInputError(
        `runbook ${runbook} has no parameter ${name}`,
        `Its parameters are: ${known.join(', ') || '(none)'}. See \`baton plan ${runbook} --help\`.`,
      );
    }
    input[name] = coerce(field, given.value);
  }
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const name = issue.path.map(String).join('.') || '(params)';
    const field = shape[String(issue.path[0])];
    const shown =
      field && isSecretParam(field)
        ? ''
        : raw.has(String(issue.path[0]))
          ? ` (got ${JSON.stringify(raw.get(String(issue.path[0]))!.value)})`
          : ' (not given)';
    throw new InvalidInputError(
      `parameter ${name} of runbook ${runbook} is invalid: ${redactor.redact(issue.message)}${shown}`,
      `Pass a valid value with --param ${String(issue.path[0])}=…`,
    );
  }
  for (const [name, value] of Object.entries(parsed.data as Record<string, unknown>)) {
    if (secretNames.includes(name) || allowsControl(shape[name]!)) continue;
    const bad = controlCharacter(value);
    if (bad) {
      throw new InvalidInputError(
        `parameter ${name} of runbook ${runbook} is invalid: it contains ${bad} (got ${JSON.stringify(value)})`,
        `A parameter is one line of text; pass --param ${name}=… without control characters.`,
      );
    }
  }
  const recorded: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(parsed.data as Record<string, unknown>)) {
    recorded[name] = secretNames.includes(name)
      ? (raw.get(name)?.ref ?? (value === undefined ? undefined : `[redacted:${name}]`))
      : value;
  }
  return { params: parsed.data, redactor, recorded, secretNames };
}

/**
 * Allow newlines and other control characters in a parameter (a message body):
 * every other string parameter is refused when it holds one, before anything runs.
 */
export function multiline<T extends z.ZodType>(schema: T): T {
  return schema.meta({ ...(z.globalRegistry.get(schema) ?? {}), multiline: true }) as T;
}

function allowsControl(schema: z.ZodType): boolean {
  let s = schema;
  for (;;) {
    if ((z.globalRegistry.get(s) as { multiline?: unknown } | undefined)?.multiline === true)
      return true;
    if (s instanceof z.ZodOptional || s instanceof z.ZodDefault || s instanceof z.ZodNullable) {
      s = s.unwrap() as z.ZodType;
    } else return false;
  }
}

function controlCharacter(value: unknown): string | undefined {
  const texts = typeof value === 'string' ? [value] : Array.isArray(value) ? value : [];
  for (const t of texts) {
    if (typeof t !== 'string') continue;
    const m = /[\x00-\x08\x0a-\x1f\x7f]/.exec(t);
    if (m) {
      const code = m[0].charCodeAt(0);
      return code === 10
        ? 'a newline'
        : code === 13
          ? 'a carriage return'
          : `the control character 0x${code.toString(16).padStart(2, '0')}`;
    }
  }
  return undefined;
}

/** CLI values are strings; numbers, booleans and lists are read as JSON when the schema wants them. */
function coerce(field: z.ZodType, value: string): unknown {
  if (field.safeParse(value).success) return value;
  const base = unwrap(field);
  if (base instanceof z.ZodNumber) {
    const n = Number(value);
    return value.trim() !== '' && Number.isFinite(n) ? n : value;
  }
  if (base instanceof z.ZodBoolean) {
    if (['true', 'yes', '1'].includes(value)) return true;
    if (['false', 'no', '0'].includes(value)) return false;
    return value;
  }
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

/** Describe params for `--help`: name, type, default, secret. */
export function describeParams(schema: z.ZodObject): string[] {
  return Object.entries(schema.shape as Record<string, z.ZodType>).map(([name, field]) => {
    const parts = [name];
    const optional = field.safeParse(undefined).success;
    const dflt = field instanceof z.ZodDefault ? field.parse(undefined) : undefined;
    if (field.description) parts.push(`— ${field.description}`);
    if (dflt !== undefined && !isSecretParam(field))
      parts.push(`(default ${JSON.stringify(dflt)})`);
    else if (!optional) parts.push('(required)');
    if (isSecretParam(field)) parts.push('[secret: pass as @env:VAR or @file:PATH]');
    return parts.join(' ');
  });
}

/**
 * Raw params rebuilt from recorded ones (a journal, a plan file): plain values
 * as recorded, secrets from their `@env:`/`@file:` reference or given again.
 */
export function rawFromRecorded(
  recorded: Record<string, unknown>,
  secretNames: readonly string[],
  given: Map<string, RawParam>,
  what: string,
  command: string,
): Map<string, RawParam> {
  const raw = new Map<string, RawParam>();
  for (const [name, value] of Object.entries(recorded)) {
    if (value === undefined) continue;
    if (secretNames.includes(name)) {
      const again = given.get(name);
      if (again) raw.set(name, again);
      else if (typeof value === 'string' && value.startsWith('@'))
        raw.set(name, resolveRef(name, value));
      else {
        throw new InvalidInputError(
          `${what} needs the secret parameter ${name} again: secrets are never written down`,
          `Pass --param ${name}=@env:VAR (or @file:PATH) to ${command}.`,
        );
      }
    } else {
      raw.set(name, { value: typeof value === 'string' ? value : JSON.stringify(value) });
    }
  }
  for (const [name, value] of given) {
    if (!raw.has(name) && !secretNames.includes(name)) {
      throw new InvalidInputError(
        `${what} fixes its parameters; ${name} can only be changed by planning again`,
      );
    }
    if (!raw.has(name)) raw.set(name, value);
  }
  return raw;
}
