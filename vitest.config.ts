import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'infra/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Test files bring up whole testnets (sshd, ircds, services, DNS); on a
    // two-core machine they run one after another, not against each other.
    fileParallelism: false,
  },
});
