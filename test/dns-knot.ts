/** A real Knot DNS server for the DNS tests, on 127.0.0.1 and a free port. */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findExecutable } from '../lib/transports/which.ts';

export const knotTools = ['knotd', 'knsupdate', 'dig'] as const;

/** Why the Knot tests cannot run here, or undefined when they can. */
export function knotMissing(): string | undefined {
  const missing = knotTools.filter((t) => !findExecutable(t));
  return missing.length
    ? `${missing.join(', ')} not installed (apt-get install knot knot-dnsutils dnsutils; see debian-packages.txt)`
    : undefined;
}

export interface KnotServer {
  address: string;
  port: number;
  zone: string;
  key: { name: string; algorithm: string; secret: string };
  dir: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

async function answers(port: number, zone: string): Promise<boolean> {
  return new Promise((resolve) => {
    const p = spawn('dig', [
      '+norec',
      '+short',
      '+time=1',
      '+tries=1',
      '-p',
      String(port),
      '@127.0.0.1',
      zone,
      'SOA',
    ]);
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('close', (code) => resolve(code === 0 && out.trim().length > 0));
    p.on('error', () => resolve(false));
  });
}

/** Start knotd with `zoneText` for `zone` and a TSIG key allowed to update it. */
export async function startKnot(zone: string, zoneText: string): Promise<KnotServer> {
  const dir = mkdtempSync(join(tmpdir(), 'baton-knot-'));
  const key = {
    name: 'baton-test',
    algorithm: 'hmac-sha256',
    secret: randomBytes(32).toString('base64'),
  };
  writeFileSync(join(dir, `${zone}.zone`), zoneText);
  mkdirSync(join(dir, 'db'));
  let lastError = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    writeFileSync(
      join(dir, 'knot.conf'),
      [
        'server:',
        `    rundir: "${dir}"`,
        `    listen: 127.0.0.1@${port}`,
        'database:',
        `    storage: "${dir}/db"`,
        'log:',
        '  - target: stderr',
        '    any: warning',
        'key:',
        `  - id: ${key.name}`,
        `    algorithm: ${key.algorithm}`,
        `    secret: ${key.secret}`,
        'acl:',
        '  - id: update',
        `    key: ${key.name}`,
        '    action: update',
        'zone:',
        `  - domain: ${zone}`,
        `    storage: "${dir}"`,
        `    file: "${zone}.zone"`,
        '    acl: update',
        '    zonefile-sync: -1',
        '',
      ].join('\n'),
    );
    const child: ChildProcess = spawn(findExecutable('knotd')!, ['-c', join(dir, 'knot.conf')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const started = Date.now();
    while (Date.now() - started < 5000 && child.exitCode === null) {
      if (await answers(port, zone)) {
        return {
          address: '127.0.0.1',
          port,
          zone,
          key,
          dir,
          async stop() {
            if (child.exitCode === null) child.kill('SIGTERM');
            await exited;
            rmSync(dir, { recursive: true, force: true });
          },
        };
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited;
    lastError = stderr.trim();
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`knotd did not start: ${lastError}`);
}

export function zoneFile(zone: string, records: string[]): string {
  return [
    `$ORIGIN ${zone}.`,
    '$TTL 3600',
    '@ SOA ns1 hostmaster 1 3600 900 604800 300',
    '@ NS ns1',
    'ns1 A 127.0.0.1',
    ...records,
    '',
  ].join('\n');
}
