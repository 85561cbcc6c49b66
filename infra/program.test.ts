import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import { afterAll, describe, expect, it } from 'vitest';
import { parseInventory, type Inventory } from '../lib/core/inventory.ts';
import {
  batonKeys,
  dnsError,
  installMocks,
  leaseDns,
  recordingLog,
  settle,
  stackConfigFile,
  valueOf,
  type LeaseDns,
} from './mocks.ts';

// Mocks first, then the program.
const world = await installMocks();
const { parseStackConfig, readStackConfig } = await import('./config.ts');
const { deploy } = await import('./program.ts');
const { sshFingerprint } = await import('./cloud-init.ts');
const { AzureServiceHost, LinodeServiceHost } = await import('./service-host.ts');

type StackConfig = ReturnType<typeof parseStackConfig>;

/** Declare a stack under mocks; by default no authoritative server has a lease. */
async function run(stack: string, config: StackConfig, dns: LeaseDns = leaseDns()) {
  world.reset();
  const log = recordingLog();
  const deployment = deploy(stack, config, { resolverFor: dns.resolverFor, log });
  const inventory: Inventory = await valueOf(deployment.inventory);
  await settle();
  expect(world.refusedCalls).toEqual([]);
  return { deployment, inventory, resources: [...world.resources], log: log.lines };
}

const lease = (holder: string, gen: number, expires = '2026-12-01T23:00:00Z') =>
  `holder=${holder} gen=${gen} expires=${expires}`;

function stackConfig(stack: string, change?: (raw: Record<string, unknown>) => void): StackConfig {
  const raw = structuredClone(batonKeys(stackConfigFile(stack)));
  change?.(raw);
  return parseStackConfig(raw);
}

const of = (resources: typeof world.resources, type: string) =>
  resources.filter((r) => r.type === type);

function userDataOf(instanceInputs: Record<string, unknown>): Record<string, unknown> {
  const b64 = (instanceInputs['metadatas'] as { userData: string }[])[0]!.userData;
  const text = Buffer.from(b64, 'base64').toString('utf8');
  expect(text.startsWith('#cloud-config\n')).toBe(true);
  return JSON.parse(text.slice('#cloud-config\n'.length)) as Record<string, unknown>;
}

const tmp = mkdtempSync(join(tmpdir(), 'baton-infra-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('stack config', () => {
  it('reads the production stack file as Pulumi hands it to the program', () => {
    pulumi.runtime.setAllConfig(stackConfigFile('production'));
    const config = readStackConfig();
    expect(config.hosts.map((h) => [h.name, h.provider, h.roles])).toEqual([
      ['paralysis', 'linode', ['ircd', 'services', 'primary']],
      ['nebula', 'azure', ['ircd', 'services', 'standby']],
      ['emergency1', 'linode', ['ircd']],
    ]);
    expect(config.sshUser).toBe('baton');
    expect(config.activeHost).toBe('paralysis');
    expect(config.dns?.provider).toBe('linode');
  });

  it('the testnet stack is a smaller copy of production: same roles, providers and records', () => {
    const prod = stackConfig('production');
    const testnet = stackConfig('testnet');
    const shape = (c: StackConfig) =>
      c.hosts
        .filter((h) => h.roles.includes('primary') || h.roles.includes('standby'))
        .map((h) => [h.provider, h.roles]);
    expect(shape(testnet)).toEqual(shape(prod));
    expect(testnet.hosts.length).toBeLessThanOrEqual(prod.hosts.length);
    const active = (c: StackConfig) =>
      c.dns!.records.filter((r) => r.target === 'active').map((r) => r.name);
    expect(active(testnet)).toEqual(active(prod));
  });

  it('refuses ssh as root, an unknown active host, and a record for an unknown host', () => {
    expect(() => stackConfig('production', (c) => (c['sshUser'] = 'root'))).toThrow(
      /baton:sshUser is invalid: must not be root/,
    );
    expect(() => stackConfig('production', (c) => (c['activeHost'] = 'ghost'))).toThrow(
      /baton:activeHost is invalid: ghost is not one of the hosts/,
    );
    expect(() =>
      stackConfig('production', (c) => {
        (c['dns'] as { records: unknown[] }).records.push({ name: 'x', ttl: 60, target: 'ghost' });
      }),
    ).toThrow(/record x targets unknown host ghost/);
  });
});

describe('the exported Inventory', () => {
  it('is the plain Inventory type runbooks consume, and parseInventory accepts it unchanged', async () => {
    const { inventory } = await run('production', stackConfig('production'));
    expect(parseInventory(inventory, 'mock production stack')).toEqual(inventory);
    expect(inventory.stack).toBe('production');
    expect(inventory.hosts.map((h) => h.name)).toEqual(['paralysis', 'nebula', 'emergency1']);
    const nebula = inventory.hosts.find((h) => h.name === 'nebula')!;
    expect(nebula).toEqual({
      name: 'nebula',
      roles: ['ircd', 'services', 'standby'],
      address: expect.stringMatching(/^198\.51\.100\.\d+$/),
      connection: 'ssh',
      ssh: { user: 'baton', port: 22, hostKeys: [expect.stringMatching(/^SHA256:/)] },
      provider: 'azure',
      region: 'westeurope',
    });
    expect(inventory.dns).toMatchObject({ zone: 'example.net', provider: 'linode' });
    expect(inventory.dns!.servers.map((s) => s.address)).toEqual([
      'ns1.linode.com',
      'ns2.linode.com',
      'ns3.linode.com',
      'ns4.linode.com',
      'ns5.linode.com',
    ]);
  });

  it('is not a secret (so `--show-secrets=false` prints it), while the cloud-init user data is', async () => {
    const { deployment, resources } = await run('production', stackConfig('production'));
    expect(await pulumi.isSecret(deployment.inventory)).toBe(false);
    const linodes = of(resources, 'linode:index/instance:Instance');
    expect(linodes.length).toBe(2);
    for (const r of linodes) expect(r.secretInputs).toContain('metadatas');
    const vm = of(resources, 'azure-native:compute:VirtualMachine')[0]!;
    expect(vm.secretInputs).toContain('osProfile');
  });

  it("pins each host key from birth: the inventory's fingerprint is ssh-keygen's for the generated key", async () => {
    const { inventory } = await run('production', stackConfig('production'));
    for (const host of inventory.hosts) {
      const pub = world.hostPublicKeys.get(`${host.name}-host-ed25519`)!;
      const file = join(tmp, `${host.name}.pub`);
      writeFileSync(file, pub);
      const printed = execFileSync('ssh-keygen', ['-l', '-f', file], { encoding: 'utf8' });
      expect(printed.split(' ')[1]).toBe(host.ssh!.hostKeys[0]);
      expect(sshFingerprint(pub)).toBe(host.ssh!.hostKeys[0]);
    }
  });

  it('never carries a private key', async () => {
    const { inventory } = await run('production', stackConfig('production'));
    expect(JSON.stringify(inventory)).not.toMatch(/PRIVATE KEY/);
  });
});

describe('ServiceHost on Linode', () => {
  it('is an instance with backups, the operators keys and cloud-init that installs the pinned host key', async () => {
    const { resources, inventory } = await run('production', stackConfig('production'));
    const instance = of(resources, 'linode:index/instance:Instance').find(
      (r) => r.name === 'paralysis',
    )!;
    expect(instance.inputs).toMatchObject({
      label: 'paralysis',
      region: 'us-east',
      type: 'g6-standard-2',
      image: 'linode/ubuntu24.04',
      backupsEnabled: true,
      authorizedKeys: stackConfig('production').sshAuthorizedKeys,
    });
    const cloudConfig = userDataOf(instance.inputs);
    const pub = world.hostPublicKeys.get('paralysis-host-ed25519')!;
    expect(cloudConfig['ssh_keys']).toEqual({
      ed25519_private: expect.stringContaining('BEGIN OPENSSH PRIVATE KEY'),
      ed25519_public: pub.trim(),
    });
    expect(cloudConfig['ssh_genkeytypes']).toEqual([]);
    expect(cloudConfig['ssh_deletekeys']).toBe(true);
    expect(cloudConfig['users']).toEqual([
      expect.objectContaining({
        name: 'baton',
        ssh_authorized_keys: stackConfig('production').sshAuthorizedKeys,
      }),
    ]);
    expect(sshFingerprint(pub)).toBe(
      inventory.hosts.find((h) => h.name === 'paralysis')!.ssh!.hostKeys[0],
    );
  });

  it('has a firewall that drops by default, opens ssh to the operators and the service ports to all', async () => {
    const { resources } = await run('production', stackConfig('production'));
    const instance = of(resources, 'linode:index/instance:Instance').find(
      (r) => r.name === 'paralysis',
    )!;
    const fw = of(resources, 'linode:index/firewall:Firewall').find(
      (r) => r.name === 'paralysis-fw',
    )!;
    expect(fw.inputs).toMatchObject({
      inboundPolicy: 'DROP',
      outboundPolicy: 'ACCEPT',
      linodes: [Number(instance.id)],
    });
    expect(fw.inputs['inbounds']).toEqual([
      {
        label: 'ssh-operators',
        action: 'ACCEPT',
        protocol: 'TCP',
        ports: '22',
        ipv4s: ['198.51.100.10/32'],
        ipv6s: ['2001:db8:10::/64'],
      },
      ...[6667, 6697, 7000].map((port) => ({
        label: `service-tcp-${port}`,
        action: 'ACCEPT',
        protocol: 'TCP',
        ports: String(port),
        ipv4s: ['0.0.0.0/0'],
        ipv6s: ['::/0'],
      })),
    ]);
  });
});

describe('ServiceHost on Azure', () => {
  it('is a resource group, network, NSG, public IP and VM with cloud-init, backed up by a vault', async () => {
    const { resources } = await run('production', stackConfig('production'));
    const types = resources
      .filter((r) => r.type.startsWith('azure-native:'))
      .map((r) => `${r.type} ${r.name}`);
    expect(types.sort()).toEqual(
      [
        'azure-native:compute:VirtualMachine nebula',
        'azure-native:network:NetworkInterface nebula-nic',
        'azure-native:network:NetworkSecurityGroup nebula-nsg',
        'azure-native:network:PublicIPAddress nebula-ip',
        'azure-native:network:Subnet nebula-subnet',
        'azure-native:network:VirtualNetwork nebula-vnet',
        'azure-native:recoveryservices:ProtectedItem nebula-backup',
        'azure-native:recoveryservices:Vault nebula-vault',
        'azure-native:resources:ResourceGroup nebula-rg',
      ].sort(),
    );
    const vm = of(resources, 'azure-native:compute:VirtualMachine')[0]!;
    const os = vm.inputs['osProfile'] as Record<string, unknown>;
    expect(os['adminUsername']).toBe('baton');
    expect(os['linuxConfiguration']).toMatchObject({
      disablePasswordAuthentication: true,
      ssh: {
        publicKeys: stackConfig('production').sshAuthorizedKeys.map((keyData) => ({
          path: '/home/baton/.ssh/authorized_keys',
          keyData,
        })),
      },
    });
    const cloudConfig = Buffer.from(String(os['customData']), 'base64').toString('utf8');
    expect(cloudConfig).toContain(world.hostPublicKeys.get('nebula-host-ed25519')!.trim());
    const backup = of(resources, 'azure-native:recoveryservices:ProtectedItem')[0]!;
    expect(backup.inputs['properties']).toMatchObject({
      protectedItemType: 'Microsoft.Compute/virtualMachines',
      sourceResourceId: vm.id,
    });
    const nsg = of(resources, 'azure-native:network:NetworkSecurityGroup')[0]!;
    const rules = nsg.inputs['securityRules'] as Record<string, unknown>[];
    expect(rules[0]).toMatchObject({
      name: 'ssh-operators',
      access: 'Allow',
      direction: 'Inbound',
      destinationPortRange: '22',
      sourceAddressPrefixes: ['198.51.100.10/32', '2001:db8:10::/64'],
    });
    expect(
      rules.slice(1).map((r) => [r['destinationPortRange'], r['sourceAddressPrefix']]),
    ).toEqual([
      ['6667', '*'],
      ['6697', '*'],
      ['7000', '*'],
    ]);
  });

  it('has the same arguments and outputs as the Linode implementation', async () => {
    world.reset();
    const args = {
      region: 'r1',
      size: 's1',
      roles: ['ircd'],
      sshUser: 'baton',
      sshPort: 2222,
      authorizedKeys: [
        'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUaoDThcVeTQPVaweVVLbFa6g+6LAmc4StcaDeGbamh a',
      ],
      sshSourceCidrs: ['192.0.2.0/24'],
      servicePorts: [{ port: 6697, protocol: 'tcp' as const }],
      backups: true,
    };
    const onLinode = new LinodeServiceHost('same-linode', args);
    const onAzure = new AzureServiceHost('same-azure', args);
    const [a, b] = await Promise.all([
      valueOf(onLinode.inventoryHost),
      valueOf(onAzure.inventoryHost),
    ]);
    const shape = (h: typeof a) => ({
      ...h,
      name: 'x',
      address: 'x',
      provider: 'x',
      ssh: { ...h.ssh!, hostKeys: [] },
    });
    expect(shape(a)).toEqual(shape(b));
    expect(a.ssh!.port).toBe(2222);
    expect(
      Object.keys(onLinode)
        .filter((k) => !k.startsWith('__'))
        .sort(),
    ).toEqual(
      expect.arrayContaining([
        'address',
        'hostKeyFingerprints',
        'inventoryHost',
        'provider',
        'region',
      ]),
    );
    await settle();
  });

  it('refuses an Azure host whose backups flag is not a plain boolean', () => {
    expect(
      () =>
        new AzureServiceHost('maybe-backups', {
          region: 'r',
          size: 's',
          roles: ['x'],
          sshUser: 'baton',
          sshPort: 22,
          authorizedKeys: [],
          sshSourceCidrs: [],
          servicePorts: [],
          backups: pulumi.output(true),
        }),
    ).toThrow(/backups must be a plain boolean/);
  });
});

describe('DNS records and the active host', () => {
  const addressOf = (inv: Inventory, name: string) =>
    inv.hosts.find((h) => h.name === name)!.address;
  const record = (inv: Inventory, fqdn: string) => inv.dns!.records.find((r) => r.name === fqdn)!;

  it('service records point at the lease holder with their low TTLs; host records at their host', async () => {
    const dns = leaseDns((_, name) =>
      name === '_lease.services.example.net' ? [lease('paralysis', 4)] : dnsError('ENOTFOUND'),
    );
    const { inventory, resources, log } = await run('production', stackConfig('production'), dns);
    expect(record(inventory, 'irc.example.net')).toEqual({
      name: 'irc.example.net',
      type: 'A',
      ttl: 120,
      value: addressOf(inventory, 'paralysis'),
    });
    expect(record(inventory, 'nebula.example.net').value).toBe(addressOf(inventory, 'nebula'));
    const irc = of(resources, 'linode:index/domainRecord:DomainRecord').find(
      (r) => r.inputs['name'] === 'irc',
    )!;
    expect(irc.inputs).toEqual({
      domainId: 4242,
      name: 'irc',
      recordType: 'A',
      target: addressOf(inventory, 'paralysis'),
      ttlSec: 120,
    });
    // Every authoritative server is asked, once, for the lease and nothing else.
    expect(dns.queries).toEqual(
      [1, 2, 3, 4, 5].map((n) => ({
        server: `ns${n}.linode.com`,
        name: '_lease.services.example.net',
      })),
    );
    expect(log).toEqual([
      {
        level: 'info',
        message:
          'the active records follow the lease _lease.services.example.net, held by paralysis (gen 4, until 2026-12-01T23:00:00Z)',
      },
    ]);
  });

  it('after a cutover moves the lease, `pulumi up` declares the new holder, whatever this working copy says', async () => {
    // Another controller ran the failover: the lease names nebula, while this
    // copy's stack config still names paralysis.
    const dns = leaseDns(() => [lease('nebula', 8)]);
    const config = stackConfig('production');
    expect(config.activeHost).toBe('paralysis');
    const { inventory, resources, log } = await run('production', config, dns);
    const nebula = addressOf(inventory, 'nebula');
    for (const name of ['irc', 'services']) {
      const declared = of(resources, 'linode:index/domainRecord:DomainRecord').find(
        (r) => r.inputs['name'] === name,
      )!;
      expect(declared.inputs['target']).toBe(nebula);
      expect(record(inventory, `${name}.example.net`).value).toBe(nebula);
    }
    expect(record(inventory, 'paralysis.example.net').value).toBe(
      addressOf(inventory, 'paralysis'),
    );
    expect(log).toEqual([
      {
        level: 'warn',
        message:
          'the active records follow the lease _lease.services.example.net, held by nebula (gen 8, until 2026-12-01T23:00:00Z), not stack config baton:activeHost=paralysis; update the fallback with: pulumi config set baton:activeHost nebula',
      },
    ]);
  });

  it('where no server answers with a lease, the records follow baton:activeHost, with a warning', async () => {
    // What the cut step leaves behind in the stack config, read as Pulumi hands it over.
    pulumi.runtime.setAllConfig({ ...stackConfigFile('production'), 'baton:activeHost': 'nebula' });
    const dns = leaseDns((server) =>
      server.name === 'ns1.linode.com' ? dnsError('ETIMEOUT') : dnsError('ENODATA'),
    );
    const { inventory, log } = await run('production', readStackConfig(), dns);
    expect(record(inventory, 'irc.example.net').value).toBe(addressOf(inventory, 'nebula'));
    expect(log).toEqual([
      {
        level: 'warn',
        message: expect.stringMatching(
          /^the lease _lease\.services\.example\.net could not be read \(ns1\.linode\.com \(ns1\.linode\.com:53\): no answer in time; ns2\.linode\.com \(ns2\.linode\.com:53\): no TXT record; .*\); the active records follow stack config baton:activeHost=nebula$/,
        ),
      },
    ]);
  });

  it('a stack without `active` records reads no lease', async () => {
    const config = stackConfig('production', (c) => {
      const dns = c['dns'] as { records: { target: string }[] };
      dns.records = dns.records.filter((r) => r.target !== 'active');
    });
    const dns = leaseDns(() => [lease('nebula', 8)]);
    const { log } = await run('production', config, dns);
    expect(dns.queries).toEqual([]);
    expect(log).toEqual([]);
  });

  it('a testnet stack creates its own zone; Azure DNS takes the same records', async () => {
    const { resources } = await run('testnet', stackConfig('testnet'));
    expect(of(resources, 'linode:index/domain:Domain')[0]!.inputs).toMatchObject({
      domain: 'testnet.example.net',
      type: 'master',
    });
    const azure = stackConfig('production', (c) => {
      Object.assign(c['dns'] as object, { provider: 'azure', resourceGroup: 'dns-rg' });
    });
    const dns = leaseDns(() => [lease('paralysis', 1)]);
    const { inventory, resources: azureResources } = await run('production', azure, dns);
    // The lease is asked of the zone's own name servers.
    expect(dns.queries.map((q) => q.server)).toEqual([
      'ns1-07.azure-dns.com',
      'ns2-07.azure-dns.net',
    ]);
    const sets = of(azureResources, 'azure-native:dns:RecordSet');
    expect(sets.find((r) => r.inputs['relativeRecordSetName'] === 'irc')!.inputs).toMatchObject({
      resourceGroupName: 'dns-rg',
      zoneName: 'example.net',
      recordType: 'A',
      ttl: 120,
      aRecords: [{ ipv4Address: addressOf(inventory, 'paralysis') }],
    });
    expect(inventory.dns!.servers.map((s) => s.name)).toEqual([
      'ns1-07.azure-dns.com',
      'ns2-07.azure-dns.net',
    ]);
  });

  it('baton:activeHost is only the fallback: a stack may leave it out, and the lease record is configurable', async () => {
    const config = stackConfig('production', (c) => {
      delete c['activeHost'];
      (c['dns'] as Record<string, unknown>)['lease'] = '_lease.irc';
    });
    expect(config.activeHost).toBeUndefined();
    const dns = leaseDns((_, name) =>
      name === '_lease.irc.example.net' ? [lease('nebula', 2)] : dnsError('ENOTFOUND'),
    );
    const { inventory } = await run('production', config, dns);
    expect(record(inventory, 'services.example.net').value).toBe(addressOf(inventory, 'nebula'));
  });
});

describe('resources that hold data', () => {
  const options = (resources: typeof world.resources) =>
    Object.fromEntries(
      resources
        .filter((r) => r.opts.protect || r.opts.retainOnDelete)
        .map((r) => [`${r.type} ${r.name}`, r.opts]),
    );
  const kept = { protect: true, retainOnDelete: true };

  it('machines, their resource group and backups are protected and retained on delete; nothing else is', async () => {
    const { resources } = await run('production', stackConfig('production'));
    expect(options(resources)).toEqual({
      'linode:index/instance:Instance paralysis': kept,
      'linode:index/instance:Instance emergency1': kept,
      'azure-native:resources:ResourceGroup nebula-rg': kept,
      'azure-native:compute:VirtualMachine nebula': kept,
      'azure-native:recoveryservices:Vault nebula-vault': kept,
      'azure-native:recoveryservices:ProtectedItem nebula-backup': kept,
    });
    // The Azure OS disk is part of the VM resource; Azure keeps it when the VM goes.
    const vm = of(resources, 'azure-native:compute:VirtualMachine')[0]!;
    expect(vm.inputs['storageProfile']).toMatchObject({ osDisk: { deleteOption: 'Detach' } });
  });

  it('a zone the stack creates is protected and retained, on Linode and on Azure', async () => {
    const { resources } = await run('testnet', stackConfig('testnet'));
    expect(options(resources)['linode:index/domain:Domain dns-zone']).toEqual(kept);
    const azure = stackConfig('testnet', (c) => {
      Object.assign(c['dns'] as object, { provider: 'azure', resourceGroup: 'dns-rg' });
    });
    const { resources: azureResources } = await run('testnet', azure);
    expect(options(azureResources)['azure-native:dns:Zone dns-zone']).toEqual(kept);
  });
});

describe('the invoke mock', () => {
  it('throws on a token the program is not known to call', async () => {
    world.reset();
    await expect(
      pulumi.runtime.invoke('linode:index/getInstances:getInstances', {}),
    ).rejects.toBeDefined();
    expect(world.refusedCalls).toEqual(['linode:index/getInstances:getInstances']);
  });
});
