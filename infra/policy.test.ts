import * as pulumi from '@pulumi/pulumi';
import * as linode from '@pulumi/linode';
import * as azureRecovery from '@pulumi/azure-native/recoveryservices/index.js';
import { describe, expect, it } from 'vitest';
import type { Inventory } from '../lib/core/inventory.ts';
import {
  batonKeys,
  installMocks,
  leaseDns,
  recordingLog,
  settle,
  stackConfigFile,
  valueOf,
} from './mocks.ts';

// Mocks first, then the program.
const world = await installMocks();
const { parseStackConfig } = await import('./config.ts');
const { deploy } = await import('./program.ts');
const { LinodeServiceHost, AzureServiceHost } = await import('./service-host.ts');
const policy = await import('./policy.ts');

type StackConfig = ReturnType<typeof parseStackConfig>;
type Raw = Record<string, unknown>;
type RawHost = Raw & { name: string };

function stackConfig(stack: string, change?: (raw: Raw) => void): StackConfig {
  const raw = structuredClone(batonKeys(stackConfigFile(stack)));
  change?.(raw);
  return parseStackConfig(raw);
}

function host(raw: Raw, name: string): RawHost {
  return (raw['hosts'] as RawHost[]).find((h) => h.name === name)!;
}

/** Declare a stack under mocks and run the policies over what it declared. */
async function violations(
  config: StackConfig,
  only?: readonly (typeof policy.policies)[number][],
  extra?: () => void,
) {
  world.reset();
  const dns = leaseDns(() => ['holder=paralysis gen=1 expires=2026-12-01T23:00:00Z']);
  const { inventory } = deploy('policy-check', config, {
    resolverFor: dns.resolverFor,
    log: recordingLog(),
  });
  extra?.();
  const inv: Inventory = await valueOf(inventory);
  await settle();
  return policy.checkPolicies(policy.policyContext(config, inv, world.resources), only);
}

const hostArgs = {
  region: 'us-east',
  size: 'g6-nanode-1',
  roles: ['ircd'],
  sshUser: 'baton',
  sshPort: 22,
  authorizedKeys: [
    'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUaoDThcVeTQPVaweVVLbFa6g+6LAmc4StcaDeGbamh a',
  ],
  sshSourceCidrs: ['198.51.100.10/32'],
  servicePorts: [{ port: 6697, protocol: 'tcp' as const }],
  backups: true,
};

describe.each(['production', 'testnet'])('the %s stack', (stack) => {
  it('passes every policy', async () => {
    expect(await violations(stackConfig(stack))).toEqual([]);
  });
});

describe('policy: the standby is on neither the primary provider nor its region', () => {
  it("standby must not be on the primary's provider", async () => {
    const config = stackConfig('production', (c) =>
      Object.assign(host(c, 'nebula'), {
        provider: 'linode',
        region: 'eu-west',
        size: 'g6-standard-2',
      }),
    );
    expect(await violations(config, [policy.standbyApart])).toEqual([
      {
        policy: 'standby-apart',
        subject: 'nebula',
        message: expect.stringMatching(/is on linode like primary paralysis: one provider outage/),
      },
    ]);
  });

  it("standby must not be in the primary's region", async () => {
    const inventory: Inventory = {
      stack: 'x',
      hosts: [
        {
          name: 'a',
          roles: ['primary'],
          address: '192.0.2.1',
          connection: 'ssh',
          provider: 'linode',
          region: 'eu',
        },
        {
          name: 'b',
          roles: ['standby'],
          address: '192.0.2.2',
          connection: 'ssh',
          provider: 'azure',
          region: 'eu',
        },
      ],
    };
    const ctx = {
      inventory,
      resources: [],
      servicePorts: [],
      sshPort: 22,
      cutRecords: [],
      maxCutTtl: 300,
    };
    expect(policy.checkPolicies(ctx, [policy.standbyApart])).toEqual([
      {
        policy: 'standby-apart',
        subject: 'b',
        message: expect.stringMatching(/is in region eu like primary a/),
      },
    ]);
  });
});

describe('policy: ssh is never open to the world', () => {
  it('standby must not open port 22 to the world', async () => {
    const config = stackConfig('production', (c) =>
      (host(c, 'nebula')['servicePorts'] as unknown[]).push({ port: 22 }),
    );
    const found = await violations(config, [policy.sshNeverWorld]);
    expect(found).toEqual([
      {
        policy: 'ssh-never-world',
        subject: 'nebula-nsg rule service-tcp-22',
        message: expect.stringContaining(
          "opens ssh (tcp 22) to the world; allow only the operators' CIDRs",
        ),
        urn: 'urn:pulumi:production::baton::baton:infra:ServiceHost$azure-native:network:NetworkSecurityGroup::nebula-nsg',
      },
    ]);
  });

  it('a Linode host whose ssh sources include 0.0.0.0/0 fails', async () => {
    world.reset();
    new LinodeServiceHost('open-ssh', {
      ...hostArgs,
      sshSourceCidrs: ['198.51.100.10/32', '0.0.0.0/0'],
    });
    await settle();
    const ctx = policy.policyContext(
      stackConfig('production'),
      { stack: 'x', hosts: [] as never },
      world.resources,
    );
    expect(policy.checkPolicies(ctx, [policy.sshNeverWorld])).toEqual([
      expect.objectContaining({ subject: 'open-ssh-fw rule ssh-operators' }),
    ]);
  });

  it('an Azure host whose ssh is open to Internet fails', async () => {
    world.reset();
    new AzureServiceHost('open-ssh-az', { ...hostArgs, sshSourceCidrs: ['Internet'] });
    await settle();
    const ctx = policy.policyContext(
      stackConfig('production'),
      { stack: 'x', hosts: [] as never },
      world.resources,
    );
    expect(policy.checkPolicies(ctx, [policy.sshNeverWorld])).toEqual([
      expect.objectContaining({ subject: 'open-ssh-az-nsg rule ssh-operators' }),
    ]);
  });
});

describe('policy: no port but the service ports is open to the world', () => {
  it('the primary must not open a database port to the world', async () => {
    const config = stackConfig('production');
    const found = await violations(config, [policy.onlyServicePortsOpen], () => {
      new LinodeServiceHost('dbhost', {
        ...hostArgs,
        servicePorts: [{ port: 5432, protocol: 'tcp' }],
      });
    });
    expect(found).toEqual([
      {
        policy: 'only-service-ports-open',
        subject: 'dbhost-fw rule service-tcp-5432',
        message: expect.stringContaining(
          'opens tcp 5432 to the world; only the service ports tcp/6667',
        ),
        urn: expect.stringMatching(/::dbhost-fw$/),
      },
    ]);
  });

  it('a firewall that accepts by default, a rule without ports, and a Linode without firewall all fail', async () => {
    const found = await violations(stackConfig('testnet'), [policy.onlyServicePortsOpen], () => {
      new linode.Firewall('lax', {
        label: 'lax',
        inboundPolicy: 'ACCEPT',
        outboundPolicy: 'ACCEPT',
        inbounds: [{ label: 'all-udp', action: 'ACCEPT', protocol: 'UDP', ipv4s: ['0.0.0.0/0'] }],
      });
      new linode.Instance('bare', { label: 'bare', region: 'us-east', type: 'g6-nanode-1' });
    });
    expect(found.map((v) => v.subject)).toEqual([
      'lax (inbound policy)',
      'lax rule all-udp',
      'bare',
    ]);
    expect(found[2]!.message).toMatch(/attached to no Cloud Firewall: every port is open/);
  });
});

describe('policy: records the runbooks cut have a TTL of at most the maximum', () => {
  it('a cut record with a one-hour TTL fails', async () => {
    const config = stackConfig('production', (c) => {
      const records = (c['dns'] as { records: Raw[] }).records;
      records.find((r) => r['name'] === 'irc')!['ttl'] = 3600;
    });
    const found = await violations(config, [policy.cutTtlMax]);
    expect(found).toEqual([
      {
        policy: 'cut-ttl-max',
        subject: 'irc.example.net',
        message: 'irc.example.net has TTL 3600s, above the maximum 300s for a record runbooks cut',
        urn: expect.stringMatching(/linode:index\/domainRecord:DomainRecord::dns-irc-a$/),
      },
      {
        policy: 'cut-ttl-max',
        subject: 'irc.example.net',
        message: 'inventory record irc.example.net has TTL 3600s, above the maximum 300s',
      },
    ]);
  });

  it('a TTL Linode would round up above the maximum fails', async () => {
    const config = stackConfig('production', (c) => {
      const dns = c['dns'] as { maxCutTtl: number; records: Raw[] };
      dns.maxCutTtl = 250;
      dns.records.find((r) => r['name'] === 'services')!['ttl'] = 240;
    });
    const found = await violations(config, [policy.cutTtlMax]);
    expect(found).toEqual([
      {
        policy: 'cut-ttl-max',
        subject: 'services.example.net',
        message:
          'services.example.net asks for TTL 240s, which Linode stores as 300s, above the maximum 250s',
        urn: expect.stringMatching(/::dns-services-a$/),
      },
    ]);
    expect(policy.linodeEffectiveTtl(60)).toBe(30);
    expect(policy.linodeEffectiveTtl(100)).toBe(120);
  });

  it('host records are not cut records and may keep long TTLs', async () => {
    const config = stackConfig('production');
    expect(config.dns!.records.find((r) => r.name === 'paralysis')!.ttl).toBe(3600);
    expect(await violations(config, [policy.cutTtlMax])).toEqual([]);
  });
});

describe('policy: the primary has provider backups', () => {
  it('a Linode primary without backups fails', async () => {
    const config = stackConfig('production', (c) => (host(c, 'paralysis')['backups'] = false));
    expect(await violations(config, [policy.primaryBackups])).toEqual([
      {
        policy: 'primary-backups',
        subject: 'paralysis',
        message:
          'primary paralysis has no provider backups; set backups: true for it in baton:hosts',
        urn: expect.stringMatching(/linode:index\/instance:Instance::paralysis$/),
      },
    ]);
  });

  it('an Azure primary without a protected item fails', async () => {
    const config = stackConfig('production', (c) => {
      host(c, 'paralysis')['roles'] = ['ircd', 'standby'];
      Object.assign(host(c, 'nebula'), { roles: ['ircd', 'primary'], backups: false });
    });
    expect(await violations(config, [policy.primaryBackups])).toEqual([
      expect.objectContaining({ policy: 'primary-backups', subject: 'nebula' }),
    ]);
    const backedUp = stackConfig('production', (c) => {
      host(c, 'paralysis')['roles'] = ['ircd', 'standby'];
      host(c, 'nebula')['roles'] = ['ircd', 'primary'];
    });
    expect(await violations(backedUp, [policy.primaryBackups])).toEqual([]);
  });
});

describe('policy: resources that hold data are protected and retained on delete', () => {
  it('an instance declared without protect, and a vault protected but not retained, fail', async () => {
    const found = await violations(stackConfig('production'), [policy.statefulProtected], () => {
      new linode.Instance('scratch', { label: 'scratch', region: 'us-east', type: 'g6-nanode-1' });
      new azureRecovery.Vault(
        'loose-vault',
        { resourceGroupName: 'rg', sku: { name: 'RS0', tier: 'Standard' } },
        { protect: true },
      );
    });
    expect(found).toEqual([
      {
        policy: 'stateful-protected',
        subject: 'scratch',
        message:
          'scratch (linode:index/instance:Instance) holds data a replacement or `pulumi destroy` would delete, and is not protected; declare it with { protect: true, retainOnDelete: true }',
        urn: 'urn:pulumi:production::baton::linode:index/instance:Instance::scratch',
      },
      {
        policy: 'stateful-protected',
        subject: 'loose-vault',
        message:
          'loose-vault (azure-native:recoveryservices:Vault) is protected but not retainOnDelete: once unprotected, removing it from the stack deletes it in the cloud; declare it with retainOnDelete: true',
        urn: expect.stringMatching(/::loose-vault$/),
      },
    ]);
  });

  it('judges a resource alone, from its options', () => {
    const r = {
      type: 'linode:index/volume:Volume',
      name: 'data',
      id: '',
      custom: true,
      inputs: {},
    };
    expect(policy.statefulProtected.checkResource(r)).toEqual([]); // options unknown: nothing to judge
    expect(policy.statefulProtected.checkResource({ ...r, opts: { protect: true } })).toEqual([]); // a policy pack sees protect, not retainOnDelete
    expect(
      policy.statefulProtected
        .checkResource({ ...r, opts: { protect: false } })
        .map((v) => v.subject),
    ).toEqual(['data']);
    expect(
      policy.statefulProtected.checkResource({
        ...r,
        type: 'linode:index/firewall:Firewall',
        opts: { protect: false },
      }),
    ).toEqual([]);
  });
});

it('every policy is exercised here', () => {
  expect(policy.policies.map((p) => p.name)).toEqual([
    'standby-apart',
    'only-service-ports-open',
    'ssh-never-world',
    'cut-ttl-max',
    'primary-backups',
    'stateful-protected',
  ]);
  expect(pulumi.runtime.isDryRun()).toBe(false);
});
