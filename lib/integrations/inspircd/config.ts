/**
 * Reads InspIRCd 3 configuration as the trust checks need it: `<uline>`,
 * `<link>` and `<include>` tags with their attributes. Not a full parser: it
 * understands the tag syntax and comments, which is all these checks ask.
 */
import { BatonError } from '../../core/errors.ts';

export interface Tag {
  name: string;
  attrs: Record<string, string>;
  /** 1-based line where the tag starts, for messages. */
  line: number;
}

export class InspircdConfigError extends BatonError {
  constructor(file: string, line: number, message: string) {
    super('INVALID_INPUT', `${file} line ${line}: ${message}`, 'Fix the InspIRCd configuration.');
    this.name = 'InspircdConfigError';
  }
}

/** Every tag in a configuration text, in order. */
export function parseTags(text: string, file = 'inspircd.conf'): Tag[] {
  const tags: Tag[] = [];
  let i = 0;
  let line = 1;
  const n = text.length;
  while (i < n) {
    const c = text[i]!;
    if (c === '\n') {
      line++;
      i++;
    } else if (c === '#') {
      while (i < n && text[i] !== '\n') i++;
    } else if (c === '<') {
      const start = line;
      i++;
      let name = '';
      while (i < n && /[A-Za-z0-9_:-]/.test(text[i]!)) name += text[i++]!;
      if (!name) throw new InspircdConfigError(file, start, 'a tag without a name');
      const attrs: Record<string, string> = {};
      for (;;) {
        while (i < n && /\s/.test(text[i]!)) {
          if (text[i] === '\n') line++;
          i++;
        }
        if (i >= n) throw new InspircdConfigError(file, start, `<${name}> is not closed`);
        if (text[i] === '>') {
          i++;
          break;
        }
        if (text[i] === '/' && text[i + 1] === '>') {
          i += 2;
          break;
        }
        let key = '';
        while (i < n && /[A-Za-z0-9_:-]/.test(text[i]!)) key += text[i++]!;
        if (!key || text[i] !== '=' || text[i + 1] !== '"') {
          throw new InspircdConfigError(file, line, `<${name}>: expected key="value"`);
        }
        i += 2;
        let value = '';
        while (i < n && text[i] !== '"') {
          if (text[i] === '\n') line++;
          value += text[i++]!;
        }
        if (i >= n)
          throw new InspircdConfigError(file, start, `<${name}>: unterminated value of ${key}`);
        i++;
        attrs[key.toLowerCase()] = value;
      }
      tags.push({ name: name.toLowerCase(), attrs, line: start });
    } else i++;
  }
  return tags;
}

export interface ServicesTrust {
  /** `<uline server=NAME>` is present. */
  uline: boolean;
  /** `<link name=NAME>` blocks: where services may link from. */
  links: Array<{ ipaddr: string; allowmask: string; line: number; file: string }>;
}

export function servicesTrust(
  files: Array<{ file: string; text: string }>,
  name: string,
): ServicesTrust {
  const wanted = name.toLowerCase();
  const trust: ServicesTrust = { uline: false, links: [] };
  for (const { file, text } of files) {
    for (const tag of parseTags(text, file)) {
      if (tag.name === 'uline' && tag.attrs.server?.toLowerCase() === wanted) trust.uline = true;
      if (tag.name === 'link' && tag.attrs.name?.toLowerCase() === wanted) {
        trust.links.push({
          ipaddr: tag.attrs.ipaddr ?? '',
          allowmask: tag.attrs.allowmask ?? '',
          line: tag.line,
          file,
        });
      }
    }
  }
  return trust;
}

/** Files named by `<include file="...">`, resolved against the including file's directory. */
export function includes(text: string, file: string): string[] {
  const dir = file.includes('/') ? file.slice(0, file.lastIndexOf('/')) : '.';
  return parseTags(text, file)
    .filter((t) => t.name === 'include' && t.attrs.file)
    .map((t) => (t.attrs.file!.startsWith('/') ? t.attrs.file! : `${dir}/${t.attrs.file}`));
}
