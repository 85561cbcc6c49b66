/**
 * The two-person rule on the irc testnet: a handover planned on the testnet,
 * approved by two people with their own ssh keys, rehearsed under the
 * production policy and signed by a controller key the policy names; while it
 * runs, no secret of the testnet shows in any command line on the controller
 * or on any host (they share this machine's process table).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../lib/app/cli.ts';
import { findHost, type Inventory } from '../../lib/core/inventory.ts';
import { readJournal } from '../../lib/engine/journal.ts';
import { loadRunbook } from '../../lib/app/registry.ts';
import { runsDir } from '../../lib/app/paths.ts';
import type { SshPool } from '../../lib/transports/ssh.ts';
import * as testnet from '../../lib/testnet/index.ts';
import { readIrcSecrets } from '../../lib/testnet/irc.ts';
import { rehearsalParams } from '../../lib/testnet/rehearsal.ts';
import { captureIo, inDir } from '../helpers.ts';
import { everyCommandLine } from '../support/argv.ts';
import { assertPrerequisite, skipUnless } from '../support/require.ts';

const missing = process.getuid?.() !== 0 ? 'needs root (the testnet)' : undefined;
const home = mkdtempSync(join(tmpdir(), 'baton-approved-rehearsal-'));
const repo = mkdtempSync(join(tmpdir(), 'baton-operator-repo-'));

const key = (name: string): string => join(repo, 'keys', name);
const pub = (name: string): string =>
  readFileSync(`${key(name)}.pub`, 'utf8')
    .trim()
    .split(' ')
    .slice(0, 2)
    .join(' ');

describe.skipIf(skipUnless(missing, 'approvals on the testnet'))(
  'two people, on the irc testnet',
  () => {
    let pool: SshPool;
    let inv: Inventory;

    beforeAll(async () => {
      assertPrerequisite(missing);
      process.env.BATON_HOME = home;
      inv = (await testnet.up({ topology: 'irc' })).inventory;
      pool = testnet.testnetPool({ readyTimeoutMs: 20_000 });
      mkdirSync(join(repo, 'keys'));
      for (const name of ['alice', 'bob', 'controller'])
        execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', key(name)]);
      writeFileSync(
        join(repo, 'approvers'),
        `alice@example.org senior ${pub('alice')} alice\nbob@example.org senior ${pub('bob')} bob\n`,
      );
      writeFileSync(
        join(repo, 'baton.policy.json'),
        JSON.stringify({
          stacks: {
            production: { approvers: 2, holdSeconds: 0, reconfirm: false, roles: ['senior'] },
          },
          signers: { controllers: [`${pub('controller')} controller`] },
        }),
      );
    }, 900_000);

    afterAll(async () => {
      await pool?.close();
      if (existsSync(join(home, 'testnet'))) await testnet.down();
      delete process.env.BATON_HOME;
      rmSync(home, { recursive: true, force: true });
      rmSync(repo, { recursive: true, force: true });
    });

    const cli = async (args: string[]): Promise<{ code: number; text: string; stdout: string }> => {
      const io = captureIo();
      const code = await inDir(repo, () => main(args, io));
      return { code, text: io.text(), stdout: io.stdout.join('\n') };
    };

    it('runs a handover approved by two people under the production policy, and no secret shows in any command line', async () => {
      const { runbook } = await loadRunbook('handover');
      const params = rehearsalParams(runbook, []).flatMap((p) => ['--param', p]);
      const plan = join(repo, 'plan.json');
      const approvals = join(repo, 'approvals');
      mkdirSync(approvals);
      const planned = await cli(['plan', 'handover', '--stack', 'local', ...params, '--out', plan]);
      expect(planned.code, planned.text).toBe(0);

      const unapproved = await cli(['rehearse', '--plan', plan, '--policy-of', 'production']);
      expect(unapproved.code).toBe(2);
      expect(unapproved.text).toContain('needs 2 approval(s)');

      for (const who of ['alice', 'bob'])
        expect((await cli(['approve', plan, '--key', key(who), '--out', approvals])).code).toBe(0);

      const secrets: string[] = Object.values(readIrcSecrets()).flatMap((v: unknown) =>
        typeof v === 'string' ? [v] : Object.values(v as Record<string, string>),
      );
      const seen: string[] = [];
      const look = setInterval(() => {
        const listing = everyCommandLine();
        for (const s of secrets) if (s.length >= 8 && listing.includes(s)) seen.push(s.slice(0, 3));
      }, 100);
      let r;
      try {
        r = await cli([
          'rehearse',
          '--plan',
          plan,
          '--policy-of',
          'production',
          '--approvals',
          approvals,
          '--signing-key',
          key('controller'),
          '--json',
        ]);
      } finally {
        clearInterval(look);
      }
      expect(r.code, r.text).toBe(0);
      expect(seen).toEqual([]);
      const { runId } = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { runId: string };
      const events = readJournal(join(runsDir(repo), runId)).records.map((e) => e.event);
      expect(
        events
          .filter((e) => e.kind === 'approval')
          .map((e) => e.kind === 'approval' && e.principal),
      ).toEqual(['alice@example.org', 'bob@example.org']);
      // From outside: services moved, and the journal verifies against the repository's signers.
      const active = async (h: string): Promise<string> =>
        (await pool.exec(findHost(inv, h), 'systemctl is-active atheme || true')).stdout.trim();
      expect(await active('emergency1')).toBe('active');
      expect(await active('nebula')).not.toBe('active');
      const verified = await cli(['verify', runId]);
      expect(verified.code, verified.text).toBe(0);

      // The same two approvals do not clear another run.
      const again = await cli([
        'rehearse',
        '--plan',
        plan,
        '--policy-of',
        'production',
        '--approvals',
        approvals,
        '--signing-key',
        key('controller'),
      ]);
      expect(again.code).not.toBe(0);
    }, 300_000);
  },
);
