#!/usr/bin/env node
// The installed package runs its compiled dist/; a checkout (no build, after
// `npm ci`) runs the TypeScript sources through tsx, so `npx baton` works at once.
import { existsSync } from 'node:fs';

// `baton … | head` closes the pipe early; that is not an error worth a stack trace.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

const compiled = existsSync(new URL('../dist/lib/app/cli.js', import.meta.url));
const [lib, ext] = compiled ? ['../dist/lib/', '.js'] : ['../lib/', '.ts'];
if (!compiled) {
  const { register } = await import('tsx/esm/api');
  register();
}
// Inline --param values leave baton's own entry in ps (Linux shows the title as its argv).
const { withoutParamValues } = await import(`${lib}core/process-title${ext}`);
process.title = withoutParamValues(process.argv).join(' ');
const { main } = await import(`${lib}app/cli${ext}`);
process.exitCode = await main(process.argv.slice(2));
