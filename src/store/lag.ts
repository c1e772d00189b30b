/**
 * How far the copy in another building lags behind the first store: the age of the oldest backup
 * the first store holds and the copy does not, against the policy (`store.maxLag`).
 */
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import type { ChunkStore } from './chunk-store';

/** What each sync writes into the copy's root: when it ended and how many indexes it mirrored. */
export const SyncStateSchema = z.object({ syncedAt: z.string(), indexes: z.number().int().min(0) });

/** The copy's lag behind the first store: zero when it holds every backup the first one does. */
export interface StoreLag {
  /** Milliseconds since the oldest backup the copy lacks was taken (0: none lacking). */
  lagMs: number;
  /** Backups the first store holds and the copy does not. */
  behind: string[];
  lastSyncAt: string | null;
  /** Whether the lag is past the policy. */
  alert: boolean;
  maxLagMs: number;
}

/** Measures the copy's lag behind the first store at `now`. */
export async function storeLag(
  primary: ChunkStore,
  copy: ChunkStore,
  maxLagMs: number,
  now = Date.now(),
): Promise<StoreLag> {
  const have = new Set(await copy.listIndexes());
  const behind: string[] = [];
  let oldest = Infinity;
  for (const id of await primary.listIndexes()) {
    if (have.has(id)) continue;
    behind.push(id);
    const index = await primary.readIndex(id).catch(() => undefined);
    if (index) oldest = Math.min(oldest, Date.parse(index.dataTime));
  }
  const state = await readFile(path.join(copy.root, 'sync.json'), 'utf8')
    .then((t) => SyncStateSchema.parse(JSON.parse(t)))
    .catch(() => undefined);
  const lagMs = behind.length === 0 ? 0 : Math.max(0, now - oldest);
  return { lagMs, behind, lastSyncAt: state?.syncedAt ?? null, alert: lagMs > maxLagMs, maxLagMs };
}

/** The two stores of a configuration: `store.primary` and `store.copy`, relative to Kura's home. */
export function storeRoots(home: string, cfg: { primary: string; copy: string }): { primary: string; copy: string } {
  return { primary: path.resolve(home, cfg.primary), copy: path.resolve(home, cfg.copy) };
}
