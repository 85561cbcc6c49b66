/**
 * Pulumi mocks for infra's tests: every resource the program declares is
 * recorded with its inputs, options and dependencies, host keys are real
 * ed25519 keys, and an invoke the program is not known to make fails the test.
 */
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as pulumi from '@pulumi/pulumi';
import type { ActiveHostLog, AuthoritativeServer, ResolverFor } from './active-host.ts';
import type { PolicyResource } from './policy.ts';

/** The marker Pulumi puts on a secret value in serialized properties. */
const secretSig = '4dabf18193072939515e22adb298388d';
const secretSigValue = '1b47061264138c4ac30d75fd1eb44270';

function isSecretValue(v: unknown): v is { value: unknown } {
  return (
    !!v && typeof v === 'object' && (v as Record<string, unknown>)[secretSig] === secretSigValue
  );
}

function unwrapSecrets(v: unknown): unknown {
  if (isSecretValue(v)) return unwrapSecrets(v.value);
  if (Array.isArray(v)) return v.map(unwrapSecrets);
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrapSecrets(x)]));
  }
  return v;
}

export interface RecordedResource extends PolicyResource {
  urn: string;
  opts: RecordedOptions;
  /** Top-level inputs that arrived as Pulumi secrets. */
  secretInputs: string[];
  /** The URN of the parent resource, if any. */
  parent?: string;
  /** URNs each input depends on, as the engine passes them to a policy pack. */
  propertyDependencies: Record<string, string[]>;
}

/** The resource options the SDK sent with a registration, as the engine receives them. */
export interface RecordedOptions {
  protect: boolean;
  retainOnDelete: boolean;
}

/** What the monitor saw of one registration that `newResource` is not given. */
interface Registration {
  urn: string;
  opts: RecordedOptions;
  parent?: string;
  propertyDependencies: Record<string, string[]>;
}

/** The parts of a RegisterResourceRequest read here (`@pulumi/pulumi/proto/resource_pb`). */
interface RegisterRequest {
  getType(): string;
  getName(): string;
  getParent(): string;
  getProtect(): boolean | undefined;
  getRetainondelete(): boolean | undefined;
  getPropertydependenciesMap(): {
    forEach(f: (v: { getUrnsList(): string[] }, k: string) => void): void;
  };
}

interface MockMonitorInternals {
  registerResource(req: RegisterRequest, callback: unknown): Promise<void>;
  newUrn(parent: string, type: string, name: string): string;
}

export interface MockWorld {
  /** Every resource registered since the last `reset()`, in order. */
  resources: RecordedResource[];
  /** Public keys handed out for `tls.PrivateKey`, by resource name. */
  hostPublicKeys: Map<string, string>;
  /** Invokes the mocks refused; a test fails on the refusal and can name the token. */
  refusedCalls: string[];
  reset(): void;
}

function sshString(data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  return Buffer.concat([len, data]);
}

/** A real ed25519 public key in OpenSSH format, plus a stand-in for the private key. */
export function ed25519KeyPair(comment = ''): {
  publicKeyOpenssh: string;
  privateKeyOpenssh: string;
} {
  const { publicKey } = generateKeyPairSync('ed25519');
  const jwk = publicKey.export({ format: 'jwk' });
  const raw = Buffer.from(jwk.x!, 'base64url');
  const blob = Buffer.concat([sshString(Buffer.from('ssh-ed25519')), sshString(raw)]);
  return {
    publicKeyOpenssh: `ssh-ed25519 ${blob.toString('base64')}${comment ? ` ${comment}` : ''}\n`,
    privateKeyOpenssh: `-----BEGIN OPENSSH PRIVATE KEY-----\nmock-private-key-${raw.toString('hex').slice(0, 16)}\n-----END OPENSSH PRIVATE KEY-----\n`,
  };
}

const azureResourceIds: Record<string, string> = {
  'azure-native:resources:ResourceGroup': 'resourceGroups',
  'azure-native:network:VirtualNetwork': 'Microsoft.Network/virtualNetworks',
  'azure-native:network:Subnet': 'Microsoft.Network/virtualNetworks/vnet/subnets',
  'azure-native:network:NetworkSecurityGroup': 'Microsoft.Network/networkSecurityGroups',
  'azure-native:network:PublicIPAddress': 'Microsoft.Network/publicIPAddresses',
  'azure-native:network:NetworkInterface': 'Microsoft.Network/networkInterfaces',
  'azure-native:compute:VirtualMachine': 'Microsoft.Compute/virtualMachines',
  'azure-native:recoveryservices:Vault': 'Microsoft.RecoveryServices/vaults',
  'azure-native:recoveryservices:ProtectedItem':
    'Microsoft.RecoveryServices/vaults/v/protectedItems',
  'azure-native:dns:Zone': 'Microsoft.Network/dnsZones',
  'azure-native:dns:RecordSet': 'Microsoft.Network/dnsZones/z/A',
};

/** Install the mocks. Call before importing any module that declares resources. */
export async function installMocks(project = 'baton', stack = 'production'): Promise<MockWorld> {
  let counter = 0;
  const world: MockWorld = {
    resources: [],
    hostPublicKeys: new Map(),
    refusedCalls: [],
    reset() {
      world.refusedCalls.length = 0;
      world.resources.length = 0;
      world.hostPublicKeys.clear();
    },
  };
  // Mocks hand `newResource` the inputs only; protect, retainOnDelete, the
  // parent and the dependencies travel in the registration request, so the
  // monitor is wrapped to read them where the engine would.
  const registrations = new Map<string, Registration[]>();
  const takeRegistration = (type: string, name: string): Registration => {
    const queue = registrations.get(`${type}::${name}`);
    const found = queue?.shift();
    if (!found) throw new Error(`mocks: no registration request seen for ${type} ${name}`);
    return found;
  };
  await pulumi.runtime.setMocks(
    {
      newResource(args: pulumi.runtime.MockResourceArgs): {
        id: string;
        state: Record<string, unknown>;
      } {
        counter += 1;
        const inputs = args.inputs as Record<string, unknown>;
        const plain = unwrapSecrets(inputs) as Record<string, unknown>;
        let id = `${args.name}-id`;
        let state: Record<string, unknown> = { ...inputs };
        if (args.type === 'tls:index/privateKey:PrivateKey') {
          const pair = ed25519KeyPair();
          world.hostPublicKeys.set(args.name, pair.publicKeyOpenssh);
          state = { ...inputs, ...pair };
        } else if (args.type.startsWith('linode:')) {
          id = String(1000 + counter);
          if (args.type === 'linode:index/instance:Instance') {
            const ip = `203.0.113.${counter % 250}`;
            state = { ...inputs, ipAddress: ip, ipv4s: [ip], status: 'running' };
          }
        } else if (args.type.startsWith('azure-native:')) {
          const name =
            (inputs['vmName'] as string | undefined) ??
            (inputs['relativeRecordSetName'] as string | undefined) ??
            `${args.name}${counter.toString(16).padStart(6, '0')}`;
          const rg = (inputs['resourceGroupName'] as string | undefined) ?? name;
          const kind = azureResourceIds[args.type] ?? args.type;
          id =
            args.type === 'azure-native:resources:ResourceGroup'
              ? `/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/${name}`
              : `/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/${rg}/providers/${kind}/${name}`;
          state = { ...inputs, name };
          if (args.type === 'azure-native:network:PublicIPAddress') {
            state['ipAddress'] = `198.51.100.${counter % 250}`;
          }
          if (args.type === 'azure-native:dns:Zone') {
            state['nameServers'] = ['ns1-01.azure-dns.com.', 'ns2-01.azure-dns.net.'];
          }
        }
        const secretInputs = Object.keys(inputs).filter((k) => isSecretValue(inputs[k]));
        const registration = takeRegistration(args.type, args.name);
        world.resources.push({
          type: args.type,
          name: args.name,
          id,
          custom: args.custom ?? true,
          inputs: plain,
          secretInputs,
          ...registration,
        });
        return { id, state };
      },
      call(args: pulumi.runtime.MockCallArgs): Record<string, unknown> {
        const inputs = args.inputs as Record<string, unknown>;
        switch (args.token) {
          case 'linode:index/getDomain:getDomain':
            return { id: 4242, domain: inputs['domain'], type: 'master', ttlSec: 300 };
          case 'azure-native:dns:getZone':
            return {
              id: `/subscriptions/0/resourceGroups/${String(inputs['resourceGroupName'])}/providers/Microsoft.Network/dnsZones/${String(inputs['zoneName'])}`,
              name: inputs['zoneName'],
              nameServers: ['ns1-07.azure-dns.com.', 'ns2-07.azure-dns.net.'],
            };
          default:
            world.refusedCalls.push(args.token);
            throw new Error(`unexpected invoke ${args.token}: the program is not known to call it`);
        }
      },
    },
    project,
    stack,
    false,
  );
  const settings = (await import('@pulumi/pulumi/runtime/settings.js')) as unknown as {
    getMonitor(): MockMonitorInternals;
  };
  const monitor = settings.getMonitor();
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, callback) => {
    const propertyDependencies: Record<string, string[]> = {};
    req.getPropertydependenciesMap().forEach((v, k) => (propertyDependencies[k] = v.getUrnsList()));
    const key = `${req.getType()}::${req.getName()}`;
    registrations.set(key, [
      ...(registrations.get(key) ?? []),
      {
        urn: monitor.newUrn(req.getParent(), req.getType(), req.getName()),
        opts: {
          protect: req.getProtect() ?? false,
          retainOnDelete: req.getRetainondelete() ?? false,
        },
        ...(req.getParent() ? { parent: req.getParent() } : {}),
        propertyDependencies,
      },
    ]);
    return register(req, callback);
  };
  return world;
}

/** Wait until every resource declared so far has been registered with the mocks. */
export async function settle(): Promise<void> {
  const settings = (await import('@pulumi/pulumi/runtime/settings.js')) as unknown as {
    waitForRPCs(): Promise<void>;
  };
  await settings.waitForRPCs();
}

/** The value of an Output, as the program would export it. */
export function valueOf<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => output.apply((v) => resolve(v)));
}

/**
 * A stack's config as Pulumi hands it to the program: `Pulumi.<stack>.yaml`
 * parsed, structured values as JSON strings.
 */
export function stackConfigFile(stack: string): Record<string, string> {
  const file = join(dirname(fileURLToPath(import.meta.url)), `Pulumi.${stack}.yaml`);
  const doc = yaml.load(readFileSync(file, 'utf8')) as { config?: Record<string, unknown> };
  return Object.fromEntries(
    Object.entries(doc.config ?? {}).map(([k, v]) => [
      k,
      typeof v === 'string' ? v : JSON.stringify(v),
    ]),
  );
}

/** Values of the `baton:` keys, parsed, as `parseStackConfig` takes them. */
export function batonKeys(config: Record<string, string>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(config)
      .filter(([k]) => k.startsWith('baton:'))
      .map(([k, v]) => {
        let value: unknown = v;
        try {
          value = JSON.parse(v);
        } catch {
          // a plain string
        }
        return [k.slice('baton:'.length), value];
      }),
  );
}

/** A DNS error as node:dns raises it (`ENODATA`, `ETIMEOUT` ...). */
export function dnsError(code: string): Error {
  return Object.assign(new Error(`queryTxt ${code}`), { code });
}

export interface LeaseDns {
  resolverFor: ResolverFor;
  /** Every TXT query, in order: which server was asked for which name. */
  queries: { server: string; name: string }[];
}

/**
 * The zone's authoritative servers as a test sets them: each answers TXT with
 * the values `answer` gives (one string per record) or fails with the error it
 * gives. Nothing leaves the process; by default no server has a lease.
 */
export function leaseDns(
  answer: (server: AuthoritativeServer, name: string) => string[] | Error = () =>
    dnsError('ENODATA'),
): LeaseDns {
  const queries: LeaseDns['queries'] = [];
  return {
    queries,
    resolverFor: (server) => ({
      resolveTxt(name) {
        queries.push({ server: server.name, name });
        const a = answer(server, name);
        return a instanceof Error ? Promise.reject(a) : Promise.resolve(a.map((v) => [v]));
      },
    }),
  };
}

export interface RecordingLog extends ActiveHostLog {
  lines: { level: 'info' | 'warn'; message: string }[];
}

export function recordingLog(): RecordingLog {
  const lines: RecordingLog['lines'] = [];
  return {
    lines,
    info: (message) => void lines.push({ level: 'info', message }),
    warn: (message) => void lines.push({ level: 'warn', message }),
  };
}
