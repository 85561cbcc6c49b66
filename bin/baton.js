#!/usr/bin/env node
// Runs the TypeScript sources directly, so `npx baton` works right after `npm ci`.
import { register } from 'tsx/esm/api';

// `baton … | head` closes the pipe early; that is not an error worth a stack trace.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

register();
const { main } = await import('../lib/cli.ts');
process.exitCode = await main(process.argv.slice(2));
