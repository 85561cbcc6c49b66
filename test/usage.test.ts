import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../lib/app/cli.ts';
import {
  fenced,
  renderUsage,
  usageBlock,
  withUsage,
  USAGE_BEGIN,
  USAGE_END,
} from '../lib/app/usage.ts';
import { captureIo, ROOT } from './helpers.ts';

describe("the README's CLI block", () => {
  it('is what the command definitions render (npm run readme:cli writes it)', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const block = usageBlock(readme);
    expect(block, `README.md has no ${USAGE_BEGIN} … ${USAGE_END} block`).toBeDefined();
    expect(
      block,
      'README.md differs from lib/app/cli.ts: run `npm run readme:cli` and commit the README',
    ).toBe(`\n\n${fenced(renderUsage(buildProgram(captureIo())))}\n\n`);
  });

  it('names every argument and option: required bare, optional in brackets, repeatable with …', () => {
    const program = new Command('baton');
    program
      .command('ship <artifact> [hosts...]')
      .description('Ship an artifact to hosts.')
      .requiredOption('--key <path>', 'the key')
      .option('--param <name=value>', 'repeatable', (v: string, p: string[]) => [...p, v], [])
      .addOption(new Option('--format <format>', 'how').choices(['md', 'json']))
      .option('--dry', 'only say')
      .option('--wider-than-the-line-allows <value>', 'wraps');
    program.command('group').command('leaf').description('Under a group.');
    expect(renderUsage(program)).toBe(
      [
        'baton ship <artifact> [hosts...] --key <path> [--param <name=value>]… [--format <md|json>] [--dry]',
        '      [--wider-than-the-line-allows <value>]',
        '    Ship an artifact to hosts.',
        '',
        'baton group leaf',
        '    Under a group.',
      ].join('\n'),
    );
  });

  it('is replaced between its markers, and nothing else is', () => {
    const readme = `# x\n\n${USAGE_BEGIN}\nold\n${USAGE_END}\n\ntail\n`;
    expect(withUsage(readme, 'baton new')).toBe(
      `# x\n\n${USAGE_BEGIN}\n\n\`\`\`\nbaton new\n\`\`\`\n\n${USAGE_END}\n\ntail\n`,
    );
    expect(() => withUsage('# no markers\n', 'x')).toThrow('the README has no');
  });
});
