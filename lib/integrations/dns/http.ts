/**
 * JSON over HTTPS for the DNS APIs: bounded retries on 429 (honouring
 * Retry-After) and on transient failures of idempotent calls, and errors that
 * say what failed without ever carrying the token.
 */
import { DnsError, redactSecrets } from './provider.ts';

export interface HttpClientOptions {
  /** API root, e.g. `https://api.linode.com/v4`; tests point it at a local server. */
  baseUrl: string;
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
  /** Retries after the first attempt (429, 5xx, connection errors). Default 4. */
  maxRetries?: number;
  /** The longest wait between attempts, whatever Retry-After asks. Default 30 s. */
  maxRetryDelayMs?: number;
  /** Per-request timeout. Default 30 s. */
  timeoutMs?: number;
}

export interface HttpResponse {
  status: number;
  headers: Headers;
  body: unknown;
}

export interface ApiRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** A path under the base URL, or an absolute URL on the same origin (nextLink). */
  path: string;
  headers?: Record<string, string>;
  body?: unknown;
  /** Statuses the caller handles itself (e.g. 404 for "no such record"). */
  expect?: number[];
}

export interface ApiDescription {
  /** `Linode` or `Azure DNS`, for messages. */
  name: string;
  kind: string;
  /** Secrets to scrub from anything that reaches a message. */
  secrets: () => string[];
  /** Pull the API's own reason out of an error body. */
  reason: (body: unknown) => string | undefined;
  /** The hint for 401/403. */
  authHint: string;
}

const idempotent = new Set(['GET', 'PUT', 'DELETE']);

/** Seconds or an HTTP date, as Retry-After carries them. */
export function retryAfterMs(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export class ApiClient {
  readonly #api: ApiDescription;
  readonly #base: URL;
  readonly #fetch: typeof fetch;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #maxRetries: number;
  readonly #maxDelay: number;
  readonly #timeoutMs: number;

  constructor(api: ApiDescription, options: HttpClientOptions) {
    this.#api = api;
    this.#base = new URL(options.baseUrl.endsWith('/') ? options.baseUrl : `${options.baseUrl}/`);
    this.#fetch = options.fetch ?? fetch;
    this.#sleep = options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.#maxRetries = options.maxRetries ?? 4;
    this.#maxDelay = options.maxRetryDelayMs ?? 30_000;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
  }

  url(path: string): URL {
    if (/^https?:\/\//.test(path)) {
      const url = new URL(path);
      if (url.origin !== this.#base.origin) {
        // A token goes only where the operator pointed baton.
        throw this.error(
          'PRECONDITION_FAILED',
          `refused to follow a link to ${url.origin}, which is not ${this.#base.origin}`,
        );
      }
      return url;
    }
    return new URL(path.replace(/^\//, ''), this.#base);
  }

  private error(code: DnsError['code'], message: string, hint?: string, status?: number): DnsError {
    const clean = (s: string) => redactSecrets(s, this.#api.secrets());
    return new DnsError(code, this.#api.kind, clean(message), hint && clean(hint), status);
  }

  async request(req: ApiRequest, authorization: string): Promise<HttpResponse> {
    const url = this.url(req.path);
    const what = `${req.method} ${url.pathname}`;
    let attempt = 0;
    for (;;) {
      let res: Response;
      try {
        res = await this.#fetch(url, {
          method: req.method,
          headers: {
            accept: 'application/json',
            authorization,
            ...(req.body !== undefined ? { 'content-type': 'application/json' } : {}),
            ...req.headers,
          },
          ...(req.body !== undefined ? { body: JSON.stringify(req.body) } : {}),
          signal: AbortSignal.timeout(this.#timeoutMs),
        });
      } catch (e) {
        const cause = (e as Error & { cause?: { code?: string } }).cause?.code ?? (e as Error).name;
        if (idempotent.has(req.method) && attempt < this.#maxRetries) {
          await this.#sleep(this.backoff(attempt++));
          continue;
        }
        throw this.error(
          'TRANSIENT',
          `${this.#api.name} API ${what} failed: ${cause} (${attempt + 1} attempt${attempt ? 's' : ''})`,
          `Check that ${this.#base.origin} is reachable from where baton runs, then retry.`,
        );
      }
      const text = await res.text();
      let body: unknown = undefined;
      if (text) {
        try {
          body = JSON.parse(text);
        } catch {
          body = text;
        }
      }
      if (res.ok || req.expect?.includes(res.status))
        return { status: res.status, headers: res.headers, body };

      const retriable = res.status === 429 || (res.status >= 500 && idempotent.has(req.method));
      if (retriable && attempt < this.#maxRetries) {
        const asked = retryAfterMs(res.headers.get('retry-after'));
        await this.#sleep(Math.min(asked ?? this.backoff(attempt), this.#maxDelay));
        attempt++;
        continue;
      }
      const reason = this.#api.reason(body)?.trim().replace(/\.+$/, '');
      const detail = `${this.#api.name} API ${what} answered ${res.status}${reason ? `: ${reason}` : ''}`;
      if (res.status === 401 || res.status === 403) {
        throw this.error(
          'INVALID_INPUT',
          `${detail}. The token was refused`,
          this.#api.authHint,
          res.status,
        );
      }
      if (res.status === 404) {
        throw this.error(
          'INVALID_INPUT',
          `${detail}. Not found`,
          'Check the zone name and the account or subscription baton uses.',
          res.status,
        );
      }
      if (res.status === 412) {
        throw this.error(
          'PRECONDITION_FAILED',
          `${detail}. The record changed since baton read it`,
          'Read the record again and decide; baton did not overwrite it.',
          res.status,
        );
      }
      if (res.status === 429 || res.status >= 500) {
        throw this.error(
          'TRANSIENT',
          `${detail} after ${attempt + 1} attempts`,
          `The ${this.#api.name} API is limiting or failing; wait and retry.`,
          res.status,
        );
      }
      throw this.error('INVALID_INPUT', detail, undefined, res.status);
    }
  }

  private backoff(attempt: number): number {
    return Math.min(1000 * 2 ** attempt, this.#maxDelay);
  }
}
