/**
 * Where baton is installed, found the same way from the sources (lib/core/)
 * and from the compiled package (dist/lib/core/): the nearest directory above
 * this module holding a package.json. The files baton reads at run time
 * (contrib/, tools/, debian-packages.txt, lib/testnet/systemctl.sh, the demo's
 * app.conf) are resolved from there, never from dist/.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** baton's package directory: the checkout, or node_modules/baton-runbooks. */
export function packageRoot(): string {
  if (root !== undefined) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
  return (root = dir);
}

/** A file that ships with baton, by its path in the package: `batonFile('contrib', 'lease', 'lease-check')`. */
export function batonFile(...path: string[]): string {
  return join(packageRoot(), ...path);
}

/** baton's version, from its own package.json (not npm's environment, which names the caller's project). */
export function batonVersion(): string {
  const pkg = JSON.parse(readFileSync(batonFile('package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

/** True when this code is the compiled package (dist/), not the TypeScript sources. */
export function isCompiled(): boolean {
  return import.meta.url.endsWith('.js');
}
