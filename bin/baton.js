#!/usr/bin/env node
// Runs the TypeScript sources directly, so `npx baton` works right after `npm ci`.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../lib/cli.ts');
process.exitCode = await main(process.argv.slice(2));
