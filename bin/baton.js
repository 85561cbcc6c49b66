#!/usr/bin/env node
// Runs the TypeScript sources directly, so `npx baton` works right after `npm ci`.
import { register } from 'tsx/esm/api';

// `baton … | head` closes the pipe early; that is not an error worth a stack trace.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

register();
// Inline --param values leave baton's own entry in ps (Linux shows the title as its argv).
const { withoutParamValues } = await import('../lib/core/params.ts');
process.title = withoutParamValues(process.argv).join(' ');
const { main } = await import('../lib/app/cli.ts');
process.exitCode = await main(process.argv.slice(2));
