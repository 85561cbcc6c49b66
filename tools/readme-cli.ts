/**
 * Renders the CLI block of README.md from the command definitions in
 * lib/app/cli.ts (`npm run readme:cli`). test/usage.test.ts fails while the
 * README's block differs from what this writes.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { buildProgram } from '../lib/app/cli.ts';
import type { Io } from '../lib/app/io.ts';
import { batonFile } from '../lib/core/package-root.ts';
import { renderUsage, withUsage } from '../lib/app/usage.ts';

const silent: Io = {
  out: () => {},
  err: () => {},
  stdoutIsTTY: false,
  stdinIsTTY: false,
  ask: async () => '',
};

const file = batonFile('README.md');
const before = readFileSync(file, 'utf8');
const after = withUsage(before, renderUsage(buildProgram(silent)));
if (after === before) console.log('README.md: the CLI block is up to date');
else {
  writeFileSync(file, after);
  console.log('README.md: the CLI block was rendered again from lib/app/cli.ts');
}
