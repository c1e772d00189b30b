/**
 * Reading a backup back out of the store: chunk by chunk, each checked against its digest, from the
 * store the restore chose — and from the other one when a chunk there is missing or damaged, which
 * the result names chunk by chunk, so the person restoring knows the first store needs repair.
 */
import { open } from 'node:fs/promises';
import { ChecksumMismatchError, KuraError, NotFoundError } from '../domain/errors';
import type { StoreFallback, StoreIndex, StoreName } from '../domain/store';
import type { ChunkStore } from './chunk-store';

export interface ReadBackupRequest {
  /** The stores to read from, the chosen one first. */
  stores: { name: StoreName; store: ChunkStore }[];
  backupId: string;
  /** Written at `offset` (other bytes of the file are left as they are). */
  destination: { path: string; offset: number };
  onProgress?: (p: { bytes: number; total: number }) => void;
}

export interface ReadBackupResult {
  index: StoreIndex;
  /** Which store's index was used. */
  indexFrom: StoreName;
  fallbacks: StoreFallback[];
}

/** Writes a store backup's bytes into a file, falling back chunk by chunk to the other store. */
export async function readBackup(req: ReadBackupRequest): Promise<ReadBackupResult> {
  const [first] = req.stores;
  if (!first) throw new NotFoundError('no store to read from');
  let index: StoreIndex | undefined;
  let indexFrom: StoreName = first.name;
  const indexErrors: string[] = [];
  for (const s of req.stores) {
    try {
      index = await s.store.readIndex(req.backupId);
      indexFrom = s.name;
      break;
    } catch (err) {
      indexErrors.push(`${s.name}: ${(err as Error).message}`);
    }
  }
  if (!index)
    throw new NotFoundError(
      `no store holds an index of ${req.backupId} (${indexErrors.join('; ')}); \`kura catalog list\` shows what there is`,
      {
        backupId: req.backupId,
      },
    );
  const fallbacks: StoreFallback[] = [];
  const fh = await open(req.destination.path, 'r+').catch(() => open(req.destination.path, 'w+'));
  try {
    for (let i = 0; i < index.chunks.length; i++) {
      const digest = index.chunks[i] as string;
      const problems: string[] = [];
      let data: Buffer | undefined;
      for (const s of req.stores) {
        try {
          data = await s.store.get(digest);
          if (s !== first) fallbacks.push({ chunk: i, digest, from: s.name, reason: problems.join('; ') });
          break;
        } catch (err) {
          if (!(err instanceof KuraError)) throw err;
          problems.push(`${s.name}: ${err.message}`);
        }
      }
      if (!data)
        throw new ChecksumMismatchError(
          `chunk ${i} (${digest}) of ${req.backupId} cannot be read from any store (${problems.join('; ')}); the backup cannot be restored — run \`kura store verify\` and restore an earlier backup`,
          { backupId: req.backupId, digest },
        );
      await fh.write(data, 0, data.length, req.destination.offset + i * index.chunkSize);
      req.onProgress?.({ bytes: Math.min(index.sizeBytes, (i + 1) * index.chunkSize), total: index.sizeBytes });
    }
    await fh.truncate(Math.max((await fh.stat()).size, req.destination.offset + index.sizeBytes));
    await fh.sync();
  } finally {
    await fh.close();
  }
  return { index, indexFrom, fallbacks };
}
