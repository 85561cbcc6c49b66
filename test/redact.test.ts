import { describe, expect, it } from 'vitest';
import { clipHead, clipTail, Redactor } from '../lib/core/redact.ts';
import { quote, sh } from '../lib/core/shell.ts';

/** Quotes, dollar signs, backslashes and a newline, with plain chunks that would betray any leak. */
const HOSTILE = `Xq7'"$HOME\\n$(id)\`w\`\nZk9' \\'`;
const CHUNKS = ['Xq7', 'HOME', 'Zk9'];

function traces(text: string): string[] {
  return CHUNKS.filter((c) => text.includes(c));
}

function hostile(): Redactor {
  const r = new Redactor();
  r.add('pw', HOSTILE);
  return r;
}

/** Every marker is whole: no `[redacted` without its closing bracket, no stray tail of one. */
function markersWhole(text: string): boolean {
  const opened = text.split('[redacted:').length - 1;
  const closed = text.match(/\[redacted:[a-z]+\]/g)?.length ?? 0;
  return opened === closed && !/^[a-z]*:?[a-z]*\]/.test(text.replace(/^…/, ''));
}

describe('Redactor', () => {
  it('replaces every occurrence of a secret, naming the parameter', () => {
    const r = new Redactor();
    r.add('token', 's3cr3t');
    expect(r.redact('a s3cr3t b s3cr3t')).toBe('a [redacted:token] b [redacted:token]');
  });

  it('replaces the longest secret first when one contains another', () => {
    const r = new Redactor();
    r.add('short', 'abc');
    r.add('long', 'abcdef');
    expect(r.redact('xabcdefx abc')).toBe('x[redacted:long]x [redacted:short]');
  });

  it('walks nested values', () => {
    const r = new Redactor();
    r.add('pw', 'hunter2');
    expect(r.redactDeep({ a: ['hunter2'], b: { c: 'x hunter2' }, n: 1 })).toEqual({
      a: ['[redacted:pw]'],
      b: { c: 'x [redacted:pw]' },
      n: 1,
    });
  });

  it('finds a secret of quotes, dollars, backslashes and a newline in every form baton writes it', () => {
    const r = hostile();
    const command = sh`printf %s ${HOSTILE} > /etc/app.conf`.text;
    const forms = {
      raw: `password: ${HOSTILE}`,
      quoted: quote(HOSTILE),
      command,
      'command quoted again for sh -c': sh`sh -c ${command}`.text,
      json: JSON.stringify({ stderr: `bad password ${HOSTILE}` }),
      'command as json': JSON.stringify({ command }),
      'command quoted again, as json': JSON.stringify(sh`sh -c ${command}`.text),
      'json inside json': JSON.stringify(JSON.stringify({ value: HOSTILE })),
      'json, quoted': quote(JSON.stringify(HOSTILE)),
    };
    for (const [form, text] of Object.entries(forms)) {
      expect(traces(text), form).toEqual(CHUNKS);
      expect(r.holds(text), form).toBe(true);
      const out = r.redact(text);
      expect(traces(out), form).toEqual([]);
      expect(out, form).toContain('[redacted:pw]');
    }
    expect(r.redact(command)).toBe("printf %s '[redacted:pw]' > /etc/app.conf");
  });

  it('holds nothing in a text without the secret', () => {
    expect(hostile().holds('printf %s "$HOME" Xq7')).toBe(false);
    expect(new Redactor().holds(HOSTILE)).toBe(false);
  });

  it('redacts an error in place: message, stack and hint', () => {
    const error = Object.assign(new Error(`cannot log in with ${quote(HOSTILE)}`), {
      hint: `try ${HOSTILE} again`,
    });
    expect(hostile().redactError(error)).toBe(error);
    expect(traces(`${error.message} ${error.stack} ${error.hint}`)).toEqual([]);
    expect(error.message).toBe("cannot log in with '[redacted:pw]'");
  });

  it('redacts the error it wraps too, which BATON_DEBUG=1 prints', () => {
    const cause = new Error(`cannot log in with ${quote(HOSTILE)}`);
    const error = new Error('the check threw', { cause });
    hostile().redactError(error);
    expect(traces(`${cause.message} ${cause.stack}`)).toEqual([]);
  });

  it('never rescans its own markers, so redacting twice changes nothing more', () => {
    const r = new Redactor();
    r.add('pw', 'correct-horse');
    r.add('other', 'redacted');
    const once = r.redact('correct-horse redacted');
    expect(once).toBe('[redacted:pw] [redacted:other]');
    expect(r.redact(once)).toBe(once);
    expect(r.holds(once)).toBe(false);
  });

  it('drops the beginning of a secret left at the end of a text cut before redaction', () => {
    const r = hostile();
    const whole = `first ${HOSTILE} then `;
    for (let cut = whole.length; cut <= whole.length + HOSTILE.length; cut++) {
      const text = (whole + HOSTILE).slice(0, cut);
      const out = r.redactCut(text);
      expect(traces(out), `cut at ${cut}`).toEqual([]);
      expect(out.startsWith('first [redacted:pw] then'), `cut at ${cut}`).toBe(true);
    }
    expect(r.redactCut('nothing secret')).toBe('nothing secret');
  });
});

describe('clipping a redacted text', () => {
  const r = hostile();
  const text = `start ${HOSTILE} middle ${'x'.repeat(40)} ${HOSTILE} end`;
  const redacted = r.redact(text);

  it('never leaves part of a secret or of a marker, wherever the cut falls', () => {
    for (let keep = 0; keep <= redacted.length; keep++) {
      for (const out of [clipHead(redacted, keep), clipTail(redacted, keep)]) {
        expect(traces(out), `keep ${keep}`).toEqual([]);
        expect(markersWhole(out), `keep ${keep}: ${out}`).toBe(true);
        expect(out.length).toBeLessThanOrEqual(keep + 1);
      }
    }
  });

  it('keeps the head or the tail, and says it cut', () => {
    expect(clipHead('abcdef', 3, '...')).toBe('abc...');
    expect(clipTail('abcdef', 3)).toBe('…def');
    expect(clipHead('abc', 3)).toBe('abc');
    expect(clipHead('ab [redacted:pw] cd', 6)).toBe('ab …');
    expect(clipTail('ab [redacted:pw] cd', 6)).toBe('… cd');
  });
});
