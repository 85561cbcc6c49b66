import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { ExecOptions } from '../lib/core/exec.ts';
import type { Host } from '../lib/core/inventory.ts';
import { localTransport } from '../lib/transports/local.ts';
import { Redactor } from '../lib/core/redact.ts';
import { sh } from '../lib/core/shell.ts';
import { everyCommandLine } from './support/argv.ts';

const SECRET = `Lq4'"$HOME\\n$(id)\`w\`\nMv8' \\'`;
const CHUNKS = ['Lq4', 'Mv8'];
const traces = (text: string): string[] => CHUNKS.filter((c) => text.includes(c));
const host: Host = { name: 'here', roles: [], address: 'localhost', connection: 'local' };

function secrets(): Redactor {
  const r = new Redactor();
  r.add('pw', SECRET);
  return r;
}

/** Run `command` until it prints `started`, and take every command line on the machine then. */
async function whileRunning(
  command: string,
  options: ExecOptions,
): Promise<{ listing: string; stdout: string; shown: string }> {
  let listing = '';
  let printed = '';
  const result = await localTransport().exec(host, command, {
    ...options,
    onStdout: (chunk) => {
      printed += chunk.toString();
      if (!listing && printed.includes('started')) listing = everyCommandLine();
    },
  });
  expect(result.exitCode).toBe(0);
  expect(listing, 'the command never said it started').not.toBe('');
  return { listing, stdout: result.stdout, shown: result.command };
}

describe('localTransport', () => {
  it('keeps a command holding a secret out of every argv while it runs, and still runs it', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'baton-local-')), 'out');
    const command = sh`printf '%s' ${SECRET} > ${file}; echo started; sleep 1; cat`.text;
    const seen = await whileRunning(command, { secrets: secrets(), input: 'stdin too\n' });
    expect(seen.listing).toContain('__baton_n');
    expect(traces(seen.listing)).toEqual([]);
    expect(seen.stdout).toBe('started\nstdin too\n');
    expect(seen.shown).toContain("'[redacted:pw]'");
    expect(readFileSync(file, 'utf8')).toBe(SECRET);
  });

  it('shows the same command in ps when it is not told the secrets: the check above can see', async () => {
    const command = sh`: ${SECRET}; echo started; sleep 1; :`.text;
    expect(traces((await whileRunning(command, {})).listing)).toEqual(CHUNKS);
  });

  it('feeds a streamed input after the command that holds the secret', async () => {
    const command = sh`echo started; sleep 1; cat; printf '%s' ${SECRET} | wc -c`.text;
    const input = Readable.from([Buffer.from('one '), Buffer.from('two\n')]);
    const seen = await whileRunning(command, { secrets: secrets(), input });
    expect(traces(seen.listing)).toEqual([]);
    expect(seen.stdout).toBe(`started\none two\n${Buffer.byteLength(SECRET)}\n`);
  });

  it('streams into and out of commands holding a secret', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-local-'));
    const result = await localTransport().stream!(
      { host, command: sh`printf '%s' ${SECRET}`.text },
      {
        host,
        command: sh`cat > ${join(dir, 'got')}; printf '%s' ${SECRET} > ${join(dir, 'want')}`.text,
      },
      { secrets: secrets() },
    );
    expect([result.from.exitCode, result.to.exitCode]).toEqual([0, 0]);
    expect(readFileSync(join(dir, 'got'), 'utf8')).toBe(SECRET);
    expect(readFileSync(join(dir, 'want'), 'utf8')).toBe(SECRET);
    expect(traces(result.from.command + result.to.command)).toEqual([]);
  });
});

describe('a command past its timeout', () => {
  it('is killed with every process it started before the result comes back', async () => {
    const result = await localTransport().exec(
      host,
      'sleep 3176 & (sleep 3177; echo late) & setsid sleep 3178 & wait',
      { timeoutMs: 400 },
    );
    expect(result.exitCode).toBeNull();
    expect(result.stderr).toContain('killed after 400 ms; every process it started is gone');
    expect(everyCommandLine()).not.toMatch(/sleep 317[678]/);
  });
});
