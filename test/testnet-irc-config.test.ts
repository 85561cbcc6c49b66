import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { includes, parseTags, servicesTrust } from '../lib/inspircd/config.ts';
import {
  athemeConfig,
  athemeUnit,
  inspircdConfig,
  knotConfig,
  leaseCheckScript,
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
    expect(athemeUnit()).toMatch(/^ExecStartPre=\/etc\/atheme\/lease-check$/m);
    expect(athemeUnit()).toMatch(/^User=atheme$/m);
  });

  it('serve exactly the inventory’s records from the zone file, with a TSIG update ACL', () => {
    const zone = zoneFile();
    for (const r of IRC_DNS.records) {
      const value = r.type === 'TXT' ? `"${r.value}"` : r.value;
      expect(zone).toContain(`\n${r.name} ${r.ttl} IN ${r.type} ${value}\n`);
    }
    const knot = knotConfig('c2VjcmV0');
    expect(knot).toMatch(/listen: 192\.0\.2\.53@53/);
    expect(knot).toMatch(/id: baton-update\s+algorithm: hmac-sha256\s+secret: c2VjcmV0/);
    expect(knot).toMatch(/action: update/);
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
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Run the script with stand-ins for `hostname` and `dig` that answer `dig`'s output and status. */
  const check = (me: string, answer: string, digStatus = 0) => {
    writeFileSync(join(dir, 'hostname'), `#!/bin/sh\necho ${me}\n`);
    writeFileSync(
      join(dir, 'dig'),
      `#!/bin/sh\necho "$*" > ${dir}/dig-args\nprintf '%s' '${answer}'\nexit ${digStatus}\n`,
    );
    chmodSync(join(dir, 'hostname'), 0o755);
    chmodSync(join(dir, 'dig'), 0o755);
    const run = spawnSync('/bin/sh', [join(dir, 'lease-check')], {
      env: { PATH: `${dir}:/usr/bin:/bin` },
      encoding: 'utf8',
    });
    return { status: run.status, out: run.stdout + run.stderr };
  };

  it('lets the lease holder start, asking the authoritative server without recursion', () => {
    expect(check('nebula', '"nebula"\n')).toEqual({
      status: 0,
      out: 'lease-check: nebula holds the services lease (_lease.services.irc.test on 192.0.2.53)\n',
    });
    expect(spawnSync('cat', [join(dir, 'dig-args')], { encoding: 'utf8' }).stdout).toBe(
      '+short +norec +time=2 +tries=2 @192.0.2.53 TXT _lease.services.irc.test\n',
    );
  });

  it('refuses another host, naming the holder', () => {
    expect(check('emergency1', '"nebula"\n')).toEqual({
      status: 1,
      out: 'lease-check: refusing to start atheme on emergency1: the services lease _lease.services.irc.test is held by nebula (DNS 192.0.2.53), not by emergency1\n',
    });
  });

  it('refuses when DNS cannot be asked, when no host holds the lease, and when several do', () => {
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
  });
});
