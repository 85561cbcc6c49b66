/**
 * The cut step's proof: ask every authoritative server directly, without
 * recursion, what it answers for a name, and compare with what was set.
 */
import { sh } from '../../core/shell.ts';
import { localRunner, type CommandRunner } from './command.ts';
import { DnsError, sameValues, type RecordType } from './provider.ts';

export interface AuthoritativeServer {
  name: string;
  address: string;
  port: number;
}

export interface ServerAnswer {
  server: string;
  address: string;
  port: number;
  /** The values the server answered; empty for NXDOMAIN or no data. */
  values: string[];
  /** The TTL it answered with; undefined without an answer. */
  ttl: number | undefined;
  /** The response code: NOERROR, NXDOMAIN, REFUSED ... */
  status: string | undefined;
  /** True when the server answered authoritatively with exactly the expected values. */
  ok: boolean;
  /** Why the server gave no usable answer (no reply, not authoritative, refused). */
  error?: string;
}

export interface VerifyResult {
  ok: boolean;
  answers: ServerAnswer[];
}

export interface VerifyOptions {
  run?: CommandRunner;
  /** Seconds dig waits for each server (one try). */
  timeoutSeconds?: number;
  /** Also require every server's TTL to be at most this. */
  maxTtl?: number;
}

/** Parse `dig +noall +comments +answer` output. */
export function parseDig(
  output: string,
  name: string,
  type: RecordType,
): {
  status: string | undefined;
  authoritative: boolean;
  values: string[];
  ttl: number | undefined;
} {
  const status = /status: ([A-Z]+)/.exec(output)?.[1];
  const flags = /;; flags: ([a-z ]+);/.exec(output)?.[1]?.split(' ') ?? [];
  const owner = name.replace(/\.$/, '').toLowerCase();
  const values: string[] = [];
  let ttl: number | undefined;
  for (const line of output.split('\n')) {
    if (!line || line.startsWith(';')) continue;
    const m = /^(\S+)\s+(\d+)\s+IN\s+(\S+)\s+(.*)$/.exec(line.trim());
    if (!m) continue;
    const [, rrName, rrTtl, rrType, data] = m;
    if (rrName!.replace(/\.$/, '').toLowerCase() !== owner || rrType !== type) continue;
    ttl = ttl === undefined ? Number(rrTtl) : Math.min(ttl, Number(rrTtl));
    values.push(type === 'TXT' ? parseTxt(data!) : data!.trim().replace(/\.$/, ''));
  }
  return { status, authoritative: flags.includes('aa'), values, ttl };
}

function parseTxt(data: string): string {
  const parts = [...data.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) =>
    m[1]!.replace(/\\(.)/g, '$1'),
  );
  return parts.length ? parts.join('') : data.trim();
}

/**
 * Ask EVERY server directly (`dig +norec @server -p port`) and return each one's
 * values and TTL. `ok` only when all answered authoritatively with `expected`.
 */
export async function verifyAnswer(
  servers: readonly AuthoritativeServer[],
  name: string,
  type: RecordType,
  expected: string | readonly string[],
  options: VerifyOptions = {},
): Promise<VerifyResult> {
  if (!/^[A-Za-z0-9_*][A-Za-z0-9_.*-]*\.?$/.test(name)) {
    throw new DnsError(
      'INVALID_INPUT',
      'dns',
      `cannot verify ${JSON.stringify(name)}: not a DNS name`,
    );
  }
  const run = options.run ?? localRunner;
  const want = typeof expected === 'string' ? [expected] : [...expected];
  const wait = options.timeoutSeconds ?? 2;
  const answers = await Promise.all(
    servers.map(async (server): Promise<ServerAnswer> => {
      const base = { server: server.name, address: server.address, port: server.port };
      const cmd = sh`dig +norec +noall +comments +answer ${`+time=${wait}`} +tries=1 -p ${server.port} ${`@${server.address}`} ${name} ${type}`;
      const out = await run(cmd, { timeoutMs: (wait + 3) * 1000 });
      if (out.exitCode !== 0) {
        const why = out.exitCode === 9 ? 'no reply' : `dig exited ${out.exitCode}`;
        const detail = (out.stdout + out.stderr).trim().split('\n').slice(-1)[0] ?? '';
        return {
          ...base,
          values: [],
          ttl: undefined,
          status: undefined,
          ok: false,
          error: `${why}${detail ? `: ${detail}` : ''}`,
        };
      }
      const parsed = parseDig(out.stdout, name, type);
      let error: string | undefined;
      if (parsed.status !== 'NOERROR' && parsed.status !== 'NXDOMAIN') {
        error = `answered ${parsed.status ?? 'nothing'}`;
      } else if (!parsed.authoritative) {
        error =
          'answered without the authoritative (aa) flag: not an authoritative server for this name';
      }
      const ttlOk =
        options.maxTtl === undefined || (parsed.ttl !== undefined && parsed.ttl <= options.maxTtl);
      return {
        ...base,
        values: parsed.values,
        ttl: parsed.ttl,
        status: parsed.status,
        ok: !error && ttlOk && sameValues(type, parsed.values, want),
        ...(error ? { error } : {}),
      };
    }),
  );
  return { ok: answers.length > 0 && answers.every((a) => a.ok), answers };
}
