/**
 * The status page: one self-contained HTML file (no external assets, no
 * requests) a team can publish, as incident 004's association opened one.
 * Each check shows its verdict in words and colour, its evidence and how old
 * that evidence is; a page older than `staleAfterMs` says so itself.
 */
import type { AuditReport } from './audit.ts';
import type { CheckResult, Verdict } from './check.ts';
import { formatDuration } from './duration.ts';

const WORD: Record<Verdict, string> = { pass: 'PASS', warn: 'WARN', fail: 'FAIL' };

export function escapeHtml(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

export interface HtmlOptions {
  /** Title of the page; default "<stack> status". */
  title?: string;
  /** When the page counts as stale (the audit stopped running); default 2 h. */
  staleAfterMs?: number;
  /** The time the page is written (for ages); default the audit's end. */
  now?: Date;
}

const CSS = `
:root{--pass:#1a7f37;--warn:#9a6700;--fail:#cf222e;--ink:#1f2328;--muted:#59636e;--line:#d1d9e0}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:#f6f8fa}
main{max-width:960px;margin:0 auto;padding:24px 16px}
h1{font-size:22px;margin:0 0 4px}p.meta{color:var(--muted);margin:0 0 16px}
.banner{padding:14px 18px;border-radius:8px;color:#fff;font-weight:600;font-size:18px;margin-bottom:18px}
.banner.pass{background:var(--pass)}.banner.warn{background:var(--warn)}.banner.fail{background:var(--fail)}
.stale{display:none;padding:10px 14px;border:2px solid var(--fail);border-radius:8px;margin-bottom:16px;color:var(--fail);font-weight:600}
.stale.shown{display:block}
table.summary{width:100%;border-collapse:collapse;margin-bottom:22px;background:#fff;border:1px solid var(--line)}
table.summary td,table.summary th{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
.badge{display:inline-block;min-width:52px;text-align:center;padding:2px 8px;border-radius:12px;color:#fff;font-weight:700;font-size:13px}
.badge.pass{background:var(--pass)}.badge.warn{background:var(--warn)}.badge.fail{background:var(--fail)}
section.check{background:#fff;border:1px solid var(--line);border-left:8px solid var(--pass);border-radius:6px;padding:12px 16px;margin-bottom:14px}
section.check.warn{border-left-color:var(--warn)}section.check.fail{border-left-color:var(--fail);background:#fff5f5}
section.check h2{font-size:16px;margin:0 0 6px}
section.check .id{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;color:var(--muted);font-size:13px}
section.check ul{margin:8px 0;padding-left:20px}section.check li{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px;overflow-wrap:anywhere}
.remedy{border-top:1px dashed var(--line);padding-top:8px;margin-top:8px}
.age{color:var(--muted);font-size:13px}
footer{color:var(--muted);font-size:13px;margin-top:24px}
`;

// Ages move on after the page is written: a tiny inline script keeps them current and flags a stale page.
const SCRIPT = `
(function(){
  var now=Date.now();
  function ago(ms){var s=Math.max(0,Math.round(ms/1000));if(s<90)return s+' s';var m=Math.round(s/60);if(m<90)return m+' min';var h=Math.round(m/60);if(h<48)return h+' h';return Math.round(h/24)+' d';}
  document.querySelectorAll('time[data-age]').forEach(function(t){t.textContent=ago(now-Date.parse(t.getAttribute('datetime')))+' ago';});
  var page=document.documentElement;var made=Date.parse(page.getAttribute('data-generated'));var stale=Number(page.getAttribute('data-stale-after-ms'));
  if(now-made>stale){var e=document.getElementById('stale');e.classList.add('shown');e.textContent='This page is '+ago(now-made)+' old: the audit has not run since. Treat every check as unknown.';}
})();
`;

function ageText(at: string, now: Date): string {
  return `${formatDuration(now.getTime() - Date.parse(at))} ago`;
}

function checkSection(c: CheckResult, now: Date): string {
  return `<section class="check ${c.verdict}" id="${escapeHtml(anchor(c.id))}" data-verdict="${c.verdict}" data-check="${escapeHtml(c.id)}">
<h2><span class="badge ${c.verdict}">${WORD[c.verdict]}</span> ${escapeHtml(c.title)}</h2>
<div class="id">${escapeHtml(c.id)} · on ${escapeHtml(c.targets.join(', '))} · incident ${escapeHtml(c.incident)}</div>
<p><strong>${escapeHtml(c.summary)}</strong></p>
<ul>${c.evidence.map((e) => `<li>${escapeHtml(e)}</li>`).join('')}</ul>
${c.remedy ? `<div class="remedy"><strong>What to do:</strong> ${escapeHtml(c.remedy)}</div>` : ''}
<div class="age">Measured <time data-age datetime="${escapeHtml(c.measuredAt)}">${escapeHtml(ageText(c.measuredAt, now))}</time> (${escapeHtml(c.measuredAt)}), in ${c.durationMs} ms</div>
</section>`;
}

function anchor(id: string): string {
  return 'check-' + id.replace(/[^A-Za-z0-9_-]+/g, '-');
}

export function renderHtml(report: AuditReport, options: HtmlOptions = {}): string {
  const now = options.now ?? new Date(report.finishedAt);
  const title = options.title ?? `${report.stack} status`;
  const staleAfter = options.staleAfterMs ?? 2 * 3_600_000;
  const { pass, warn, fail } = report.counts;
  const headline =
    report.verdict === 'fail'
      ? `${fail} check${fail === 1 ? '' : 's'} FAILING`
      : report.verdict === 'warn'
        ? `All checks pass, ${warn} with a warning`
        : 'All checks pass';
  const order: Verdict[] = ['fail', 'warn', 'pass'];
  const sorted = [...report.checks].sort(
    (a, b) => order.indexOf(a.verdict) - order.indexOf(b.verdict),
  );
  return `<!doctype html>
<html lang="en" data-verdict="${report.verdict}" data-generated="${escapeHtml(report.finishedAt)}" data-stale-after-ms="${staleAfter}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}: ${WORD[report.verdict]}</title>
<style>${CSS}</style>
</head>
<body>
<main>
<h1>${escapeHtml(title)}</h1>
<p class="meta">baton audit of stack ${escapeHtml(report.stack)} · ${pass} pass, ${warn} warn, ${fail} fail · generated ${escapeHtml(report.finishedAt)} (<time data-age datetime="${escapeHtml(report.finishedAt)}">${escapeHtml(ageText(report.finishedAt, now))}</time>)</p>
<div id="stale" class="stale" role="alert"></div>
<div class="banner ${report.verdict}" id="overall" role="status">${WORD[report.verdict]}: ${escapeHtml(headline)}</div>
<table class="summary">
<thead><tr><th>Verdict</th><th>Check</th><th>Found</th><th>Measured</th></tr></thead>
<tbody>
${sorted
  .map(
    (c) =>
      `<tr data-verdict="${c.verdict}"><td><span class="badge ${c.verdict}">${WORD[c.verdict]}</span></td><td><a href="#${escapeHtml(anchor(c.id))}">${escapeHtml(c.id)}</a></td><td>${escapeHtml(c.summary)}</td><td><time data-age datetime="${escapeHtml(c.measuredAt)}">${escapeHtml(ageText(c.measuredAt, now))}</time></td></tr>`,
  )
  .join('\n')}
</tbody>
</table>
${sorted.map((c) => checkSection(c, now)).join('\n')}
<footer>Each check gathers its evidence read-only on the hosts named; a check that could not look counts as failed. Generated by <code>baton audit</code>.</footer>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
