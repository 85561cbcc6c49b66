/**
 * Tests that need root, real daemons or the testnet: with BATON_REQUIRE_TESTNET=1
 * (CI) a missing prerequisite fails them; otherwise they skip and say why.
 */
export const testnetRequired = process.env.BATON_REQUIRE_TESTNET === '1';

/** Whether to skip a suite whose prerequisite is missing (`reason`), printing why once. */
export function skipUnless(reason: string | undefined, suite: string): boolean {
  if (!reason) return false;
  if (testnetRequired) return false;
  console.warn(`skipping ${suite}: ${reason} (set BATON_REQUIRE_TESTNET=1 to make this a failure)`);
  return true;
}

/** Call first in beforeAll: throws the missing prerequisite so every test of the suite fails. */
export function assertPrerequisite(reason: string | undefined): void {
  if (reason) throw new Error(`missing prerequisite: ${reason}`);
}
