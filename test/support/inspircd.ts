/**
 * Real InspIRCd 3 servers for tests, on 127.0.0.1 with random ports, linked
 * as one network: the first server is the hub, the others autoconnect to it.
 * Run as nobody (setpriv) when the tests run as root, in the foreground.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IrcClient } from '../../lib/integrations/irc/client.ts';
import { findExecutable } from '../../lib/transports/which.ts';
import { freePort } from './sshd.ts';
import { INSPIRCD_MODULES } from '../../lib/testnet/irc.ts';

export const INSPIRCD_BIN = '/usr/sbin/inspircd';
const NOBODY = 65534;

/** Why real-InspIRCd tests cannot run here, or undefined when they can. */
export function inspircdUnavailable(): string | undefined {
  if (!existsSync(INSPIRCD_BIN)) return `needs ${INSPIRCD_BIN} (Debian package inspircd)`;
  if (process.getuid?.() === 0 && !findExecutable('setpriv')) {
    return 'needs setpriv (Debian package util-linux) to run inspircd as nobody';
  }
  return undefined;
}

export interface ServerSpec {
  /** Short host name (`nebula`); the server is `NAME.baton.test`. */
  host: string;
  /** Whether this server has the U-line for the services' server name. */
  uline: boolean;
  /** Seconds between the server's PINGs to clients; default 120. */
  pingfreq?: number;
}

export interface TestIrcd {
  host: string;
  name: string;
  sid: string;
  clientPort: number;
  linkPort: number;
  dir: string;
  output(): string;
}

export interface TestIrcNetwork {
  servers: TestIrcd[];
  server(host: string): TestIrcd;
  /** The services' server name every U-line names. */
  servicesName: string;
  /** Password of the services' link (on the hub). */
  servicesPassword: string;
  /** Link port of the hub, where services connect. */
  hubLinkPort: number;
  stop(): Promise<void>;
}

const LINK_PASSWORD = 'baton-link-secret';

function config(
  me: TestIrcd,
  all: TestIrcd[],
  spec: ServerSpec,
  servicesName: string,
  servicesPassword: string,
): string {
  const hub = all[0]!;
  const isHub = me === hub;
  const peers = isHub ? all.slice(1) : [hub];
  const link = (name: string, port: number, password: string): string =>
    `<link name="${name}" ipaddr="127.0.0.1" port="${port}" allowmask="127.0.0.1/32" timeout="5s" sendpass="${password}" recvpass="${password}">`;
  return [
    '<config format="xml">',
    `<path configdir="${me.dir}" datadir="${me.dir}" logdir="${me.dir}">`,
    `<server name="${me.name}" description="baton test ircd ${me.host}" id="${me.sid}" network="batontest">`,
    '<admin name="baton" nick="baton" email="admin@baton.test">',
    `<bind address="127.0.0.1" port="${me.clientPort}" type="clients">`,
    `<bind address="127.0.0.1" port="${me.linkPort}" type="servers">`,
    `<connect name="main" allow="*" timeout="20" pingfreq="${spec.pingfreq ?? 120}" hardsendq="1048576" softsendq="65536" recvq="65536" threshold="1000" commandrate="100000" fakelag="no" localmax="1000" globalmax="1000" limit="5000" maxchans="50" resolvehostnames="no" useident="no">`,
    '<dns server="127.0.0.1" timeout="1">',
    `<pid file="${join(me.dir, 'inspircd.pid')}">`,
    '<options prefixquit="Quit: " syntaxhints="no" announcets="yes" hostintopic="yes" pingwarning="15" splitwhois="no" exemptchanops="">',
    '<security hideserver="" userstats="Pu" customversion="" flatlinks="no" hidesplits="no" hideulines="no" hidebans="no" maxtargets="20">',
    '<performance quietbursts="yes" softlimit="1024" somaxconn="128" netbuffersize="10240" clonesonconnect="no">',
    `<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="${join(me.dir, 'ircd.log')}">`,
    ...INSPIRCD_MODULES.map((m) => `<module name="${m}">`),
    ...(spec.uline ? [`<uline server="${servicesName}" silent="yes">`] : []),
    ...peers.map((p) => link(p.name, p.linkPort, LINK_PASSWORD)),
    ...(isHub
      ? [link(servicesName, 0, servicesPassword)]
      : [`<autoconnect period="1s" server="${hub.name}">`]),
    ...['NickServ', 'ChanServ', 'OperServ'].flatMap((service) => [
      `<alias text="${service.toUpperCase()}" replace="SQUERY $requirement :$2-" requires="${service}" uline="yes">`,
      `<alias text="${service.slice(0, 1)}S" replace="SQUERY $requirement :$2-" requires="${service}" uline="yes">`,
    ]),
    '',
  ].join('\n');
}

/**
 * Start one InspIRCd per spec, link them (leaves to the first), and wait
 * until every server sees every other one.
 */
export async function startIrcNetwork(
  specs: ServerSpec[],
  options: { servicesName?: string } = {},
): Promise<TestIrcNetwork> {
  const servicesName = options.servicesName ?? 'services.baton.test';
  const servicesPassword = 'baton-services-secret';
  const root = mkdtempSync(join(tmpdir(), 'baton-ircd-'));
  const asRoot = process.getuid?.() === 0;
  const servers: TestIrcd[] = [];
  for (const [i, spec] of specs.entries()) {
    const dir = join(root, spec.host);
    mkdirSync(dir);
    servers.push({
      host: spec.host,
      name: `${spec.host}.baton.test`,
      sid: `${i + 1}${spec.host.slice(0, 2).toUpperCase()}`,
      clientPort: await freePort(),
      linkPort: await freePort(),
      dir,
      output: () => '',
    });
  }
  const children: ChildProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('close', () => resolve());
            child.kill('SIGTERM');
            setTimeout(() => child.kill('SIGKILL'), 3_000).unref();
          }),
      ),
    );
    rmSync(root, { recursive: true, force: true });
  };
  try {
    for (const [i, server] of servers.entries()) {
      writeFileSync(
        join(server.dir, 'inspircd.conf'),
        config(server, servers, specs[i]!, servicesName, servicesPassword),
      );
    }
    if (asRoot) {
      // inspircd refuses root; nobody must read the config and write its log and pid.
      chmodSync(root, 0o755);
      for (const s of servers) chownSync(s.dir, NOBODY, NOBODY);
    }
    for (const server of servers) {
      const args = ['--config', join(server.dir, 'inspircd.conf'), '--nofork'];
      const child = asRoot
        ? spawn(
            'setpriv',
            [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', INSPIRCD_BIN, ...args],
            {
              stdio: ['ignore', 'pipe', 'pipe'],
            },
          )
        : spawn(INSPIRCD_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      server.output = () => out;
      children.push(child);
    }
    await Promise.all(servers.map((s) => waitForPort(s, children[servers.indexOf(s)]!)));
    await waitForLinks(
      servers,
      servers.map((s) => s.name),
    );
  } catch (e) {
    const detail = servers.map((s) => `--- ${s.host}\n${s.output()}`).join('\n');
    await stop();
    throw new Error(`${(e as Error).message}\n${detail}`);
  }
  return {
    servers,
    server(host) {
      const s = servers.find((x) => x.host === host);
      if (!s) throw new Error(`no test ircd ${host}`);
      return s;
    },
    servicesName,
    servicesPassword,
    hubLinkPort: servers[0]!.linkPort,
    stop,
  };
}

async function waitForPort(
  server: TestIrcd,
  child: ChildProcess,
  timeoutMs = 15_000,
): Promise<void> {
  const { connect } = await import('node:net');
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new Error(`inspircd ${server.host} exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port: server.clientPort });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => {
        s.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(
    `inspircd ${server.host} did not listen on ${server.clientPort} in ${timeoutMs} ms`,
  );
}

/** Wait until LINKS on every server lists every name in `names`. */
export async function waitForLinks(
  servers: TestIrcd[],
  names: string[],
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  await Promise.all(
    servers.map(async (server) => {
      const client = await IrcClient.connect({
        host: '127.0.0.1',
        port: server.clientPort,
        nick: `links${server.sid}`,
        label: server.host,
      });
      try {
        for (;;) {
          const replies = await client.request('LINKS', (m) => m.command === '365', {
            keep: (m) => m.command === '364',
          });
          const seen = replies.filter((m) => m.command === '364').map((m) => m.params[1]);
          const missing = names.filter((n) => !seen.includes(n));
          if (missing.length === 0) return;
          if (Date.now() > deadline) {
            throw new Error(
              `${server.host} does not see ${missing.join(', ')} after ${timeoutMs} ms`,
            );
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      } finally {
        await client.quit();
      }
    }),
  );
}
