import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { BatonError } from '../lib/core/errors.ts';
import {
  builtinSource,
  parseInventory,
  savedOutputsSource,
  type StackSource,
} from '../lib/core/inventory.ts';
import { pulumiStackSource, recordActiveHost } from '../lib/integrations/pulumi-stack.ts';
import { defaultSources } from '../lib/app/app.ts';

const here = dirname(fileURLToPath(import.meta.url));
/** What `pulumi stack output --json` printed for the production stack (recorded from the program under mocks). */
const recorded = readFileSync(join(here, 'testdata', 'production.stack-output.json'), 'utf8');
const expected = parseInventory(
  (JSON.parse(recorded) as { inventory: unknown }).inventory,
  'recording',
);

const root = mkdtempSync(join(tmpdir(), 'baton-stack-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface World {
  cwd: string;
  infra: string;
  bin: string;
  log: string;
  env: NodeJS.ProcessEnv;
}

let n = 0;
function world(): World {
  const cwd = join(root, `w${++n}`);
  const infra = join(cwd, 'infra');
  const bin = join(cwd, 'bin');
  mkdirSync(infra, { recursive: true });
  mkdirSync(bin);
  writeFileSync(join(infra, 'Pulumi.yaml'), 'name: baton\nruntime: nodejs\n');
  // PATH has only our bin (and the shell's), never a real pulumi.
  return {
    cwd,
    infra,
    bin,
    log: join(cwd, 'pulumi.log'),
    env: { PATH: `${bin}:/usr/bin:/bin`, HOME: cwd },
  };
}

/** A `pulumi` on PATH that logs its argv and cwd, then behaves as `script` says. */
function fakePulumi(w: World, script: string): void {
  const file = join(w.bin, 'pulumi');
  writeFileSync(
    file,
    `#!/bin/sh\nprintf '%s\\n' "$PWD" "$@" > ${JSON.stringify(w.log)}\n${script}\n`,
  );
  chmodSync(file, 0o755);
}

function saveOutputs(w: World, stack: string, doc: string): void {
  mkdirSync(join(w.cwd, '.baton', 'stacks'), { recursive: true });
  writeFileSync(join(w.cwd, '.baton', 'stacks', `${stack}.json`), doc);
}

async function load(sources: StackSource[], stack: string, cwd: string) {
  for (const s of sources) {
    const inv = await s.load(stack, cwd);
    if (inv) return { inv, from: s.describe };
  }
  return undefined;
}

describe('--stack NAME from a Pulumi stack', () => {
  let w: World;
  beforeEach(() => {
    w = world();
  });

  it('runs `pulumi stack output --json --show-secrets=false --stack NAME` in infra/ and reads the inventory', async () => {
    writeFileSync(join(w.cwd, 'recorded.json'), recorded);
    fakePulumi(w, `cat ${JSON.stringify(join(w.cwd, 'recorded.json'))}`);
    const inv = await pulumiStackSource({ env: w.env }).load('production', w.cwd);
    expect(inv).toEqual(expected);
    expect(readFileSync(w.log, 'utf8').trim().split('\n')).toEqual([
      w.infra,
      'stack',
      'output',
      '--json',
      '--show-secrets=false',
      '--stack',
      'production',
    ]);
  });

  it('falls through to the saved outputs file where no pulumi CLI is installed', async () => {
    saveOutputs(w, 'production', recorded);
    const sources: StackSource[] = [
      pulumiStackSource({ env: w.env }),
      savedOutputsSource,
      builtinSource,
    ];
    expect(await pulumiStackSource({ env: w.env }).load('production', w.cwd)).toBeUndefined();
    expect(await load(sources, 'production', w.cwd)).toEqual({
      inv: expected,
      from: '.baton/stacks/<stack>.json',
    });
  });

  it('prefers the live stack over a saved copy, and falls through when Pulumi has no such stack', async () => {
    const stale = JSON.parse(recorded) as { inventory: { hosts: { address: string }[] } };
    stale.inventory.hosts[0]!.address = '192.0.2.99';
    saveOutputs(w, 'production', JSON.stringify(stale));
    writeFileSync(join(w.cwd, 'recorded.json'), recorded);
    fakePulumi(
      w,
      `case "$*" in *production*) cat ${JSON.stringify(join(w.cwd, 'recorded.json'))};; *) echo "error: no stack named '$7' found" >&2; exit 255;; esac`,
    );
    // The app asks the testnet first (`local`), then the live stack, then the saved copy.
    const sources = defaultSources(w.env);
    expect(sources.map((s) => s.describe)).toEqual([
      'the local testnet (stack local, written by `baton testnet up`)',
      'pulumi stack output (infra/)',
      '.baton/stacks/<stack>.json',
      'built-in stack demo',
    ]);
    expect((await load(sources, 'production', w.cwd))?.inv.hosts[0]!.address).toBe(
      expected.hosts[0]!.address,
    );
    expect((await load(sources, 'demo', w.cwd))?.from).toBe('built-in stack demo');
  });

  it('says why when pulumi fails for another reason, rather than using a stale copy', async () => {
    saveOutputs(w, 'production', recorded);
    fakePulumi(
      w,
      `echo 'error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions' >&2; exit 255`,
    );
    const err = (await pulumiStackSource({ env: w.env })
      .load('production', w.cwd)
      .catch((e: unknown) => e)) as BatonError;
    expect(err).toBeInstanceOf(BatonError);
    expect(err.code).toBe('PRECONDITION_FAILED');
    expect(err.message).toBe(
      `\`pulumi stack output\` for stack production in ${w.infra} exited 255: error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions`,
    );
  });

  it('refuses a stack without an inventory output, or with a secret one', async () => {
    fakePulumi(w, `echo '{"other": 1}'`);
    await expect(pulumiStackSource({ env: w.env }).load('production', w.cwd)).rejects.toThrow(
      'stack production has no `inventory` output',
    );
    fakePulumi(w, `echo '{"inventory": "[secret]"}'`);
    await expect(pulumiStackSource({ env: w.env }).load('production', w.cwd)).rejects.toThrow(
      /is a secret/,
    );
  });

  it('answers nothing without a Pulumi project, or for a name that is not a stack name', async () => {
    fakePulumi(w, 'exit 99');
    rmSync(join(w.infra, 'Pulumi.yaml'));
    expect(await pulumiStackSource({ env: w.env }).load('production', w.cwd)).toBeUndefined();
    expect(await pulumiStackSource({ env: w.env }).load('-x; rm -rf /', w.cwd)).toBeUndefined();
  });
});

describe('recording a cutover in the stack', () => {
  it('sets baton:activeHost with `pulumi config set` in infra/', async () => {
    const w = world();
    fakePulumi(w, 'exit 0');
    await recordActiveHost('production', 'nebula', { env: w.env, cwd: w.cwd });
    expect(readFileSync(w.log, 'utf8').trim().split('\n')).toEqual([
      w.infra,
      'config',
      'set',
      'baton:activeHost',
      'nebula',
      '--stack',
      'production',
    ]);
  });

  it('without a pulumi CLI, says exactly what to run so pulumi up does not undo the cut', async () => {
    const w = world();
    await expect(
      recordActiveHost('production', 'nebula', { env: w.env, cwd: w.cwd }),
    ).rejects.toMatchObject({
      code: 'MISSING_PREREQUISITE',
      hint: `Run this where Pulumi is installed, or the next pulumi up will undo the cutover: cd ${w.infra} && pulumi config set baton:activeHost nebula --stack production`,
    });
  });
});
