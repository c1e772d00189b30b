import { defineConfig } from 'vitest/config';

// The Temporal-server kill scenarios (`npm run test:chaos`): each test file starts, kills and
// restarts a dev server of its own; the global setup still bundles the workflows and provides the
// shared server the harness expects. One file at a time: each one runs a whole estate.
export default defineConfig({
  test: {
    include: ['test/chaos-long/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 1,
    testTimeout: 300_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
