import { execFileSync } from 'node:child_process';
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
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { main } from '../lib/app/cli.ts';
import { readJournal } from '../lib/engine/journal.ts';
import {
  codeChanges,
  codeVersion,
  diskReader,
  importSpecifiers,
} from '../lib/core/code-version.ts';
import { planRunbook, resumeRun, startRun } from '../lib/app/runs.ts';
import { runbookCode } from '../lib/app/registry.ts';
import { runsDir } from '../lib/app/paths.ts';
import { captureIo, localNodes, ROOT } from './helpers.ts';

/**
 * An operator's project: baton in its node_modules (this checkout, whose `exports`
 * name a build it does not have, so the runbook imports baton's sources by path),
 * a lib of its own, a lockfile.
 */
function project(): { cwd: string; runbook: string; edit(file: string, text: string): void } {
  const cwd = mkdtempSync(join(tmpdir(), 'baton-code-'));
  mkdirSync(join(cwd, 'runbooks'));
  mkdirSync(join(cwd, 'lib'));
  mkdirSync(join(cwd, 'node_modules', 'leftpad'), { recursive: true });
  symlinkSync(ROOT, join(cwd, 'node_modules', 'baton-runbooks'));
  writeFileSync(join(cwd, 'package.json'), '{ "name": "ops", "type": "module" }\n');
  writeFileSync(join(cwd, 'package-lock.json'), '{ "lockfileVersion": 3 }\n');
  writeFileSync(
    join(cwd, 'node_modules', 'leftpad', 'package.json'),
    '{ "name": "leftpad", "version": "1.0.0", "type": "module", "main": "index.js" }\n',
  );
  writeFileSync(join(cwd, 'node_modules', 'leftpad', 'index.js'), 'export const pad = (s) => s;\n');
  writeFileSync(
    join(cwd, 'lib', 'marker.ts'),
    "export { markerFile } from './paths.ts';\nexport const marker = 'one';\n",
  );
  writeFileSync(
    join(cwd, 'lib', 'paths.ts'),
    "export const markerFile = (dir: string): string => dir + '/marker';\n",
  );
  writeFileSync(
    join(cwd, 'runbooks', 'mark.ts'),
    `import { z } from 'zod';
import { pad } from 'leftpad';
import { defineRunbook } from '../node_modules/baton-runbooks/lib/core/runbook.ts';
import { marker, markerFile } from '../lib/marker.ts';

export default defineRunbook({
  name: 'mark',
  summary: 'Write a marker.',
  params: z.object({ dir: z.string() }),
  steps: [
    {
      id: 'mark',
      title: 'Write the marker',
      targets: { role: 'node' },
      async apply({ $, params }) {
        await $\`echo \${pad(marker)} > \${markerFile(params.dir)}\`;
      },
    },
  ],
});
`,
  );
  return {
    cwd,
    runbook: join(cwd, 'runbooks', 'mark.ts'),
    edit: (file, text) => writeFileSync(join(cwd, file), text),
  };
}

function sourceFiles(): string[] {
  return execFileSync('git', ['ls-files', '*.ts', '*.js'], { cwd: ROOT, encoding: 'utf8' })
    .trim()
    .split('\n');
}

describe('the code version', () => {
  it("reads the same imports as TypeScript's own scanner in every source file of baton", () => {
    for (const file of sourceFiles()) {
      const source = readFileSync(join(ROOT, file), 'utf8');
      const expected = [
        ...new Set(ts.preProcessFile(source, true, true).importedFiles.map((f) => f.fileName)),
      ];
      expect(importSpecifiers(source).sort(), file).toEqual(expected.sort());
    }
  });

  it('does not count an import in a comment or a string, and does count one after a quote in a regex', () => {
    const source = [
      "// import { a } from './in-a-comment.ts';",
      "/* export * from './in-a-block.ts' */",
      'const s = "import x from \'./in-a-string.ts\'";',
      "const t = `import('./in-a-template.ts')`;",
      'const quote = /"/;',
      "import { b } from './real.ts';",
      "const later = await import('./dynamic.ts');",
      "export type { C } from './types.ts';",
    ].join('\n');
    expect(importSpecifiers(source)).toEqual(['./real.ts', './types.ts', './dynamic.ts']);
  });

  it("covers every file the runbook imports, transitively, the packages' versions and the lockfiles", () => {
    const p = project();
    const { manifest } = runbookCode(p.runbook);
    expect(Object.keys(manifest)).toEqual(
      expect.arrayContaining([
        'baton-version',
        'project:runbooks/mark.ts',
        'project:lib/marker.ts',
        'project:lib/paths.ts',
        'baton:lib/core/runbook.ts',
        'baton:lib/app/runs.ts',
        'baton:lib/engine/engine.ts',
        'lockfile:project:package-lock.json',
        'lockfile:baton:package-lock.json',
      ]),
    );
    expect(manifest['package:leftpad']).toBe('1.0.0');
    expect(Object.keys(manifest).filter((k) => k.startsWith('unresolved:'))).toEqual([]);
  });

  it("follows the installed package's exports and its compiled .js files when a runbook imports baton by name", () => {
    const cwd = mkdtempSync(join(tmpdir(), 'baton-code-'));
    const pkg = join(cwd, 'node_modules', 'baton-runbooks');
    const files: Record<string, string> = {
      'package.json': '{ "name": "ops", "type": "module" }\n',
      'runbooks/hello.ts':
        "import { defineRunbook } from 'baton-runbooks';\nimport { leaseStep } from 'baton-runbooks/steps';\n",
      'node_modules/baton-runbooks/package.json': JSON.stringify({
        name: 'baton-runbooks',
        version: '9.9.9',
        type: 'module',
        exports: {
          '.': { types: './dist/lib/index.d.ts', default: './dist/lib/index.js' },
          './steps': { types: './dist/lib/steps/index.d.ts', default: './dist/lib/steps/index.js' },
        },
      }),
      'node_modules/baton-runbooks/dist/lib/index.js': "export * from './core/runbook.js';\n",
      'node_modules/baton-runbooks/dist/lib/core/runbook.js': "import { z } from 'zod';\n",
      'node_modules/baton-runbooks/dist/lib/steps/index.js':
        "export * from '../core/runbook.js';\n",
      'node_modules/zod/package.json': '{ "name": "zod", "version": "4.0.0" }\n',
    };
    for (const [file, text] of Object.entries(files)) {
      mkdirSync(join(cwd, file, '..'), { recursive: true });
      writeFileSync(join(cwd, file), text);
    }
    const { manifest } = codeVersion({
      entries: [join(cwd, 'runbooks', 'hello.ts')],
      batonRoot: pkg,
      batonVersion: '9.9.9',
    });
    expect(Object.keys(manifest).sort()).toEqual([
      'baton-version',
      'baton:dist/lib/core/runbook.js',
      'baton:dist/lib/index.js',
      'baton:dist/lib/steps/index.js',
      'package:zod',
      'project:runbooks/hello.ts',
    ]);
  });

  it('changes, and invalidates the plan, when a transitively imported file changes', async () => {
    const p = project();
    const inv = {
      runbook: p.runbook,
      stack: 'nodes',
      params: [`dir=${p.cwd}`],
      inventory: localNodes(['a']),
      cwd: p.cwd,
    };
    const before = await planRunbook(inv);
    p.edit('lib/paths.ts', "export const markerFile = (dir: string): string => dir + '/m';\n");
    const after = await planRunbook(inv);
    expect(after.plan.codeVersion).not.toBe(before.plan.codeVersion);
    expect(after.hash).not.toBe(before.hash);
    expect(codeChanges(before.plan.code, after.plan.code).map((c) => c.name)).toEqual([
      'project:lib/paths.ts',
    ]);
  });

  it('changes when the lockfile or a package version changes', () => {
    const p = project();
    const first = runbookCode(p.runbook);
    p.edit('package-lock.json', '{ "lockfileVersion": 3, "packages": {} }\n');
    const second = runbookCode(p.runbook);
    p.edit('node_modules/leftpad/package.json', '{ "name": "leftpad", "version": "1.0.1" }\n');
    const third = runbookCode(p.runbook);
    expect(codeChanges(first.manifest, second.manifest)).toEqual([
      {
        name: 'lockfile:project:package-lock.json',
        was: first.manifest['lockfile:project:package-lock.json'],
        now: second.manifest['lockfile:project:package-lock.json'],
      },
    ]);
    expect(codeChanges(second.manifest, third.manifest)).toEqual([
      { name: 'package:leftpad', was: '1.0.0', now: '1.0.1' },
    ]);
  });

  it("of the handover runbook changes when baton's lib/steps/services.ts changes", () => {
    const services = join(ROOT, 'lib', 'steps', 'services.ts');
    const edited = {
      ...diskReader,
      read: (path: string): Buffer | undefined =>
        path === services
          ? Buffer.concat([diskReader.read(path)!, Buffer.from('\n// edited\n')])
          : diskReader.read(path),
    };
    const handover = join(ROOT, 'runbooks', 'handover.ts');
    const asIs = runbookCode(handover);
    const changed = runbookCode(handover, edited);
    expect(changed.hash).not.toBe(asIs.hash);
    expect(codeChanges(asIs.manifest, changed.manifest).map((c) => c.name)).toEqual([
      'baton:lib/steps/services.ts',
    ]);
  });

  it('invalidates the approvals: a run of the approved plan under changed code is refused before the gate, naming the file', async () => {
    const p = project();
    const keys = join(p.cwd, 'keys');
    mkdirSync(keys);
    for (const name of ['alice', 'controller'])
      execFileSync('ssh-keygen', [
        '-q',
        '-t',
        'ed25519',
        '-N',
        '',
        '-C',
        name,
        '-f',
        join(keys, name),
      ]);
    const pubOf = (name: string): string =>
      readFileSync(join(keys, `${name}.pub`), 'utf8')
        .split(' ')
        .slice(0, 2)
        .join(' ');
    p.edit('approvers', `alice@example.org senior ${pubOf('alice')}\n`);
    // alice approves; the controller, not alice, runs it and signs the journal.
    p.edit(
      'baton.policy.json',
      JSON.stringify({
        signers: { controllers: [pubOf('controller')] },
        stacks: { nodes: { approvers: 1, holdSeconds: 0, reconfirm: false } },
      }),
    );
    mkdirSync(join(p.cwd, '.baton', 'stacks'), { recursive: true });
    p.edit('.baton/stacks/nodes.json', JSON.stringify({ inventory: localNodes(['a']) }));
    const plan = join(p.cwd, 'plan.json');
    const approvals = join(p.cwd, 'approvals');
    const baton = async (args: string[]): Promise<{ code: number; text: string }> => {
      const io = captureIo();
      const before = process.cwd();
      process.chdir(p.cwd);
      try {
        return { code: await main(args, io), text: io.text() };
      } finally {
        process.chdir(before);
      }
    };
    const run = [
      'run',
      '--plan',
      plan,
      '--approvals',
      approvals,
      '--signing-key',
      join(keys, 'controller'),
    ];
    expect(
      (
        await baton([
          'plan',
          p.runbook,
          '--stack',
          'nodes',
          '--param',
          `dir=${p.cwd}`,
          '--out',
          plan,
        ])
      ).code,
    ).toBe(0);
    expect(
      (await baton(['approve', plan, '--key', join(keys, 'alice'), '--out', approvals])).code,
    ).toBe(0);
    const paths = readFileSync(join(p.cwd, 'lib', 'paths.ts'), 'utf8');
    p.edit('lib/paths.ts', paths.replace("'/marker'", "'/elsewhere'"));

    const refused = await baton(run);
    expect(refused.code).toBe(1);
    expect(refused.text).toContain('the plan changed since it was approved');
    expect(refused.text).toContain('- the code changed: project:lib/paths.ts (changed)');
    const [runId] = readdirSync(runsDir(p.cwd));
    const kinds = readJournal(join(runsDir(p.cwd), runId!)).records.map((r) => r.event.kind);
    expect(kinds).not.toContain('policy');
    expect(existsSync(join(p.cwd, 'marker'))).toBe(false);

    p.edit('lib/paths.ts', paths);
    const ran = await baton(run);
    expect(ran.code, ran.text).toBe(0);
    expect(readFileSync(join(p.cwd, 'marker'), 'utf8')).toBe('one\n');
  });

  it('lets a resume continue only under the code the run started with, naming the file that changed', async () => {
    const p = project();
    const stopped = await startRun({
      runbook: p.runbook,
      stack: 'nodes',
      params: [`dir=${p.cwd}`],
      inventory: localNodes(['a']),
      cwd: p.cwd,
      policyFile: writePolicy(p.cwd),
      gate: () => {
        throw new Error('the controller died at the gate');
      },
    });
    expect(stopped.outcome).toBe('needs-human');
    const [runId] = readdirSync(runsDir(p.cwd));
    p.edit(
      'lib/marker.ts',
      "export { markerFile } from './paths.ts';\nexport const marker = 'two';\n",
    );

    await expect(resumeRun({ runId: runId!, params: [], cwd: p.cwd })).rejects.toMatchObject({
      code: 'CODE_CHANGED',
      message: expect.stringContaining('project:lib/marker.ts (changed)'),
    });
    const io = captureIo();
    const before = process.cwd();
    process.chdir(p.cwd);
    try {
      expect(await main(['resume', runId!], io)).toBe(2);
    } finally {
      process.chdir(before);
    }
    expect(io.text()).toContain('project:lib/marker.ts (changed)');

    p.edit(
      'lib/marker.ts',
      "export { markerFile } from './paths.ts';\nexport const marker = 'one';\n",
    );
    const resumed = await resumeRun({ runId: runId!, params: [], cwd: p.cwd });
    expect(resumed.outcome).toBe('precondition-failed');
  });
});

function writePolicy(cwd: string): string {
  const file = join(cwd, 'baton.policy.json');
  writeFileSync(file, JSON.stringify({ stacks: { nodes: { approvers: 0 } } }));
  return file;
}
