/**
 * A data format's probe and apply on the controller itself, through the real
 * local transport: every command runs for real, and each change is kept in
 * `changes` in order, as a journal would keep it.
 */
import type { Host } from '../../lib/core/inventory.ts';
import { CommandError } from '../../lib/core/exec.ts';
import type { CommandOptions, Exec, Mutate, Notes } from '../../lib/core/runbook.ts';
import { Cmd, isTemplateCall, sh, type ShellValue } from '../../lib/core/shell.ts';
import { localTransport } from '../../lib/transports/local.ts';
import type { FormatApply, FormatProbe } from '../../lib/steps/data.ts';

const HOST: Host = {
  name: 'local',
  address: 'localhost',
  connection: 'local',
  roles: ['primary'],
} as Host;

function toCmd(args: unknown[]): Cmd {
  return isTemplateCall(args) ? sh(args[0], ...(args.slice(1) as ShellValue[])) : (args[0] as Cmd);
}

export interface LocalIo extends FormatApply {
  /** Every change, in order: shell text, or `act: DESCRIPTION`. */
  changes: string[];
  close(): Promise<void>;
}

export function localIo(host: Host = HOST): LocalIo {
  const transport = localTransport();
  const changes: string[] = [];
  const notes: Notes = {};
  const run = async (cmd: Cmd, options: CommandOptions = {}) => {
    const r = await transport.exec(host, cmd.text, options);
    if (r.exitCode !== 0 && !options.allowFail) throw new CommandError(r);
    return r;
  };
  const probe = ((...args: unknown[]) =>
    run(toCmd(args), (isTemplateCall(args) ? {} : args[1]) as CommandOptions)) as Exec;
  const $ = (async (...args: unknown[]) => {
    const cmd = toCmd(args);
    changes.push(cmd.text);
    await run(cmd, (isTemplateCall(args) ? {} : (args[1] ?? {})) as CommandOptions);
  }) as Mutate;
  return {
    host,
    probe,
    $,
    changes,
    async act(description, data, fn) {
      changes.push(`act: ${description}`);
      await fn(data);
    },
    note(data) {
      Object.assign(notes, data);
    },
    notes,
    close: () => transport.close(),
  };
}

/** Read-only view of the same host. */
export function probeOnly(io: LocalIo): FormatProbe {
  return { host: io.host, probe: io.probe };
}
