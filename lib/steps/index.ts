/**
 * The step packs (`import … from 'baton-runbooks/steps'`). Generic packs,
 * each with its own parameter slice and facts reached through accessors:
 * host (window, clocks, room), dns (TTL, cut, every server checked), lease
 * (compare-and-set, fencing), service (the unit), transfer (host to host,
 * verified), and the data formats behind one interface (data.ts). Then the
 * IRC services pack: moving Atheme (services.ts), proofs with a real IRC
 * client (irc.ts), reading its services.db (atheme.ts); and static builds
 * shipped to hosts (artifact.ts).
 */
export * from './params.ts';
export * from './host.ts';
export * from './dns.ts';
export * from './lease.ts';
export * from './service.ts';
export * from './transfer.ts';
export * from './data.ts';
export * from './data-pack.ts';
export { postgresFormat, postgresParams, type PostgresParams } from './formats/postgresql.ts';
export { mariadbFormat, mariadbParams, type MariadbParams } from './formats/mariadb.ts';
export { sqliteFormat, sqliteParams, type SqliteParams } from './formats/sqlite.ts';
export * from './services.ts';
export * from './artifact.ts';
export * from './irc.ts';
export * from './atheme.ts';
