import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { install, operatorEnv, REPO, type Installed } from './support/package.ts';

/** The operator's own runbook: a parameter, a secret, one step on the demo stack's web hosts. */
const HELLO = `import { z } from 'zod';
import { condition, defineRunbook, secret, sh, type Host } from 'baton-runbooks';

const greeting = (host: Host, text: string): string => \`\${text} from \${host.name}\\n\`;

export default defineRunbook({
  name: 'hello',
  summary: 'Write a greeting on every web host.',
  defaultStack: 'demo',
  params: z.object({
    text: z.string().min(1).describe('what to write'),
    dir: z.string().min(1).default('.baton/hello').describe('one directory per host'),
    token: secret(z.string()).optional().describe('written beside the greeting'),
  }),
  steps: [
    {
      id: 'write',
      title: 'Write hello.txt',
      targets: { role: 'web' },
      async apply({ $, host, params }) {
        const dir = \`\${params.dir}/\${host.name}\`;
        await $\`mkdir -p \${dir}\`;
        await $(sh\`cat > \${\`\${dir}/hello.txt\`}\`, { input: greeting(host, params.text) });
        if (params.token) await $\`printf '%s' \${params.token} > \${\`\${dir}/token\`}\`;
      },
      async verify({ probe, host, params }) {
        const r = await probe\`cat \${\`\${params.dir}/\${host.name}/hello.txt\`}\`;
        return condition('greeting written', r.stdout === greeting(host, params.text), {
          expected: greeting(host, params.text),
          found: r.stdout,
        });
      },
      async undo({ $, host, params }) {
        await $\`rm -f \${\`\${params.dir}/\${host.name}/hello.txt\`}\`;
      },
    },
  ],
});
`;

const SECRET = 'hello-token-5f3a9c';
const DEMO_HOSTS = ['alpha', 'beta', 'gamma'];

/** Appends every module URL node resolves to $BATON_TRACE, from the loader thread. */
const TRACE_HOOKS = `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(process.env.BATON_TRACE, result.url + '\\n');
  return result;
}
`;

describe('baton as an installed package', () => {
  let pkg: Installed;

  const baton = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(pkg.bin, args, {
      cwd: pkg.project,
      env: operatorEnv(env),
      encoding: 'utf8',
      timeout: 60_000,
    });

  /** The modules node resolved while running `baton ARGS`. */
  const modulesOf = (args: string[]): string[] => {
    const trace = join(pkg.project, `trace-${args[0]!.replace(/\W/g, '')}.txt`);
    writeFileSync(trace, '');
    const r = baton(args, {
      NODE_OPTIONS: `--import ${pathToFileURL(join(pkg.project, 'trace.mjs')).href}`,
      BATON_TRACE: trace,
    });
    expect(r.status, r.stderr).toBe(0);
    return readFileSync(trace, 'utf8').trim().split('\n');
  };

  beforeAll(() => {
    pkg = install();
    mkdirSync(join(pkg.project, 'runbooks'));
    writeFileSync(join(pkg.project, 'runbooks', 'hello.ts'), HELLO);
    writeFileSync(join(pkg.project, 'trace-hooks.mjs'), TRACE_HOOKS);
    writeFileSync(
      join(pkg.project, 'trace.mjs'),
      "import { register } from 'node:module';\nregister('./trace-hooks.mjs', import.meta.url);\n",
    );
  }, 240_000);

  // The install is some 27 MiB; the other tests' scratch directories are small enough to keep.
  afterAll(() => {
    if (!pkg) return;
    rmSync(pkg.project, { recursive: true, force: true });
    rmSync(dirname(pkg.tarball), { recursive: true, force: true });
  });

  it("prints its own version, not the caller's npm_package_version", () => {
    const r = baton(['--version'], { npm_package_version: '7.7.7' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(pkg.version);
  });

  it('starts from its compiled dist/ without tsx, and loads tsx for a .ts runbook only', () => {
    const installed = join(pkg.project, 'node_modules', 'baton-runbooks');
    const version = modulesOf(['--version']);
    expect(version).toContain(`file://${installed}/dist/lib/app/cli.js`);
    expect(version.filter((u) => u.includes('/node_modules/tsx/'))).toEqual([]);
    expect(version.filter((u) => u.endsWith('.ts'))).toEqual([]);
    const listing = modulesOf(['runbooks']);
    expect(listing.some((u) => u.includes('/node_modules/tsx/'))).toBe(true);
  });

  it("lists the project's runbook beside baton's own", () => {
    const r = baton(['runbooks']);
    expect(r.status, r.stderr).toBe(0);
    const names = r.stdout
      .trim()
      .split('\n')
      .map((l) => l.split(':')[0]);
    expect(names).toEqual([
      'config-release',
      'failback',
      'failover',
      'handover',
      'hello',
      'ship-probe',
    ]);
  });

  it('plans it on the demo stack: the secret redacted, the plan bound to the compiled code and the project', () => {
    const r = baton([
      'plan',
      'hello',
      '--stack',
      'demo',
      '--param',
      'text=hi',
      '--param',
      `token=${SECRET}`,
      '--json',
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).not.toContain(SECRET);
    const out = JSON.parse(r.stdout) as {
      ok: boolean;
      plan: {
        params: Record<string, unknown>;
        code: Record<string, string>;
        steps: { id: string }[];
      };
    };
    expect(out.ok).toBe(true);
    expect(out.plan.params).toEqual({ text: 'hi', dir: '.baton/hello', token: '[redacted:token]' });
    expect(out.plan.steps.map((s) => s.id)).toEqual(['write']);
    const code = Object.keys(out.plan.code);
    expect(code).toEqual(
      expect.arrayContaining([
        'baton-version',
        'project:runbooks/hello.ts',
        'baton:dist/lib/index.js',
        'baton:dist/lib/core/runbook.js',
        'baton:dist/lib/app/runs.js',
        'package:zod',
        'lockfile:project:package-lock.json',
      ]),
    );
    expect(
      code.filter(
        (k) => k.startsWith('unresolved:') || (k.endsWith('.ts') && k.startsWith('baton:')),
      ),
    ).toEqual([]);
    expect(existsSync(join(pkg.project, '.baton', 'hello'))).toBe(false);
  });

  it("shares baton's module instances with the runbook: its InvalidInputError is an invalid input, exit 2", () => {
    mkdirSync(join(pkg.project, 'checks'));
    writeFileSync(
      join(pkg.project, 'checks', 'refuses.ts'),
      `import { z } from 'zod';
import { defineRunbook, InvalidInputError } from 'baton-runbooks';
export default defineRunbook({
  name: 'refuses',
  summary: 'Refuses in its facts.',
  params: z.object({}),
  async facts() {
    throw new InvalidInputError('no such release', 'Pass one that exists.');
  },
  steps: [{ id: 'none', title: 'Nothing', targets: { role: 'web' }, async apply() {} }],
});
`,
    );
    const r = baton(['plan', 'checks/refuses.ts', '--stack', 'demo', '--json']);
    expect(r.status, r.stderr).toBe(2);
    expect(JSON.parse(r.stdout)).toEqual({
      error: 'runbook refuses, its facts: no such release',
      code: 'INVALID_INPUT',
      exitCode: 2,
      hint: 'Pass one that exists.',
    });
  });

  it('runs it: every demo host has the greeting, and the journal has no secret', () => {
    const r = baton([
      'run',
      'hello',
      '--stack',
      'demo',
      '--yes',
      '--param',
      'text=hi',
      '--param',
      `token=${SECRET}`,
    ]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    for (const host of DEMO_HOSTS) {
      const dir = join(pkg.project, '.baton', 'hello', host);
      expect(readFileSync(join(dir, 'hello.txt'), 'utf8')).toBe(`hi from ${host}\n`);
      expect(readFileSync(join(dir, 'token'), 'utf8')).toBe(SECRET);
    }
    const runs = join(pkg.project, '.baton', 'runs');
    const [run] = readdirSync(runs).filter((d) => d.includes('-hello-'));
    const journal = readFileSync(join(runs, run!, 'journal.jsonl'), 'utf8');
    expect(journal).toContain('[redacted:token]');
    expect(journal).not.toContain(SECRET);
  });

  it("runs baton's own compiled runbook, reading its asset from the package", () => {
    const r = baton(['run', 'config-release', '--yes']);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const app = readFileSync(
      join(pkg.project, 'node_modules', 'baton-runbooks', 'runbooks', 'config-release', 'app.conf'),
      'utf8',
    );
    for (const host of DEMO_HOSTS)
      expect(readFileSync(join(pkg.project, '.baton', 'demo', host, 'current.conf'), 'utf8')).toBe(
        app,
      );
  });

  it('holds no @pulumi package and no sources or tests, and types the author API for the project', () => {
    const installed = join(pkg.project, 'node_modules', 'baton-runbooks');
    const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
      peerDependencies: Record<string, string>;
    };
    expect(Object.keys(manifest.dependencies).filter((d) => d.startsWith('@pulumi/'))).toEqual([]);
    expect(manifest.peerDependencies).toHaveProperty('zod');
    expect(existsSync(join(pkg.project, 'node_modules', '@pulumi'))).toBe(false);
    expect(readdirSync(installed).sort()).toEqual(
      [
        'README.md',
        'bin',
        'contrib',
        'debian-packages.txt',
        'dist',
        'lib',
        'package.json',
        'runbooks',
        'templates',
        'tools',
      ].sort(),
    );
    expect(existsSync(join(installed, 'lib', 'app'))).toBe(false);
    expect(existsSync(join(installed, 'test'))).toBe(false);
    expect(existsSync(join(installed, 'infra'))).toBe(false);

    writeFileSync(
      join(pkg.project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: ['node'],
          typeRoots: [join(REPO, 'node_modules', '@types')],
        },
        include: ['runbooks', 'types'],
      }),
    );
    mkdirSync(join(pkg.project, 'types'));
    writeFileSync(
      join(pkg.project, 'types', 'typed.ts'),
      "import { defineRunbook } from 'baton-runbooks';\nimport { servicesParams } from 'baton-runbooks/steps';\n" +
        'export const wrong: number = defineRunbook;\nexport const params = servicesParams;\n',
    );
    const tsc = (): ReturnType<typeof spawnSync> =>
      spawnSync(
        process.execPath,
        [join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', pkg.project],
        {
          encoding: 'utf8',
        },
      );
    const wrong = tsc();
    expect(String(wrong.stdout)).toContain('types/typed.ts(3,14): error TS2322');
    writeFileSync(
      join(pkg.project, 'types', 'typed.ts'),
      "import { servicesParams } from 'baton-runbooks/steps';\nexport const params = servicesParams;\n",
    );
    const right = tsc();
    expect(String(right.stdout), String(right.stderr)).toBe('');
    expect(right.status).toBe(0);
  });

  // `baton init` in the installed package: its test goes here, on the same install (pkg, baton()).
  it('baton init makes a repository whose example runbook plans and runs on the demo stack', () => {
    const ops = join(pkg.project, 'ops');
    const init = spawnSync(pkg.bin, ['init', 'ops', '--json'], {
      cwd: pkg.project,
      env: operatorEnv({}),
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(init.status, init.stdout + init.stderr).toBe(0);
    expect((JSON.parse(init.stdout) as { created: string[] }).created).toEqual(
      expect.arrayContaining(['runbooks/example.ts', 'baton.policy.json', 'approvers']),
    );
    // The scaffold's runbook imports the installed package, found from ops/ as node finds it.
    expect(readFileSync(join(ops, 'runbooks', 'example.ts'), 'utf8')).toContain(
      "from 'baton-runbooks'",
    );
    const inOps = (args: string[]) =>
      spawnSync(pkg.bin, args, {
        cwd: ops,
        env: operatorEnv({}),
        encoding: 'utf8',
        timeout: 60_000,
      });
    const plan = inOps(['plan', 'example', '--stack', 'demo', '--json']);
    expect(plan.status, plan.stdout + plan.stderr).toBe(0);
    const run = inOps(['run', 'example', '--stack', 'demo', '--yes', '--param', 'text=hello ops']);
    expect(run.status, run.stdout + run.stderr).toBe(0);
    for (const host of DEMO_HOSTS)
      expect(readFileSync(join(ops, '.baton', 'demo', host, 'motd'), 'utf8')).toBe('hello ops\n');
  });
});
