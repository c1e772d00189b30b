import { configDefaults, defineConfig } from 'vitest/config';

// One real Temporal dev server for the whole run (test/support/global-setup.ts); forks, not
// threads, because several Temporal workers in worker threads crash the native bridge.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The Temporal-server kill scenarios run on their own (`npm run test:chaos`, vitest.chaos.config.mts);
    // test/cluster kills processes of a Temporal cluster on PostgreSQL: `npm run test:cluster` runs it.
    exclude: [...configDefaults.exclude, 'test/chaos-long/**', 'test/cluster/**'],
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
