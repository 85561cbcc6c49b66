/**
 * A userspace stand-in for netem, for kernels built without sch_netem: frames
 * read from one macvtap are written to the other after a fixed delay, with
 * optional random loss and a rate limit, in both directions. Runs as its own
 * process (see daemon.ts); the slow-link fault wires the taps around a host's
 * link and kills the process on heal.
 */
import { createReadStream, openSync, writeSync } from 'node:fs';

export interface DelayLineOptions {
  /** Character devices of the two macvtaps, e.g. /dev/tap41234. */
  a: string;
  b: string;
  delayMs: number;
  lossPercent: number;
  /** 0 for no rate limit. */
  rateKbit: number;
}

interface Pending {
  due: number;
  frame: Buffer;
}

/** Frames queued for longer than this are dropped, like a full interface queue. */
const MAX_QUEUE_MS = 2_000;

export function runDelayLine(options: DelayLineOptions): Promise<void> {
  const fdA = openSync(options.a, 'r+');
  const fdB = openSync(options.b, 'r+');
  return new Promise<void>((resolve) => {
    // Threadpool reads blocked on a tap never return, and a normal exit
    // waits for them: leave at once instead.
    const stop = (): void => {
      resolve();
      process.kill(process.pid, 'SIGKILL');
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    direction(fdA, fdB, options, stop);
    direction(fdB, fdA, options, stop);
  });
}

function direction(from: number, to: number, o: DelayLineOptions, stop: () => void): void {
  const queue: Pending[] = [];
  let timer: NodeJS.Timeout | undefined;
  let linkFreeAt = 0;
  const flush = (): void => {
    timer = undefined;
    const now = performance.now();
    while (queue.length > 0 && queue[0]!.due <= now + 0.5) {
      const { frame } = queue.shift()!;
      try {
        writeSync(to, frame);
      } catch {
        // A frame the tap refuses is a lost frame, as on a real link.
      }
    }
    schedule();
  };
  const schedule = (): void => {
    if (timer || queue.length === 0) return;
    timer = setTimeout(flush, Math.max(0, queue[0]!.due - performance.now()));
  };
  const reader = createReadStream('', { fd: from, autoClose: false, highWaterMark: 70_000 });
  reader.on('data', (chunk) => {
    if (o.lossPercent > 0 && Math.random() * 100 < o.lossPercent) return;
    const now = performance.now();
    let sent = now;
    if (o.rateKbit > 0) {
      linkFreeAt = Math.max(now, linkFreeAt) + (chunk.length * 8) / o.rateKbit;
      if (linkFreeAt - now > MAX_QUEUE_MS) {
        linkFreeAt -= (chunk.length * 8) / o.rateKbit;
        return;
      }
      sent = linkFreeAt;
    }
    queue.push({ due: sent + o.delayMs, frame: Buffer.from(chunk as Buffer) });
    schedule();
  });
  reader.on('error', stop);
  reader.on('end', stop);
}
