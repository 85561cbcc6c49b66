/**
 * A host that runs a service: the cloud machine, a firewall that opens ssh to
 * the operators and the service ports to the world, provider backups, and an
 * ssh host key generated here so its fingerprint is pinned before first boot.
 * Linode and Azure implementations take the same arguments and give the same
 * outputs.
 */
import * as pulumi from '@pulumi/pulumi';
import * as linode from '@pulumi/linode';
import * as tls from '@pulumi/tls';
import * as compute from '@pulumi/azure-native/compute/index.js';
import * as network from '@pulumi/azure-native/network/index.js';
import * as recoveryservices from '@pulumi/azure-native/recoveryservices/index.js';
import * as resources from '@pulumi/azure-native/resources/index.js';
import type { Inventory } from '../lib/core/inventory.ts';
import { renderCloudInit, sshFingerprint } from './cloud-init.ts';
import type { CloudProvider, ServicePort } from './config.ts';

export type InventoryHost = Inventory['hosts'][number];

export interface ServiceHostArgs {
  /** Linode region (`us-east`) or Azure location (`westeurope`). */
  region: pulumi.Input<string>;
  /** Linode type (`g6-standard-2`) or Azure VM size (`Standard_B2s`). */
  size: pulumi.Input<string>;
  /** Linode image, or Azure image URN `publisher:offer:sku:version`; a current Ubuntu LTS if unset. */
  image?: pulumi.Input<string>;
  /** Roles recorded in the Inventory (`ircd`, `services`, `primary`, `standby` ...). */
  roles: pulumi.Input<pulumi.Input<string>[]>;
  /** The sudo user operators and baton log in as; never root. */
  sshUser: pulumi.Input<string>;
  /** The port sshd listens on. */
  sshPort: pulumi.Input<number>;
  /** OpenSSH public keys allowed to log in as `sshUser`. */
  authorizedKeys: pulumi.Input<pulumi.Input<string>[]>;
  /** CIDRs ssh is open to: the operators' addresses, never the world. */
  sshSourceCidrs: pulumi.Input<pulumi.Input<string>[]>;
  /** Ports the service needs open to the world. */
  servicePorts: pulumi.Input<pulumi.Input<ServicePort>[]>;
  /** Provider backups of the disk (Linode Backups; Azure Backup, which needs a plain boolean). */
  backups: pulumi.Input<boolean>;
}

export const serviceHostType = 'baton:infra:ServiceHost';
export const worldCidrs = { ipv4: '0.0.0.0/0', ipv6: '::/0' } as const;

/**
 * Options for a resource that holds data (policy `stateful-protected`):
 * `protect` fails a preview that would delete or replace it, and
 * `retainOnDelete` keeps it in the cloud once an operator unprotects it and
 * removes it from the stack, so a config edit never deletes a disk.
 */
export const keepData = { protect: true, retainOnDelete: true } as const;

/** What both implementations share: the pinned host key, cloud-init and the outputs. */
export abstract class ServiceHost extends pulumi.ComponentResource {
  /** `linode` or `azure`. */
  public readonly provider: CloudProvider;
  public readonly hostName: string;
  public readonly region: pulumi.Output<string>;
  /** Public IPv4 address the controller connects to. */
  public abstract readonly address: pulumi.Output<string>;
  /** `SHA256:...` fingerprints of the host keys installed at first boot. */
  public readonly hostKeyFingerprints: pulumi.Output<string[]>;
  /** This host as the Inventory lists it. */
  public abstract readonly inventoryHost: pulumi.Output<InventoryHost>;

  protected readonly hostKey: tls.PrivateKey;
  /** The cloud-config document; a secret, since it carries the host's private key. */
  protected readonly userData: pulumi.Output<string>;

  protected constructor(
    provider: CloudProvider,
    name: string,
    protected readonly args: ServiceHostArgs,
    opts?: pulumi.ComponentResourceOptions,
  ) {
    super(serviceHostType, name, {}, opts);
    if (!/^[a-z][a-z0-9-]{1,30}[a-z0-9]$/.test(name)) {
      throw new pulumi.RunError(
        `ServiceHost name ${name} must be 3-32 lowercase letters, digits and dashes`,
      );
    }
    this.provider = provider;
    this.hostName = name;
    this.region = pulumi.output(args.region);
    this.hostKey = new tls.PrivateKey(
      `${name}-host-ed25519`,
      { algorithm: 'ED25519' },
      {
        parent: this,
      },
    );
    this.hostKeyFingerprints = this.hostKey.publicKeyOpenssh.apply((k) => [sshFingerprint(k)]);
    this.userData = pulumi.secret(
      pulumi
        .all([
          args.sshUser,
          args.sshPort,
          args.authorizedKeys,
          this.hostKey.privateKeyOpenssh,
          this.hostKey.publicKeyOpenssh,
        ])
        .apply(([sshUser, sshPort, authorizedKeys, priv, pub]) =>
          renderCloudInit({
            hostName: name,
            sshUser,
            sshPort,
            authorizedKeys,
            hostKeyPrivateOpenssh: priv,
            hostKeyPublicOpenssh: pub,
          }),
        ),
    );
  }

  protected describeHost(address: pulumi.Output<string>): pulumi.Output<InventoryHost> {
    return pulumi
      .all([
        this.args.roles,
        address,
        this.args.sshUser,
        this.args.sshPort,
        this.hostKeyFingerprints,
        this.region,
      ])
      .apply(([roles, addr, user, port, hostKeys, region]) => ({
        name: this.hostName,
        roles,
        address: addr,
        connection: 'ssh' as const,
        ssh: { user, port, hostKeys },
        provider: this.provider,
        region,
      }));
  }

  protected finish(): void {
    this.registerOutputs({
      address: this.address,
      region: this.region,
      hostKeyFingerprints: this.hostKeyFingerprints,
      inventoryHost: this.inventoryHost,
    });
  }
}

function splitCidrs(cidrs: string[]): { ipv4s?: string[]; ipv6s?: string[] } {
  const ipv4s = cidrs.filter((c) => !c.includes(':'));
  const ipv6s = cidrs.filter((c) => c.includes(':'));
  return { ...(ipv4s.length ? { ipv4s } : {}), ...(ipv6s.length ? { ipv6s } : {}) };
}

/** A Linode instance with a Cloud Firewall, Backups and metadata (cloud-init) user data. */
export class LinodeServiceHost extends ServiceHost {
  public readonly address: pulumi.Output<string>;
  public readonly inventoryHost: pulumi.Output<InventoryHost>;
  public readonly instance: linode.Instance;
  public readonly firewall: linode.Firewall;

  constructor(name: string, args: ServiceHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super('linode', name, args, opts);
    this.instance = new linode.Instance(
      name,
      {
        label: name,
        region: args.region,
        type: args.size,
        image: args.image ?? 'linode/ubuntu24.04',
        authorizedKeys: args.authorizedKeys,
        backupsEnabled: args.backups,
        metadatas: [
          { userData: this.userData.apply((d) => Buffer.from(d, 'utf8').toString('base64')) },
        ],
        tags: ['baton'],
      },
      { parent: this, ...keepData },
    );
    const inbounds = pulumi
      .all([args.sshSourceCidrs, args.sshPort, args.servicePorts])
      .apply(([sources, sshPort, ports]): linode.types.input.FirewallInbound[] => [
        {
          label: 'ssh-operators',
          action: 'ACCEPT',
          protocol: 'TCP',
          ports: String(sshPort),
          ...splitCidrs(sources),
        },
        ...ports.map((p) => ({
          label: `service-${p.protocol}-${p.port}`,
          action: 'ACCEPT',
          protocol: p.protocol.toUpperCase(),
          ports: String(p.port),
          ipv4s: [worldCidrs.ipv4],
          ipv6s: [worldCidrs.ipv6],
        })),
      ]);
    this.firewall = new linode.Firewall(
      `${name}-fw`,
      {
        label: `${name}-fw`,
        inboundPolicy: 'DROP',
        outboundPolicy: 'ACCEPT',
        inbounds,
        linodes: [this.instance.id.apply((id) => Number(id))],
        tags: ['baton'],
      },
      { parent: this },
    );
    this.address = this.instance.ipAddress;
    this.inventoryHost = this.describeHost(this.address);
    this.finish();
  }
}

function imageReference(urn: string) {
  const [publisher, offer, sku, version] = urn.split(':');
  if (!publisher || !offer || !sku || !version) {
    throw new pulumi.RunError(`Azure image ${urn} is not a URN publisher:offer:sku:version`);
  }
  return {
    imageReference: { publisher, offer, sku, version },
    // The OS disk is no resource of its own; Detach keeps it when the VM is deleted.
    osDisk: {
      createOption: 'FromImage',
      deleteOption: 'Detach',
      managedDisk: { storageAccountType: 'StandardSSD_LRS' },
    },
  };
}

/** An Azure VM in its own resource group, network, NSG and public IP, backed up by a Recovery Services vault. */
export class AzureServiceHost extends ServiceHost {
  public readonly address: pulumi.Output<string>;
  public readonly inventoryHost: pulumi.Output<InventoryHost>;
  public readonly resourceGroup: resources.ResourceGroup;
  public readonly securityGroup: network.NetworkSecurityGroup;
  public readonly vm: compute.VirtualMachine;

  constructor(name: string, args: ServiceHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super('azure', name, args, opts);
    if (typeof args.backups !== 'boolean') {
      throw new pulumi.RunError(
        `ServiceHost ${name}: on Azure, backups must be a plain boolean (it decides whether a vault is declared)`,
      );
    }
    const parent = { parent: this };
    const location = args.region;
    this.resourceGroup = new resources.ResourceGroup(
      `${name}-rg`,
      { location },
      { ...parent, ...keepData },
    );
    const resourceGroupName = this.resourceGroup.name;
    const vnet = new network.VirtualNetwork(
      `${name}-vnet`,
      { resourceGroupName, location, addressSpace: { addressPrefixes: ['10.40.0.0/16'] } },
      { ...parent, ignoreChanges: ['subnets'] },
    );
    const rules = pulumi
      .all([args.sshSourceCidrs, args.sshPort, args.servicePorts])
      .apply(([sources, sshPort, ports]) => [
        {
          name: 'ssh-operators',
          priority: 100,
          direction: 'Inbound',
          access: 'Allow',
          protocol: 'Tcp',
          sourceAddressPrefixes: sources,
          sourcePortRange: '*',
          destinationAddressPrefix: '*',
          destinationPortRange: String(sshPort),
        },
        ...ports.map((p, i) => ({
          name: `service-${p.protocol}-${p.port}`,
          priority: 200 + i,
          direction: 'Inbound',
          access: 'Allow',
          protocol: p.protocol === 'udp' ? 'Udp' : 'Tcp',
          sourceAddressPrefix: '*',
          sourcePortRange: '*',
          destinationAddressPrefix: '*',
          destinationPortRange: String(p.port),
        })),
      ]);
    this.securityGroup = new network.NetworkSecurityGroup(
      `${name}-nsg`,
      { resourceGroupName, location, securityRules: rules },
      parent,
    );
    const subnet = new network.Subnet(
      `${name}-subnet`,
      {
        resourceGroupName,
        virtualNetworkName: vnet.name,
        addressPrefix: '10.40.1.0/24',
        networkSecurityGroup: { id: this.securityGroup.id },
      },
      parent,
    );
    const publicIp = new network.PublicIPAddress(
      `${name}-ip`,
      {
        resourceGroupName,
        location,
        publicIPAllocationMethod: 'Static',
        publicIPAddressVersion: 'IPv4',
        sku: { name: 'Standard' },
      },
      parent,
    );
    const nic = new network.NetworkInterface(
      `${name}-nic`,
      {
        resourceGroupName,
        location,
        networkSecurityGroup: { id: this.securityGroup.id },
        ipConfigurations: [
          {
            name: 'primary',
            subnet: { id: subnet.id },
            privateIPAllocationMethod: 'Dynamic',
            publicIPAddress: { id: publicIp.id },
          },
        ],
      },
      parent,
    );
    this.vm = new compute.VirtualMachine(
      name,
      {
        resourceGroupName,
        location,
        vmName: name,
        hardwareProfile: { vmSize: args.size },
        storageProfile: pulumi
          .output(args.image ?? 'Canonical:ubuntu-24_04-lts:server:latest')
          .apply(imageReference),
        networkProfile: { networkInterfaces: [{ id: nic.id, primary: true }] },
        osProfile: {
          computerName: name,
          adminUsername: args.sshUser,
          customData: this.userData.apply((d) => Buffer.from(d, 'utf8').toString('base64')),
          linuxConfiguration: {
            disablePasswordAuthentication: true,
            ssh: {
              publicKeys: pulumi
                .all([args.sshUser, args.authorizedKeys])
                .apply(([user, keys]) =>
                  keys.map((keyData) => ({ path: `/home/${user}/.ssh/authorized_keys`, keyData })),
                ),
            },
          },
        },
        tags: { baton: 'true' },
      },
      { ...parent, ...keepData },
    );
    if (args.backups) {
      const vault = new recoveryservices.Vault(
        `${name}-vault`,
        {
          resourceGroupName,
          location,
          sku: { name: 'RS0', tier: 'Standard' },
          properties: { publicNetworkAccess: 'Enabled' },
        },
        { ...parent, ...keepData },
      );
      new recoveryservices.ProtectedItem(
        `${name}-backup`,
        {
          resourceGroupName,
          vaultName: vault.name,
          fabricName: 'Azure',
          containerName: pulumi.interpolate`IaasVMContainer;iaasvmcontainerv2;${resourceGroupName};${name}`,
          protectedItemName: pulumi.interpolate`VM;iaasvmcontainerv2;${resourceGroupName};${name}`,
          properties: {
            protectedItemType: 'Microsoft.Compute/virtualMachines',
            sourceResourceId: this.vm.id,
            policyId: pulumi.interpolate`${vault.id}/backupPolicies/DefaultPolicy`,
          },
        },
        // Deleting the protected item stops the backups and deletes their recovery points.
        { ...parent, ...keepData },
      );
    }
    this.address = publicIp.ipAddress.apply((a) => a ?? '');
    this.inventoryHost = this.describeHost(this.address);
    this.finish();
  }
}

/** The implementation for a provider, behind the one ServiceHost shape. */
export function createServiceHost(
  provider: CloudProvider,
  name: string,
  args: ServiceHostArgs,
  opts?: pulumi.ComponentResourceOptions,
): ServiceHost {
  return provider === 'linode'
    ? new LinodeServiceHost(name, args, opts)
    : new AzureServiceHost(name, args, opts);
}
