import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readElfFile } from '../lib/integrations/elf.ts';
import type { RunEvent } from '../lib/core/events.ts';
import { findHost, type Inventory } from '../lib/core/inventory.ts';
import { readJournal } from '../lib/engine/journal.ts';
import type { Plan } from '../lib/core/plan.ts';
import { planRunbook, startRun } from '../lib/app/runs.ts';
import { runsDir } from '../lib/app/paths.ts';
import { staticArtifact, type ArtifactFacts } from '../lib/steps/artifact.ts';
import { CONTROLLER } from '../lib/engine/engine.ts';
import type { Condition, ProbeContext } from '../lib/core/runbook.ts';
import * as testnet from '../lib/testnet/index.ts';
import { findExecutable } from '../lib/transports/which.ts';
import { dialAddress } from '../runbooks/ship-probe.ts';
import { SOURCE } from './fixtures/artifact.ts';
import { treeHash, workspace, type Workspace } from './helpers.ts';
import { athemeConfig, athemeUnavailable, cleanupAtheme, startAtheme } from './support/atheme.ts';
import { inspircdUnavailable, startIrcNetwork, waitForLinks } from './support/inspircd.ts';
import type { AthemeRun } from './support/atheme.ts';
import type { TestIrcNetwork } from './support/inspircd.ts';
import { assertPrerequisite, skipUnless } from './support/require.ts';
import { freePort } from './support/sshd.ts';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'artifact.ts');

const localMissing =
  process.getuid?.() !== 0
    ? 'needs root (chroot into the empty root)'
    : !findExecutable('musl-gcc')
      ? 'needs musl-gcc (Debian package musl-tools)'
      : !findExecutable('gcc')
        ? 'needs gcc and libc6-dev'
        : undefined;

function events(cwd: string, runId: string): RunEvent[] {
  return readJournal(join(runsDir(cwd), runId)).records.map((r) => r.event);
}

function plannedFacts(cwd: string, runId: string): ArtifactFacts {
  const planned = events(cwd, runId).find((e) => e.kind === 'planned') as Extract<
    RunEvent,
    { kind: 'planned' }
  >;
  return (planned.plan.facts as { artifact: ArtifactFacts }).artifact;
}

function commands(
  cwd: string,
  runId: string,
  step: string,
): Array<{ host: string; stdout: string }> {
  return events(cwd, runId)
    .filter((e): e is Extract<RunEvent, { kind: 'command' }> => e.kind === 'command')
    .filter((e) => e.step === step)
    .map((e) => ({ host: e.host, stdout: e.result.stdout }));
}

interface Scratch {
  ws: Workspace;
  hosts: string;
  builds: string;
  port: number;
  installed(host: string): string;
  params(...extra: string[]): string[];
}

async function scratch(): Promise<Scratch> {
  const ws = workspace(['a', 'b']);
  const hosts = join(ws.data, 'hosts');
  const builds = join(ws.cwd, 'builds');
  const port = await freePort();
  return {
    ws,
    hosts,
    builds,
    port,
    installed: (host) => join(hosts, host, 'bin', 'irc-health'),
    params: (...extra) => [`dir=${hosts}`, `buildRoot=${builds}`, `port=${port}`, ...extra],
  };
}

describe('dialAddress', () => {
  it('turns what ss shows as the listening address into an address to dial', () => {
    expect(dialAddress('0.0.0.0:6667')).toBe('127.0.0.1');
    expect(dialAddress('*:6667')).toBe('127.0.0.1');
    expect(dialAddress('[::]:6667')).toBe('::1');
    expect(dialAddress('192.0.2.12:6667')).toBe('192.0.2.12');
    expect(dialAddress('[::1]:6667')).toBe('::1');
    expect(dialAddress('[fe80::1%eth0]:6667')).toBe('fe80::1');
  });
});

describe('the build check', () => {
  it('names what to install when no static toolchain links a program', async () => {
    const artifact = staticArtifact<Record<string, never>, ArtifactFacts>({
      name: 'irc-health',
      recipe: { kind: 'compile', sources: [SOURCE] },
      buildRoot: '/nonexistent',
      targets: { role: 'node' },
      installPath: '/var/lib/baton/bin/irc-health',
      facts: (f) => f,
    });
    const facts: ArtifactFacts = {
      name: 'irc-health',
      key: '0'.repeat(64),
      buildDir: '/nonexistent/irc-health-0000000000000000',
      output: '/nonexistent/irc-health-0000000000000000/irc-health',
      cached: false,
      toolchains: [
        { name: 'musl-gcc', links: false, error: 'musl-gcc is not installed' },
        {
          name: 'gcc',
          path: '/usr/bin/gcc',
          links: false,
          error: '/usr/bin/gcc -static cannot link a program: ld: cannot find -lc',
        },
      ],
      toolchain: null,
      missingTools: [],
      missingInputs: [],
      machine: 'x86_64',
      hosts: {},
    };
    const ctx = { facts, params: {}, host: CONTROLLER } as unknown as ProbeContext<
      Record<string, never>,
      ArtifactFacts
    >;
    const conditions = (await artifact.build.check!(ctx)) as Condition[];
    expect(conditions[1]).toEqual({
      name: 'a static C toolchain on the controller',
      ok: false,
      expected: 'one of musl-gcc, gcc linking with -static',
      found:
        'musl-gcc is not installed; /usr/bin/gcc -static cannot link a program: ld: cannot find -lc',
      remedy:
        'Install musl-tools (Debian/Ubuntu: apt-get install musl-tools), or gcc with a static C library (Debian/Ubuntu: apt-get install gcc libc6-dev).',
    });
  });
});

describe.skipIf(skipUnless(localMissing, 'static artifact steps on local hosts'))(
  'static artifact steps on local hosts',
  () => {
    beforeAll(() => assertPrerequisite(localMissing));

    it.each(['musl-gcc', 'gcc'])(
      'builds irc-health with %s -static, ships it to every host and proves it in an empty root',
      async (toolchain) => {
        const s = await scratch();
        const started = performance.now();
        const result = await startRun({
          runbook: FIXTURE,
          stack: 'nodes',
          params: s.params(`variant=${toolchain}`),
          cwd: s.ws.cwd,
        });
        const ms = Math.round(performance.now() - started);
        expect(result.error).toBeUndefined();
        expect(result.outcome).toBe('done');
        const facts = plannedFacts(s.ws.cwd, result.runId);
        expect(facts.toolchain?.name).toBe(toolchain);
        const built = readFileSync(facts.output);
        const elf = await readElfFile(facts.output);
        expect(elf).toMatchObject({ linkage: 'static', interpreter: undefined, needed: [] });
        for (const host of ['a', 'b']) {
          expect(readFileSync(s.installed(host)).equals(built)).toBe(true);
          expect(statSync(s.installed(host)).mode & 0o777).toBe(0o755);
          // No staging file, no empty root left behind; nothing was there before, so no backup.
          expect(readdirSync(join(s.hosts, host, 'bin'))).toEqual(['irc-health']);
        }
        const proofs = commands(s.ws.cwd, result.runId, 'irc-health-prove').filter((c) =>
          c.stdout.startsWith('unreachable: '),
        );
        expect(proofs.map((p) => p.host).sort()).toEqual(['a', 'b']);
        for (const p of proofs) {
          expect(p.stdout).toBe(
            `unreachable: 127.0.0.1 port ${s.port}: connect: Connection refused\n`,
          );
        }
        const buildMs = events(s.ws.cwd, result.runId).find(
          (e) => e.kind === 'command' && e.step === 'irc-health-build',
        ) as Extract<RunEvent, { kind: 'command' }>;
        console.log(
          `${toolchain} -static: irc-health ${built.length} bytes, built in ${buildMs.result.durationMs} ms; build, verify, ship and prove on 2 hosts: ${ms} ms`,
        );
      },
    );

    it('builds reproducibly: the same sources give the same bytes in another build directory', async () => {
      const outputs: Buffer[] = [];
      for (let i = 0; i < 2; i++) {
        const s = await scratch();
        const result = await startRun({
          runbook: FIXTURE,
          stack: 'nodes',
          params: s.params(),
          cwd: s.ws.cwd,
        });
        expect(result.outcome).toBe('done');
        outputs.push(readFileSync(plannedFacts(s.ws.cwd, result.runId).output));
      }
      expect(outputs[0]!.equals(outputs[1]!)).toBe(true);
    });

    it('refuses a dynamically linked build in the verify step, naming its interpreter and NEEDED libraries', async () => {
      const s = await scratch();
      const result = await startRun({
        runbook: FIXTURE,
        stack: 'nodes',
        params: s.params('variant=dynamic'),
        cwd: s.ws.cwd,
      });
      expect(result.outcome).toBe('rolled-back');
      expect(result.state).toBe('unchanged: as before the run');
      expect(result.error).toMatch(
        /^step irc-health-verify failed on [ab]: verify failed: irc-health is statically linked \(policy static\) for [ab]: expected no interpreter and no needed libraries, found interpreter \/\S*ld-linux\S*; NEEDED libc\.so\.6 \(to do: Rebuild irc-health statically \(musl-gcc -static or gcc -static\) and ship that build\.\)$/,
      );
      // Nothing reached a host, and the build it refused was removed.
      expect(existsSync(s.hosts)).toBe(false);
      expect(existsSync(plannedFacts(s.ws.cwd, result.runId).buildDir)).toBe(false);
    });

    it('fails the empty-root proof with exit 127 when a dynamically linked build is shipped anyway', async () => {
      const s = await scratch();
      const result = await startRun({
        runbook: FIXTURE,
        stack: 'nodes',
        params: s.params('variant=dynamic', 'skipVerify=true'),
        cwd: s.ws.cwd,
      });
      expect(result.outcome).toBe('rolled-back');
      expect(result.error).toMatch(
        /^step irc-health-prove failed on [ab]: irc-health did not pass its proof in an empty root on [ab]: exit 127: it could not be started there\./,
      );
      expect(result.error).toContain(
        'it printed: chroot: failed to run command ‘/irc-health’: No such file or directory',
      );
      // Rolled back: no binary, no staging file, no empty root on either host.
      for (const host of ['a', 'b']) {
        expect(readdirSync(join(s.hosts, host, 'bin'))).toEqual([]);
      }
      // The same binary runs on the host itself, where its loader and libc are.
      const outside = spawnSync(join(s.builds, 'irc-health.dynamic'), [
        '127.0.0.1',
        String(s.port),
      ]);
      expect(outside.status).toBe(3);
      expect(String(outside.stdout)).toMatch(/^unreachable: /);
    });

    it('plans the exact commands per host and runs none of them', async () => {
      const s = await scratch();
      mkdirSync(join(s.hosts, 'a', 'bin'), { recursive: true });
      writeFileSync(s.installed('a'), randomBytes(1000), { mode: 0o755 });
      const previous = execFileSync('sha256sum', [s.installed('a')])
        .toString()
        .slice(0, 64);
      const before = treeHash(s.ws.data);
      const { plan } = await planRunbook({
        runbook: FIXTURE,
        stack: 'nodes',
        params: s.params(),
        cwd: s.ws.cwd,
      });
      expect(plan.preflight.filter((c) => !c.ok)).toEqual([]);
      const facts = (plan.facts as { artifact: ArtifactFacts }).artifact;
      expect(facts.hosts).toEqual({
        a: {
          machine: expect.any(String),
          uid: 0,
          installPath: s.installed('a'),
          previous,
          blocked: null,
          missing: [],
        },
        b: {
          machine: expect.any(String),
          uid: 0,
          installPath: s.installed('b'),
          previous: null,
          blocked: null,
          missing: [],
        },
      });
      const b = facts.buildDir;
      const step = (id: string): Plan['steps'][number] => plan.steps.find((x) => x.id === id)!;
      expect(step('irc-health-build').hosts).toEqual([
        {
          host: 'controller',
          mutations: [
            `mkdir -p ${b} && env SOURCE_DATE_EPOCH=0 TZ=UTC LC_ALL=C ${facts.toolchain!.path} -static -ffile-prefix-map=${join(SOURCE, '..')}=. -std=c99 -O2 -Wall -s -o ${b}/.irc-health.tmp ${SOURCE} && mv -f ${b}/.irc-health.tmp ${b}/irc-health`,
          ],
          undo: [`rm -rf ${b}`],
        },
      ]);
      expect(step('irc-health-verify').hosts.map((h) => h.mutations)).toEqual([[], []]);
      const bin = (h: string): string => join(s.hosts, h, 'bin');
      expect(step('irc-health-ship').hosts).toEqual([
        {
          host: 'a',
          mutations: [
            `mkdir -p ${bin('a')} && cat > ${bin('a')}/.irc-health.new`,
            'sha256sum -c --strict -',
            `chmod 0755 ${bin('a')}/.irc-health.new && ln -f ${bin('a')}/irc-health ${bin('a')}/.irc-health.previous && mv -f ${bin('a')}/.irc-health.new ${bin('a')}/irc-health`,
          ],
          undo: [
            `rm -f ${bin('a')}/.irc-health.new && if printf '%s  %s\\n' ${previous} ${bin('a')}/irc-health | sha256sum -c --status -; then :; elif printf '%s  %s\\n' ${previous} ${bin('a')}/.irc-health.previous | sha256sum -c --status -; then mv -f ${bin('a')}/.irc-health.previous ${bin('a')}/irc-health; else echo 'neither ${bin('a')}/irc-health nor ${bin('a')}/.irc-health.previous has sha256 ${previous}' >&2; exit 1; fi`,
          ],
        },
        {
          host: 'b',
          mutations: [
            `mkdir -p ${bin('b')} && cat > ${bin('b')}/.irc-health.new`,
            'sha256sum -c --strict -',
            `chmod 0755 ${bin('b')}/.irc-health.new && mv -f ${bin('b')}/.irc-health.new ${bin('b')}/irc-health`,
          ],
          undo: [`rm -f ${bin('b')}/.irc-health.new ${bin('b')}/irc-health`],
        },
      ]);
      const root = `${bin('b')}/.irc-health.root`;
      expect(step('irc-health-prove').hosts[1]).toEqual({
        host: 'b',
        mutations: [
          `rm -rf ${root} && mkdir -m 0700 ${root} && cp ${bin('b')}/irc-health ${root}/irc-health`,
          `out=$(timeout -k 5 20 chroot ${root} /irc-health -t 5 127.0.0.1 ${s.port} 2>&1); rc=$?; printf '%s\\n' "$out"; case $rc in 3) ;; *) echo "exit $rc, expected 3" >&2; exit 1 ;; esac; printf '%s\\n' "$out" | grep -Eq '^(unreachable|timeout): 127\\.0\\.0\\.1 port [0-9]+: ' || { echo 'output does not match ^(unreachable|timeout): 127\\.0\\.0\\.1 port [0-9]+: ' >&2; exit 1; }`,
          `rm -rf ${root}`,
        ],
        undo: [`rm -rf ${root}`],
      });
      // Nothing ran: the hosts' files are as they were, and nothing was built.
      expect(treeHash(s.ws.data)).toBe(before);
      expect(existsSync(s.builds)).toBe(false);
    });

    it('undo restores the previous binary byte for byte when the proof fails', async () => {
      const s = await scratch();
      mkdirSync(join(s.hosts, 'a', 'bin'), { recursive: true });
      const old = randomBytes(4096);
      writeFileSync(s.installed('a'), old);
      chmodSync(s.installed('a'), 0o750);
      const oldIno = statSync(s.installed('a')).ino;
      // The proof accepts only exit 0; with nothing listening irc-health exits 3.
      const result = await startRun({
        runbook: FIXTURE,
        stack: 'nodes',
        params: s.params('expectExit=0'),
        cwd: s.ws.cwd,
      });
      expect(result.outcome).toBe('rolled-back');
      expect(result.error).toMatch(
        /irc-health did not pass its proof in an empty root on [ab]: exit 3, expected 0; it printed: unreachable: 127\.0\.0\.1 port \d+: connect: Connection refused/,
      );
      expect(readFileSync(s.installed('a')).equals(old)).toBe(true);
      expect(statSync(s.installed('a'))).toMatchObject({ mode: 0o100750, ino: oldIno });
      expect(readdirSync(join(s.hosts, 'a', 'bin'))).toEqual(['irc-health']);
      expect(readdirSync(join(s.hosts, 'b', 'bin'))).toEqual([]);
      const undone = events(s.ws.cwd, result.runId)
        .filter((e): e is Extract<RunEvent, { kind: 'undo-outcome' }> => e.kind === 'undo-outcome')
        .map((e) => `${e.step}:${e.host}:${e.ok}`);
      expect(undone).toEqual(
        expect.arrayContaining([
          'irc-health-ship:a:true',
          'irc-health-ship:b:true',
          'irc-health-build:controller:true',
        ]),
      );
    });

    it('keeps the binary it replaced beside the new one, for a later rollback', async () => {
      const s = await scratch();
      mkdirSync(join(s.hosts, 'a', 'bin'), { recursive: true });
      const old = randomBytes(512);
      writeFileSync(s.installed('a'), old, { mode: 0o755 });
      const result = await startRun({
        runbook: FIXTURE,
        stack: 'nodes',
        params: s.params(),
        cwd: s.ws.cwd,
      });
      expect(result.outcome).toBe('done');
      expect(readdirSync(join(s.hosts, 'a', 'bin')).sort()).toEqual([
        '.irc-health.previous',
        'irc-health',
      ]);
      expect(readFileSync(join(s.hosts, 'a', 'bin', '.irc-health.previous')).equals(old)).toBe(
        true,
      );
      expect(
        readFileSync(s.installed('a')).equals(
          readFileSync(plannedFacts(s.ws.cwd, result.runId).output),
        ),
      ).toBe(true);
    });

    it('refuses, before anything changes, to install over a directory', async () => {
      const s = await scratch();
      mkdirSync(s.installed('b'), { recursive: true });
      const before = treeHash(s.ws.data);
      const result = await startRun({
        runbook: FIXTURE,
        stack: 'nodes',
        params: s.params(),
        cwd: s.ws.cwd,
      });
      expect(result.outcome).toBe('precondition-failed');
      expect(result.error).toContain(
        `step irc-health-ship, host b, check "${s.installed('b')} on b can take a file": expected a regular file or nothing, found a directory`,
      );
      expect(treeHash(s.ws.data)).toBe(before);
      expect(existsSync(s.builds)).toBe(false);
    });
  },
);

const ircMissing = localMissing ?? inspircdUnavailable() ?? athemeUnavailable();

describe.skipIf(skipUnless(ircMissing, 'irc-health against real InspIRCd and Atheme'))(
  'irc-health, static, in an empty root, against real InspIRCd 3 and Atheme',
  () => {
    let dir: string;
    let root: string;
    let net: TestIrcNetwork;
    let atheme: AthemeRun | undefined;
    const health = (port: number, ...extra: string[]): { status: number | null; out: string } => {
      const r = spawnSync('chroot', [root, '/irc-health', ...extra, '127.0.0.1', String(port)], {
        timeout: 30_000,
      });
      return { status: r.status, out: `${String(r.stdout)}${String(r.stderr)}` };
    };

    beforeAll(async () => {
      assertPrerequisite(ircMissing);
      dir = mkdtempSync(join(tmpdir(), 'baton-irc-health-'));
      root = join(dir, 'root');
      mkdirSync(root);
      execFileSync('musl-gcc', [
        '-static',
        '-std=c99',
        '-O2',
        '-Wall',
        '-Werror',
        '-s',
        '-o',
        join(dir, 'irc-health'),
        SOURCE,
      ]);
      copyFileSync(join(dir, 'irc-health'), join(root, 'irc-health'));
      chmodSync(join(root, 'irc-health'), 0o755);
      net = await startIrcNetwork([
        { host: 'nebula', uline: true },
        { host: 'emergency1', uline: false },
      ]);
    });

    afterAll(async () => {
      await cleanupAtheme(atheme);
      await net?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('runs with nothing but itself in its root', () => {
      expect(readdirSync(root)).toEqual(['irc-health']);
    });

    it('says no services (exit 2) while services are not linked', () => {
      const r = health(net.server('nebula').clientPort);
      expect(r).toEqual({
        status: 2,
        out: `no-services: 127.0.0.1 port ${net.server('nebula').clientPort}: 408 NickServ :No such service\n`,
      });
    });

    it('says unreachable (exit 3) for a closed port and timeout (exit 3) for an ircd that never answers', async () => {
      const closed = await freePort();
      expect(health(closed)).toEqual({
        status: 3,
        out: `unreachable: 127.0.0.1 port ${closed}: connect: Connection refused\n`,
      });
      const silent: Server = createServer(() => undefined);
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
      const port = (silent.address() as { port: number }).port;
      try {
        const started = performance.now();
        const r = health(port, '-t', '1');
        expect(r.status).toBe(3);
        expect(r.out).toMatch(
          /^timeout: 127\.0\.0\.1 port \d+: not registered \(hp[a-z0-9]{7}\) within 1 s\n$/,
        );
        expect(performance.now() - started).toBeLessThan(5_000);
      } finally {
        silent.close();
      }
    });

    it('with Atheme linked: NickServ answers on the U-lined server (exit 0), not on the one without the U-line (exit 2)', async () => {
      const hub = net.server('nebula');
      atheme = await startAtheme(
        athemeConfig({
          serverName: net.servicesName,
          uplink: { name: hub.name, port: hub.linkPort, password: net.servicesPassword },
        }),
        undefined,
      );
      await waitForLinks(net.servers, [...net.servers.map((s) => s.name), net.servicesName]);
      const trusted = health(hub.clientPort);
      expect(trusted.status).toBe(0);
      expect(trusted.out).toMatch(
        new RegExp(`^ok: 127\\.0\\.0\\.1 port ${hub.clientPort}: NickServ answered: .+\\n$`),
      );
      const untrusted = health(net.server('emergency1').clientPort);
      expect(untrusted).toEqual({
        status: 2,
        out: `no-services: 127.0.0.1 port ${net.server('emergency1').clientPort}: 408 NickServ :No such service\n`,
      });
    });
  },
);

const testnetMissing =
  process.getuid?.() !== 0
    ? 'needs root (namespaces, chroot)'
    : !existsSync('/usr/sbin/sshd')
      ? 'needs openssh-server'
      : (localMissing ?? undefined);

describe.skipIf(skipUnless(testnetMissing, 'ship-probe on the local testnet'))(
  'ship-probe on the local testnet',
  () => {
    const home = mkdtempSync(join(tmpdir(), 'baton-ship-probe-'));
    let inv: Inventory;

    beforeAll(async () => {
      assertPrerequisite(testnetMissing);
      process.env.BATON_HOME = home;
      inv = (await testnet.up({ topology: 'irc' })).inventory;
    }, 600_000);

    afterAll(async () => {
      if (existsSync(join(home, 'testnet'))) await testnet.down();
      rmSync(home, { recursive: true, force: true });
    });

    it('builds irc-health, ships it over ssh to every ircd and proves it there in an empty root', async () => {
      const ircds = inv.hosts.filter((h) => h.roles.includes('ircd')).map((h) => h.name);
      expect(ircds.length).toBeGreaterThan(0);
      const started = performance.now();
      const result = await startRun({
        runbook: 'ship-probe',
        stack: 'local',
        params: [`buildRoot=${join(home, 'builds')}`],
        cwd: home,
      });
      const ms = Math.round(performance.now() - started);
      expect(result.error).toBeUndefined();
      expect(result.outcome).toBe('done');
      const planned = events(home, result.runId).find((e) => e.kind === 'planned') as Extract<
        RunEvent,
        { kind: 'planned' }
      >;
      const facts = planned.plan.facts as {
        artifact: ArtifactFacts;
        listening: Record<string, string | null>;
      };
      const sha = execFileSync('sha256sum', [facts.artifact.output]).toString().slice(0, 64);
      expect(
        planned.plan.steps.find((s) => s.id === 'irc-health-ship')!.hosts.map((h) => h.host),
      ).toEqual(ircds);
      for (const name of ircds) {
        const host = findHost(inv, name);
        const out = await testnet.exec(
          host.name,
          'sha256sum < /var/lib/baton/bin/irc-health | cut -c1-64; stat -c %a /var/lib/baton/bin/irc-health; ls -A /var/lib/baton/bin',
        );
        expect(out.stdout).toBe(`${sha}\n755\nirc-health\n`);
      }
      // Each ircd has its own /var: the controller's and the other hosts' are untouched.
      expect(existsSync('/var/lib/baton/bin/irc-health')).toBe(false);
      for (const other of inv.hosts.filter((h) => !ircds.includes(h.name))) {
        const out = await testnet.exec(
          other.name,
          'test -e /var/lib/baton/bin/irc-health; echo $?',
        );
        expect(out.stdout).toBe('1\n');
      }
      const proofs = commands(home, result.runId, 'irc-health-prove').filter((c) =>
        /^(ok|no-services|unreachable|timeout): /.test(c.stdout),
      );
      expect(proofs.map((p) => p.host).sort()).toEqual([...ircds].sort());
      for (const p of proofs) {
        expect(p.stdout).toMatch(
          facts.listening[p.host]
            ? /^(ok|no-services): /
            : /^unreachable: 127\.0\.0\.1 port 6667: connect: Connection refused\n$/,
        );
      }
      console.log(
        `ship-probe on ${ircds.join(', ')}: ${ms} ms; irc-health ${statSync(facts.artifact.output).size} bytes (${facts.artifact.toolchain?.name}); proofs: ${proofs
          .map((p) => `${p.host}: ${p.stdout.trim()}`)
          .join('; ')}`,
      );
    });
  },
);
