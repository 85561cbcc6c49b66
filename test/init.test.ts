/**
 * `baton init`: an operator's repository, scaffolded. Every file it writes,
 * what it keeps, and the scaffold itself working: its policy and approvers
 * file read by baton's own readers, its infra program exporting an inventory,
 * its example runbook planned and run on the demo stack.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import yaml from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { createApp } from '../lib/app/app.ts';
import { main } from '../lib/app/cli.ts';
import { INFRA_PACKAGES, TEMPLATES } from '../lib/app/init.ts';
import { parseApprovers } from '../lib/approval/approval.ts';
import { loadRepositoryPolicy, resolvePolicy } from '../lib/approval/policy.ts';
import { parseInventory } from '../lib/core/inventory.ts';
import { captureIo, ROOT, treeHash } from './helpers.ts';

const BATON = join(ROOT, 'bin', 'baton.js');
const FILES = [
  '.gitignore',
  'approvers',
  'baton.policy.json',
  'infra/Pulumi.yaml',
  'infra/index.ts',
  'infra/package.json',
  'package.json',
  'runbooks/example.ts',
];

function scratch(name = 'ops'): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'baton-init-')), name);
  mkdirSync(dir);
  return dir;
}

async function init(cwd: string, ...args: string[]): Promise<{ code: number; out: string }> {
  const io = captureIo();
  const code = await main(['init', ...args], io, createApp({ cwd, env: {} }));
  return { code, out: io.text() };
}

/** Every file below dir, relative, sorted. */
function files(dir: string, at = ''): string[] {
  return readdirSync(join(dir, at), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? files(dir, join(at, e.name)) : [join(at, e.name)]))
    .sort();
}

const sha256 = (file: string): string =>
  createHash('sha256').update(readFileSync(file)).digest('hex');

const template = (path: string): string => readFileSync(join(TEMPLATES, path), 'utf8');

interface Manifest {
  version: string;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}
const manifest = (file: string): Manifest => JSON.parse(readFileSync(file, 'utf8')) as Manifest;
const baton = manifest(join(ROOT, 'package.json'));
/** The version of a package baton declares, in its root package.json or infra's own. */
function declared(name: string): string | undefined {
  const all = [join(ROOT, 'package.json'), join(ROOT, 'infra', 'package.json')]
    .filter((f) => existsSync(f))
    .map(manifest);
  for (const m of all) {
    const v = m.dependencies?.[name] ?? m.peerDependencies?.[name] ?? m.devDependencies?.[name];
    if (v) return v;
  }
  return undefined;
}

describe('baton init', () => {
  it('writes the scaffold: an example runbook, infra/, the policy, approvers, package.json, .gitignore', async () => {
    const dir = scratch();
    const r = await init(dir);
    expect(r.code).toBe(0);
    expect(files(dir)).toEqual(FILES);
    for (const f of FILES) expect(r.out).toContain(`created  ${f}`);
    for (const f of ['runbooks/example.ts', 'infra/index.ts', 'baton.policy.json', 'approvers'])
      expect(readFileSync(join(dir, f), 'utf8')).toBe(template(f));
    expect(readFileSync(join(dir, 'infra/Pulumi.yaml'), 'utf8')).toBe(
      template('infra/Pulumi.yaml').replace('__name__', 'ops'),
    );
    expect(readFileSync(join(dir, 'infra/Pulumi.yaml'), 'utf8')).toMatch(/^name: ops$/m);
    expect(readFileSync(join(dir, '.gitignore'), 'utf8')).toBe('.baton/\nnode_modules/\n');
    expect(manifest(join(dir, 'package.json'))).toEqual({
      name: 'ops',
      private: true,
      type: 'module',
      dependencies: { 'baton-runbooks': baton.version, zod: declared('zod') },
    });
    expect(manifest(join(dir, 'infra/package.json'))).toEqual({
      name: 'ops-infra',
      private: true,
      type: 'module',
      main: 'index.ts',
      dependencies: { ...INFRA_PACKAGES, tsx: declared('tsx') },
      overrides: { '@pulumi/pulumi': '3.248.0' },
    });
  });

  it("pins infra/'s Pulumi packages at the versions baton's own infra/ declares", () => {
    for (const [name, version] of Object.entries(INFRA_PACKAGES))
      expect(declared(name), name).toBe(version);
    expect(INFRA_PACKAGES['@pulumi/pulumi']).toBe('3.248.0');
  });

  it('imports nothing in the example runbook but the package baton-runbooks, zod and node', () => {
    const specifiers = [...template('runbooks/example.ts').matchAll(/from '([^']+)'/g)].map(
      (m) => m[1],
    );
    expect(specifiers).toEqual(['node:path', 'zod', 'baton-runbooks']);
    expect([...template('infra/index.ts').matchAll(/from '([^']+)'/g)].map((m) => m[1])).toEqual([
      '@pulumi/pulumi',
      'baton-runbooks',
    ]);
  });

  it('writes a policy baton loads: two approvers on production, the defaults elsewhere', async () => {
    const dir = scratch();
    await init(dir);
    const repo = loadRepositoryPolicy(dir);
    expect(repo.file).toBe(join(dir, 'baton.policy.json'));
    expect(repo.approversFile).toBe(join(dir, 'approvers'));
    const rules = (stack: string, destructive = false) =>
      resolvePolicy({ repo, runbook: 'example', stack, destructive, testnet: false });
    expect(rules('production')).toMatchObject({ approvers: 2, holdSeconds: 300, reconfirm: true });
    expect(rules('staging')).toMatchObject({ approvers: 1 });
    expect(rules('staging', true)).toMatchObject({ approvers: 2 });
    expect(
      resolvePolicy({ repo, runbook: 'example', stack: 'demo', destructive: true, testnet: true }),
    ).toMatchObject({ approvers: 0 });
  });

  it("writes an approvers file baton's parser reads, whose examples parse once uncommented", async () => {
    const dir = scratch();
    await init(dir);
    const text = readFileSync(join(dir, 'approvers'), 'utf8');
    expect(parseApprovers(text, 'approvers')).toEqual([]);
    const uncommented = text.replace(/^# ((alice|bob)@)/gm, '$1');
    expect(parseApprovers(uncommented, 'approvers')).toEqual([
      {
        principal: 'alice@example.org',
        roles: ['senior', 'admin'],
        publicKey: expect.stringMatching(/^ssh-ed25519 AAAA/),
      },
      {
        principal: 'bob@example.org',
        roles: ['senior'],
        publicKey: expect.stringMatching(/^ssh-ed25519 AAAA/),
      },
    ]);
  });

  it('changes nothing the second time, and says so', async () => {
    const dir = scratch();
    await init(dir);
    const before = treeHash(dir);
    const again = await init(dir);
    expect(again.code).toBe(0);
    expect(again.out).toContain('Nothing to do');
    expect(again.out).toContain('nothing was changed');
    for (const f of FILES) expect(again.out).toContain(`kept     ${f} (it exists)`);
    expect(treeHash(dir)).toBe(before);
    const io = captureIo();
    expect(await main(['init', '--json'], io, createApp({ cwd: dir, env: {} }))).toBe(0);
    expect(JSON.parse(io.stdout.join('\n'))).toEqual({
      dir,
      created: [],
      updated: [],
      skipped: expect.arrayContaining(FILES),
      notes: {},
      exitCode: 0,
    });
  });

  it('keeps files that exist byte for byte, adds only what .gitignore lacks, and says what to fix', async () => {
    const dir = scratch();
    mkdirSync(join(dir, 'runbooks'));
    const own = {
      'runbooks/example.ts': 'export default 1;\n',
      'package.json': '{ "name": "ours", "dependencies": { "zod": "4.0.0" } }\n',
      approvers: 'carol@example.org admin ssh-ed25519 AAAAC3Nza carol\n',
      'baton.policy.json': '{"stacks":{}}',
    };
    for (const [f, text] of Object.entries(own)) writeFileSync(join(dir, f), text);
    writeFileSync(join(dir, '.gitignore'), 'node_modules\ndist');
    const before = Object.fromEntries(Object.keys(own).map((f) => [f, sha256(join(dir, f))]));
    const io = captureIo();
    expect(await main(['init', '--json'], io, createApp({ cwd: dir, env: {} }))).toBe(0);
    const r = JSON.parse(io.stdout.join('\n')) as Record<string, unknown>;
    expect(r).toMatchObject({
      created: ['infra/package.json', 'infra/Pulumi.yaml', 'infra/index.ts'],
      updated: ['.gitignore'],
      skipped: ['runbooks/example.ts', 'baton.policy.json', 'approvers', 'package.json'],
      notes: {
        '.gitignore': 'added .baton/',
        'package.json': `it needs "type": "module", baton-runbooks ${baton.version} in its dependencies`,
      },
    });
    for (const f of Object.keys(own)) expect(sha256(join(dir, f)), f).toBe(before[f]);
    expect(readFileSync(join(dir, '.gitignore'), 'utf8')).toBe('node_modules\ndist\n.baton/\n');
    await init(dir);
    expect(readFileSync(join(dir, '.gitignore'), 'utf8')).toBe('node_modules\ndist\n.baton/\n');
  });

  it('writes nothing at all where a file stands in the way of a directory, exit 2', async () => {
    const dir = scratch();
    writeFileSync(join(dir, 'infra'), 'not a directory');
    const before = treeHash(dir);
    const r = await init(dir);
    expect(r.code).toBe(2);
    expect(r.out).toContain(
      `baton init would write inside infra in ${dir}, which is not a directory`,
    );
    expect(treeHash(dir)).toBe(before);
    const file = join(dir, 'infra');
    expect((await init(dir, file)).out).toContain(`${file} exists and is not a directory`);
  });

  it('never writes through a symlink, and goes into a directory that is a link to one', async () => {
    const dir = scratch();
    const elsewhere = mkdtempSync(join(tmpdir(), 'baton-init-runbooks-'));
    symlinkSync(elsewhere, join(dir, 'runbooks'));
    symlinkSync(join(dir, 'nowhere'), join(dir, 'approvers'));
    const r = await init(dir);
    expect(r.code).toBe(0);
    expect(readdirSync(elsewhere)).toEqual(['example.ts']);
    expect(r.out).toContain('kept     approvers (it exists)');
    expect(existsSync(join(dir, 'nowhere'))).toBe(false);
  });

  it('initialises the directory it is given, made if need be', async () => {
    const dir = scratch();
    const r = await init(dir, 'deep/ops');
    expect(r.code).toBe(0);
    expect(files(join(dir, 'deep/ops'))).toEqual(FILES);
    expect(r.out).toContain(`cd ${join(dir, 'deep/ops')} && npm install`);
  });
});

/** Where the scaffold finds baton's API while the package is not installed: the sources. */
function api(): string {
  return join(ROOT, 'lib', 'index.ts');
}

describe('the scaffold', () => {
  it("type-checks against baton's API, strict", () => {
    const dir = scratch();
    spawnSync(process.execPath, [BATON, 'init'], { cwd: dir });
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(join(ROOT, 'node_modules', 'zod'), join(dir, 'node_modules', 'zod'));
    symlinkSync(join(ROOT, 'node_modules', '@pulumi'), join(dir, 'node_modules', '@pulumi'));
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noUncheckedIndexedAccess: true,
          noEmit: true,
          skipLibCheck: true,
          allowImportingTsExtensions: true,
          typeRoots: [join(ROOT, 'node_modules', '@types')],
          types: ['node'],
          paths: { 'baton-runbooks': [api()] },
        },
        include: ['runbooks', 'infra'],
      }),
    );
    const tsc = spawnSync(
      process.execPath,
      [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir],
      { encoding: 'utf8' },
    );
    expect(tsc.stdout + tsc.stderr).toBe('');
    expect(tsc.status).toBe(0);
  });
});

describe("the scaffold's infra program", () => {
  it('exports the hosts of the stack config as an inventory baton reads', async () => {
    const dir = scratch();
    await init(dir);
    mkdirSync(join(dir, 'infra', 'node_modules'));
    symlinkSync(
      join(ROOT, 'node_modules', '@pulumi'),
      join(dir, 'infra', 'node_modules', '@pulumi'),
    );
    const hosts = [
      {
        name: 'web1',
        roles: ['web'],
        address: '203.0.113.10',
        ssh: { user: 'root', hostKeys: [`SHA256:${'A'.repeat(43)}`] },
      },
    ];
    await pulumi.runtime.setMocks(
      {
        newResource: (args) => ({ id: `${args.name}-id`, state: args.inputs }),
        call: (args) => {
          throw new Error(`unexpected invoke ${args.token}`);
        },
      },
      'ops',
      'production',
      false,
    );
    pulumi.runtime.setAllConfig({ 'baton:hosts': JSON.stringify(hosts) });
    const program = (await import(join(dir, 'infra', 'index.ts'))) as { inventory: unknown };
    expect(parseInventory(program.inventory, 'infra/index.ts')).toEqual({
      stack: 'production',
      hosts: [{ ...hosts[0], connection: 'ssh' }],
    });
    const project = yaml.load(readFileSync(join(dir, 'infra', 'Pulumi.yaml'), 'utf8'));
    expect(project).toMatchObject({ name: 'ops', runtime: { name: 'nodejs' }, main: 'index.ts' });
  });
});

describe("the scaffold's example runbook", () => {
  it('plans and runs on the demo stack from the new repository, and a second run has nothing to do', () => {
    const dir = scratch();
    const r = spawnSync(process.execPath, [BATON, 'init'], { cwd: dir, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    // The package is not installed here: the runbook takes baton's API from the sources.
    const runbook = join(dir, 'runbooks', 'example.ts');
    writeFileSync(
      runbook,
      readFileSync(runbook, 'utf8').replace(
        "from 'baton-runbooks'",
        `from ${JSON.stringify(api())}`,
      ),
    );
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(join(ROOT, 'node_modules', 'zod'), join(dir, 'node_modules', 'zod'));
    const baton = (...args: string[]) =>
      spawnSync(process.execPath, [BATON, ...args], {
        cwd: dir,
        encoding: 'utf8',
        env: { ...process.env, BATON_HOME: '' },
      });

    const listed = baton('runbooks');
    expect(listed.stdout).toContain('example: Write a message of the day on every web host.');
    const plan = baton('plan', 'example', '--stack', 'demo');
    expect(plan.status, plan.stdout + plan.stderr).toBe(0);
    expect(plan.stdout).toContain('write-motd');
    expect(existsSync(join(dir, '.baton', 'demo'))).toBe(false);

    const run = baton('run', 'example', '--stack', 'demo', '--yes');
    expect(run.status, run.stdout + run.stderr).toBe(0);
    for (const host of ['alpha', 'beta', 'gamma'])
      expect(readFileSync(join(dir, '.baton', 'demo', host, 'motd'), 'utf8')).toBe(
        'Maintenance tonight at 22:00 UTC.\n',
      );
    expect(readdirSync(join(dir, '.baton', 'runs'))).toHaveLength(1);

    const before = treeHash(join(dir, '.baton', 'demo'));
    const again = baton('run', 'example', '--stack', 'demo', '--yes');
    expect(again.status).toBe(0);
    expect(again.stdout).toContain('nothing to do');
    expect(treeHash(join(dir, '.baton', 'demo'))).toBe(before);
  });
});
