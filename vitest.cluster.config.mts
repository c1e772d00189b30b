import { configDefaults, defineConfig } from 'vitest/config';
import base from './vitest.config.mts';

// The suites `npm run test:cluster` runs against a Temporal cluster on PostgreSQL (scripts/cluster.ts
// names the files and sets KURA_TEMPORAL_ADDRESS): the default settings, with test/cluster back in,
// whose chaos cases kill the cluster's own processes and so run nowhere else.
export default defineConfig({
  ...base,
  test: { ...base.test, exclude: [...configDefaults.exclude] },
});
