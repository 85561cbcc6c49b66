import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprint, parseAthemeDb } from '../lib/integrations/atheme/db.ts';
import {
  IrcClient,
  IrcError,
  parseIrcLine,
  plainText,
  withIrcClient,
} from '../lib/integrations/irc/client.ts';
import {
  verifyIdentify,
  verifyServiceTrust,
  verifyTopicPropagation,
  type IrcEndpoint,
} from '../lib/integrations/irc/verify.ts';
import {
  athemeConfig,
  athemeUnavailable,
  cleanupAtheme,
  startAtheme,
  type AthemeRun,
} from './support/atheme.ts';
import {
  inspircdUnavailable,
  startIrcNetwork,
  waitForLinks,
  type TestIrcNetwork,
} from './support/inspircd.ts';
import { assertPrerequisite, skipUnless } from './support/require.ts';
import { freePort } from './support/sshd.ts';

describe('IRC lines', () => {
  it('parses tags, prefix, command, middle and trailing parameters', () => {
    expect(
      parseIrcLine('@time=2026-01-01T00:00:00Z;msgid=x :nick!user@host PRIVMSG #chan :hello there'),
    ).toEqual({
      raw: '@time=2026-01-01T00:00:00Z;msgid=x :nick!user@host PRIVMSG #chan :hello there',
      tags: { time: '2026-01-01T00:00:00Z', msgid: 'x' },
      prefix: 'nick!user@host',
      source: 'nick',
      command: 'PRIVMSG',
      params: ['#chan', 'hello there'],
    });
    expect(parseIrcLine('PING :irc.example')).toMatchObject({
      prefix: undefined,
      command: 'PING',
      params: ['irc.example'],
    });
    expect(parseIrcLine(':srv 332 me #c :')).toMatchObject({
      source: 'srv',
      command: '332',
      params: ['me', '#c', ''],
    });
    expect(parseIrcLine(':srv 005 me A=1 B :are supported').params).toEqual([
      'me',
      'A=1',
      'B',
      'are supported',
    ]);
  });

  it('strips formatting from service notices', () => {
    expect(plainText('You are now identified for \x02alice\x02.')).toBe(
      'You are now identified for alice.',
    );
    expect(plainText('\x0304,01red\x0f \x1ditalic\x1d')).toBe('red italic');
  });
});

const ircdMissing = inspircdUnavailable();
const athemeMissing = athemeUnavailable();
const PASSWORD = 'correct-horse-battery-7';

describe.skipIf(skipUnless(ircdMissing, 'IRC client against real InspIRCd'))(
  'IRC client against real InspIRCd 3',
  () => {
    let net: TestIrcNetwork;
    const lines: string[] = [];
    const log = (line: string): void => void lines.push(line);
    const at = (host: string): IrcEndpoint => ({
      host,
      address: '127.0.0.1',
      port: net.server(host).clientPort,
    });
    const options = (host: string, nick: string) => ({
      host: '127.0.0.1',
      port: net.server(host).clientPort,
      label: host,
      nick,
      log,
    });
    const connect = (host: string, nick: string): Promise<IrcClient> =>
      IrcClient.connect(options(host, nick));

    beforeAll(async () => {
      assertPrerequisite(ircdMissing);
      // nebula carries services; paralysis trusts them too; emergency1 lacks the U-line, as in incident 003.
      net = await startIrcNetwork([
        { host: 'nebula', uline: true },
        { host: 'paralysis', uline: true, pingfreq: 2 },
        { host: 'emergency1', uline: false },
      ]);
    });

    afterAll(async () => {
      await net?.stop();
    });

    it('registers and learns the server name from 001', async () => {
      const client = await connect('nebula', 'reg1');
      try {
        expect(client.serverName).toBe('nebula.baton.test');
        expect(client.nick).toBe('reg1');
      } finally {
        await client.quit();
      }
    });

    it('answers the server PING and stays connected', async () => {
      await withIrcClient(options('paralysis', 'pinged'), async (client) => {
        // paralysis pings every 2 s and drops a client that did not answer the previous PING.
        await client.waitFor((m) => m.command === 'PING', { timeoutMs: 5_000 });
        await client.waitFor((m) => m.command === 'PING', { timeoutMs: 5_000 });
        expect(
          (await client.topic('#nowhere-yet').catch((e: Error) => e.message)) as string,
        ).toMatch(/403|331/);
      });
      expect(lines.filter((l) => l.startsWith('> PONG')).length).toBeGreaterThanOrEqual(2);
    });

    it('joins, reads no topic (331), and reads a topic set on another server (332)', async () => {
      const [a, b] = await Promise.all([
        connect('nebula', 'joiner'),
        connect('emergency1', 'reader'),
      ]);
      try {
        const joined = await a.join('#readback');
        expect(joined).toEqual({ channel: '#readback', topic: undefined, names: ['joiner'] });
        expect(await a.topic('#readback')).toEqual({
          channel: '#readback',
          topic: undefined,
          numeric: '331',
        });
        const seen = b.join('#readback');
        expect((await seen).names.sort()).toEqual(['joiner', 'reader']);
        const change = b.waitFor((m) => m.command === 'TOPIC' && m.params[1] === 'set on nebula');
        a.send('TOPIC #readback :set on nebula');
        await change;
        expect(await b.topic('#readback')).toEqual({
          channel: '#readback',
          topic: 'set on nebula',
          numeric: '332',
        });
        const rejoin = await connect('paralysis', 'late');
        try {
          expect((await rejoin.join('#readback')).topic).toBe('set on nebula');
        } finally {
          await rejoin.quit();
        }
      } finally {
        await Promise.all([a.quit(), b.quit()]);
      }
    });

    it('rejects a JOIN the server refuses, with the numeric', async () => {
      await withIrcClient(options('nebula', 'badjoin'), async (client) => {
        await expect(client.join('nohash')).rejects.toThrow(
          /IRC nebula: cannot join nohash: 476 nohash :/,
        );
      });
    });

    it('refuses a nick in use and a closed port, saying where', async () => {
      const first = await connect('nebula', 'taken');
      try {
        const err = await connect('nebula', 'taken').catch((e: unknown) => e);
        expect(err).toBeInstanceOf(IrcError);
        expect((err as IrcError).message).toMatch(/^IRC nebula: registration refused: 433 taken/);
      } finally {
        await first.quit();
      }
      const port = await freePort();
      const refused = await IrcClient.connect({ host: '127.0.0.1', port, nick: 'x' }).catch(
        (e: unknown) => e,
      );
      expect(refused).toMatchObject({ code: 'IRC_FAILED', server: `127.0.0.1:${port}` });
      expect((refused as Error).message).toMatch(/cannot connect: connect ECONNREFUSED/);
    });

    it('closes its socket and removes its listeners on quit and on close', async () => {
      const sockets = (): number =>
        process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
      // Sockets of earlier tests may still be closing.
      await new Promise((r) => setTimeout(r, 100));
      const before = sockets();
      const clients = await Promise.all(['c1', 'c2', 'c3'].map((n) => connect('nebula', n)));
      expect(sockets()).toBe(before + 3);
      await clients[0]!.quit();
      clients[1]!.close();
      await withIrcClient(options('nebula', 'c4'), async () => undefined);
      await clients[2]!.quit();
      await new Promise((r) => setTimeout(r, 50));
      expect(sockets()).toBe(before);
      expect(() => clients[1]!.send('PING :x')).toThrow(/connection closed by the client/);
      await expect(clients[1]!.waitFor(() => true)).rejects.toThrow(/closed/);
    });

    it('says a service is absent when nothing answers for it', async () => {
      const trust = await verifyServiceTrust(at('nebula'), net.servicesName, {
        service: 'NoSuchServ',
      });
      expect(trust).toMatchObject({ present: false, trusted: false });
      expect(trust.condition).toMatchObject({
        name: 'nebula treats services.baton.test as a network service',
        ok: false,
        found: 'NoSuchServ is not on the network (408 NoSuchServ :No such service)',
      });
    });

    describe.skipIf(skipUnless(athemeMissing, 'IRC verification with real Atheme linked'))(
      'with real Atheme linked to nebula',
      () => {
        let atheme: AthemeRun;

        beforeAll(async () => {
          assertPrerequisite(athemeMissing);
          const hub = net.server('nebula');
          atheme = await startAtheme(
            athemeConfig({
              serverName: net.servicesName,
              uplink: { name: hub.name, port: hub.linkPort, password: net.servicesPassword },
            }),
            undefined,
          );
          await waitForLinks(net.servers, [...net.servers.map((s) => s.name), net.servicesName]);
          // An account and a channel registered through the services themselves.
          await withIrcClient(options('nebula', 'alice'), async (client) => {
            const registered = client.waitFor(
              (m) => m.command === 'NOTICE' && m.source === 'NickServ',
            );
            client.privmsg('NickServ', `REGISTER ${PASSWORD} alice@baton.test`, [PASSWORD]);
            expect(plainText((await registered).params[1]!)).toMatch(/alice is now registered/);
            await client.join('#baton');
            const owned = client.waitFor((m) => m.command === 'NOTICE' && m.source === 'ChanServ');
            client.privmsg('ChanServ', 'REGISTER #baton');
            expect(plainText((await owned).params[1]!)).toBe('#baton is now registered to alice.');
          });
        });

        afterAll(async () => {
          await cleanupAtheme(atheme);
        });

        it('proves NickServ identifies the account, from a server other than the one services link to', async () => {
          const proof = await verifyIdentify(at('paralysis'), 'alice', PASSWORD, { log });
          expect(proof).toMatchObject({ ok: true, via: '900' });
          expect(proof.condition).toEqual({
            name: 'NickServ identifies alice via paralysis',
            ok: true,
            expected: '900 RPL_LOGGEDIN or "You are now identified" for alice',
            found: '900 RPL_LOGGEDIN',
          });
        });

        it('reports a wrong password as NickServ words it, without the password', async () => {
          const wrong = 'not-the-password-9';
          const proof = await verifyIdentify(at('emergency1'), 'alice', wrong, { log });
          expect(proof.ok).toBe(false);
          expect(proof.condition.found).toBe('NOTICE Invalid password for alice.');
          expect(JSON.stringify(proof)).not.toContain(wrong);
          expect(lines.join('\n')).not.toContain(wrong);
        });

        it('proves a ChanServ topic reaches the trusting servers, and names the one that ignores it', async () => {
          const proof = await verifyTopicPropagation({
            setter: at('paralysis'),
            observers: ['nebula', 'paralysis', 'emergency1'].map(at),
            channel: '#baton',
            account: 'alice',
            password: PASSWORD,
            settleMs: 1_000,
            probe: { log },
          });
          expect(proof.chanserv).toBe(`Topic set to ${proof.topic} on #baton.`);
          expect(proof.observers.map(({ host, ok, numeric }) => ({ host, ok, numeric }))).toEqual([
            { host: 'nebula', ok: true, numeric: '332' },
            { host: 'paralysis', ok: true, numeric: '332' },
            { host: 'emergency1', ok: false, numeric: '331' },
          ]);
          expect(proof.ok).toBe(false);
          expect(proof.conditions[2]).toEqual({
            name: "ChanServ's topic on #baton seen from emergency1",
            ok: false,
            expected: `TOPIC change and 332 "${proof.topic}"`,
            found: 'no TOPIC change; 331 No topic is set',
            remedy: "Give emergency1 the U-line for the services' server name and rehash it.",
          });
        });

        it('tells the servers that treat services as a network service from the one that does not (408)', async () => {
          const results = await Promise.all(
            ['nebula', 'paralysis', 'emergency1'].map((h) =>
              verifyServiceTrust(at(h), net.servicesName, { log }),
            ),
          );
          expect(
            results.map(({ host, present, server, trusted }) => ({
              host,
              present,
              server,
              trusted,
            })),
          ).toEqual([
            { host: 'nebula', present: true, server: 'services.baton.test', trusted: true },
            { host: 'paralysis', present: true, server: 'services.baton.test', trusted: true },
            { host: 'emergency1', present: true, server: 'services.baton.test', trusted: false },
          ]);
          expect(results[2]!.refusal).toBe('408 NickServ :No such service');
          expect(results[2]!.condition).toEqual({
            name: 'emergency1 treats services.baton.test as a network service',
            ok: false,
            expected: 'NickServ on services.baton.test answers SQUERY',
            found:
              '408 NickServ :No such service: emergency1 has no U-line for services.baton.test',
            remedy:
              'Add <uline server="services.baton.test"> (or the ircd\'s equivalent) on emergency1 and rehash it.',
          });
        });

        it('logs no password anywhere', () => {
          expect(lines.length).toBeGreaterThan(50);
          expect(lines.join('\n')).not.toContain(PASSWORD);
          expect(lines.some((l) => l.includes('IDENTIFY alice [redacted:'))).toBe(true);
        });

        it('finds what was registered over IRC in the services.db Atheme saves', async () => {
          const saved = parseAthemeDb(await atheme.stop(), { file: atheme.dbPath });
          expect(saved.accounts.map((a) => a.name)).toEqual(['alice']);
          expect(saved.channels).toMatchObject([{ name: '#baton', founder: 'alice' }]);
          expect(fingerprint(saved)).toMatchObject({
            accounts: 1,
            nicks: 1,
            channels: 1,
            chanacs: 1,
          });
        });
      },
    );
  },
);
