/**
 * The controller's way into the testnet. The relay runs inside the switch
 * namespace (where the bridge has 192.0.2.1) and listens on a unix socket in
 * the state directory; the controller, which has no route into the testnet,
 * asks it for one TCP connection at a time: `CONNECT 192.0.2.11 22\n`, answered
 * `OK\n` (then raw bytes) or `ERR CODE message\n`. Only 192.0.2.0/24 is served.
 */
import { rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { inTestnetRange } from './topology.ts';

const CONNECT_TIMEOUT_MS = 5_000;

/** An Error whose message starts with the errno code, so the ssh layer can classify it. */
export class RelayError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(`${code} ${message}`);
    this.name = 'RelayError';
    this.code = code;
  }
}

/** Open a TCP connection to `address:port` inside the testnet through the relay at `socketPath`. */
export function dialRelay(socketPath: string, address: string, port: number): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const sock = connect({ path: socketPath });
    let buffered = Buffer.alloc(0);
    const timer = setTimeout(
      () =>
        fail(
          new RelayError('ETIMEDOUT', `no answer from the testnet relay for ${address}:${port}`),
        ),
      CONNECT_TIMEOUT_MS + 2_000,
    );
    const cleanup = (): void => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('error', onError);
      sock.off('close', onClose);
    };
    const fail = (e: Error): void => {
      cleanup();
      sock.destroy();
      reject(e);
    };
    const onError = (e: NodeJS.ErrnoException): void =>
      fail(
        new RelayError(
          e.code ?? 'ECONNREFUSED',
          `the testnet relay at ${socketPath} is not answering (${e.message}); is the testnet up?`,
        ),
      );
    const onClose = (): void =>
      fail(
        new RelayError(
          'ECONNRESET',
          `the testnet relay closed the connection to ${address}:${port}`,
        ),
      );
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const newline = buffered.indexOf(10);
      if (newline < 0) {
        if (buffered.length > 512)
          fail(new RelayError('EPROTO', 'garbled answer from the testnet relay'));
        return;
      }
      const line = buffered.subarray(0, newline).toString('utf8');
      const rest = buffered.subarray(newline + 1);
      if (line === 'OK') {
        cleanup();
        sock.pause();
        if (rest.length > 0) sock.unshift(rest);
        resolve(sock);
        return;
      }
      const [, code = 'ECONNREFUSED', message = line] = /^ERR (\S+) ?(.*)$/.exec(line) ?? [];
      fail(new RelayError(code, message));
    };
    sock.on('data', onData).on('error', onError).on('close', onClose);
    sock.write(`CONNECT ${address} ${port}\n`);
  });
}

/** Serve relay requests on `socketPath` until SIGTERM. Runs inside the switch namespace. */
export function serveRelay(socketPath: string): Promise<void> {
  rmSync(socketPath, { force: true });
  const server = createServer({ pauseOnConnect: false }, (client) => handle(client));
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      const stop = (): void => {
        server.close();
        rmSync(socketPath, { force: true });
        resolve();
        process.exit(0);
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
      console.error(`relay listening on ${socketPath}`);
    });
  });
}

function handle(client: Socket): void {
  let buffered = Buffer.alloc(0);
  client.on('error', () => client.destroy());
  const onData = (chunk: Buffer): void => {
    buffered = Buffer.concat([buffered, chunk]);
    const newline = buffered.indexOf(10);
    if (newline < 0) {
      if (buffered.length > 256) client.destroy();
      return;
    }
    client.off('data', onData);
    client.pause();
    const line = buffered.subarray(0, newline).toString('utf8');
    const early = buffered.subarray(newline + 1);
    const m = /^CONNECT (\S+) (\d{1,5})$/.exec(line);
    const port = Number(m?.[2]);
    if (!m || !inTestnetRange(m[1]!) || port < 1 || port > 65535) {
      client.end('ERR EINVAL only 192.0.2.0/24 is reachable through the testnet relay\n');
      return;
    }
    const upstream = connect({ host: m[1]!, port, timeout: CONNECT_TIMEOUT_MS });
    const onTimeout = (): void => {
      upstream.destroy();
      client.end(`ERR ETIMEDOUT connect ${m[1]}:${port} timed out\n`);
    };
    const onConnectError = (e: NodeJS.ErrnoException): void => {
      client.end(`ERR ${e.code ?? 'ECONNREFUSED'} connect ${m[1]}:${port}: ${e.message}\n`);
    };
    upstream.once('timeout', onTimeout);
    upstream.once('error', onConnectError);
    upstream.once('connect', () => {
      upstream.off('timeout', onTimeout);
      upstream.off('error', onConnectError);
      upstream.setTimeout(0);
      upstream.setNoDelay(true);
      upstream.on('error', () => client.destroy());
      upstream.on('close', () => client.destroy());
      client.on('close', () => upstream.destroy());
      client.write('OK\n');
      if (early.length > 0) upstream.write(early);
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
  };
  client.on('data', onData);
}
