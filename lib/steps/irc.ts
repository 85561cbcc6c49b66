/**
 * Talking to an IRC network from a step: a client reaches each ircd through
 * that host's own transport (an ssh channel to the ircd's loopback port), so
 * the same step works on the testnet and in production without opening ports.
 */
import type { Duplex } from 'node:stream';
import { IrcError, plainText, withIrcClient, type IrcMessage } from '../integrations/irc/client.ts';
import {
  verifyIdentify,
  verifyServiceTrust,
  verifyTopicPropagation,
  type IrcEndpoint,
  type ServiceTrust,
} from '../integrations/irc/verify.ts';
import type { Host } from '../core/inventory.ts';
import type { Condition } from '../core/runbook.ts';

/** What a step needs to reach ircds: the context's `connect`. */
export interface IrcReach {
  connect(host: Host | string, port: number): Promise<Duplex>;
}

export function endpoint(reach: IrcReach, host: Host, port: number): IrcEndpoint {
  return {
    host: host.name,
    address: '127.0.0.1',
    port,
    connect: () => reach.connect(host, port),
  };
}

/** Ask each ircd whether it treats the services server as a network service. */
export async function trustFrom(
  reach: IrcReach,
  hosts: Host[],
  port: number,
  servicesName: string,
): Promise<ServiceTrust[]> {
  return Promise.all(
    hosts.map((h) =>
      verifyServiceTrust(endpoint(reach, h, port), servicesName, { timeoutMs: 10_000 }),
    ),
  );
}

/** Wait until services answer through `host`'s ircd, as after a start or a relink. */
export async function waitForServices(
  reach: IrcReach,
  host: Host,
  port: number,
  servicesName: string,
  timeoutMs: number,
  sleep: (ms: number) => Promise<void>,
): Promise<ServiceTrust> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    let trust: ServiceTrust | undefined;
    try {
      trust = await verifyServiceTrust(endpoint(reach, host, port), servicesName, {
        timeoutMs: 5_000,
      });
      if (trust.trusted) return trust;
    } catch (e) {
      if (Date.now() >= until) throw e;
    }
    if (Date.now() >= until) return trust!;
    await sleep(1_000);
  }
}

export interface OperServResult {
  /** OperServ's notices, formatting removed. */
  replies: string[];
}

/**
 * Identify as the services operator and send OperServ commands, collecting
 * OperServ's answers. Throws when identification fails or OperServ is silent.
 */
export async function operServ(
  reach: IrcReach,
  host: Host,
  port: number,
  account: string,
  password: string,
  commands: string[],
  expect: RegExp,
): Promise<OperServResult> {
  const ep = endpoint(reach, host, port);
  return withIrcClient(
    {
      host: ep.address,
      port,
      nick: `batonop${Math.floor(Math.random() * 1e5)}`,
      label: host.name,
      connect: ep.connect!,
    },
    async (client) => {
      const identified = client.waitFor(
        (m) =>
          m.command === '900' ||
          (m.command === 'NOTICE' &&
            m.source?.toLowerCase() === 'nickserv' &&
            /invalid|not registered|failed/i.test(plainText(m.params[1] ?? ''))),
        { timeoutMs: 10_000, what: `NickServ identifying ${account}` },
      );
      client.privmsg('NickServ', `IDENTIFY ${account} ${password}`, [password]);
      const id = await identified;
      if (id.command !== '900') {
        throw new IrcError(
          'IRC_FAILED',
          host.name,
          `services refused to identify ${account}: ${plainText(id.params[1] ?? '')}`,
          'Check the services operator account and its password.',
        );
      }
      const replies: string[] = [];
      for (const command of commands) {
        const answer = client.waitFor(
          (m: IrcMessage) => m.command === 'NOTICE' && m.source?.toLowerCase() === 'operserv',
          { timeoutMs: 10_000, what: `OperServ's answer to ${command}` },
        );
        client.privmsg('OperServ', command);
        replies.push(plainText((await answer).params[1] ?? ''));
      }
      if (!replies.some((r) => expect.test(r))) {
        throw new IrcError(
          'IRC_FAILED',
          host.name,
          `OperServ answered "${replies.join(' / ')}" to ${commands.join(', ')}`,
          'Check that the operator account has services operator rights (soper).',
        );
      }
      return { replies };
    },
  );
}

/** NickServ identifies the canary account from every ircd. */
export async function identifyEverywhere(
  reach: IrcReach,
  hosts: Host[],
  port: number,
  account: string,
  password: string,
): Promise<Condition[]> {
  const proofs = await Promise.all(
    hosts.map((h) =>
      verifyIdentify(endpoint(reach, h, port), account, password, { timeoutMs: 10_000 }),
    ),
  );
  return proofs.map((p) => p.condition);
}

/** ChanServ sets a topic from one ircd that clients on every ircd see. */
export async function topicEverywhere(
  reach: IrcReach,
  setter: Host,
  hosts: Host[],
  port: number,
  channel: string,
  account: string,
  password: string,
): Promise<Condition[]> {
  const proof = await verifyTopicPropagation({
    setter: endpoint(reach, setter, port),
    observers: hosts.filter((h) => h.name !== setter.name).map((h) => endpoint(reach, h, port)),
    channel,
    account,
    password,
  });
  return proof.conditions;
}
