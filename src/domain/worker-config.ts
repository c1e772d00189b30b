/**
 * The `worker` section of kura.yaml: how a worker process (`kura worker`, `kura start`) bounds its
 * memory — the V8 heaps' growth past their live size, and the SDK's cache of workflows (docs/adr/048).
 */
import { z } from 'zod';

/** V8's own choice: a heap may grow to up to 4× its live size before its next full collection. */
export const V8_HEAP_GROWTH = 0;

export const WorkerConfigSchema = z.strictObject({
  /**
   * How far, in percent of its live size, each V8 heap of the worker process (the main thread's,
   * the SDK's workflow thread's, the hashing threads') may grow before its next full collection:
   * V8's `--heap-growing-percent`. 50 holds the workflow thread at about 1.5× its live objects
   * (about 130 MB against 260 MB for V8's own choice, measured in the soak) for a few more full
   * collections a minute; 0 leaves it to V8.
   */
  heapGrowthPercent: z.number().int().min(V8_HEAP_GROWTH).max(300).default(50),
  /**
   * Workflows the SDK keeps in its sticky cache; one more must be rebuilt from its history. Unset,
   * the SDK's default, derived from the heap limit (about 2,300 on a 4 GiB heap). A workflow leaves
   * the cache when its run ends, so only running ones count (guardians, pools, jobs in flight).
   */
  maxCachedWorkflows: z.number().int().min(0).max(100_000).optional(),
});
export type WorkerConfig = z.infer<typeof WorkerConfigSchema>;
