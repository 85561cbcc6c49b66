/**
 * Runs bin/baton.js on a real pseudo-terminal, through util-linux `script`,
 * sized with stty: what an operator at a terminal sees, escape sequences and
 * prompts included.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { quote } from '../../lib/core/shell.ts';
import { ROOT } from '../helpers.ts';

const BATON = join(ROOT, 'bin', 'baton.js');

export interface TerminalRun {
  status: number | null;
  /** Everything the terminal received: stdout, stderr and the echo of what was typed. */
  screen: string;
  /** The prompts baton asked, in order. */
  asked: string[];
}

export interface TerminalOptions {
  cwd: string;
  env?: Record<string, string | undefined>;
  rows?: number;
  columns?: number;
  /** Typed in, one line for each prompt that matches `prompt`, in order. */
  answers?: string[];
}

const PROMPT = /(Type the runbook name to proceed: |Proceed\? \[y\/N\] )/g;

export function onTerminal(args: string[], opts: TerminalOptions): Promise<TerminalRun> {
  const command = [
    `stty rows ${opts.rows ?? 24} cols ${opts.columns ?? 100}`,
    `exec ${[process.execPath, BATON, ...args].map(quote).join(' ')}`,
  ].join('; ');
  const child = spawn('script', ['-qec', command, '/dev/null'], {
    cwd: opts.cwd,
    env: { ...process.env, SHELL: '/bin/sh', ...opts.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const answers = [...(opts.answers ?? [])];
  const asked: string[] = [];
  let screen = '';
  child.stdout.on('data', (chunk: Buffer) => {
    screen += chunk.toString('utf8');
    const prompts = [...screen.matchAll(PROMPT)].map((m) => m[1]!);
    while (asked.length < prompts.length) {
      asked.push(prompts[asked.length]!);
      child.stdin.write((answers.shift() ?? '') + '\n');
    }
  });
  child.stderr.on('data', (chunk: Buffer) => (screen += chunk.toString('utf8')));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (status) => {
      child.stdin.end();
      resolve({ status, screen, asked });
    });
  });
}
