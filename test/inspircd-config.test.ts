import { describe, expect, it } from 'vitest';
import { includes, parseTags, servicesTrust } from '../lib/integrations/inspircd/config.ts';

const conf = `# Server
<server name="nebula.irc.test"
        description="nebula" network="BatonNet">
<uline server="services.irc.test" silent="yes">
# <uline server="commented.irc.test">
<include file="services-link.conf">
<include file="/etc/inspircd/opers.conf">
`;

describe('InspIRCd config', () => {
  it('reads tags across lines, skipping comments', () => {
    const tags = parseTags(conf);
    expect(tags.map((t) => t.name)).toEqual(['server', 'uline', 'include', 'include']);
    expect(tags[0]).toEqual({
      name: 'server',
      attrs: { name: 'nebula.irc.test', description: 'nebula', network: 'BatonNet' },
      line: 2,
    });
  });

  it('finds the U-line and the link blocks of a services name', () => {
    const link =
      '<link name="services.irc.test" ipaddr="127.0.0.1" allowmask="127.0.0.0/8" port="7000" sendpass="x" recvpass="y">';
    const trust = servicesTrust(
      [
        { file: '/etc/inspircd/inspircd.conf', text: conf },
        { file: '/etc/inspircd/services-link.conf', text: `# services\n${link}\n` },
      ],
      'Services.IRC.test',
    );
    expect(trust).toEqual({
      uline: true,
      links: [
        {
          ipaddr: '127.0.0.1',
          allowmask: '127.0.0.0/8',
          line: 2,
          file: '/etc/inspircd/services-link.conf',
        },
      ],
    });
    expect(
      servicesTrust([{ file: 'a', text: '<uline server="other">' }], 'services.irc.test').uline,
    ).toBe(false);
  });

  it('resolves includes against the including file', () => {
    expect(includes(conf, '/etc/inspircd/inspircd.conf')).toEqual([
      '/etc/inspircd/services-link.conf',
      '/etc/inspircd/opers.conf',
    ]);
  });

  it('names the line of a broken tag', () => {
    expect(() => parseTags('<server name="x"\n<link name=x>', 'bad.conf')).toThrow(
      'bad.conf line 2: <server>: expected key="value"',
    );
    expect(() => parseTags('\n\n<link name="x"', 'bad.conf')).toThrow(
      'bad.conf line 3: <link> is not closed',
    );
  });
});
