/**
 * Real Atheme services for tests: a config in a temp dir, a data dir holding
 * services.db, the daemon in the foreground (`-n`). It binds nothing itself
 * (misc/httpd and transport/xmlrpc are never loaded) and its uplink is
 * always on 127.0.0.1.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ATHEME_BIN = '/usr/bin/atheme-services';

/** Why real-Atheme tests cannot run here, or undefined when they can. */
export function athemeUnavailable(): string | undefined {
  if (!existsSync(ATHEME_BIN)) return `needs ${ATHEME_BIN} (Debian package atheme-services)`;
  return undefined;
}

export interface AthemeConfigOptions {
  /** The services' server name, e.g. `services.baton.test`. */
  serverName: string;
  /** The ircd services link to; only 127.0.0.1. */
  uplink: { name: string; port: number; password: string };
  numeric?: string;
  /** Seconds between reconnection attempts. */
  recontime?: number;
  /** More modules, e.g. `hostserv/request`. */
  modules?: string[];
  /** Extra config blocks appended verbatim. */
  extra?: string;
}

const CORE_MODULES = [
  'protocol/inspircd',
  'backend/opensex',
  'crypto/pbkdf2v2',
  'nickserv/main',
  'nickserv/identify',
  'nickserv/register',
  'nickserv/info',
  'chanserv/main',
  'chanserv/register',
  'chanserv/topic',
  'chanserv/flags',
  'chanserv/set_core',
  'chanserv/set_keeptopic',
  'operserv/main',
  'operserv/update',
  'operserv/readonly',
];

const FORBIDDEN = ['misc/httpd', 'transport/xmlrpc', 'transport/jsonrpc'];

export function athemeConfig(options: AthemeConfigOptions): string {
  const modules = [...CORE_MODULES, ...(options.modules ?? [])];
  for (const m of modules) {
    if (FORBIDDEN.includes(m)) throw new Error(`${m} listens on the network; tests never load it`);
  }
  const host = options.serverName;
  const service = (block: string, nick: string, real: string): string =>
    `${block} { nick = "${nick}"; user = "${nick}"; host = "${host}"; real = "${real}"; };`;
  return [
    ...modules.map((m) => `loadmodule "modules/${m}";`),
    `serverinfo {
  name = "${host}";
  desc = "baton test services";
  numeric = "${options.numeric ?? '00A'}";
  recontime = ${options.recontime ?? 5};
  netname = "batontest";
  hidehostsuffix = "users.baton.test";
  adminname = "baton";
  adminemail = "admin@baton.test";
  registeremail = "noreply@baton.test";
  mta = "/bin/false";
  loglevel = { error; info; admin; network; wallops; };
  maxlogins = 5;
  maxusers = 5;
  mdlimit = 30;
  emaillimit = 10;
  emailtime = 300;
  auth = none;
  casemapping = rfc1459;
};`,
    `uplink "${options.uplink.name}" {
  host = "127.0.0.1";
  password = "${options.uplink.password}";
  port = ${options.uplink.port};
};`,
    service('nickserv', 'NickServ', 'Nickname Services'),
    service('chanserv', 'ChanServ', 'Channel Services'),
    service('operserv', 'OperServ', 'Operator Services'),
    service('hostserv', 'HostServ', 'Host Services'),
    service('groupserv', 'GroupServ', 'Group Services'),
    `general { commit_interval = 5; flood_msgs = 0; ratelimit_uses = 0; ratelimit_period = 0; };`,
    options.extra ?? '',
  ].join('\n');
}

export interface AthemeRun {
  dir: string;
  /** DATADIR/services.db: the path Atheme prints in its messages. */
  dbPath: string;
  readonly pid: number;
  /** Everything Atheme printed so far, timestamps removed. */
  output(): string[];
  /** Resolves with the first output line matching `pattern`; rejects if Atheme exits first. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves with the exit code (or signal name) once Atheme has exited. */
  exited: Promise<number | string>;
  /** SIGTERM: Atheme saves services.db, then exits. Returns the saved file's text. */
  stop(): Promise<string>;
  /** SIGKILL without a save, for cleanup. */
  kill(): void;
}

const TIMESTAMP = /^\[[^\]]*\] /;

/** Start Atheme on `db` (text of services.db, or undefined for none) with `config`. */
export async function startAtheme(
  config: string,
  db: string | Uint8Array | undefined,
): Promise<AthemeRun> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-atheme-'));
  const dataDir = join(dir, 'data');
  await mkdir(dataDir);
  const dbPath = join(dataDir, 'services.db');
  if (db !== undefined) await writeFile(dbPath, db);
  await writeFile(join(dir, 'atheme.conf'), config);
  const child: ChildProcess = spawn(
    ATHEME_BIN,
    [
      '-n',
      '-c',
      join(dir, 'atheme.conf'),
      '-D',
      dataDir,
      '-l',
      join(dir, 'atheme.log'),
      '-p',
      join(dir, 'atheme.pid'),
    ],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  let partial = '';
  const onData = (chunk: Buffer): void => {
    partial += chunk.toString('utf8');
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) lines.push(line.replace(TIMESTAMP, ''));
    for (const wake of waiters) wake();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  let done = false;
  const exited = new Promise<number | string>((resolve) => {
    // 'close', not 'exit': the last lines may still be in the pipes at 'exit'.
    child.once('close', (code, signal) => {
      done = true;
      if (partial) lines.push(partial.replace(TIMESTAMP, ''));
      for (const wake of waiters) wake();
      resolve(code ?? signal ?? 'unknown');
    });
  });
  const run: AthemeRun = {
    dir,
    dbPath,
    get pid() {
      return child.pid ?? -1;
    },
    output: () => [...lines],
    waitFor(pattern, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const hit = lines.find((l) => pattern.test(l));
          if (hit !== undefined) finish(() => resolve(hit));
          else if (done)
            finish(() =>
              reject(new Error(`atheme exited before printing ${pattern}:\n${lines.join('\n')}`)),
            );
        };
        const timer = setTimeout(
          () =>
            finish(() =>
              reject(
                new Error(
                  `atheme did not print ${pattern} in ${timeoutMs} ms:\n${lines.join('\n')}`,
                ),
              ),
            ),
          timeoutMs,
        );
        const finish = (then: () => void): void => {
          clearTimeout(timer);
          waiters.delete(check);
          then();
        };
        waiters.add(check);
        check();
      });
    },
    exited,
    async stop() {
      if (!done) child.kill('SIGTERM');
      await exited;
      return readFile(dbPath, 'utf8');
    },
    kill() {
      if (!done) child.kill('SIGKILL');
    },
  };
  return run;
}

/** Remove a run's directory once it has exited. */
export async function cleanupAtheme(run: AthemeRun | undefined): Promise<void> {
  if (!run) return;
  run.kill();
  await run.exited;
  await rm(run.dir, { recursive: true, force: true });
}

/**
 * Let Atheme load `db` and save it back (SIGTERM saves). Returns the saved
 * file, or the lines Atheme printed when it refused the file.
 */
export async function loadAndSave(
  config: string,
  db: string | Uint8Array,
): Promise<
  | { loaded: true; saved: string; output: string[]; dbPath: string }
  | { loaded: false; exitCode: number | string; output: string[]; dbPath: string }
> {
  const run = await startAtheme(config, db);
  try {
    // The database is read before the uplink is tried: this line means it loaded.
    const outcome = await Promise.race([
      run.waitFor(/uplink_connect\(\): connecting/).then(() => 'loaded' as const),
      run.exited.then(() => 'exited' as const),
    ]).catch(() => 'exited' as const);
    if (outcome === 'exited') {
      return {
        loaded: false,
        exitCode: await run.exited,
        output: run.output(),
        dbPath: run.dbPath,
      };
    }
    const saved = await run.stop();
    return { loaded: true, saved, output: run.output(), dbPath: run.dbPath };
  } finally {
    await cleanupAtheme(run);
  }
}
