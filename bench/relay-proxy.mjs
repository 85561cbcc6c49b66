#!/usr/bin/env node
// OpenSSH ProxyCommand through the testnet relay:
//   ProxyCommand node bench/relay-proxy.mjs SOCKET %h %p
// Asks the relay (a unix socket) for `CONNECT addr port`, waits for `OK`, then
// copies stdin to the connection and the connection to stdout. Only
// 192.0.2.0/24 is asked for; the relay refuses anything else too.
import { connect } from 'node:net';

const [socketPath, host, port] = process.argv.slice(2);
const fail = (message) => {
  process.stderr.write(`relay-proxy: ${message}\n`);
  process.exit(255);
};
if (!socketPath || !host || !port) fail('usage: relay-proxy.mjs SOCKET HOST PORT');
const m = /^192\.0\.2\.(\d{1,3})$/.exec(host);
if (!m || Number(m[1]) > 255) fail(`${host} is not a testnet address`);
if (!/^\d{1,5}$/.test(port)) fail(`bad port ${port}`);

const sock = connect({ path: socketPath });
const timer = setTimeout(() => fail('no answer from the relay'), 10_000);
let buffered = Buffer.alloc(0);
const onData = (chunk) => {
  buffered = Buffer.concat([buffered, chunk]);
  const nl = buffered.indexOf(10);
  if (nl < 0) {
    if (buffered.length > 512) fail('garbled answer from the relay');
    return;
  }
  const line = buffered.subarray(0, nl).toString('utf8');
  if (line !== 'OK') fail(`relay: ${line}`);
  clearTimeout(timer);
  sock.off('data', onData);
  const rest = buffered.subarray(nl + 1);
  if (rest.length > 0) process.stdout.write(rest);
  sock.setNoDelay?.(true);
  sock.pipe(process.stdout);
  process.stdin.pipe(sock);
  sock.on('close', () => process.exit(0));
  process.stdin.on('end', () => sock.end());
};
sock.on('data', onData);
sock.on('error', (e) => fail(e.message));
sock.write(`CONNECT ${host} ${port}\n`);
