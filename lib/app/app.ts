/**
 * One baton: where it runs (working directory, the project root found from it
 * and the baton home, environment, clock) and what
 * it reaches the world through (stack sources, ssh routes, transports, the
 * runbook registry). The CLI builds one with createApp and hands it to every
 * command; a test builds its own. No module fills a registry by being
 * imported. Building an app loads nothing: each part is imported when first
 * used, so `baton --version` starts without the engine, ssh or zod.
 */
import type { Inventory, StackSource } from '../core/inventory.ts';
import { findProject, type Project } from '../core/project.ts';
import type { Transports } from '../transports/index.ts';
import type { SshRoute } from '../transports/ssh.ts';
import type { LoadedRunbook, RunbookRegistry } from './registry.ts';

export interface AppOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  clock?: () => Date;
  /** Where inventories come from, first match wins. Default: the local testnet, Pulumi, saved outputs, the demo. */
  sources?: StackSource[];
  /** How ssh reaches a host before it dials the address itself. Default: the local testnet's relay. */
  routes?: SshRoute[];
  /** How steps reach hosts. Default: the controller's shell for local hosts, ssh over `routes` for the rest. */
  transports?: () => Transports;
}

/**
 * `cwd` is where baton was started; `root` the project found from it
 * (core/project.ts), which holds runbooks/, the policy and infra/; `home` the
 * baton home, which holds the runs and local state. Every part of baton takes
 * them from here.
 */
export interface App extends Project {
  readonly env: NodeJS.ProcessEnv;
  readonly clock: () => Date;
  readonly sources: readonly StackSource[];
  readonly routes: readonly SshRoute[];
  /** A fresh set of transports; the caller closes it. */
  transports(): Promise<Transports>;
  /** The inventory of a stack, from the first source that knows it. */
  inventory(stack: string): Promise<Inventory>;
  /** A runbook by name or path, loaded once per app. */
  runbook(ref: string): Promise<LoadedRunbook>;
  /** The names of the runbooks this project and baton have. */
  runbookNames(): Promise<string[]>;
}

/** A source whose module is imported the first time a stack is looked up. */
function lazySource(describe: string, source: () => Promise<StackSource>): StackSource {
  let loaded: Promise<StackSource> | undefined;
  return {
    describe,
    load: async (stack, at) => (await (loaded ??= source())).load(stack, at),
  };
}

function lazyRoute(describe: string, route: () => Promise<SshRoute>): SshRoute {
  let loaded: Promise<SshRoute> | undefined;
  return { describe, dial: async (host) => (await (loaded ??= route())).dial(host) };
}

/** The sources the CLI asks, in order: `local` is always the testnet here, never a stack of that name. */
export function defaultSources(env: NodeJS.ProcessEnv = process.env): StackSource[] {
  return [
    lazySource('the local testnet (stack local, written by `baton testnet up`)', async () => {
      const { testnetStackSource } = await import('../testnet/stack.ts');
      return testnetStackSource;
    }),
    lazySource('pulumi stack output (infra/)', async () => {
      const { pulumiStackSource } = await import('../integrations/pulumi-stack.ts');
      return pulumiStackSource({ env });
    }),
    lazySource('.baton/stacks/<stack>.json', async () => {
      const { savedOutputsSource } = await import('../core/inventory.ts');
      return savedOutputsSource;
    }),
    lazySource('built-in stack demo', async () => {
      const { builtinSource } = await import('../core/inventory.ts');
      return builtinSource;
    }),
  ];
}

export function defaultRoutes(): SshRoute[] {
  return [
    lazyRoute('the local testnet relay', async () => {
      const { testnetRoute } = await import('../testnet/stack.ts');
      return testnetRoute;
    }),
  ];
}

export function createApp(options: AppOptions = {}): App {
  const env = options.env ?? process.env;
  const project = findProject(options.cwd ?? process.cwd(), env);
  const sources = options.sources ?? defaultSources(env);
  const routes = options.routes ?? defaultRoutes();
  let registry: Promise<RunbookRegistry> | undefined;
  const runbooks = (): Promise<RunbookRegistry> =>
    (registry ??= import('./registry.ts').then((m) => new m.RunbookRegistry(project)));
  return {
    ...project,
    env,
    clock: options.clock ?? (() => new Date()),
    sources,
    routes,
    async transports() {
      if (options.transports) return options.transports();
      const { defaultTransports } = await import('../transports/index.ts');
      return defaultTransports({ routes: [...routes] });
    },
    async inventory(stack) {
      const { loadInventory } = await import('../core/inventory.ts');
      return loadInventory(stack, project, sources);
    },
    runbook: async (ref) => (await runbooks()).load(ref),
    runbookNames: async () => (await runbooks()).list(),
  };
}
