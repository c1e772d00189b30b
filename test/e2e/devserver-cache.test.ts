/**
 * The dev server's workflow cache can be bounded: its history service keeps no more workflows
 * in memory than it is told (docs/adr/048, docs/adr/052), read from the server's own metrics.
 */
import { describe, expect, it } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { freePort, startDevServer } from '../../src/stack/devserver';

/**
 * Entries the history cache has evicted so far. Its `cache_usage` gauge is no count to go by: another
 * of the server's caches reports under the same cache type and overwrites it (it read 0 and 4 with 12
 * workflows held), while the eviction histogram's count is the history cache's alone.
 */
async function evictions(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const m = /^cache_entry_age_on_eviction_count\{[^}]*cache_type="mutablestate"[^}]*\} (\d+)$/m.exec(text);
  // No eviction yet: the histogram is not exported until its first observation.
  return m ? Number(m[1]) : 0;
}

describe("the embedded server's workflow cache", () => {
  it('keeps no more workflows than its bound, however many were started', async () => {
    const metricsPort = await freePort();
    const server = await startDevServer({ headless: true, metricsPort, workflowCache: 5, readyTimeoutMs: 90_000 });
    const connection = await Connection.connect({ address: server.address });
    try {
      const client = new Client({ connection, namespace: server.namespace });
      const before = await evictions(metricsPort);
      // No worker polls this queue: each start writes a workflow's state, which the cache then holds.
      for (let i = 0; i < 12; i++)
        await client.workflow.start('nothing', { taskQueue: 'no-worker', workflowId: `cache-${i}` });
      // Unbounded (the CLI's 8,096) it evicts none of them; bounded to 5, at least the 7 beyond it.
      expect(await evictions(metricsPort)).toBeGreaterThanOrEqual(before + 7);
    } finally {
      await connection.close();
      await server.stop();
    }
  });
});
