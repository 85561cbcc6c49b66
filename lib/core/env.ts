/** The environment variables baton itself reads (a runbook's secrets come by `name=@env:VAR`). */

/** Where runs, locks and local state live; default `.baton/` in the project root. */
export const HOME_ENV = 'BATON_HOME';
/** The ssh key that signs a run's journal, where --signing-key is not given. */
export const SIGNING_KEY_ENV = 'BATON_SIGNING_KEY';
/** Set to 1 for stack traces with errors. */
export const DEBUG_ENV = 'BATON_DEBUG';
