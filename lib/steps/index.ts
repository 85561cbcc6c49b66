/**
 * The step packs (`import … from 'baton-runbooks/steps'`): moving IRC
 * services (services.ts), proofs with a real IRC client (irc.ts), reading
 * Atheme's services.db (atheme.ts), and static builds shipped to hosts
 * (artifact.ts).
 */
export * from './services.ts';
export * from './artifact.ts';
export * from './irc.ts';
export * from './atheme.ts';
