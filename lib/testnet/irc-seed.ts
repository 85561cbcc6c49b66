/**
 * Talking to the irc testnet's network with a real IRC client from the
 * controller, through each host's own ssh connection (`SshPool.forward` to
 * the ircd on the host's loopback), exactly as a runbook reaches production
 * ircds: waiting for links, asking services, and seeding services.db.
 */
import { randomBytes } from 'node:crypto';
import { BatonError } from '../core/errors.ts';
import { findHost, type Host, type Inventory } from '../core/inventory.ts';
import { IrcClient, plainText, type IrcMessage } from '../integrations/irc/client.ts';
import type { IrcEndpoint } from '../integrations/irc/verify.ts';
import type { SshPool } from '../transports/ssh.ts';
import {
  IRC_CLIENT_PORT,
  IRC_HUB,
  IRC_ZONE,
  IRCD_HOSTS,
  OPERATOR_ACCOUNT,
  SEED,
  SERVICES_PRIMARY,
  type IrcSecrets,
} from './irc.ts';

/** An ircd as lib/integrations/irc/verify.ts probes it: reached through the host's ssh connection. */
export function ircEndpoint(pool: SshPool, host: Host): IrcEndpoint {
  return {
    host: host.name,
    address: host.address,
    port: IRC_CLIENT_PORT,
    connect: () => pool.forward(host, IRC_CLIENT_PORT),
  };
}

/** A registered IRC client on `host`'s ircd, through ssh forwarding. */
export function connectIrc(
  pool: SshPool,
  host: Host,
  nick: string = `baton${randomBytes(3).toString('hex')}`,
  log?: (line: string) => void,
): Promise<IrcClient> {
  return IrcClient.connect({
    host: host.address,
    port: IRC_CLIENT_PORT,
    nick,
    label: host.name,
    connect: () => pool.forward(host, IRC_CLIENT_PORT),
    ...(log ? { log } : {}),
  });
}

/**
 * Send `text` to a service and wait for its notice matching `expect`; a
 * notice matching `refuse` (or the timeout) fails with what the service said.
 * Values in `secrets` never reach an error message or log.
 */
export async function askService(
  client: IrcClient,
  service: string,
  text: string,
  expect: RegExp,
  options: { refuse?: RegExp; secrets?: string[]; timeoutMs?: number } = {},
): Promise<string> {
  const heard: string[] = [];
  const refuse =
    options.refuse ??
    /not authori[sz]ed|do not have|insufficient|denied|invalid|unknown command|not registered|failed|must/i;
  const fromService = (m: IrcMessage): boolean =>
    m.command === 'NOTICE' && m.source?.toLowerCase() === service.toLowerCase();
  const answer = client.waitFor(
    (m) => {
      if (!fromService(m)) return false;
      const said = plainText(m.params[1] ?? '');
      heard.push(said);
      return expect.test(said) || refuse.test(said);
    },
    { timeoutMs: options.timeoutMs ?? 15_000, what: `${service}'s answer` },
  );
  client.privmsg(service, text, options.secrets ?? []);
  const redact = (said: string): string =>
    (options.secrets ?? []).reduce((s, secret) => s.split(secret).join('[redacted]'), said);
  let said: string;
  try {
    said = plainText((await answer).params[1] ?? '');
  } catch (e) {
    throw new BatonError(
      'IRC_FAILED',
      `${service} via ${client.label} did not answer "${redact(text.split(' ')[0]!)}" as expected: ${(e as Error).message}${heard.length ? `; it said: ${heard.map(redact).join(' / ')}` : ''}`,
      'Check that services are linked (`baton testnet status`) and look at /var/log/atheme/atheme.log.',
    );
  }
  if (!expect.test(said)) {
    throw new BatonError(
      'IRC_FAILED',
      `${service} via ${client.label} refused "${redact(text.split(' ')[0]!)}": ${redact(said)}`,
    );
  }
  return redact(said);
}

/** NICK, and wait until the server confirms it (or refuses it). */
async function changeNick(client: IrcClient, nick: string): Promise<void> {
  const [reply] = await client.request(
    `NICK ${nick}`,
    (m) => (m.command === 'NICK' && m.params[0] === nick) || /^4\d\d$/.test(m.command),
    { what: `NICK ${nick}`, keep: () => false },
  );
  if (reply?.command !== 'NICK') {
    throw new BatonError(
      'IRC_FAILED',
      `${client.label} refused NICK ${nick}: ${reply ? client.describe(reply) : 'no reply'}`,
    );
  }
  client.nick = nick;
}

/** Wait until LINKS on every listed ircd shows every name in `names`. */
export async function waitForLinks(
  pool: SshPool,
  inventory: Inventory,
  names: readonly string[],
  options: { hosts?: readonly string[]; timeoutMs?: number } = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  await Promise.all(
    (options.hosts ?? IRCD_HOSTS).map(async (name) => {
      const host = findHost(inventory, name);
      let seen: string[] = [];
      for (;;) {
        try {
          const client = await connectIrc(pool, host);
          try {
            for (;;) {
              const replies = await client.request('LINKS', (m) => m.command === '365', {
                keep: (m) => m.command === '364',
                what: 'LINKS (365)',
              });
              seen = replies.filter((m) => m.command === '364').map((m) => m.params[1] ?? '');
              if (names.every((n) => seen.includes(n))) return;
              if (Date.now() > deadline) break;
              await new Promise((r) => setTimeout(r, 250));
            }
          } finally {
            await client.quit();
          }
        } catch (e) {
          if (Date.now() > deadline) throw e;
          await new Promise((r) => setTimeout(r, 250));
          continue;
        }
        throw new BatonError(
          'PRECONDITION_FAILED',
          `testnet irc: ${name} does not see ${names.filter((n) => !seen.includes(n)).join(', ')} after ${timeoutMs} ms (it sees ${seen.join(', ') || 'nothing'})`,
          `Look at /var/log/inspircd/ircd.log and /var/log/units/ on ${name} and ${IRC_HUB}.`,
        );
      }
    }),
  );
}

/**
 * Register the operator account and the seed accounts, nicks and channels
 * through the real services on the primary, then make Atheme save
 * (OperServ UPDATE, as batonops). Accounts and channels that exist already
 * are accepted, so a provisioning cut short can run again.
 */
export async function seedServices(
  pool: SshPool,
  inventory: Inventory,
  secrets: IrcSecrets,
): Promise<void> {
  const host = findHost(inventory, SERVICES_PRIMARY);
  const password = (account: string): string => {
    const p = secrets.passwords[account];
    if (!p) throw new BatonError('PRECONDITION_FAILED', `no password for ${account}`);
    return p;
  };
  const accounts = [{ name: OPERATOR_ACCOUNT, extraNicks: [] as string[] }, ...SEED.accounts];
  const clients = new Map<string, IrcClient>();
  try {
    // An ircd completes a registration on its once-a-second tick: connect all at once.
    const connected = await Promise.allSettled(
      accounts.map(async (a) => clients.set(a.name, await connectIrc(pool, host, a.name))),
    );
    const failed = connected.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    for (const account of accounts) {
      const client = clients.get(account.name)!;
      const pw = password(account.name);
      const said = await askService(
        client,
        'NickServ',
        `REGISTER ${pw} ${account.name}@${IRC_ZONE}`,
        /is now registered|is already registered/i,
        { secrets: [pw] },
      );
      if (/already registered/i.test(said)) {
        await askService(client, 'NickServ', `IDENTIFY ${account.name} ${pw}`, /identified/i, {
          secrets: [pw],
        });
      }
      for (const nick of account.extraNicks) {
        await changeNick(client, nick);
        await askService(
          client,
          'NickServ',
          'GROUP',
          /now registered to your account|already registered to your account|already in your group/i,
        );
      }
      if (account.extraNicks.length > 0) await changeNick(client, account.name);
    }
    for (const channel of SEED.channels) {
      const founder = clients.get(channel.founder)!;
      // ChanServ answers a member of the channel with the TOPIC itself, not a notice; when
      // it restores a kept topic on the JOIN, setting the same text again changes nothing.
      const topicSet = founder.waitFor(
        (m) =>
          m.command === 'TOPIC' &&
          m.params[0]?.toLowerCase() === channel.name.toLowerCase() &&
          m.params[1] === channel.topic,
        { timeoutMs: 15_000, what: `ChanServ's TOPIC on ${channel.name}` },
      );
      topicSet.catch(() => undefined);
      await founder.join(channel.name);
      await askService(
        founder,
        'ChanServ',
        `REGISTER ${channel.name}`,
        /is now registered to|is already registered to/i,
      );
      await askService(founder, 'ChanServ', `SET ${channel.name} KEEPTOPIC ON`, /KEEPTOPIC/i);
      for (const [account, flags] of Object.entries(channel.access)) {
        await askService(
          founder,
          'ChanServ',
          `FLAGS ${channel.name} ${account} ${flags}`,
          /were set|has been set|already has|unchanged/i,
        );
      }
      founder.privmsg('ChanServ', `TOPIC ${channel.name} ${channel.topic}`);
      await topicSet;
    }
    await askService(
      clients.get(OPERATOR_ACCOUNT)!,
      'OperServ',
      'UPDATE',
      /update|complete|saving/i,
    );
  } finally {
    await Promise.all([...clients.values()].map((c) => c.quit()));
  }
}
