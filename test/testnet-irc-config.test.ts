import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { includes, parseTags, servicesTrust } from '../lib/integrations/inspircd/config.ts';
import {
  athemeConfig,
  athemeUnit,
  inspircdConfig,
  knotConfig,
  leaseCheckScript,
  leaseConfig,
  leaseWatchdogScript,
  TESTNET_LEASE,
  servicesLinkConfig,
  zoneFile,
} from '../lib/testnet/irc-config.ts';
import {
  INSPIRCD,
  IRC_DNS,
  IRCD_HOSTS,
  SERVICES_SERVER,
  ircServerName,
  type IrcdHost,
} from '../lib/testnet/irc.ts';

const addresses: Record<IrcdHost, string> = {
  paralysis: '192.0.2.11',
  nebula: '192.0.2.12',
  emergency1: '192.0.2.13',
};
const ircd = (host: IrcdHost): string =>
  inspircdConfig({ host, addresses, serverLinkPassword: 'aaaa1111' });

describe('the irc testnet’s files', () => {
  it('give every ircd the same modules and the U-line, and the services link only where services uplink', () => {
    const modules = IRCD_HOSTS.map((h) =>
      parseTags(ircd(h))
        .filter((t) => t.name === 'module')
        .map((t) => t.attrs.name),
    );
    expect(modules[1]).toEqual(modules[0]);
    expect(modules[2]).toEqual(modules[0]);
    expect(modules[0]).toContain('deaf');
    for (const h of IRCD_HOSTS) {
      expect(includes(ircd(h), INSPIRCD.config)).toEqual([INSPIRCD.servicesLink]);
      const link = servicesLinkConfig(h === 'nebula' ? 'bbbb2222' : undefined);
      const trust = servicesTrust(
        [
          { file: INSPIRCD.config, text: ircd(h) },
          { file: INSPIRCD.servicesLink, text: link },
        ],
        SERVICES_SERVER,
      );
      expect([h, trust.uline, trust.links.map((l) => [l.file, l.ipaddr, l.allowmask])]).toEqual([
        h,
        true,
        h === 'nebula' ? [[INSPIRCD.servicesLink, '127.0.0.1', '127.0.0.0/8']] : [],
      ]);
    }
  });

  it('make paralysis the hub the others autoconnect to', () => {
    const links = (h: IrcdHost) =>
      parseTags(ircd(h))
        .filter((t) => t.name === 'link')
        .map((t) => t.attrs.name);
    expect(links('paralysis')).toEqual([ircServerName('nebula'), ircServerName('emergency1')]);
    expect(links('nebula')).toEqual([ircServerName('paralysis')]);
    for (const h of ['nebula', 'emergency1'] as const) {
      expect(parseTags(ircd(h)).find((t) => t.name === 'autoconnect')?.attrs.server).toBe(
        ircServerName('paralysis'),
      );
    }
    expect(parseTags(ircd('paralysis')).some((t) => t.name === 'autoconnect')).toBe(false);
  });

  it('configure Atheme without listeners, as services.irc.test uplinking to 127.0.0.1:7000', () => {
    const conf = athemeConfig('cccc3333');
    expect(conf).not.toMatch(/httpd|xmlrpc|jsonrpc/);
    expect(conf).toMatch(/name = "services\.irc\.test";/);
    expect(conf).toMatch(/host = "127\.0\.0\.1";\s+password = "cccc3333";\s+port = 7000;/);
    expect(conf).toMatch(/operator "batonops" \{ operclass = "sra"; \};/);
    expect(athemeUnit()).toMatch(/^ExecStartPre=\+\/etc\/atheme\/lease-check$/m);
    expect(athemeUnit()).toMatch(/^User=atheme$/m);
  });

  it('serve exactly the inventory’s records from the zone file, with a TSIG update ACL', () => {
    const zone = zoneFile('holder=nebula gen=1 expires=2026-12-01T23:00:00Z');
    expect(zone).toContain(
      '\n_lease.services 60 IN TXT "holder=nebula gen=1 expires=2026-12-01T23:00:00Z"\n',
    );
    for (const r of IRC_DNS.records) {
      const value = r.type === 'TXT' ? `"${r.value}"` : r.value;
      expect(zone).toContain(`\n${r.name} ${r.ttl} IN ${r.type} ${value}\n`);
    }
    const knot = knotConfig('c2VjcmV0', 'bGVhc2U=');
    expect(knot).toMatch(/listen: 192\.0\.2\.53@53/);
    expect(knot).toMatch(/id: baton-update\s+algorithm: hmac-sha256\s+secret: c2VjcmV0/);
    expect(knot).toMatch(/action: update/);
    // The services hosts' key may change the lease TXT record and nothing else.
    expect(knot).toMatch(
      /- id: baton-lease\s+key: baton-lease\s+action: update\s+update-type: TXT\s+update-owner: name\s+update-owner-match: equal\s+update-owner-name: _lease\.services\n/,
    );
    expect(knot).toMatch(/acl: \[baton-update, baton-lease\]/);
  });

  it('refuse secrets that could break out of a config value', () => {
    expect(() => athemeConfig('a"; loadmodule "x')).toThrow(/cannot stand unquoted/);
    expect(() => servicesLinkConfig('a" allowmask="*')).toThrow(/cannot stand unquoted/);
  });
});

describe('the lease guard (lease-check)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-lease-'));
  writeFileSync(join(dir, 'lease-check'), leaseCheckScript());
  chmodSync(join(dir, 'lease-check'), 0o755);
  writeFileSync(
    join(dir, 'lease.conf'),
    leaseConfig({ ...TESTNET_LEASE, genFile: join(dir, 'lease-gen') }),
  );
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Run the script with stand-ins for `hostname` and `dig` that answer `dig`'s output and status. */
  const check = (me: string, answer: string, digStatus = 0, takeBack = 'exit 1') => {
    writeFileSync(join(dir, 'take-back'), `#!/bin/sh\n${takeBack}\n`);
    chmodSync(join(dir, 'take-back'), 0o755);
    writeFileSync(join(dir, 'hostname'), `#!/bin/sh\necho ${me}\n`);
    writeFileSync(
      join(dir, 'dig'),
      `#!/bin/sh\necho "$*" > ${dir}/dig-args\nprintf '%s' '${answer}'\nexit ${digStatus}\n`,
    );
    chmodSync(join(dir, 'hostname'), 0o755);
    chmodSync(join(dir, 'dig'), 0o755);
    const run = spawnSync('/bin/sh', [join(dir, 'lease-check')], {
      env: {
        PATH: `${dir}:/usr/bin:/bin`,
        BATON_LEASE_CONF: join(dir, 'lease.conf'),
        LEASE_WATCHDOG: join(dir, 'take-back'),
      },
      encoding: 'utf8',
    });
    return { status: run.status, out: run.stdout + run.stderr };
  };
  const gen = (): string => spawnSync('cat', [join(dir, 'lease-gen')], { encoding: 'utf8' }).stdout;
  const FAR = '2999-01-01T00:00:00Z';

  it('lets the lease holder start, asking the authoritative server without recursion, and keeps the generation', () => {
    rmSync(join(dir, 'lease-gen'), { force: true });
    expect(check('nebula', `"holder=nebula gen=4 expires=${FAR}"\n`)).toEqual({
      status: 0,
      out: `lease-check: nebula holds the services lease (_lease.services.irc.test gen 4 on 192.0.2.53, until ${FAR})\n`,
    });
    expect(spawnSync('cat', [join(dir, 'dig-args')], { encoding: 'utf8' }).stdout).toBe(
      '+short +norec +time=2 +tries=2 -p 53 @192.0.2.53 TXT _lease.services.irc.test\n',
    );
    expect(gen()).toBe('4\n');
  });

  it('refuses a lower generation than this host has seen: a stale answer cannot start services', () => {
    writeFileSync(join(dir, 'lease-gen'), '7\n');
    expect(check('nebula', `"holder=nebula gen=6 expires=${FAR}"\n`)).toEqual({
      status: 1,
      out: 'lease-check: refusing to start atheme on nebula: the lease answer has generation 6, lower than 7 seen on this host before: a stale answer\n',
    });
    expect(check('nebula', `"holder=nebula gen=7 expires=${FAR}"\n`).status).toBe(0);
    expect(gen()).toBe('7\n');
    // A record of the first format is generation 0: refused once a newer one was seen.
    expect(check('nebula', '"nebula"\n').out).toMatch(/generation 0, lower than 7/);
    rmSync(join(dir, 'lease-gen'));
    expect(check('nebula', '"nebula"\n')).toEqual({
      status: 0,
      out: 'lease-check: nebula holds the services lease (_lease.services.irc.test gen 0 on 192.0.2.53)\n',
    });
  });

  it('refuses an expired lease of its own that it cannot take back', () => {
    expect(
      check(
        'nebula',
        '"holder=nebula gen=9 expires=2020-01-01T00:00:00Z"\n',
        0,
        'echo "lease-watchdog: renewal refused: the lease changed since it was read" >&2; exit 1',
      ),
    ).toEqual({
      status: 1,
      out: 'lease-check: refusing to start atheme on nebula: the services lease _lease.services.irc.test expired at 2020-01-01T00:00:00Z, and taking it back failed: lease-watchdog: renewal refused: the lease changed since it was read\n',
    });
  });

  it('takes back an expired lease that still names it (a reboot), by compare-and-set, and starts', () => {
    const r = check(
      'nebula',
      '"holder=nebula gen=9 expires=2020-01-01T00:00:00Z"\n',
      0,
      'echo "lease-watchdog: nebula took back the lease (gen 9) for 30 s"',
    );
    expect(r.status).toBe(0);
    expect(r.out).toContain('nebula took back the lease (gen 9) for 30 s');
  });

  it('refuses another host, naming the holder', () => {
    expect(check('emergency1', `"holder=nebula gen=3 expires=${FAR}"\n`)).toEqual({
      status: 1,
      out: 'lease-check: refusing to start atheme on emergency1: the services lease _lease.services.irc.test is held by nebula (gen 3, DNS 192.0.2.53), not by emergency1\n',
    });
  });

  it('refuses when DNS cannot be asked, when no host holds the lease, when several do, and an unreadable lease', () => {
    const cut = check('nebula', ';; connection timed out; no servers could be reached\n', 9);
    expect(cut.status).toBe(1);
    expect(cut.out).toMatch(
      /cannot ask 192\.0\.2\.53 for _lease\.services\.irc\.test \(;; connection timed out/,
    );
    const none = check('nebula', '');
    expect(none.status).toBe(1);
    expect(none.out).toMatch(
      /no _lease\.services\.irc\.test TXT record, so no host holds the services lease/,
    );
    const two = check('nebula', '"nebula"\n"emergency1"\n');
    expect(two.status).toBe(1);
    expect(two.out).toMatch(/several _lease\.services\.irc\.test TXT records/);
    expect(check('nebula', '"holder=nebula owner=me"\n').out).toMatch(/is not readable/);
  });
});

describe('the lease watchdog', () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-watchdog-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'lease-watchdog'), leaseWatchdogScript());
  writeFileSync(join(dir, 'key'), 'hmac-sha256:baton-lease:bGVhc2U=\n');

  /**
   * Run the watchdog for `seconds` with stand-ins for dig (answers `answer`,
   * or fails), knsupdate (records its input, answers `update`) and systemctl
   * (an active unit until stopped); returns what it did.
   */
  const watch = (
    answer: string | undefined,
    options: {
      update?: string;
      grace?: number;
      seconds?: number;
      seen?: number;
      keepStopped?: boolean;
      args?: string[];
    } = {},
  ) => {
    const tool = (name: string, body: string) => {
      writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`);
      chmodSync(join(dir, name), 0o755);
    };
    if (!options.keepStopped) rmSync(join(dir, 'stopped'), { force: true });
    rmSync(join(dir, 'updates'), { force: true });
    rmSync(join(dir, 'lease-gen'), { force: true });
    if (options.seen !== undefined) writeFileSync(join(dir, 'lease-gen'), `${options.seen}\n`);
    tool('hostname', 'echo nebula');
    tool('dig', answer === undefined ? 'sleep 0.2; exit 9' : `printf '%s\\n' '${answer}'`);
    tool(
      'knsupdate',
      `cat >> ${dir}/updates; echo ---- >> ${dir}/updates; ${options.update ? `echo '${options.update}'; exit 1` : 'exit 0'}`,
    );
    tool(
      'systemctl',
      `case "$*" in *is-active*) [ ! -e ${dir}/stopped ] ;; *stop*) echo "$*" > ${dir}/stopped ;; esac`,
    );
    writeFileSync(
      join(dir, 'lease.conf'),
      leaseConfig({
        ...TESTNET_LEASE,
        keyFile: join(dir, 'key'),
        genFile: join(dir, 'lease-gen'),
        intervalSeconds: 0,
        graceSeconds: options.grace ?? 1,
      }),
    );
    const run = spawnSync(
      'timeout',
      [
        String(options.seconds ?? 1.5),
        '/bin/sh',
        join(dir, 'lease-watchdog'),
        ...(options.args ?? []),
      ],
      {
        env: { PATH: `${dir}:/usr/bin:/bin`, BATON_LEASE_CONF: join(dir, 'lease.conf') },
        encoding: 'utf8',
        maxBuffer: 64 << 20,
      },
    );
    const read = (f: string): string =>
      spawnSync('cat', [join(dir, f)], { encoding: 'utf8' }).stdout;
    return {
      status: run.status,
      out: run.stdout + run.stderr,
      stopped: read('stopped'),
      updates: read('updates'),
    };
  };
  const FAR = '2999-01-01T00:00:00Z';

  it('renews its own lease by compare-and-set, with the value read as the prerequisite, and keeps services up', () => {
    const r = watch(`"holder=nebula gen=5 expires=${FAR}"`);
    expect(r.stopped).toBe('');
    const first = r.updates.split('----\n')[0]!;
    expect(first).toMatch(
      /^server 192\.0\.2\.53 53\nzone irc\.test\.\nkey hmac-sha256:baton-lease bGVhc2U=\nprereq yxrrset _lease\.services\.irc\.test\. TXT "holder=nebula gen=5 expires=2999-01-01T00:00:00Z"\nupdate delete _lease\.services\.irc\.test\. TXT\nupdate add _lease\.services\.irc\.test\. 60 TXT "holder=nebula gen=5 expires=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"\nsend\nquit\n$/,
    );
    expect(r.out).toContain('nebula holds the lease (gen 5), renewing');
  });

  it('stops the services unit when the lease names another host, and renews nothing', () => {
    const r = watch(`"holder=emergency1 gen=6 expires=${FAR}"`);
    expect(r.stopped).toBe('stop atheme\n');
    expect(r.updates).toBe('');
    expect(r.out).toContain('stopping atheme: the lease names emergency1 (gen 6), not nebula');
  });

  it('stops the services unit by itself when the lease cannot be read for longer than the grace', () => {
    const r = watch(undefined, { grace: 1, seconds: 3 });
    expect(r.stopped).toBe('stop atheme\n');
    expect(r.out).toMatch(/could not be read and renewed for \d+ s, longer than the grace of 1 s/);
  });

  it('stops the services unit when its renewals are refused for longer than the grace', () => {
    const r = watch(`"holder=nebula gen=5 expires=${FAR}"`, {
      update: ';; ERROR: update failed with error NXRRSET',
      grace: 1,
      seconds: 3,
    });
    expect(r.stopped).toBe('stop atheme\n');
    expect(r.out).toContain('renewal refused: the lease changed since it was read');
  });

  it('stops the services unit on an answer of a lower generation than it has seen', () => {
    const r = watch(`"holder=nebula gen=5 expires=${FAR}"`, { seen: 6 });
    expect(r.stopped).toBe('stop atheme\n');
    expect(r.updates).toBe('');
    expect(r.out).toContain('generation 5, lower than 6 seen before: a stale answer');
  });

  it('lets its lease run out while the services are not running', () => {
    writeFileSync(join(dir, 'stopped'), 'stopped by hand\n');
    const r = watch(`"holder=nebula gen=5 expires=${FAR}"`, { keepStopped: true });
    expect(r.updates).toBe('');
    expect(r.out).toContain('atheme is not running: the lease is not renewed');
  });

  it('--take-back renews an expired lease that names this host, by compare-and-set', () => {
    const r = watch('"holder=nebula gen=5 expires=2020-01-01T00:00:00Z"', {
      args: ['--take-back'],
    });
    expect(r.status).toBe(0);
    expect(r.updates).toContain(
      'prereq yxrrset _lease.services.irc.test. TXT "holder=nebula gen=5 expires=2020-01-01T00:00:00Z"',
    );
    expect(r.out).toContain('nebula took back the lease (gen 5)');
    const other = watch('"holder=emergency1 gen=6 expires=2020-01-01T00:00:00Z"', {
      args: ['--take-back'],
    });
    expect(other.status).toBe(1);
    expect(other.updates).toBe('');
  });

  it('refuses settings under which the holder would outlive its lease', () => {
    writeFileSync(
      join(dir, 'lease.conf'),
      leaseConfig({ ...TESTNET_LEASE, graceSeconds: 25, leaseSeconds: 30 }),
    );
    const run = spawnSync('/bin/sh', [join(dir, 'lease-watchdog')], {
      env: { PATH: `${dir}:/usr/bin:/bin`, BATON_LEASE_CONF: join(dir, 'lease.conf') },
      encoding: 'utf8',
    });
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/must stay below LEASE_SECONDS \(30\)/);
  });
});
