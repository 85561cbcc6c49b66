/**
 * The status page in a real browser (Debian's headless Chromium): it renders
 * from a file with no network, a failing check is visibly failing, and a page
 * whose audit stopped running says so itself.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runAudit, type AuditReport } from '../lib/audit/audit.ts';
import { parseAuditConfig } from '../lib/audit/config.ts';
import { memoryHistory } from '../lib/audit/history.ts';
import { renderHtml } from '../lib/audit/html.ts';
import { auditPaths } from '../lib/audit/state.ts';
import { countColor, localAuditInventory, readPng, servicesDb } from './support/audit.ts';
import { assertPrerequisite, skipUnless } from './support/require.ts';

const missing =
  spawnSync('sh', ['-c', 'command -v chromium']).status === 0
    ? undefined
    : 'needs Debian chromium (apt-get install chromium)';

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const FAIL_RED: [number, number, number] = [207, 34, 46];
const PASS_GREEN: [number, number, number] = [26, 127, 55];

function chromium(dir: string, args: string[]): string {
  const profile = mkdtempSync(join(dir, 'profile-'));
  try {
    return execFileSync('chromium', [...FLAGS, `--user-data-dir=${profile}`, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
    });
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

/** A real audit of two local backup directories: one fresh, one five days old. */
async function localReport(dir: string): Promise<AuditReport> {
  const inventory = localAuditInventory(['vault']);
  const now = Math.floor(Date.now() / 1000);
  const db = servicesDb({
    accounts: [{ name: 'alice', registeredAt: now - 9000 }],
    channels: [{ name: '#ops', founder: 'alice', registeredAt: now - 9000 }],
  });
  const service = (name: string, ageSeconds: number): object => {
    mkdirSync(join(dir, name));
    writeFileSync(join(dir, name, 'services.db.1'), db);
    utimesSync(join(dir, name, 'services.db.1'), now - ageSeconds, now - ageSeconds);
    return {
      backup: {
        host: 'vault',
        dir: join(dir, name),
        pattern: 'services.db.*',
        interval: '24h',
        scratch: dir,
        items: [{ name: 'services.db', kind: 'atheme-db' }],
      },
    };
  };
  return runAudit({
    config: parseAuditConfig(
      { services: { fresh: service('fresh', 3600), stale: service('stale', 5 * 86_400) } },
      'test',
      inventory,
    ),
    inventory,
    paths: auditPaths(dir, {}),
    history: memoryHistory(),
  });
}

describe.skipIf(skipUnless(missing, 'the status page in Chromium'))(
  'the status page in Chromium',
  () => {
    beforeAll(() => assertPrerequisite(missing));

    it('renders a failing check as failing: red banner, red section, the evidence', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'baton-audit-html-'));
      try {
        const report = await localReport(dir);
        expect(report.counts).toEqual({ pass: 3, warn: 0, fail: 1 });
        const page = join(dir, 'status.html');
        writeFileSync(page, renderHtml(report, { title: 'BatonNet status' }));
        const dom = chromium(dir, ['--dump-dom', `file://${page}`]);
        expect(dom).toContain('<title>BatonNet status: FAIL</title>');
        expect(dom).toContain('FAIL: 1 check FAILING');
        expect(dom).toMatch(
          /<section class="check fail" id="check-backup-freshness-stale" data-verdict="fail" data-check="backup-freshness:stale">/,
        );
        expect(dom).toContain('newest backup 5 d old (policy every 24 h)');
        expect(dom).toMatch(/<div id="stale" class="stale" role="alert"><\/div>/);
        const started = performance.now();
        chromium(dir, [`--screenshot=${page}.png`, '--window-size=1000,1200', `file://${page}`]);
        console.log(`chromium screenshot: ${Math.round(performance.now() - started)} ms`);
        const png = readPng(readFileSync(`${page}.png`));
        expect(png.width).toBe(1000);
        expect(countColor(png, FAIL_RED)).toBeGreaterThan(5_000);
        expect(countColor(png, PASS_GREEN)).toBeGreaterThan(500);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('says the page is stale when the audit has not run for hours', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'baton-audit-html-'));
      try {
        const report = await localReport(dir);
        const old = new Date(Date.now() - 5 * 3_600_000).toISOString();
        const page = join(dir, 'old.html');
        writeFileSync(page, renderHtml({ ...report, finishedAt: old }));
        const dom = chromium(dir, ['--dump-dom', `file://${page}`]);
        expect(dom).toMatch(
          /<div id="stale" class="stale shown" role="alert">This page is 5 h old: the audit has not run since\. Treat every check as unknown\.<\/div>/,
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);
