/**
 * What baton sets as its process title, apart from params.ts so that
 * bin/baton.js sets it before anything heavy (zod) is loaded.
 */

/**
 * baton's command line as `ps` may show it: each inline `--param` value
 * replaced by `…`, references kept. On Linux a process's title replaces its
 * argv in /proc/<pid>/cmdline; the processes that started baton (a shell,
 * npx, sudo) keep their own copy, which no process can change.
 */
export function withoutParamValues(argv: readonly string[]): string[] {
  const hide = (param: string): string => {
    const eq = param.indexOf('=');
    const value = param.slice(eq + 1);
    return eq <= 0 || value.startsWith('@env:') || value.startsWith('@file:')
      ? param
      : `${param.slice(0, eq)}=…`;
  };
  return argv.map((arg, i) => {
    if (arg.startsWith('--param=')) return `--param=${hide(arg.slice(8))}`;
    return argv[i - 1] === '--param' ? hide(arg) : arg;
  });
}
