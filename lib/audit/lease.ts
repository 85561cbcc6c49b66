/**
 * Is every services host guarded by the lease? The lease fences only where
 * its check runs before services start and its watchdog runs beside them
 * (docs/lease.md): a host without either can start, or keep, a second instance.
 */
import { errorMessage } from '../core/errors.ts';
import { sh } from '../core/shell.ts';
import type { AuditCheck, Finding, HostProbe, Verdict } from './check.ts';
import { worst } from './check.ts';
import type { LeaseGuardConfig } from './config.ts';

/** Words the baton lease check and watchdog carry in their first lines (contrib/lease). */
const CHECK_MARK = 'baton lease check';
const WATCHDOG_MARK = 'baton lease watchdog';

/** The program of each ExecStartPre= (or ExecStart=) line, without systemd's prefixes. */
export function execPrograms(unitText: string, key: 'ExecStartPre' | 'ExecStart'): string[] {
  const re = new RegExp(`^${key}=\\s*(\\S+)`, 'gm');
  return [...unitText.matchAll(re)].map((m) => m[1]!.replace(/^[-+!@:]+/, ''));
}

async function marked(probe: HostProbe, path: string, mark: string): Promise<boolean> {
  const r = await probe(sh`test -x ${path} && head -c 4096 ${path}`, { allowFail: true });
  return r.exitCode === 0 && r.stdout.includes(mark);
}

async function hostGuard(
  probe: HostProbe,
  host: string,
  g: LeaseGuardConfig,
): Promise<{ verdict: Verdict; lines: string[] }> {
  const lines: string[] = [];
  let verdict: Verdict = 'pass';
  const fail = (line: string): void => {
    verdict = 'fail';
    lines.push(`${host}: ${line}`);
  };
  const unit = await probe(sh`systemctl cat ${g.unit}`, { allowFail: true });
  if (unit.exitCode !== 0) {
    fail(`no unit ${g.unit}`);
  } else {
    const pres = execPrograms(unit.stdout, 'ExecStartPre');
    const checks = [];
    for (const p of pres) if (await marked(probe, p, CHECK_MARK)) checks.push(p);
    if (checks.length)
      lines.push(`${host}: ${g.unit} runs the lease check ${checks[0]} before it starts`);
    else
      fail(
        `${g.unit} has no lease check as ExecStartPre (${pres.length ? `found ${pres.join(', ')}` : 'none'})`,
      );
  }
  const wd = await probe(sh`systemctl cat ${g.watchdogUnit}`, { allowFail: true });
  if (wd.exitCode !== 0) {
    fail(`no watchdog unit ${g.watchdogUnit}`);
  } else {
    const [program] = execPrograms(wd.stdout, 'ExecStart');
    if (!program || !(await marked(probe, program, WATCHDOG_MARK)))
      fail(
        `${g.watchdogUnit} does not run the baton lease watchdog (ExecStart ${program ?? 'none'})`,
      );
    const enabled = (
      await probe(sh`systemctl is-enabled ${g.watchdogUnit}`, { allowFail: true })
    ).stdout.trim();
    const state = (
      await probe(sh`systemctl is-active ${g.watchdogUnit}`, { allowFail: true })
    ).stdout.trim();
    if (enabled !== 'enabled')
      fail(`${g.watchdogUnit} is ${enabled || 'not enabled'}: it would not run after a reboot`);
    if (state !== 'active')
      fail(
        `${g.watchdogUnit} is ${state || 'not active'}: nothing stops services when the lease is lost`,
      );
    if (enabled === 'enabled' && state === 'active')
      lines.push(`${host}: ${g.watchdogUnit} enabled and active`);
  }
  const conf = await probe(sh`test -r ${g.conf}`, { allowFail: true });
  if (conf.exitCode !== 0)
    fail(`no readable ${g.conf}: the lease check and watchdog refuse without it`);
  return { verdict, lines };
}

export function leaseGuardCheck(service: string, g: LeaseGuardConfig, hosts: string[]): AuditCheck {
  return {
    id: `lease-guard:${service}`,
    kind: 'lease-guard',
    title: `Every host that can run ${service} has the lease check and the lease watchdog`,
    targets: hosts,
    incident: '003: the old primary came back and nothing kept a second instance from linking',
    async run(ctx): Promise<Finding> {
      const perHost = await Promise.all(
        hosts.map(async (name) => {
          try {
            return { name, ...(await hostGuard(ctx.probe(name), name, g)) };
          } catch (e) {
            return {
              name,
              verdict: 'fail' as Verdict,
              lines: [`${name}: cannot be checked: ${errorMessage(e)}`],
            };
          }
        }),
      );
      const verdict = worst(perHost.map((h) => h.verdict));
      const bad = perHost.filter((h) => h.verdict !== 'pass').map((h) => h.name);
      return {
        verdict,
        summary:
          verdict === 'pass'
            ? `${hosts.length} of ${hosts.length} services hosts run the lease check and an active watchdog`
            : `${bad.join(', ')} ${bad.length === 1 ? 'is' : 'are'} not guarded by the lease`,
        evidence: perHost.flatMap((h) => h.lines),
        ...(verdict === 'pass'
          ? {}
          : {
              remedy: `Install the lease check as ExecStartPre=+ of ${g.unit} and enable and start ${g.watchdogUnit} on ${bad.join(', ')} (docs/lease.md, "On production hosts").`,
            }),
        metrics: { hosts: hosts.length, unguarded: bad.length },
      };
    },
  };
}
