import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as linode from '@pulumi/linode';
import type {
  PolicyResource as EngineResource,
  ReportViolation,
  ResourceValidationArgs,
  StackValidationArgs,
} from '@pulumi/policy';
import * as analyzerGrpc from '@pulumi/pulumi/proto/analyzer_grpc_pb.js';
import * as analyzerPb from '@pulumi/pulumi/proto/analyzer_pb.js';
import { Empty } from 'google-protobuf/google/protobuf/empty_pb.js';
import { Struct } from 'google-protobuf/google/protobuf/struct_pb.js';
import { afterAll, describe, expect, it } from 'vitest';
import {
  batonKeys,
  installMocks,
  leaseDns,
  recordingLog,
  settle,
  stackConfigFile,
  valueOf,
  type RecordedResource,
} from '../mocks.ts';

// Mocks first, then the program, then the pack's policies (which import the program's modules).
const world = await installMocks();
const { parseStackConfig } = await import('../config.ts');
const { deploy } = await import('../program.ts');
const { packPolicies, stackType } = await import('./policies.ts');
const { unknownCheckingProxy } = await import('@pulumi/policy');

type StackConfig = ReturnType<typeof parseStackConfig>;
type Raw = Record<string, unknown>;

const here = dirname(fileURLToPath(import.meta.url));
const stackUrn = 'urn:pulumi:production::baton::pulumi:pulumi:Stack::baton-production';
/** What the engine sends for a value a preview does not know yet. */
const unknown = '04da6b54-80e4-46f7-96ec-b56ff0331ba9';

function stackConfig(change?: (raw: Raw) => void): StackConfig {
  const raw = structuredClone(batonKeys(stackConfigFile('production')));
  change?.(raw);
  return parseStackConfig(raw);
}

interface Declared {
  resources: RecordedResource[];
  /** The stack's outputs, as infra/index.ts exports them. */
  outputs: Record<string, unknown>;
}

/** Run the program under mocks, as `pulumi up` would, and keep what it registered. */
async function declare(config: StackConfig, extra?: () => void): Promise<Declared> {
  world.reset();
  const dns = leaseDns(() => ['holder=paralysis gen=3 expires=2026-12-01T23:00:00Z']);
  const deployment = deploy('production', config, {
    resolverFor: dns.resolverFor,
    log: recordingLog(),
  });
  extra?.();
  const inventory = await valueOf(deployment.inventory);
  await settle();
  return {
    resources: [...world.resources],
    outputs: { inventory, policyFacts: deployment.policyFacts },
  };
}

const typeOf = (cls: unknown): unknown => (cls as { __pulumiType?: string }).__pulumiType;

/**
 * The resources as the engine hands them to a policy pack: properties behind
 * the pack's unknown-checking proxy, no id among them, links between
 * resources as dependencies by URN, and the stack's outputs on the root Stack.
 */
function engineResources(declared: Declared): EngineResource[] {
  const opts = (protect: boolean, parent?: string) => ({
    protect,
    ignoreChanges: [],
    aliases: [],
    customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
    additionalSecretOutputs: [],
    ...(parent ? { parent } : {}),
  });
  const view = (
    type: string,
    name: string,
    urn: string,
    props: Record<string, unknown>,
    o: ReturnType<typeof opts>,
    custom: boolean,
  ): EngineResource => {
    const proxied = unknownCheckingProxy(props) as Record<string, unknown>;
    return {
      type,
      name,
      urn,
      props: proxied,
      opts: o,
      ...(custom
        ? {
            provider: {
              type: `pulumi:providers:${type.split(':')[0]}`,
              props: {},
              urn: '',
              name: 'default',
            },
          }
        : {}),
      dependencies: [],
      propertyDependencies: {},
      isType: (cls) => typeOf(cls) === type,
      asType: (cls) => (typeOf(cls) === type ? (proxied as never) : undefined),
    };
  };
  const stack = view(stackType, 'baton-production', stackUrn, declared.outputs, opts(false), false);
  const byUrn = new Map<string, EngineResource>([[stackUrn, stack]]);
  for (const r of declared.resources) {
    byUrn.set(
      r.urn,
      view(r.type, r.name, r.urn, r.inputs, opts(r.opts.protect, r.parent ?? stackUrn), r.custom),
    );
  }
  for (const r of declared.resources) {
    const resource = byUrn.get(r.urn)!;
    resource.parent = byUrn.get(r.parent ?? stackUrn);
    for (const [key, urns] of Object.entries(r.propertyDependencies)) {
      const deps = urns
        .map((u) => byUrn.get(u))
        .filter((d): d is EngineResource => d !== undefined);
      resource.propertyDependencies[key] = deps;
      resource.dependencies.push(...deps.filter((d) => !resource.dependencies.includes(d)));
    }
  }
  return [...byUrn.values()];
}

class NotApplicable extends Error {}

interface Reported {
  policy: string;
  message: string;
  urn?: string;
}

/**
 * Every policy of the pack over the resources, as the engine calls them: each
 * resource policy once per resource, with its inputs; each stack policy once,
 * with all of them.
 */
async function runPack(
  resources: EngineResource[],
): Promise<{ reported: Reported[]; notApplicable: string[] }> {
  const reported: Reported[] = [];
  const notApplicable: string[] = [];
  const base = {
    stackTags: new Map<string, string>(),
    getConfig: <T extends object>() => ({}) as T,
    notApplicable: (reason?: string): never => {
      throw new NotApplicable(reason);
    },
  };
  for (const p of packPolicies) {
    const reportViolation: ReportViolation = (message, urn) =>
      void reported.push({ policy: p.name, message, ...(urn ? { urn } : {}) });
    try {
      if ('validateStack' in p) {
        const args: StackValidationArgs = { ...base, resources };
        await p.validateStack(args, reportViolation);
      } else {
        const validations = [p.validateResource ?? []].flat();
        for (const r of resources) {
          const args: ResourceValidationArgs = {
            ...base,
            type: r.type,
            props: r.props,
            urn: r.urn,
            name: r.name,
            opts: r.opts,
            ...(r.provider ? { provider: r.provider } : {}),
            isType: r.isType,
            asType: r.asType as ResourceValidationArgs['asType'],
          };
          for (const v of validations) {
            // The engine reports violations of a resource policy against that resource.
            await v(args, (message) => reportViolation(message, r.urn));
          }
        }
      }
    } catch (e) {
      if (!(e instanceof NotApplicable)) throw e;
      notApplicable.push(`${p.name}: ${e.message}`);
    }
  }
  return { reported, notApplicable };
}

describe('the CrossGuard pack', () => {
  it('has one policy per policy of infra/policy.ts; stateful-protected judges each resource, the others the stack', () => {
    expect(packPolicies.map((p) => [p.name, 'validateStack' in p ? 'stack' : 'resource'])).toEqual([
      ['standby-apart', 'stack'],
      ['only-service-ports-open', 'stack'],
      ['ssh-never-world', 'stack'],
      ['cut-ttl-max', 'stack'],
      ['primary-backups', 'stack'],
      ['stateful-protected', 'resource'],
    ]);
  });

  it('passes the production and testnet stacks, linking firewalls, NICs and backups by dependency', async () => {
    const declared = await declare(stackConfig());
    const resources = engineResources(declared);
    // No id reaches the pack: an instance is behind its firewall only through the dependency.
    expect(resources.every((r) => !('id' in r.props))).toBe(true);
    expect(await runPack(resources)).toEqual({ reported: [], notApplicable: [] });

    const raw = structuredClone(batonKeys(stackConfigFile('testnet')));
    const testnet = await declare(parseStackConfig(raw));
    expect((await runPack(engineResources(testnet))).reported).toEqual([]);
  });

  it('reports ssh open to the world on the standby, against its security group', async () => {
    const declared = await declare(
      stackConfig((c) => {
        const nebula = (c['hosts'] as Raw[]).find((h) => h['name'] === 'nebula')!;
        (nebula['servicePorts'] as unknown[]).push({ port: 22 });
      }),
    );
    expect((await runPack(engineResources(declared))).reported).toEqual([
      {
        policy: 'ssh-never-world',
        message:
          "nebula-nsg rule service-tcp-22 opens ssh (tcp 22) to the world; allow only the operators' CIDRs (baton:operatorCidrs)",
        urn: 'urn:pulumi:production::baton::baton:infra:ServiceHost$azure-native:network:NetworkSecurityGroup::nebula-nsg',
      },
    ]);
  });

  it('reports a cut record whose TTL is too high, against the record and for the inventory', async () => {
    const declared = await declare(
      stackConfig((c) => {
        const records = (c['dns'] as { records: Raw[] }).records;
        records.find((r) => r['name'] === 'irc')!['ttl'] = 3600;
      }),
    );
    expect((await runPack(engineResources(declared))).reported).toEqual([
      {
        policy: 'cut-ttl-max',
        message: 'irc.example.net has TTL 3600s, above the maximum 300s for a record runbooks cut',
        urn: 'urn:pulumi:production::baton::baton:infra:ServiceDns$linode:index/domainRecord:DomainRecord::dns-irc-a',
      },
      {
        policy: 'cut-ttl-max',
        message: 'inventory record irc.example.net has TTL 3600s, above the maximum 300s',
      },
    ]);
  });

  it('reports an unprotected machine before it is created, and the firewall it lacks', async () => {
    const declared = await declare(stackConfig(), () => {
      new linode.Instance('scratch', { label: 'scratch', region: 'us-east', type: 'g6-nanode-1' });
    });
    const urn = 'urn:pulumi:production::baton::linode:index/instance:Instance::scratch';
    expect((await runPack(engineResources(declared))).reported).toEqual([
      {
        policy: 'only-service-ports-open',
        message: 'Linode scratch is attached to no Cloud Firewall: every port is open',
        urn,
      },
      {
        policy: 'stateful-protected',
        message:
          'scratch (linode:index/instance:Instance) holds data a replacement or `pulumi destroy` would delete, and is not protected; declare it with { protect: true, retainOnDelete: true }',
        urn,
      },
    ]);
  });

  it("finds an Azure primary's backups through the protected item's dependency on its VM", async () => {
    const swapped = (backups: boolean) =>
      stackConfig((c) => {
        for (const h of c['hosts'] as Raw[]) {
          if (h['name'] === 'paralysis') h['roles'] = ['ircd', 'standby'];
          if (h['name'] === 'nebula') Object.assign(h, { roles: ['ircd', 'primary'], backups });
        }
      });
    expect((await runPack(engineResources(await declare(swapped(true))))).reported).toEqual([]);
    expect((await runPack(engineResources(await declare(swapped(false))))).reported).toEqual([
      {
        policy: 'primary-backups',
        message: 'primary nebula has no provider backups; set backups: true for it in baton:hosts',
        urn: 'urn:pulumi:production::baton::baton:infra:ServiceHost$azure-native:compute:VirtualMachine::nebula',
      },
    ]);
  });

  it('on a first preview, with the inventory not known yet, still checks what is known', async () => {
    const declared = await declare(
      stackConfig((c) => {
        const nebula = (c['hosts'] as Raw[]).find((h) => h['name'] === 'nebula')!;
        (nebula['servicePorts'] as unknown[]).push({ port: 22 });
      }),
    );
    declared.outputs['inventory'] = unknown;
    const stackPolicy = (name: string) => packPolicies.find((p) => p.name === name)!;
    const resources = engineResources(declared);
    const args = {
      resources,
      stackTags: new Map<string, string>(),
      getConfig: <T extends object>() => ({}) as T,
      notApplicable: (): never => {
        throw new NotApplicable();
      },
    };
    const reported: string[] = [];
    const ssh = stackPolicy('ssh-never-world');
    if (!('validateStack' in ssh)) throw new Error('ssh-never-world is a stack policy');
    await ssh.validateStack(args, (m) => void reported.push(m));
    expect(reported).toEqual([expect.stringContaining('nebula-nsg rule service-tcp-22 opens ssh')]);
    // The engine turns this into "can't run policy during preview", advisory.
    const standby = stackPolicy('standby-apart');
    if (!('validateStack' in standby)) throw new Error('standby-apart is a stack policy');
    await expect(
      Promise.resolve().then(() => standby.validateStack(args, () => undefined)),
    ).rejects.toThrow("value at .inventory can't be known during preview");
  });

  it('does not apply to a stack that is not the baton infra program', async () => {
    const declared = await declare(stackConfig());
    delete declared.outputs['policyFacts'];
    const { notApplicable } = await runPack(engineResources(declared));
    expect(notApplicable).toHaveLength(5);
    expect(notApplicable[0]).toBe(
      "standby-apart: the stack exports no policyFacts: it is not baton's infra program (infra/index.ts)",
    );
  });
});

describe("the pack served by Pulumi's own policy pack runner", () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    if (child?.pid) process.kill(child.pid);
  });

  /** Start the pack as `pulumi preview --policy-pack` does, and connect to it as the engine does. */
  async function startPack(): Promise<analyzerGrpc.AnalyzerClient> {
    const runner = join(
      here,
      '..',
      '..',
      'node_modules',
      '@pulumi',
      'pulumi',
      'cmd',
      'run-policy-pack',
    );
    child = spawn(process.execPath, [runner, '127.0.0.1:0', '.'], {
      cwd: here,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const port = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`the pack printed no port in 30 s: ${stderr}`)),
        30_000,
      );
      child!.stdout!.once('data', (d: Buffer) => {
        clearTimeout(timer);
        resolve(d.toString().trim());
      });
      child!.once('exit', (code) => reject(new Error(`the pack exited ${code}: ${stderr}`)));
    });
    expect(port).toMatch(/^\d+$/);
    return new analyzerGrpc.AnalyzerClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  }

  function call<Req, Res>(
    client: analyzerGrpc.AnalyzerClient,
    method: (req: Req, cb: (err: grpc.ServiceError | null, res: Res) => void) => unknown,
    req: Req,
  ): Promise<Res> {
    return new Promise((resolve, reject) =>
      method.call(client, req, (err, res) => (err ? reject(err) : resolve(res))),
    );
  }

  function resourceMessage(r: EngineResource): analyzerPb.AnalyzerResource {
    const m = new analyzerPb.AnalyzerResource();
    m.setType(r.type);
    m.setName(r.name);
    m.setUrn(r.urn);
    m.setProperties(Struct.fromJavaScript(JSON.parse(JSON.stringify(r.props)) as never));
    const o = new analyzerPb.AnalyzerResourceOptions();
    o.setProtect(r.opts.protect);
    m.setOptions(o);
    if (r.parent) m.setParent(r.parent.urn);
    for (const [key, deps] of Object.entries(r.propertyDependencies)) {
      const d = new analyzerPb.AnalyzerPropertyDependencies();
      d.setUrnsList(deps.map((x) => x.urn));
      m.getPropertydependenciesMap().set(key, d);
    }
    m.setDependenciesList(r.dependencies.map((x) => x.urn));
    return m;
  }

  it('loads with tsx, names its policies, and reports what the stack and a resource break', async () => {
    const client = await startPack();
    const info = await call<Empty, analyzerPb.AnalyzerInfo>(
      client,
      client.getAnalyzerInfo,
      new Empty(),
    );
    expect(info.getName()).toBe('baton');
    expect(info.getPoliciesList().map((p) => p.getName())).toEqual(packPolicies.map((p) => p.name));

    const declared = await declare(stackConfig(), () => {
      new linode.Instance('scratch', { label: 'scratch', region: 'us-east', type: 'g6-nanode-1' });
    });
    const resources = engineResources(declared);
    const stackRequest = new analyzerPb.AnalyzeStackRequest();
    stackRequest.setResourcesList(resources.map(resourceMessage));
    const stackAnswer = await call<analyzerPb.AnalyzeStackRequest, analyzerPb.AnalyzeResponse>(
      client,
      client.analyzeStack,
      stackRequest,
    );
    expect(
      stackAnswer
        .getDiagnosticsList()
        .map((d) => [d.getPolicyname(), d.getUrn(), d.getEnforcementlevel()]),
    ).toEqual([
      [
        'only-service-ports-open',
        'urn:pulumi:production::baton::linode:index/instance:Instance::scratch',
        analyzerPb.EnforcementLevel.MANDATORY,
      ],
    ]);

    const scratch = resources.find((r) => r.name === 'scratch')!;
    const request = new analyzerPb.AnalyzeRequest();
    request.setType(scratch.type);
    request.setName(scratch.name);
    request.setUrn(scratch.urn);
    request.setProperties(
      Struct.fromJavaScript(JSON.parse(JSON.stringify(scratch.props)) as never),
    );
    request.setOptions(new analyzerPb.AnalyzerResourceOptions());
    const answer = await call<analyzerPb.AnalyzeRequest, analyzerPb.AnalyzeResponse>(
      client,
      client.analyze,
      request,
    );
    expect(answer.getDiagnosticsList().map((d) => [d.getPolicyname(), d.getMessage()])).toEqual([
      [
        'stateful-protected',
        expect.stringContaining('scratch (linode:index/instance:Instance) holds data'),
      ],
    ]);
  });
});
