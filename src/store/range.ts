/**
 * A store backup as a byte source of the data mover (docs/adr/042): any range of the volume it
 * holds, read from its index's chunks in order, each decompressed and checked against its digest,
 * from the first store and, for a chunk missing or damaged there, from the copy.
 */
import { ChecksumMismatchError, InvalidInputError, KuraError, NotFoundError } from '../domain/errors';
import type { StoreIndex, StoreName } from '../domain/store';
import type { ByteSource } from '../datamover/mover';
import type { ChunkStore } from './chunk-store';
import { indexDigest } from './ingest';

export interface StoreRangeRequest {
  /** The stores to read from, the first store first. */
  stores: { name: StoreName; store: ChunkStore }[];
  backupId: string;
  /** The digest of the index the catalog recorded: an index that differs is not the backup catalogued. */
  indexDigest: string;
}

/** An open store backup: its index and a source over its bytes from `start` on. */
export interface StoreBackupSource {
  index: StoreIndex;
  /** The store whose index was read. */
  indexFrom: StoreName;
  /** The bytes of the volume from `start` on, as the data mover reads a file range. */
  range(start: number): ByteSource;
}

/**
 * Opens a store backup for reading by range. The index is read from the first store that holds it
 * and must be the one the catalog recorded; a chunk is read whole once, kept while the reads stay in
 * it (the mover reads in blocks smaller than a chunk, in order), and refused when no store holds
 * it intact.
 */
export async function openStoreBackup(req: StoreRangeRequest): Promise<StoreBackupSource> {
  const problems: string[] = [];
  let found: { index: StoreIndex; name: StoreName } | undefined;
  for (const s of req.stores) {
    const index = await s.store.readIndex(req.backupId).catch((err: unknown) => {
      problems.push(`${s.name}: ${(err as Error).message}`);
      return undefined;
    });
    if (!index) continue;
    const digest = indexDigest(index);
    if (digest === req.indexDigest) {
      found = { index, name: s.name };
      break;
    }
    problems.push(`${s.name}: its index digests to ${digest}, not to the ${req.indexDigest} the catalog recorded`);
  }
  if (!found)
    throw new NotFoundError(
      `no store holds the index of ${req.backupId} that the catalog recorded (${problems.join('; ')}); the store backup cannot be copied to tape — \`kura store verify ${req.backupId}\` says what is wrong, or copy another backup`,
      { backupId: req.backupId },
    );
  const { index, name } = found;
  // The mover has a few blocks in flight at once, so reads of two neighbouring chunks interleave:
  // the last few chunks are kept (as promises, so a chunk being read is not read twice).
  const cached = new Map<number, Promise<Buffer>>();
  const load = async (i: number): Promise<Buffer> => {
    const digest = index.chunks[i] as string;
    const why: string[] = [];
    for (const s of req.stores) {
      try {
        return await s.store.get(digest);
      } catch (err) {
        if (!(err instanceof KuraError)) throw err;
        why.push(`${s.name}: ${err.message}`);
      }
    }
    throw new ChecksumMismatchError(
      `chunk ${i} (${digest}) of ${req.backupId} cannot be read intact from any store (${why.join('; ')}); the store backup cannot be copied to tape — run \`kura store verify\` and copy an earlier backup`,
      { backupId: req.backupId, digest },
    );
  };
  const fetch = (i: number): Promise<Buffer> => {
    let p = cached.get(i);
    if (!p) {
      p = load(i);
      cached.set(i, p);
      void p.catch(() => cached.delete(i));
      for (const k of cached.keys()) if (cached.size > 4 && k < i) cached.delete(k);
    }
    return p;
  };
  // A copy reads in order: the next chunk is read and checked while this one goes to tape.
  const chunk = (i: number): Promise<Buffer> => {
    const p = fetch(i);
    if (i + 1 < index.chunks.length) void fetch(i + 1).catch(() => undefined);
    return p;
  };
  return {
    index,
    indexFrom: name,
    range: (start) => ({
      read: async (buf, at) => {
        const from = start + at;
        if (from + buf.length > index.sizeBytes)
          throw new InvalidInputError(
            `bytes ${from}+${buf.length} lie past the end of store backup ${req.backupId} (${index.sizeBytes} bytes)`,
          );
        for (let put = 0; put < buf.length;) {
          const pos = from + put;
          const i = Math.floor(pos / index.chunkSize);
          const data = await chunk(i);
          const inChunk = pos - i * index.chunkSize;
          const n = Math.min(buf.length - put, data.length - inChunk);
          if (n <= 0)
            throw new ChecksumMismatchError(
              `chunk ${i} of ${req.backupId} holds ${data.length} bytes, fewer than its index says; the store backup cannot be copied to tape`,
              { backupId: req.backupId },
            );
          data.copy(buf, put, inChunk, inChunk + n);
          put += n;
        }
      },
    }),
  };
}
