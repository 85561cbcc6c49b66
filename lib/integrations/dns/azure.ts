/**
 * Azure DNS through the ARM REST API (api-version 2018-05-01): record sets
 * read with GET, written whole with PUT guarded by the etag read (If-Match),
 * listed with nextLink pagination.
 */
import { ApiClient, type HttpClientOptions } from './http.ts';
import {
  holdsExpected,
  checkTtl,
  checkValue,
  conflictMessage,
  DnsConflictError,
  DnsError,
  normalizeZone,
  relativeName,
  type DnsProvider,
  type RecordSet,
  type RecordType,
} from './provider.ts';

export const azureApiUrl = 'https://management.azure.com';
export const azureDnsApiVersion = '2018-05-01';

export interface AzureDnsOptions extends Partial<HttpClientOptions> {
  zone: string;
  subscriptionId: string;
  resourceGroup: string;
  /** An ARM bearer token, or a function that returns a fresh one. */
  token: string | (() => Promise<string>);
}

interface ArmRecordSet {
  name?: string;
  type?: string;
  etag?: string;
  properties?: {
    TTL?: number;
    fqdn?: string;
    ARecords?: { ipv4Address: string }[];
    AAAARecords?: { ipv6Address: string }[];
    CNAMERecord?: { cname: string };
    TXTRecords?: { value: string[] }[];
    metadata?: Record<string, string>;
  };
}

export interface AzureRecordSetSummary {
  name: string;
  type: string;
  ttl: number;
  values: string[];
}

function armReason(body: unknown): string | undefined {
  const err = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
  return err ? [err.code, err.message].filter(Boolean).join(': ') : undefined;
}

function valuesOf(type: string, props: ArmRecordSet['properties']): string[] {
  switch (type) {
    case 'A':
      return (props?.ARecords ?? []).map((r) => r.ipv4Address);
    case 'AAAA':
      return (props?.AAAARecords ?? []).map((r) => r.ipv6Address);
    case 'CNAME':
      return props?.CNAMERecord ? [props.CNAMERecord.cname.replace(/\.$/, '')] : [];
    case 'TXT':
      return (props?.TXTRecords ?? []).map((r) => r.value.join(''));
    default:
      return [];
  }
}

function recordsFor(type: RecordType, values: string[]): Record<string, unknown> {
  switch (type) {
    case 'A':
      return { ARecords: values.map((ipv4Address) => ({ ipv4Address })) };
    case 'AAAA':
      return { AAAARecords: values.map((ipv6Address) => ({ ipv6Address })) };
    case 'CNAME':
      return { CNAMERecord: { cname: values[0] } };
    case 'TXT':
      return { TXTRecords: values.map((v) => ({ value: v.match(/[\s\S]{1,255}/g) ?? [''] })) };
  }
}

export class AzureDnsProvider implements DnsProvider {
  readonly kind = 'azure';
  readonly cas = 'atomic';
  readonly zone: string;
  readonly #token: string | (() => Promise<string>);
  #lastToken = '';
  readonly #api: ApiClient;
  readonly #zonePath: string;
  readonly #resourceGroup: string;

  constructor(options: AzureDnsOptions) {
    this.zone = normalizeZone(options.zone);
    if (!options.token) {
      throw new DnsError(
        'MISSING_PREREQUISITE',
        this.kind,
        'no Azure access token',
        'Set AZURE_ACCESS_TOKEN (az account get-access-token --query accessToken -o tsv).',
      );
    }
    for (const [what, v] of [
      ['subscription id', options.subscriptionId],
      ['resource group', options.resourceGroup],
    ] as const) {
      if (!v || !/^[A-Za-z0-9._()-]+$/.test(v)) {
        throw new DnsError(
          'INVALID_INPUT',
          this.kind,
          `Azure DNS ${what} ${JSON.stringify(v)} is missing or malformed`,
        );
      }
    }
    this.#token = options.token;
    this.#resourceGroup = options.resourceGroup;
    this.#zonePath = `subscriptions/${options.subscriptionId}/resourceGroups/${options.resourceGroup}/providers/Microsoft.Network/dnsZones/${this.zone}`;
    this.#api = new ApiClient(
      {
        name: 'Azure DNS',
        kind: this.kind,
        secrets: () => [this.#lastToken, typeof this.#token === 'string' ? this.#token : ''],
        reason: armReason,
        authHint:
          'Check AZURE_ACCESS_TOKEN: an unexpired ARM token for a principal with DNS Zone Contributor on the zone.',
      },
      { ...options, baseUrl: options.baseUrl ?? azureApiUrl },
    );
  }

  private async authorization(): Promise<string> {
    this.#lastToken = typeof this.#token === 'string' ? this.#token : await this.#token();
    return `Bearer ${this.#lastToken}`;
  }

  private recordPath(name: string, type: RecordType): string {
    return `${this.#zonePath}/${type}/${encodeURIComponent(relativeName(name, this.zone))}?api-version=${azureDnsApiVersion}`;
  }

  private async get(name: string, type: RecordType): Promise<ArmRecordSet | undefined> {
    const res = await this.#api.request(
      { method: 'GET', path: this.recordPath(name, type), expect: [404] },
      await this.authorization(),
    );
    if (res.status !== 404) return res.body as ArmRecordSet;
    const code = (res.body as { error?: { code?: string } } | undefined)?.error?.code;
    if (code === 'NotFound') return undefined;
    throw new DnsError(
      'INVALID_INPUT',
      this.kind,
      `Azure DNS has no zone ${this.zone} in resource group ${this.#resourceGroup} (404 ${code ?? 'without a code'})`,
      'Check the zone, resource group and subscription baton uses for Azure DNS.',
      404,
    );
  }

  private async put(
    name: string,
    type: RecordType,
    current: ArmRecordSet | undefined,
    values: string[],
    ttl: number,
  ): Promise<RecordSet> {
    const res = await this.#api.request(
      {
        method: 'PUT',
        path: this.recordPath(name, type),
        headers: current?.etag ? { 'If-Match': current.etag } : { 'If-None-Match': '*' },
        body: {
          properties: {
            ...(current?.properties?.metadata ? { metadata: current.properties.metadata } : {}),
            TTL: ttl,
            ...recordsFor(type, values),
          },
        },
      },
      await this.authorization(),
    );
    const set = res.body as ArmRecordSet;
    return { values: valuesOf(type, set.properties), ttl: set.properties?.TTL ?? ttl };
  }

  async readRecord(name: string, type: RecordType): Promise<RecordSet> {
    const set = await this.get(name, type);
    const values = valuesOf(type, set?.properties);
    return values.length ? { values, ttl: set!.properties!.TTL ?? 0 } : { values: [], ttl: 0 };
  }

  async setTtl(name: string, type: RecordType, ttl: number): Promise<RecordSet> {
    checkTtl(ttl);
    const current = await this.get(name, type);
    const values = valuesOf(type, current?.properties);
    if (!values.length) {
      throw new DnsError(
        'PRECONDITION_FAILED',
        this.kind,
        `cannot change the TTL of ${name} ${type} in ${this.zone}: no such record set in Azure DNS`,
      );
    }
    return this.put(name, type, current, values, ttl);
  }

  async setTarget(name: string, type: RecordType, value: string, ttl?: number): Promise<RecordSet> {
    const target = checkValue(type, value);
    if (ttl !== undefined) checkTtl(ttl);
    const current = await this.get(name, type);
    const currentTtl = current?.properties?.TTL;
    const newTtl = ttl ?? currentTtl;
    if (newTtl === undefined) {
      throw new DnsError(
        'INVALID_INPUT',
        this.kind,
        `${name} ${type} does not exist in ${this.zone} yet, so setting its target needs a TTL`,
      );
    }
    return this.put(name, type, current, [target], newTtl);
  }

  /**
   * Read the record set and its etag, compare the values, then PUT guarded by
   * that etag (If-Match; If-None-Match: * for a record that must not exist):
   * Azure refuses the write with 412 when the record set changed in between.
   */
  async compareAndSet(
    name: string,
    type: RecordType,
    expected: string | undefined,
    value: string,
    ttl?: number,
  ): Promise<RecordSet> {
    const target = checkValue(type, value);
    if (ttl !== undefined) checkTtl(ttl);
    const current = await this.get(name, type);
    const values = valuesOf(type, current?.properties);
    if (!holdsExpected(type, values, expected)) this.conflict(name, type, expected, values);
    const newTtl = ttl ?? current?.properties?.TTL;
    if (newTtl === undefined) {
      throw new DnsError(
        'INVALID_INPUT',
        this.kind,
        `${name} ${type} does not exist in ${this.zone} yet, so creating it needs a TTL`,
      );
    }
    try {
      return await this.put(name, type, current, [target], newTtl);
    } catch (e) {
      if (!(e instanceof DnsError) || e.status !== 412) throw e;
      this.conflict(name, type, expected, (await this.readRecord(name, type)).values, ' (412)');
    }
  }

  private conflict(
    name: string,
    type: RecordType,
    expected: string | undefined,
    found: string[],
    how = '',
  ): never {
    throw new DnsConflictError(
      this.kind,
      `Azure DNS: ${conflictMessage(`${name} in ${this.zone}`, type, expected, found)}${how}`,
      found,
      'Someone else changed the record set since it was read: read it again and decide.',
      how ? 412 : undefined,
    );
  }

  /** Every record set of the zone (or of one type), following nextLink. */
  async listRecordSets(type?: RecordType): Promise<AzureRecordSetSummary[]> {
    const out: AzureRecordSetSummary[] = [];
    let next: string | undefined =
      `${this.#zonePath}/${type ?? 'recordsets'}?api-version=${azureDnsApiVersion}&$top=100`;
    for (let pages = 0; next && pages < 10_000; pages++) {
      const res = await this.#api.request(
        { method: 'GET', path: next },
        await this.authorization(),
      );
      const body = res.body as { value?: ArmRecordSet[]; nextLink?: string };
      if (!Array.isArray(body?.value)) {
        throw new DnsError(
          'COMMAND_FAILED',
          this.kind,
          `Azure DNS list of ${this.zone} did not answer a page of record sets`,
        );
      }
      for (const set of body.value) {
        const t = (set.type ?? '').split('/').pop() ?? '';
        out.push({
          name: set.name ?? '',
          type: t,
          ttl: set.properties?.TTL ?? 0,
          values: valuesOf(t, set.properties),
        });
      }
      next = body.nextLink || undefined;
    }
    return out;
  }
}
