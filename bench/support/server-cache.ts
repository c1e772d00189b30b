/**
 * Reads the dev server's history cache from its Prometheus endpoint: the workflows it holds, the
 * lookups and the misses (a miss rebuilds a workflow's state from the database), docs/adr/052.
 */

/** The mutable-state cache's figures, summed over the server's label sets. */
export interface ServerCacheStats {
  held: number;
  requests: number;
  misses: number;
}

// cache_size is no use here: the replication progress cache reports under the same cache_type
// (128,000 whatever the history cache's bound); cache_usage and the lookups are the history cache's.

/** Sums every sample of `metric` (with or without the `_total` suffix) for the mutable-state cache. */
function sum(text: string, metric: string): number {
  const re = new RegExp(`^${metric}(?:_total)?\\{[^}]*cache_type="mutablestate"[^}]*\\} ([0-9.e+]+)$`, 'gm');
  let total = 0;
  for (const m of text.matchAll(re)) total += Number(m[1]);
  return total;
}

/** The server's cache figures now; undefined when its metrics do not answer. */
export async function serverCacheStats(metricsPort: number): Promise<ServerCacheStats | undefined> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    return {
      held: sum(text, 'cache_usage'),
      requests: sum(text, 'cache_requests'),
      misses: sum(text, 'cache_miss'),
    };
  } catch {
    return undefined;
  }
}

/** The difference between two readings (held is the later one's). */
export function cacheDelta(before: ServerCacheStats | undefined, after: ServerCacheStats | undefined): string {
  if (!before || !after) return 'server cache: no metrics';
  const requests = after.requests - before.requests;
  const misses = after.misses - before.misses;
  return `server cache: ${after.held} workflows held, ${requests} lookups, ${misses} misses (${requests > 0 ? ((100 * misses) / requests).toFixed(1) : '0.0'} %)`;
}
