/**
 * Entry point of the testnet's helper processes, started detached by the
 * testnet: `daemon.ts relay SOCKET` and
 * `daemon.ts delay-line TAP_A TAP_B DELAY_MS LOSS_PERCENT RATE_KBIT`.
 */
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { runDelayLine } from './delayline.ts';
import { serveRelay } from './relay.ts';

/**
 * argv to start a helper: node, this file and its arguments; from the sources,
 * with the TypeScript loader (the compiled daemon.js needs none).
 */
export function daemonArgv(args: readonly string[]): string[] {
  const self = fileURLToPath(import.meta.url);
  if (self.endsWith('.js')) return [process.execPath, self, ...args];
  const loader = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return [process.execPath, '--import', loader, self, ...args];
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'relay' && rest[0]) return serveRelay(rest[0]);
  if (command === 'delay-line' && rest.length === 5) {
    const [a, b, delayMs, lossPercent, rateKbit] = rest as [string, string, string, string, string];
    return runDelayLine({
      a,
      b,
      delayMs: Number(delayMs),
      lossPercent: Number(lossPercent),
      rateKbit: Number(rateKbit),
    });
  }
  console.error(
    'usage: daemon.ts relay SOCKET | delay-line TAP_A TAP_B DELAY_MS LOSS_PERCENT RATE_KBIT',
  );
  process.exit(2);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
