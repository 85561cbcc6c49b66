/**
 * The project root, found from the current directory upwards (lib/core/project.ts),
 * and the baton home beside it or at $BATON_HOME: every command finds the
 * project's runbooks, runs, stacks, policy and state from a subdirectory, and
 * puts its files where BATON_HOME says.
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createApp } from '../lib/app/app.ts';
import { runsDir } from '../lib/app/paths.ts';
import { policyLocation } from '../lib/approval/policy.ts';
import { findAuditConfigFile } from '../lib/audit/config.ts';
import { auditPaths } from '../lib/audit/state.ts';
import { findProject, findProjectRoot } from '../lib/core/project.ts';
import { infraDirFor } from '../lib/integrations/pulumi-stack.ts';
import { testnetPaths } from '../lib/testnet/state.ts';
import { localNodes, ORDERED, ROOT } from './helpers.ts';

const BATON = join(ROOT, 'bin', 'baton.js');

function scratch(): string {
  return mkdtempSync(join(tmpdir(), 'baton-project-'));
}

function dirs(base: string, ...paths: string[]): void {
  for (const p of paths) mkdirSync(join(base, p), { recursive: true });
}

describe('the project root', () => {
  it('is the nearest directory upwards with baton.policy.json or runbooks/', () => {
    const base = scratch();
    dirs(base, 'p/runbooks', 'p/a/b/c', 'p/a/q');
    writeFileSync(join(base, 'p/a/q/baton.policy.json'), '{}');
    expect(findProjectRoot(join(base, 'p/a/b/c'))).toBe(join(base, 'p'));
    expect(findProjectRoot(join(base, 'p/runbooks'))).toBe(join(base, 'p'));
    expect(findProjectRoot(join(base, 'p/a/q'))).toBe(join(base, 'p/a/q'));
    expect(findProjectRoot(join(base, 'p'))).toBe(join(base, 'p'));
  });

  it('passes over a .baton/ nearer than them; failing them, takes the nearest .baton/', () => {
    const base = scratch();
    dirs(base, 'p/runbooks', 'p/a/.baton', 'p/a/b', 'q/.baton', 'q/a/.baton', 'q/a/b');
    expect(findProjectRoot(join(base, 'p/a/b'))).toBe(join(base, 'p'));
    expect(findProjectRoot(join(base, 'q/a/b'))).toBe(join(base, 'q/a'));
  });

  it('is the working directory where no directory upwards is marked', () => {
    const base = scratch();
    dirs(base, 'a/b');
    // A file called runbooks is no marker.
    writeFileSync(join(base, 'a/runbooks'), '');
    expect(findProjectRoot(join(base, 'a/b'))).toBe(join(base, 'a/b'));
  });

  it('stops at the top of a git checkout', () => {
    const base = scratch();
    dirs(base, 'runbooks', 'repo/.git', 'repo/sub', 'work/sub');
    writeFileSync(join(base, 'work/.git'), 'gitdir: /elsewhere\n');
    expect(findProjectRoot(join(base, 'repo/sub'))).toBe(join(base, 'repo/sub'));
    expect(findProjectRoot(join(base, 'work/sub'))).toBe(join(base, 'work/sub'));
    dirs(base, 'repo/runbooks');
    expect(findProjectRoot(join(base, 'repo/sub'))).toBe(join(base, 'repo'));
  });

  it('does not enter a directory anyone may write to, such as /tmp', () => {
    const base = scratch();
    dirs(base, 'shared/runbooks', 'shared/sub', 'sticky/.baton', 'sticky/sub');
    chmodSync(join(base, 'shared'), 0o777);
    chmodSync(join(base, 'sticky'), 0o1755);
    expect(findProjectRoot(join(base, 'shared/sub'))).toBe(join(base, 'shared/sub'));
    expect(findProjectRoot(join(base, 'sticky/sub'))).toBe(join(base, 'sticky/sub'));
    // Started in it, it is the working directory, and that is the project.
    expect(findProjectRoot(join(base, 'shared'))).toBe(join(base, 'shared'));
  });

  it('has its home at $BATON_HOME, relative to the working directory, else in .baton/', () => {
    const base = scratch();
    dirs(base, 'p/runbooks', 'p/sub');
    const sub = join(base, 'p/sub');
    expect(findProject(sub, {})).toEqual({
      cwd: sub,
      root: join(base, 'p'),
      home: join(base, 'p/.baton'),
    });
    expect(findProject(sub, { BATON_HOME: '../../h' }).home).toBe(join(base, 'h'));
    expect(findProject(sub, { BATON_HOME: '' }).home).toBe(join(base, 'p/.baton'));
  });
});

describe('where each part of baton looks', () => {
  it('is the project root or the home, from anywhere in the project', () => {
    const base = scratch();
    dirs(base, 'p/runbooks', 'p/sub/dir');
    const root = join(base, 'p');
    const sub = join(root, 'sub', 'dir');
    const app = createApp({ cwd: sub, env: {} });
    expect({ cwd: app.cwd, root: app.root, home: app.home }).toEqual({
      cwd: sub,
      root,
      home: join(root, '.baton'),
    });
    expect(policyLocation(sub)).toBe(join(root, 'baton.policy.json'));
    expect(runsDir(app)).toBe(join(root, '.baton', 'runs'));
    expect(testnetPaths(sub, {}).dir).toBe(join(root, '.baton', 'testnet'));
    expect(auditPaths(sub, {}).dir).toBe(join(root, '.baton', 'audit'));
    expect(infraDirFor(sub, { env: {} })).toBe(join(root, 'infra'));
    expect(infraDirFor(sub, { env: { BATON_INFRA_DIR: '../pulumi' } })).toBe(
      join(root, 'sub', 'pulumi'),
    );
    writeFileSync(join(root, 'baton.audit.json'), '{}');
    expect(findAuditConfigFile('production', undefined, sub)).toBe(join(root, 'baton.audit.json'));
    expect(findAuditConfigFile('production', 'mine.json', sub)).toBe(join(sub, 'mine.json'));
    const elsewhere = createApp({ cwd: sub, env: { BATON_HOME: join(base, 'h') } });
    expect(elsewhere.root).toBe(root);
    expect(testnetPaths(elsewhere).dir).toBe(join(base, 'h', 'testnet'));
    expect(auditPaths(elsewhere).dir).toBe(join(base, 'h', 'audit'));
    expect(runsDir(elsewhere)).toBe(join(base, 'h', 'runs'));
  });
});

/** A project with a runbook of its own (`touch`), a stack of local hosts, and no approvals on it. */
function project(home?: string): { root: string; sub: string; data: string; home: string } {
  const root = scratch();
  dirs(root, 'runbooks', 'deep/er', 'data', 'node_modules');
  symlinkSync(join(ROOT, 'node_modules', 'zod'), join(root, 'node_modules', 'zod'));
  writeFileSync(join(root, 'package.json'), '{ "name": "ops", "type": "module" }\n');
  writeFileSync(
    join(root, 'runbooks', 'touch.ts'),
    `import { z } from 'zod';
import { defineRunbook } from ${JSON.stringify(join(ROOT, 'lib', 'core', 'runbook.ts'))};

export default defineRunbook({
  name: 'touch',
  summary: 'Write a file for every node.',
  params: z.object({ dir: z.string() }),
  steps: [
    {
      id: 'touch',
      title: 'Write the file',
      targets: { role: 'node' },
      async apply({ $, host, params }) {
        await $\`echo done > \${params.dir}/\${host.name}\`;
      },
    },
  ],
});
`,
  );
  writeFileSync(
    join(root, 'baton.policy.json'),
    JSON.stringify({ stacks: { nodes: { approvers: 0 } } }),
  );
  const h = home ?? join(root, '.baton');
  mkdirSync(join(h, 'stacks'), { recursive: true });
  writeFileSync(join(h, 'stacks', 'nodes.json'), JSON.stringify({ inventory: localNodes() }));
  return { root, sub: join(root, 'deep', 'er'), data: join(root, 'data'), home: h };
}

function baton(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [BATON, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, BATON_HOME: '', BATON_INFRA_DIR: '', ...env },
  });
  return { ...r, text: r.stdout + r.stderr };
}

describe('baton in a subdirectory of a project', () => {
  it("lists, plans and runs the project's runbook, and lists its runs", () => {
    const p = project();
    const listed = baton(p.sub, ['runbooks']);
    expect(listed.status, listed.text).toBe(0);
    expect(listed.stdout).toContain('touch: Write a file for every node.');
    const args = ['touch', '--stack', 'nodes', '--param', `dir=${p.data}`];
    const plan = baton(p.sub, ['plan', ...args]);
    expect(plan.status, plan.text).toBe(0);
    expect(readdirSync(p.data)).toEqual([]);
    const run = baton(p.sub, ['run', ...args, '--yes']);
    expect(run.status, run.text).toBe(0);
    expect(readFileSync(join(p.data, 'a'), 'utf8')).toBe('done\n');
    const [runId] = readdirSync(join(p.root, '.baton', 'runs'));
    expect(runId).toMatch(/-touch-/);
    expect(existsSync(join(p.root, '.baton', 'runs', runId!, 'journal.jsonl'))).toBe(true);
    expect(existsSync(join(p.sub, '.baton'))).toBe(false);
    const runs = baton(p.sub, ['runs']);
    expect(runs.stdout).toContain(`${runId}  touch  nodes`);
    expect(baton(p.sub, ['report', runId!]).status).toBe(0);
  });

  it('reads the policy of the project root, not of the working directory', () => {
    const p = project();
    writeFileSync(
      join(p.root, 'baton.policy.json'),
      JSON.stringify({ stacks: { nodes: { approvers: 2 } } }),
    );
    const run = baton(p.sub, [
      'run',
      'touch',
      '--stack',
      'nodes',
      '--yes',
      '--param',
      `dir=${p.data}`,
    ]);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(
      `needs 2 approval(s) (policy: ${join(p.root, 'baton.policy.json')})`,
    );
  });
});

describe('BATON_HOME elsewhere', () => {
  it('holds the runs, saved stacks, locks, audit state and the demo hosts', () => {
    const home = join(scratch(), 'home');
    const p = project(home);
    const env = { BATON_HOME: home };
    const run = baton(
      p.sub,
      ['run', 'touch', '--stack', 'nodes', '--yes', '--param', `dir=${p.data}`],
      env,
    );
    expect(run.status, run.text).toBe(0);
    const demo = baton(p.sub, ['run', 'config-release', '--yes'], env);
    expect(demo.status, demo.text).toBe(0);
    writeFileSync(
      join(p.root, 'baton.audit.nodes.json'),
      JSON.stringify({
        filesystems: [
          { host: 'a', path: p.data, warnFreePercent: 0, failFreePercent: 0, failDays: 0 },
        ],
      }),
    );
    const audit = baton(p.sub, ['audit', '--stack', 'nodes'], env);
    expect(audit.status, audit.text).toBe(0);

    // A run that stops for a person keeps its stack's lock; hosts that are this machine keep it in the home.
    const stuck = baton(
      p.sub,
      [
        'run',
        ORDERED,
        '--stack',
        'nodes',
        '--yes',
        '--param',
        `dir=${p.data}`,
        '--param',
        'failAt=s2:a',
        '--param',
        'undoFailAt=s1:a',
      ],
      env,
    );
    expect(stuck.status, stuck.text).toBe(3);
    const stuckRun = readdirSync(join(home, 'runs')).find((r) => r.includes('-ordered-'));
    const runs = readdirSync(join(home, 'runs'));
    expect(runs.map((r) => r.replace(/^\S+?-(\D+)-[0-9a-f]{4}$/, '$1')).sort()).toEqual([
      'config-release',
      'ordered',
      'touch',
    ]);
    expect(readdirSync(join(home, 'locks'))).toEqual(['nodes.lock']);
    expect(readFileSync(join(home, 'locks', 'nodes.lock', 'holder'), 'utf8')).toContain(stuckRun);
    for (const host of ['alpha', 'beta', 'gamma'])
      expect(readlinkSync(join(home, 'demo', host, 'current.conf'))).toMatch(/^releases\//);
    expect(readdirSync(join(home, 'audit')).sort()).toEqual(['history.jsonl', 'last.json']);
    expect(readFileSync(join(home, 'audit', 'history.jsonl'), 'utf8')).toContain(p.data);
    expect(existsSync(join(p.root, '.baton'))).toBe(false);
    expect(existsSync(join(p.sub, '.baton'))).toBe(false);
    expect(baton(p.sub, ['runs'], env).stdout).toContain(`${stuckRun}  ordered  nodes`);
  });

  it('is where the saved outputs of a stack are read, and .baton/ of the project is not', () => {
    const home = join(scratch(), 'home');
    const p = project(home);
    const other = join(p.root, '.baton', 'stacks');
    mkdirSync(other, { recursive: true });
    writeFileSync(join(other, 'elsewhere.json'), JSON.stringify({ inventory: localNodes() }));
    const plan = (stack: string) =>
      baton(p.sub, ['plan', 'touch', '--stack', stack, '--param', `dir=${p.data}`], {
        BATON_HOME: home,
      });
    expect(plan('nodes').status).toBe(0);
    const unknown = plan('elsewhere');
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain('unknown stack elsewhere');
  });
});

describe('a directory no project marks', () => {
  it('is its own project: runs and demo hosts go in its .baton/', () => {
    const base = scratch();
    dirs(base, 'a/b');
    const cwd = join(base, 'a', 'b');
    const run = baton(cwd, ['run', 'config-release', '--yes']);
    expect(run.status, run.text).toBe(0);
    expect(readdirSync(join(cwd, '.baton', 'runs'))).toHaveLength(1);
    expect(existsSync(join(cwd, '.baton', 'demo', 'alpha', 'current.conf'))).toBe(true);
    expect(existsSync(join(base, 'a', '.baton'))).toBe(false);
    // Now it has a .baton/, and a subdirectory of it finds its runs.
    dirs(cwd, 'c');
    expect(baton(join(cwd, 'c'), ['runs']).stdout).toMatch(/config-release {2}demo/);
  });
});
