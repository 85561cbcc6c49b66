import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../lib/app/cli.ts';
import { commandTree } from '../lib/app/usage.ts';
import { captureIo, ROOT, workspace } from './helpers.ts';
import { findExecutable } from '../lib/transports/which.ts';
import { assertPrerequisite, skipUnless } from './support/require.ts';

const BATON = join(ROOT, 'bin', 'baton.js');
const RUN_ID = '20261121T060102Z-config-release-1a2b';

/** A workspace with a runbook of its own, a run and a saved stack, and baton's script for `shell`. */
function completing(shell: 'bash' | 'zsh'): { cwd: string; script: string } {
  const ws = workspace();
  mkdirSync(join(ws.cwd, 'runbooks'));
  writeFileSync(join(ws.cwd, 'runbooks', 'rotate-motd.ts'), '');
  writeFileSync(join(ws.cwd, 'runbooks', 'rotate-motd.test.ts'), '');
  mkdirSync(join(ws.cwd, '.baton', 'runs', RUN_ID), { recursive: true });
  const r = spawnSync(process.execPath, [BATON, 'completion', shell], {
    cwd: ws.cwd,
    encoding: 'utf8',
  });
  expect(r.status, r.stderr).toBe(0);
  const script = join(ws.cwd, `baton.${shell}`);
  writeFileSync(script, r.stdout);
  return { cwd: ws.cwd, script };
}

/** What bash offers for each command line, the cursor at its end ('' is a new word). */
function bashCompletes(
  lines: string[][],
  where: { at?: string; env?: NodeJS.ProcessEnv } = {},
): string[][] {
  const { cwd: project, script } = completing('bash');
  const cwd = where.at ? join(project, where.at) : project;
  mkdirSync(cwd, { recursive: true });
  const calls = lines
    .map(
      (words) =>
        `COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; COMPREPLY=(); _baton; printf '%s\\n' "\${COMPREPLY[*]}"`,
    )
    .join('\n');
  const r = spawnSync('bash', ['-c', `source ${script} && complete -p baton && ${calls}`], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, BATON_HOME: '', ...where.env },
  });
  expect(r.status, r.stderr).toBe(0);
  expect(r.stderr).toBe('');
  const [registration, ...offers] = r.stdout.split('\n').slice(0, lines.length + 1);
  expect(registration).toBe('complete -F _baton baton');
  return offers.map((o) => (o ? o.split(' ') : []));
}

const COMMANDS = commandTree(buildProgram(captureIo()))[0]!.subcommands.map((s) => s.name);

describe('baton completion bash', () => {
  it('completes commands, subcommands and options from the command tree, in a real bash', () => {
    const [top, pl, testnet, options, audit] = bashCompletes([
      ['baton', ''],
      ['baton', 'pl'],
      ['baton', 'testnet', ''],
      ['baton', 'plan', 'config-release', '--'],
      ['baton', 'audit', '--stack', 'local', 'a'],
    ]);
    expect(top).toEqual(COMMANDS);
    expect(COMMANDS).toEqual(expect.arrayContaining(['plan', 'run', 'testnet', 'completion']));
    expect(pl).toEqual(['plan']);
    expect(testnet).toEqual(['up', 'down', 'status', 'exec', 'fault', 'heal']);
    expect(options).toEqual(['--out', '--param', '--stack', '--json', '--help']);
    expect(audit).toEqual(['ack']);
  });

  it('completes runbook names, run ids, stacks and choices where a command takes them', () => {
    const [runbooks, afterParam, runs, stacks, formats, shells, hostCommand] = bashCompletes([
      ['baton', 'plan', ''],
      ['baton', 'run', '--param', 'keep', '=', '2', 'ro'],
      ['baton', 'report', ''],
      ['baton', 'plan', 'handover', '--stack', ''],
      ['baton', 'report', RUN_ID, '--format', 'm'],
      ['baton', 'completion', ''],
      ['baton', 'testnet', 'exec', 'nebula', '--', 'l'],
    ]);
    expect(runbooks).toEqual([
      'rotate-motd',
      'config-release',
      'failback',
      'failover',
      'handover',
      'ship-probe',
    ]);
    expect(afterParam).toEqual(['rotate-motd']);
    expect(runs).toEqual([RUN_ID]);
    expect(stacks).toEqual(['local', 'demo', 'nodes']);
    expect(formats).toEqual(['md', 'markdown']);
    expect(shells).toEqual(['bash', 'zsh']);
    expect(hostCommand).toEqual([]);
  });
});

describe('completion in a subdirectory of the project', () => {
  it("offers the project's runbooks, runs and stacks, as baton finds them (bash)", () => {
    const [runbooks, runs, stacks] = bashCompletes(
      [
        ['baton', 'plan', 'rot'],
        ['baton', 'report', ''],
        ['baton', 'plan', 'handover', '--stack', ''],
      ],
      { at: 'deep/er' },
    );
    expect(runbooks).toEqual(['rotate-motd']);
    expect(runs).toEqual([RUN_ID]);
    expect(stacks).toEqual(['local', 'demo', 'nodes']);
  });

  it('offers the run ids and stacks of $BATON_HOME (bash)', () => {
    const home = mkdtempSync(join(tmpdir(), 'baton-home-'));
    mkdirSync(join(home, 'runs', 'elsewhere-run'), { recursive: true });
    mkdirSync(join(home, 'stacks'));
    writeFileSync(join(home, 'stacks', 'staging.json'), '{}');
    const [runs, stacks, runbooks] = bashCompletes(
      [
        ['baton', 'report', ''],
        ['baton', 'plan', 'handover', '--stack', ''],
        ['baton', 'plan', 'rot'],
      ],
      { at: 'deep', env: { BATON_HOME: home } },
    );
    expect(runs).toEqual(['elsewhere-run']);
    expect(stacks).toEqual(['local', 'demo', 'staging']);
    expect(runbooks).toEqual(['rotate-motd']);
  });
});

const zsh = findExecutable('zsh');

describe('baton completion zsh', () => {
  it('is a #compdef function with every command, subcommand and option of the tree', () => {
    const { script } = completing('zsh');
    const text = readFileSync(script, 'utf8');
    expect(text.split('\n')[0]).toBe('#compdef baton');
    expect(text).toContain('compdef _baton baton');
    for (const spec of commandTree(buildProgram(captureIo()))) {
      expect(text).toContain(`  '${spec.path.join(' ')}')\n`);
      for (const o of spec.options) expect(text).toContain(`'${o.long}:`);
      for (const s of spec.subcommands) expect(text).toContain(`'${s.name}:`);
    }
  });

  it.skipIf(skipUnless(zsh ? undefined : 'zsh is not installed', 'baton completion in a real zsh'))(
    'registers with compinit and offers what bash does, in a real zsh',
    () => {
      assertPrerequisite(zsh ? undefined : 'zsh is not installed (debian-packages.txt)');
      const { cwd, script } = completing('zsh');
      const home = mkdtempSync(join(tmpdir(), 'baton-home-'));
      mkdirSync(join(home, 'runs', 'elsewhere-run'), { recursive: true });
      // compadd and _describe work only inside a completion widget: stand-ins print what they were given.
      const stubs = [
        'compadd() { local a=0; while [[ $1 == -* && $1 != -- ]]; do [[ $1 == -a ]] && a=1; shift; done; [[ $1 == -- ]] && shift; if ((a)); then local n; for n; do print -r -- "${(P)n}"; done; else print -r -- "$*"; fi }',
        '_describe() { print -r -- "${(j: :)${(@)${(P)4}%%:*}}" }',
        'c() { words=("$@"); CURRENT=$#words; PREFIX=${words[CURRENT]}; _baton || print }',
      ].join('\n');
      const r = spawnSync(
        zsh!,
        [
          '-f',
          '-c',
          [
            `autoload -Uz compinit && compinit -u -d ${join(cwd, 'zcompdump')}`,
            `source ${script}`,
            'print -r -- "$_comps[baton]"',
            stubs,
            "c baton ''",
            "c baton plan ''",
            "c baton plan handover --stack ''",
            "c baton report ''",
            "c baton completion ''",
            'c baton testnet exec nebula -- l',
            // In a subdirectory of the project, and with BATON_HOME elsewhere.
            'mkdir -p deep/er && cd deep/er',
            'c baton plan rot',
            "c baton report ''",
            `(BATON_HOME=${home}; c baton report '')`,
          ].join('\n'),
        ],
        { cwd, encoding: 'utf8', env: { ...process.env, BATON_HOME: '' } },
      );
      expect(r.stderr).toBe('');
      expect(r.stdout.split('\n').slice(0, 10)).toEqual([
        '_baton',
        COMMANDS.join(' '),
        'rotate-motd config-release failback failover handover ship-probe',
        'local demo nodes',
        RUN_ID,
        'bash zsh',
        '',
        'rotate-motd config-release failback failover handover ship-probe',
        RUN_ID,
        'elsewhere-run',
      ]);
    },
  );
});
