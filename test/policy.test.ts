import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { demoInventory, type Inventory } from '../lib/core/inventory.ts';
import {
  loadOverlay,
  loadRepositoryPolicy,
  resolvePolicy,
  strictest,
  type Rules,
} from '../lib/approval/policy.ts';
import { testnetOrigin } from '../lib/testnet/stack.ts';
import { testnetPaths, type TestnetState } from '../lib/testnet/state.ts';

const repo = (files: Record<string, string>): string => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-policy-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
};

describe('the repository policy', () => {
  it('hashes the policy file and the approvers file, so a change to either is a new policy', () => {
    const dir = repo({ 'baton.policy.json': '{}', approvers: '# none\n' });
    const first = loadRepositoryPolicy(dir).hash;
    writeFileSync(join(dir, 'approvers'), '# none yet\n');
    const second = loadRepositoryPolicy(dir).hash;
    writeFileSync(join(dir, 'baton.policy.json'), '{ }');
    const third = loadRepositoryPolicy(dir).hash;
    expect(new Set([first, second, third]).size).toBe(3);
    expect(loadRepositoryPolicy(repo({})).hash).toBe(loadRepositoryPolicy(repo({})).hash);
  });

  it('names the controller keys that may sign journals, in the policy hash; a malformed key or an unknown field is refused', () => {
    const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOcVgSNTzYb4YyPrEfbMzTBQpaSDCvm6SN5zb0Y2N+rr';
    const dir = repo({ 'baton.policy.json': '{}', approvers: '# none\n' });
    const without = loadRepositoryPolicy(dir).hash;
    writeFileSync(
      join(dir, 'baton.policy.json'),
      JSON.stringify({ signers: { controllers: [`${key} ci-controller`] } }),
    );
    const withKey = loadRepositoryPolicy(dir);
    expect(withKey.data.signers).toEqual({ controllers: [`${key} ci-controller`] });
    expect(withKey.hash).not.toBe(without);

    writeFileSync(
      join(dir, 'baton.policy.json'),
      JSON.stringify({ signers: { controllers: ['ci'] } }),
    );
    expect(() => loadRepositoryPolicy(dir)).toThrow(
      `the policy ${join(dir, 'baton.policy.json')} is invalid at signers.controllers.0: not a public key line "keytype base64 [name]"`,
    );
    writeFileSync(
      join(dir, 'baton.policy.json'),
      JSON.stringify({ signers: { controllers: [], approvers: [] } }),
    );
    expect(() => loadRepositoryPolicy(dir)).toThrow('has unknown key "approvers" at signers');
    const overlay = join(dir, 'stricter.json');
    writeFileSync(overlay, JSON.stringify({ signers: { controllers: [key] } }));
    expect(() => loadOverlay(overlay)).toThrow(
      `the policy overlay ${overlay} sets signers, which only the repository's baton.policy.json may set`,
    );
  });

  it('gives a testnet no approvals and real hosts two for a destructive runbook, by default', () => {
    const r = loadRepositoryPolicy(repo({}));
    const on = (testnet: boolean): Rules =>
      resolvePolicy({ repo: r, runbook: 'x', stack: 'demo', destructive: true, testnet });
    expect(on(true)).toMatchObject({ approvers: 0, holdSeconds: 0, reconfirm: false });
    expect(on(false)).toMatchObject({ approvers: 2, holdSeconds: 300, reconfirm: true });
  });

  it("lays a runbook's rules for a stack over the stack's, field by field", () => {
    const r = loadRepositoryPolicy(
      repo({
        'baton.policy.json': JSON.stringify({
          stacks: { prod: { approvers: 2, roles: ['senior'], emergency: { approvers: 2 } } },
          runbooks: { failover: { prod: { holdSeconds: 0, emergency: { holdSeconds: 60 } } } },
        }),
      }),
    );
    const p = resolvePolicy({
      repo: r,
      runbook: 'failover',
      stack: 'prod',
      destructive: true,
      testnet: false,
    });
    expect(p).toMatchObject({ approvers: 2, roles: ['senior'], holdSeconds: 0 });
    expect(p.emergency).toMatchObject({ approvers: 2, holdSeconds: 60 });
  });

  it('lets an overlay raise the hold and narrow the roles', () => {
    const r = loadRepositoryPolicy(
      repo({ 'baton.policy.json': JSON.stringify({ stacks: { prod: { roles: ['a', 'b'] } } }) }),
    );
    const p = resolvePolicy({
      repo: r,
      runbook: 'x',
      stack: 'prod',
      destructive: false,
      testnet: false,
      overlay: { file: 'o.json', data: { stacks: { prod: { holdSeconds: 900, roles: ['a'] } } } },
    });
    expect(p).toMatchObject({ approvers: 1, holdSeconds: 900, roles: ['a'] });
    expect(p.source).toMatch(/baton\.policy\.json \+ overlay o\.json$/);
  });

  it('takes the stricter of two rule sets field by field', () => {
    const a: Rules = {
      approvers: 2,
      holdSeconds: 0,
      reconfirm: false,
      roles: ['senior', 'admin'],
      reconfirmTimeoutSeconds: 600,
      approvalTtlHours: 24,
    };
    expect(
      strictest(a, { ...a, approvers: 1, holdSeconds: 60, reconfirm: true, roles: ['admin'] }),
    ).toEqual({ ...a, holdSeconds: 60, reconfirm: true, roles: ['admin'] });
  });
});

describe('whether a stack is a testnet', () => {
  const saved = process.env.BATON_HOME;
  afterEach(() => {
    if (saved === undefined) delete process.env.BATON_HOME;
    else process.env.BATON_HOME = saved;
  });

  /** A state directory as `baton testnet up` leaves it, without any namespace or process. */
  function upHere(): { cwd: string; inventory: Inventory } {
    const cwd = mkdtempSync(join(tmpdir(), 'baton-origin-'));
    process.env.BATON_HOME = join(cwd, 'home');
    const paths = testnetPaths(cwd);
    mkdirSync(paths.dir, { recursive: true });
    const key = `SHA256:${'A'.repeat(43)}`;
    const state: TestnetState = {
      version: 1,
      id: paths.id,
      topology: 'irc',
      createdAt: new Date().toISOString(),
      createdHome: true,
      hosts: { nebula: { address: '192.0.2.11', hostKey: key } },
      faults: [],
    };
    writeFileSync(paths.stateFile, JSON.stringify(state));
    return {
      cwd,
      inventory: {
        stack: 'local',
        testnet: { id: paths.id },
        hosts: [
          {
            name: 'nebula',
            roles: ['ircd'],
            address: '192.0.2.11',
            connection: 'ssh',
            ssh: { user: 'root', port: 22, hostKeys: [key] },
          },
        ],
      },
    };
  }

  it('is a testnet when the hosts are the ones `baton testnet up` recorded here', () => {
    const { cwd, inventory } = upHere();
    expect(testnetOrigin(inventory, cwd)).toMatchObject({ testnet: true });
  });

  it('is not a testnet when the inventory says it is one and the testnet state disagrees', () => {
    const { cwd, inventory } = upHere();
    const host = inventory.hosts[0]!;
    const moved = { ...inventory, hosts: [{ ...host, address: '203.0.113.5' }] };
    expect(testnetOrigin(moved, cwd)).toEqual({
      testnet: false,
      why: "stack local is not a testnet: host nebula is at 203.0.113.5, and the testnet's nebula is at 192.0.2.11",
    });
    const rekeyed = {
      ...inventory,
      hosts: [{ ...host, ssh: { ...host.ssh!, hostKeys: [`SHA256:${'B'.repeat(43)}`] } }],
    };
    expect(testnetOrigin(rekeyed, cwd)).toMatchObject({
      testnet: false,
      why: 'stack local is not a testnet: host nebula does not pin the host key the testnet recorded for it',
    });
    const elsewhere = { ...inventory, testnet: { id: 'ffffff' } };
    expect(testnetOrigin(elsewhere, cwd)).toMatchObject({ testnet: false });
    const { testnet: _mark, ...unmarked } = inventory;
    expect(testnetOrigin(unmarked, cwd)).toEqual({
      testnet: false,
      why: 'stack local is not a testnet: its hosts were not made by `baton testnet up` (a testnet brought up before testnets were marked: run `sudo npx baton testnet up` again)',
    });
  });

  it('is a testnet for the built-in demo stack only, whatever another stack is named', () => {
    expect(testnetOrigin(demoInventory())).toMatchObject({ testnet: true });
    const lookalike = {
      ...demoInventory(),
      hosts: [{ ...demoInventory().hosts[0]!, address: 'db1' }],
    };
    expect(testnetOrigin(lookalike)).toMatchObject({ testnet: false });
  });
});
