/**
 * The dev server's workflow cache can be bounded: its history service keeps no more workflows
 * in memory than it is told (docs/adr/048), read from the server's own metrics.
 */
import { describe, expect, it } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { freePort, startDevServer } from '../../src/stack/devserver';

async function cachedWorkflows(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const m = /^cache_usage\{[^}]*cache_type="mutablestate"[^}]*\} (\d+)$/m.exec(text);
  if (!m) throw new Error(`no mutable-state cache_usage in the server's metrics:\n${text.slice(0, 500)}`);
  return Number(m[1]);
}

describe("the embedded server's workflow cache", () => {
  it('keeps no more workflows than its bound, however many were started', async () => {
    const metricsPort = await freePort();
    const server = await startDevServer({ headless: true, metricsPort, workflowCache: 5, readyTimeoutMs: 90_000 });
    const connection = await Connection.connect({ address: server.address });
    try {
      const client = new Client({ connection, namespace: server.namespace });
      // No worker polls this queue: each start writes a workflow's state, which the cache then holds.
      for (let i = 0; i < 12; i++)
        await client.workflow.start('nothing', { taskQueue: 'no-worker', workflowId: `cache-${i}` });
      // Unbounded it holds all 12 and the server's own (26 in all); bounded, at most the 5 touched
      // last (one may be on its way out as it is read).
      const held = await cachedWorkflows(metricsPort);
      expect(held).toBeGreaterThan(0);
      expect(held).toBeLessThanOrEqual(5);
    } finally {
      await connection.close();
      await server.stop();
    }
  });
});
