/**
 * The operator's OpenSSH client configuration, as the real client resolves it:
 * `ssh -G` prints every setting that applies to a host after Host and Match
 * blocks, Include files and defaults, so baton never parses ssh_config itself.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir, hostname, userInfo } from 'node:os';
import { BatonError } from '../core/errors.ts';

/** What the OpenSSH client would use to reach one host. */
export interface SshClientSettings {
  /** The name `ssh -G` was asked about: an inventory address or a jump host's name. */
  alias: string;
  /** Where to connect (HostName), the port and the remote user. */
  hostName: string;
  port: number;
  user: string;
  /** IdentityFile entries that exist, in order, with `~`, `%` tokens and `${VAR}` expanded. */
  identityFiles: string[];
  /** ProxyJump hops in connection order; empty for a direct connection. */
  proxyJump: JumpSpec[];
  /** ProxyCommand, which only the OpenSSH client itself can run as configured. */
  proxyCommand?: string;
  identitiesOnly: boolean;
  /**
   * The agent socket IdentityAgent names (`SSH_AUTH_SOCK` and `$VAR` read from
   * the environment); null for `IdentityAgent none`; undefined when unset.
   */
  identityAgent?: string | null;
  knownHostsFiles: string[];
  /** HostKeyAlias: the name the host's key is filed under in known_hosts. */
  hostKeyAlias?: string;
}

/** One hop of a ProxyJump list: `[user@]host[:port]` or `ssh://[user@]host[:port]`. */
export interface JumpSpec {
  host: string;
  user?: string;
  port?: number;
}

export interface ReadSshConfigOptions {
  /** Path of the `ssh` client; undefined when none is installed. */
  ssh: string | undefined;
  /** `ssh -F FILE`; by default ssh reads ~/.ssh/config, then /etc/ssh/ssh_config. */
  configFile?: string;
  /** Set on the command line (`-l`, `-p`), so they win over the file as they do for `ssh`. */
  user?: string;
  port?: number;
  env?: NodeJS.ProcessEnv;
}

/**
 * The settings `ssh -l USER -p PORT ALIAS` would use, or undefined when no
 * OpenSSH client is installed (the caller then has the inventory alone).
 */
export async function readSshConfig(
  alias: string,
  options: ReadSshConfigOptions,
): Promise<SshClientSettings | undefined> {
  if (!options.ssh) return undefined;
  if (alias.startsWith('-') || /[\s'"`$;&|<>\\]/.test(alias)) {
    throw new BatonError(
      'INVALID_INPUT',
      `cannot look up ssh host ${JSON.stringify(alias)}: not a host name`,
      'Fix the address in the inventory or the ProxyJump entry in the ssh config.',
    );
  }
  const args = ['-G'];
  if (options.configFile) args.push('-F', options.configFile);
  if (options.user) args.push('-l', options.user);
  if (options.port) args.push('-p', String(options.port));
  args.push('--', alias);
  const where = options.configFile ?? '~/.ssh/config or /etc/ssh/ssh_config';
  const output = await new Promise<string | undefined>((resolve, reject) => {
    execFile(
      options.ssh!,
      args,
      { timeout: 10_000, maxBuffer: 1 << 20, env: options.env ?? process.env },
      (error, stdout, stderr) => {
        if (!error) return resolve(stdout);
        // Removed between the look-up on PATH and now: the same as not installed.
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return resolve(undefined);
        const said = String(stderr).trim().split('\n').slice(-3).join(' | ');
        reject(
          new BatonError(
            'INVALID_INPUT',
            `\`ssh -G ${alias}\` failed, so baton cannot tell how the OpenSSH client would reach ${alias}: ${said || error.message}`,
            `Fix the ssh client configuration (${where}); \`ssh -G ${alias}\` must succeed.`,
          ),
        );
      },
    );
  });
  if (output === undefined) return undefined;
  return parseSshG(alias, output, options.env ?? process.env);
}

/** The settings in `ssh -G` output (one `keyword value` a line, keywords lowercased). */
export function parseSshG(
  alias: string,
  output: string,
  env: NodeJS.ProcessEnv = process.env,
): SshClientSettings {
  const values = new Map<string, string[]>();
  for (const line of output.split('\n')) {
    const at = line.indexOf(' ');
    if (at <= 0) continue;
    const key = line.slice(0, at).toLowerCase();
    const list = values.get(key) ?? [];
    list.push(line.slice(at + 1).trim());
    values.set(key, list);
  }
  const one = (key: string): string | undefined => values.get(key)?.[0];
  const hostName = one('hostname') ?? alias;
  const port = Number(one('port') ?? 22);
  const user = one('user') ?? userInfo().username;
  const hostKeyAlias = one('hostkeyalias');
  const tokens: Tokens = { alias, hostName, port, user, hostKeyAlias };
  const identityFiles = (values.get('identityfile') ?? [])
    .map((f) => expandPath(f, tokens, env))
    .filter((f): f is string => f !== undefined && existsSync(f));
  const jump = one('proxyjump');
  const proxyCommand = one('proxycommand');
  const agent = one('identityagent');
  const knownHostsFiles = [
    ...(one('userknownhostsfile') ?? '').split(/\s+/),
    ...(one('globalknownhostsfile') ?? '').split(/\s+/),
  ]
    .filter((f) => f && f !== 'none')
    .map((f) => expandPath(f, tokens, env))
    .filter((f): f is string => f !== undefined);
  return {
    alias,
    hostName,
    port,
    user,
    identityFiles: [...new Set(identityFiles)],
    proxyJump: jump && jump !== 'none' ? parseProxyJump(jump) : [],
    ...(proxyCommand && proxyCommand !== 'none' ? { proxyCommand } : {}),
    identitiesOnly: one('identitiesonly') === 'yes',
    ...(agent !== undefined ? { identityAgent: agentSocket(agent, tokens, env) } : {}),
    knownHostsFiles,
    ...(hostKeyAlias ? { hostKeyAlias } : {}),
  };
}

/** `a,user@b:2222,ssh://c` as hops, first to last. */
export function parseProxyJump(value: string): JumpSpec[] {
  return value.split(',').map((raw) => {
    let rest = raw.trim();
    if (rest.startsWith('ssh://')) rest = rest.slice('ssh://'.length).replace(/\/$/, '');
    let user: string | undefined;
    const at = rest.lastIndexOf('@');
    if (at >= 0) {
      user = rest.slice(0, at);
      rest = rest.slice(at + 1);
    }
    let port: number | undefined;
    const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(rest);
    if (bracketed) {
      rest = bracketed[1]!;
      if (bracketed[2]) port = Number(bracketed[2]);
    } else {
      const colon = /^([^:]+):(\d+)$/.exec(rest);
      if (colon) {
        rest = colon[1]!;
        port = Number(colon[2]);
      }
    }
    if (!rest || (port !== undefined && (port < 1 || port > 65535))) {
      throw new BatonError(
        'INVALID_INPUT',
        `the ssh config has a ProxyJump entry baton cannot read: ${JSON.stringify(raw)}`,
        'Write each jump host as [user@]host[:port], separated by commas.',
      );
    }
    return { host: rest, ...(user ? { user } : {}), ...(port ? { port } : {}) };
  });
}

interface Tokens {
  alias: string;
  hostName: string;
  port: number;
  user: string;
  hostKeyAlias: string | undefined;
}

/**
 * `~`, `${VAR}` and the `%` tokens ssh_config(5) allows in IdentityFile and
 * friends; undefined when the path names something unknown (ssh would fail on
 * it too), so the entry is passed over.
 */
function expandPath(path: string, t: Tokens, env: NodeJS.ProcessEnv): string | undefined {
  const home = env.HOME || homedir();
  let unknown = false;
  let out = path.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
    const value = env[name];
    if (value === undefined) unknown = true;
    return value ?? '';
  });
  out = out.replace(/%(.)/g, (_m, c: string) => {
    switch (c) {
      case '%':
        return '%';
      case 'd':
        return home;
      case 'h':
        return t.hostName;
      case 'n':
        return t.alias;
      case 'k':
        return t.hostKeyAlias ?? t.alias;
      case 'p':
        return String(t.port);
      case 'r':
        return t.user;
      case 'u':
        return userInfo().username;
      case 'i':
        return String(userInfo().uid);
      case 'l':
        return hostname();
      case 'L':
        return hostname().split('.')[0]!;
      default:
        unknown = true;
        return '';
    }
  });
  if (unknown) return undefined;
  if (out === '~') return home;
  if (out.startsWith('~/')) return home + out.slice(1);
  return out;
}

function agentSocket(value: string, t: Tokens, env: NodeJS.ProcessEnv): string | null {
  if (value === 'none') return null;
  if (value === 'SSH_AUTH_SOCK') return env.SSH_AUTH_SOCK || null;
  if (value.startsWith('$')) return env[value.slice(1)] || null;
  return expandPath(value, t, env) ?? null;
}
