/** `baton testnet ...`: the local testnet from the command line. */
import type { Command } from 'commander';
import { InvalidInputError } from '../core/errors.ts';
import type { FaultOptions, TestnetStatus } from './index.ts';
import { FAULT_KINDS, TOPOLOGY_NAMES } from './names.ts';

/** The testnet itself, loaded only when a testnet command runs. */
const loadTestnet = (): Promise<typeof import('./index.ts')> => import('./index.ts');

export interface TestnetIo {
  out: (line: string) => void;
  json: () => boolean;
}

/** Add `testnet up|down|status|exec|fault|heal` to the baton program. */
export function registerTestnetCommands(program: Command, io: TestnetIo): void {
  const testnet = program
    .command('testnet')
    .description(
      'Real hosts on this machine (namespaces, real sshd) for rehearsals and tests; needs root.',
    )
    .addHelpText(
      'after',
      `
Examples:
  sudo npx baton testnet up                     the reference topology irc: paralysis, nebula, emergency1, ns1, vault
  sudo npx baton testnet status                 hosts, addresses, services, faults; sshd checked over ssh
  sudo npx baton testnet exec nebula -- systemctl status atheme
  sudo npx baton testnet fault partition nebula emergency1
  sudo npx baton testnet heal                   heal every fault
  sudo npx baton testnet down                   remove everything the testnet made
  npx baton plan handover --stack local         plan against the testnet's inventory

State lives in .baton/testnet/ (or $BATON_HOME/testnet/).`,
    );
  const json = (cmd: Command): boolean => io.json() || Boolean(cmd.opts().json);
  const print = (cmd: Command, value: unknown, human: () => void): void => {
    if (json(cmd)) io.out(JSON.stringify(value, null, 2));
    else human();
  };

  testnet
    .command('up')
    .description('Create the testnet, or repair a running one (idempotent).')
    .option('--topology <name>', `the topology: ${TOPOLOGY_NAMES.join(', ')}`, 'irc')
    .option('--json', 'machine-readable output on stdout')
    .addHelpText(
      'after',
      `
Missing Debian packages (debian-packages.txt) are installed with apt-get first.

Examples:
  sudo npx baton testnet up
  sudo npx baton testnet up --topology solo --json`,
    )
    .action(async (o: { topology: string }, cmd: Command) => {
      const result = await (
        await loadTestnet()
      ).up({
        topology: o.topology,
        log: (line) => process.stderr.write(line + '\n'),
      });
      print(cmd, result, () => {
        io.out(
          `testnet ${result.topology} is up in ${result.dir} (${result.changed ? `${result.durationMs} ms` : 'already running'})`,
        );
        for (const h of result.inventory.hosts)
          io.out(`  ${h.name.padEnd(12)} ${h.address.padEnd(12)} ${h.roles.join(',')}`);
        io.out('Inventory: --stack local');
      });
    });

  testnet
    .command('down')
    .description('Remove everything the testnet made: processes, namespaces, mounts, veths, files.')
    .option('--json', 'machine-readable output on stdout')
    .addHelpText('after', '\nExample:\n  sudo npx baton testnet down')
    .action(async (_o: unknown, cmd: Command) => {
      const result = await (await loadTestnet()).down();
      print(cmd, result, () =>
        io.out(
          result.namespaces.length
            ? `testnet down: removed ${result.namespaces.length} namespaces and ${result.dir}`
            : `testnet down: nothing was up in ${result.dir}`,
        ),
      );
    });

  testnet
    .command('status')
    .description(
      'Hosts, addresses, roles, services and faults; each sshd is checked with a real ssh login.',
    )
    .option('--json', 'machine-readable output on stdout')
    .addHelpText(
      'after',
      '\nExamples:\n  sudo npx baton testnet status\n  sudo npx baton testnet status --json',
    )
    .action(async (_o: unknown, cmd: Command) => {
      const result = await (await loadTestnet()).status();
      print(cmd, result, () => renderStatus(result, io.out));
    });

  testnet
    .command('exec')
    .description(
      'Run a command on a testnet host over ssh, like `ssh HOST CMD`: the words are joined and run by its shell.',
    )
    .argument('<host>', 'testnet host name')
    .argument('<command...>', 'the command, after --')
    .option('--json', 'print the result as JSON instead of streaming the output')
    .addHelpText(
      'after',
      `
Examples:
  sudo npx baton testnet exec nebula -- hostname
  sudo npx baton testnet exec ns1 -- 'ip -4 addr; ip route'
  sudo npx baton testnet exec paralysis --json -- cat /etc/hosts`,
    )
    .action(async (host: string, words: string[], _o: unknown, cmd: Command) => {
      const asJson = json(cmd);
      const result = await (
        await loadTestnet()
      ).exec(
        host,
        words.join(' '),
        asJson
          ? {}
          : {
              onStdout: (c) => process.stdout.write(c),
              onStderr: (c) => process.stderr.write(c),
            },
      );
      if (asJson) io.out(JSON.stringify(result, null, 2));
      if (result.exitCode !== 0 || result.signal)
        throw new (await import('../core/exec.ts')).CommandError(result);
    });

  testnet
    .command('fault')
    .description(`Inject a fault: ${FAULT_KINDS.join(', ')}.`)
    .argument('<kind>', FAULT_KINDS.join(' | '))
    .argument('<hosts...>', 'one host; for partition two or more (every pair is cut)')
    .option('--delay <ms>', 'slow: one-way delay added in each direction', parseNumber, 200)
    .option('--loss <percent>', 'slow: frames dropped in each direction', parseNumber, 0)
    .option('--rate <kbit>', 'slow: bandwidth limit in each direction, 0 for none', parseNumber, 0)
    .option(
      '--path <dir>',
      "disk-full: directory to fill (default: the host's first service's data dir)",
    )
    .option('--graceful', 'host-down: SIGTERM and 5 s of grace instead of pulling the plug')
    .option('--json', 'machine-readable output on stdout')
    .addHelpText(
      'after',
      `
Kinds:
  host-down HOST        every process killed (SIGKILL), link down; heal boots it: sshd, then enabled units
  link-down HOST        the host's cable is pulled; its processes keep running
  partition A B [C...]  packets between each pair are dropped in the switch; others still reach them
  slow HOST             netem delay/loss/rate on its link (a userspace delay line without netem)
  disk-full HOST        a small full filesystem over a data directory, holding a copy of its data

Examples:
  sudo npx baton testnet fault host-down nebula
  sudo npx baton testnet fault partition nebula emergency1
  sudo npx baton testnet fault slow paralysis --delay 150 --loss 2
  sudo npx baton testnet fault disk-full nebula --path /var/lib/atheme`,
    )
    .action(
      async (
        kind: string,
        hosts: string[],
        o: { delay: number; loss: number; rate: number; path?: string; graceful?: boolean },
        cmd: Command,
      ) => {
        const options: FaultOptions = {
          delayMs: o.delay,
          lossPercent: o.loss,
          rateKbit: o.rate,
          ...(o.path ? { path: o.path } : {}),
          ...(o.graceful ? { graceful: true } : {}),
        };
        const record = await (await loadTestnet()).fault(kind, hosts, options);
        print(cmd, record, () =>
          io.out(
            `fault ${record.kind} on ${record.hosts.join(', ')}${record.mechanism ? ` (${record.mechanism})` : ''}${record.path ? ` at ${record.path}` : ''}`,
          ),
        );
      },
    );

  testnet
    .command('heal')
    .description(
      'Heal faults: all of them, one kind, or one kind on given hosts. Healing host-down is the host coming back.',
    )
    .argument('[kind]', FAULT_KINDS.join(' | '))
    .argument('[hosts...]', 'hosts the fault is on')
    .option('--json', 'machine-readable output on stdout')
    .addHelpText(
      'after',
      `
Examples:
  sudo npx baton testnet heal
  sudo npx baton testnet heal host-down nebula
  sudo npx baton testnet heal partition nebula emergency1`,
    )
    .action(async (kind: string | undefined, hosts: string[], _o: unknown, cmd: Command) => {
      const healed = await (await loadTestnet()).heal(kind, hosts);
      print(cmd, healed, () =>
        io.out(
          healed.length
            ? healed.map((f) => `healed ${f.kind} on ${f.hosts.join(', ')}`).join('\n')
            : 'no faults were in place',
        ),
      );
    });
}

function renderStatus(s: TestnetStatus, out: (line: string) => void): void {
  if (!s.up) {
    out(`no testnet is up in ${s.dir}`);
    return;
  }
  out(`testnet ${s.topology} in ${s.dir}; relay ${s.relay}`);
  out(
    [
      'HOST'.padEnd(12),
      'ADDRESS'.padEnd(12),
      'ROLES'.padEnd(24),
      'SSHD'.padEnd(8),
      'SSH'.padEnd(12),
      'SERVICES'.padEnd(34),
      'FAULTS',
    ].join(' '),
  );
  for (const h of s.hosts) {
    out(
      [
        h.name.padEnd(12),
        h.address.padEnd(12),
        h.roles.join(',').padEnd(24),
        h.sshd.padEnd(8),
        (h.reachable ? 'reachable' : 'unreachable').padEnd(12),
        (h.services.map((x) => `${x.name}:${x.state}`).join(' ') || '-').padEnd(34),
        h.faults.join(',') || '-',
      ].join(' '),
    );
  }
}

function parseNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0)
    throw new InvalidInputError(`${value} is not a non-negative number`);
  return n;
}
