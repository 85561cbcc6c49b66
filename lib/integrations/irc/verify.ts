/**
 * What a runbook proves with a real IRC client after services move: NickServ
 * identifies an account, a ChanServ topic reaches every server, and each
 * server treats the services' server as a network service (its U-line).
 * Each proof is a Condition naming the ircd it was made from.
 */
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { condition, type Condition } from '../../core/runbook.ts';
import {
  IrcClient,
  IrcError,
  plainText,
  withIrcClient,
  type IrcClientOptions,
  type IrcMessage,
} from './client.ts';

/** An ircd to probe from: `host` names it in every message. */
export interface IrcEndpoint {
  host: string;
  address: string;
  port: number;
  /** Opens the stream to the ircd instead of TCP to address:port, e.g. `() => pool.forward(host, 6667)`. */
  connect?: () => Promise<Duplex>;
}

export interface ProbeOptions {
  /** Nick of the probing client; a random `baton…` nick by default. */
  nick?: string;
  /** Milliseconds to wait for each answer; default 10 000. */
  timeoutMs?: number;
  /** Lines sent and received, passwords redacted. */
  log?: (line: string) => void;
}

function clientOptions(at: IrcEndpoint, options: ProbeOptions, tag = ''): IrcClientOptions {
  return {
    host: at.address,
    port: at.port,
    nick: options.nick ? `${options.nick}${tag}` : `baton${randomBytes(3).toString('hex')}`,
    label: at.host,
    ...(at.connect ? { connect: at.connect } : {}),
    ...(options.log ? { log: options.log } : {}),
  };
}

const IDENTIFIED = /you are now (identified|logged in)/i;
const REFUSED =
  /invalid password|not a registered|is not registered|failed|frozen|must|denied|no such/i;

export interface IdentifyProof {
  ok: boolean;
  /** What proved it: RPL_LOGGEDIN (900) from the ircd, or only NickServ's notice. */
  via: '900' | 'notice' | undefined;
  /** The answer as received (formatting removed, password redacted). */
  detail: string;
  condition: Condition;
}

/** On a connected client: IDENTIFY and wait for 900 or NickServ's answer. */
async function identifyOn(
  client: IrcClient,
  account: string,
  password: string,
  timeoutMs: number,
  service = 'NickServ',
): Promise<{ ok: boolean; via: '900' | 'notice' | undefined; detail: string }> {
  const fromService = (m: IrcMessage): boolean =>
    m.command === 'NOTICE' && m.source?.toLowerCase() === service.toLowerCase();
  const loggedIn = client.waitFor((m) => m.command === '900', {
    timeoutMs,
    what: '900 RPL_LOGGEDIN',
  });
  const answer = client.waitFor(
    (m) =>
      m.command === '900' ||
      (fromService(m) &&
        (IDENTIFIED.test(plainText(m.params[1] ?? '')) ||
          REFUSED.test(plainText(m.params[1] ?? '')))) ||
      (['401', '408', '404'].includes(m.command) &&
        m.params[1]?.toLowerCase() === service.toLowerCase()),
    { timeoutMs, what: `${service}'s answer to IDENTIFY` },
  );
  loggedIn.catch(() => undefined);
  client.privmsg(service, `IDENTIFY ${account} ${password}`, [password]);
  const first = await answer;
  if (first.command === '900') return { ok: true, via: '900', detail: client.describe(first) };
  if (first.command !== 'NOTICE')
    return { ok: false, via: undefined, detail: client.describe(first) };
  const text = plainText(first.params[1] ?? '');
  if (!IDENTIFIED.test(text))
    return {
      ok: false,
      via: undefined,
      detail: client.describe({ ...first, params: [first.params[0] ?? '', text] }),
    };
  // The notice came first; the ircd's 900 normally follows within milliseconds.
  const numeric = await Promise.race([
    loggedIn.then(() => true),
    new Promise<false>((r) => setTimeout(() => r(false), Math.min(2_000, timeoutMs)).unref()),
  ]).catch(() => false);
  return { ok: true, via: numeric ? '900' : 'notice', detail: `${service}: ${text}` };
}

/**
 * Prove that NickServ, reached through the ircd at `at`, identifies
 * `account` with `password` (900 RPL_LOGGEDIN, or NickServ's notice).
 */
export async function verifyIdentify(
  at: IrcEndpoint,
  account: string,
  password: string,
  options: ProbeOptions = {},
): Promise<IdentifyProof> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const name = `NickServ identifies ${account} via ${at.host}`;
  try {
    const result = await withIrcClient(clientOptions(at, options), (client) =>
      identifyOn(client, account, password, timeoutMs),
    );
    return {
      ...result,
      condition: condition(name, result.ok, {
        expected: `900 RPL_LOGGEDIN or "You are now identified" for ${account}`,
        found: result.ok
          ? result.via === '900'
            ? '900 RPL_LOGGEDIN'
            : `only the notice: ${result.detail}`
          : result.detail,
        ...(result.ok
          ? {}
          : {
              remedy: `Check that services run with the expected database and that ${at.host} reaches them.`,
            }),
      }),
    };
  } catch (e) {
    const detail = (e as Error).message;
    return {
      ok: false,
      via: undefined,
      detail,
      condition: condition(name, false, {
        expected: `900 RPL_LOGGEDIN or "You are now identified" for ${account}`,
        found: detail,
        remedy: `Check that the ircd on ${at.host} runs and that services are linked to the network.`,
      }),
    };
  }
}

export interface TopicObservation {
  host: string;
  /** Whether a TOPIC message with the new text reached the client on this server. */
  sawTopicChange: boolean;
  /** The server's own answer to `TOPIC #chan` afterwards. */
  numeric: '331' | '332' | undefined;
  topic: string | undefined;
  ok: boolean;
  condition: Condition;
}

export interface TopicProof {
  ok: boolean;
  topic: string;
  /** ChanServ's answer to the setter. */
  chanserv: string;
  observers: TopicObservation[];
  conditions: Condition[];
}

/**
 * Prove that ChanServ sets a topic that clients on every other server see:
 * clients join `channel` on each observer server, a client identified as
 * `account` (who must hold +t there) asks ChanServ for the topic from
 * `setter`, and each observer must receive the TOPIC change and read it
 * back (332). A server without the services' U-line ignores the change.
 */
export async function verifyTopicPropagation(options: {
  setter: IrcEndpoint;
  observers: IrcEndpoint[];
  channel: string;
  account: string;
  password: string;
  /** The topic to set; unique by default so an old topic cannot pass. */
  topic?: string;
  /** Milliseconds observers get after ChanServ confirms the topic; default 3 000. */
  settleMs?: number;
  probe?: ProbeOptions;
}): Promise<TopicProof> {
  const probe = options.probe ?? {};
  const timeoutMs = probe.timeoutMs ?? 10_000;
  const topic =
    options.topic ??
    `baton verification ${new Date().toISOString()} ${randomBytes(2).toString('hex')}`;
  const clients: IrcClient[] = [];
  const observers: TopicObservation[] = [];
  let chanserv = '';
  try {
    // Settle every connection before going on, so none is left open on a failure.
    const settled = await Promise.allSettled(
      options.observers.map(async (at, i) => {
        const client = await IrcClient.connect(clientOptions(at, probe, `o${i}`));
        clients.push(client);
        await client.join(options.channel, { timeoutMs });
        return { at, client };
      }),
    );
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    const watchers = settled.map(
      (r) => (r as PromiseFulfilledResult<{ at: IrcEndpoint; client: IrcClient }>).value,
    );
    const setter = await IrcClient.connect(clientOptions(options.setter, probe, 's'));
    clients.push(setter);
    const identified = await identifyOn(setter, options.account, options.password, timeoutMs);
    if (!identified.ok) {
      throw new IrcError(
        'IRC_FAILED',
        options.setter.host,
        `cannot identify ${options.account}: ${identified.detail}`,
      );
    }
    let endWait: (() => void) | undefined;
    const settle = new Promise<false>((resolve) => (endWait = () => resolve(false)));
    const changes = watchers.map(({ client }) =>
      Promise.race([
        client
          .waitFor(
            (m) =>
              m.command === 'TOPIC' &&
              m.params[0]?.toLowerCase() === options.channel.toLowerCase() &&
              m.params[1] === topic,
            { timeoutMs, what: `TOPIC ${options.channel} from services` },
          )
          .then(() => true)
          .catch(() => false),
        settle,
      ]),
    );
    const answer = setter.waitFor(
      (m) => m.command === 'NOTICE' && m.source?.toLowerCase() === 'chanserv',
      { timeoutMs, what: "ChanServ's answer to TOPIC" },
    );
    setter.privmsg('ChanServ', `TOPIC ${options.channel} ${topic}`);
    chanserv = plainText((await answer).params[1] ?? '');
    // ChanServ answers after it has sent the TOPIC: by now it is on its way to every server.
    const timer = setTimeout(() => endWait?.(), options.settleMs ?? 3_000);
    const seen = await Promise.all(changes);
    clearTimeout(timer);
    for (const [i, { at, client }] of watchers.entries()) {
      const read = await client.topic(options.channel, { timeoutMs });
      const ok = seen[i]! && read.topic === topic;
      observers.push({
        host: at.host,
        sawTopicChange: seen[i]!,
        numeric: read.numeric,
        topic: read.topic,
        ok,
        condition: condition(`ChanServ's topic on ${options.channel} seen from ${at.host}`, ok, {
          expected: `TOPIC change and 332 "${topic}"`,
          found: `${seen[i] ? 'TOPIC change received' : 'no TOPIC change'}; ${
            read.numeric === '332' ? `332 "${read.topic}"` : '331 No topic is set'
          }`,
          ...(ok
            ? {}
            : {
                remedy: `Give ${at.host} the U-line for the services' server name and rehash it.`,
              }),
        }),
      });
    }
  } catch (e) {
    const detail = (e as Error).message;
    const conditions = [
      condition(`ChanServ sets the topic of ${options.channel}`, false, {
        expected: `the topic set and seen from ${options.observers.map((o) => o.host).join(', ')}`,
        found: detail,
        remedy: 'Check that services are linked and that the account holds +t on the channel.',
      }),
    ];
    return { ok: false, topic, chanserv, observers, conditions };
  } finally {
    await Promise.all(clients.map((c) => c.quit()));
  }
  const conditions = observers.map((o) => o.condition);
  return { ok: observers.every((o) => o.ok), topic, chanserv, observers, conditions };
}

export interface ServiceTrust {
  host: string;
  /** `service` is a user on the network (WHOIS answered 311). */
  present: boolean;
  /** The server `service` is on, from WHOIS (312). */
  server: string | undefined;
  /** The server answered SQUERY by passing it on (the service's NOTICE came back). */
  trusted: boolean;
  /** What the server said instead (`408 NickServ :No such service`). */
  refusal: string | undefined;
  condition: Condition;
}

/**
 * Whether the ircd at `at` treats `servicesServer` as a network service:
 * WHOIS finds `service` there, and SQUERY reaches it. A server without the
 * U-line answers `408 … :No such service` (or, through the alias module,
 * `is not a network service`).
 */
export async function verifyServiceTrust(
  at: IrcEndpoint,
  servicesServer: string,
  options: ProbeOptions & { service?: string } = {},
): Promise<ServiceTrust> {
  const service = options.service ?? 'NickServ';
  const timeoutMs = options.timeoutMs ?? 10_000;
  const name = `${at.host} treats ${servicesServer} as a network service`;
  const expected = `${service} on ${servicesServer} answers SQUERY`;
  const is = (p: string | undefined): boolean => p?.toLowerCase() === service.toLowerCase();
  try {
    return await withIrcClient(clientOptions(at, options), async (client) => {
      const whois = await client.request(
        `WHOIS ${service}`,
        (m) => m.command === '318' && is(m.params[1]),
        {
          timeoutMs,
          what: `WHOIS ${service} (318)`,
          keep: (m) => ['311', '312', '401'].includes(m.command) && is(m.params[1]),
        },
      );
      const present = whois.some((m) => m.command === '311');
      const server = whois.find((m) => m.command === '312')?.params[2];
      const replies = await client.request(
        `SQUERY ${service} :HELP`,
        (m) =>
          (m.command === 'NOTICE' && is(m.source)) ||
          (['401', '408', '421'].includes(m.command) &&
            (is(m.params[1]) || m.params[1] === 'SQUERY')),
        { timeoutMs, what: `${service}'s answer to SQUERY`, keep: () => false },
      );
      const reply = replies[0]!;
      const trusted =
        reply.command === 'NOTICE' && server?.toLowerCase() === servicesServer.toLowerCase();
      const refusal = reply.command === 'NOTICE' ? undefined : client.describe(reply);
      const found = !present
        ? `${service} is not on the network (${refusal ?? 'no WHOIS reply'})`
        : server?.toLowerCase() !== servicesServer.toLowerCase()
          ? `${service} is on ${server}, not ${servicesServer}`
          : trusted
            ? `${service} answered SQUERY`
            : `${refusal}: ${at.host} has no U-line for ${servicesServer}`;
      return {
        host: at.host,
        present,
        server,
        trusted,
        refusal,
        condition: condition(name, trusted, {
          expected,
          found,
          ...(trusted
            ? {}
            : {
                remedy: `Add <uline server="${servicesServer}"> (or the ircd's equivalent) on ${at.host} and rehash it.`,
              }),
        }),
      };
    });
  } catch (e) {
    const detail = (e as Error).message;
    return {
      host: at.host,
      present: false,
      server: undefined,
      trusted: false,
      refusal: undefined,
      condition: condition(name, false, {
        expected,
        found: detail,
        remedy: `Check that the ircd on ${at.host} runs and accepts clients.`,
      }),
    };
  }
}
