import { defineConfig } from 'vitest/config';

// `npm run replay:record`: runs the tests below against one dev server (as the default suite does)
// and, when they end, writes one history of every workflow kind they ran into test/replay/histories/
// (test/replay/record-setup.ts). A new workflow type needs a test here that runs it.
export default defineConfig({
  test: {
    include: [
      'test/workflows/**/*.test.ts',
      'test/e2e/night-plan-cli.test.ts',
      'test/e2e/san-cli.test.ts',
      'test/e2e/ladder-cli.test.ts',
      'test/replay/scenarios/*.scenario.ts',
    ],
    globalSetup: ['test/replay/record-setup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    teardownTimeout: 120_000,
  },
});
