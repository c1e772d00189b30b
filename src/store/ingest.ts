/**
 * A backup into the store: the volume is read in fixed-size chunks, each hashed and written only
 * when the store lacks it, and the backup's index is written last (docs/adr/032). The whole
 * volume's SHA-256 runs on the data mover's hashing thread beside the chunk digests (ADR 017).
 */
import { open } from 'node:fs/promises';
import { allocBlock, workerHasher } from '../datamover/hash-worker';
import { sha256Hex } from '../datamover/sha256';
import { DeviceFaultError } from '../domain/errors';
import type { StoreIndex } from '../domain/store';
import type { ChunkStore } from './chunk-store';

export interface IngestRequest {
  store: ChunkStore;
  file: string;
  /** The index to write, without its chunks, size and whole-volume digest. */
  index: Omit<StoreIndex, 'kind' | 'chunks' | 'sizeBytes' | 'sha256'>;
  /** The job's name for the store's lease of running writers (garbage collection spares what it touches). */
  job: string;
  /**
   * The target's previous index and which of its chunks changed since (a dirty bitmap): unchanged
   * chunks are taken from it without being read. Without it every chunk is read and hashed, and
   * only those whose digest the store lacks are written.
   */
  previous?: { index: StoreIndex; changed: (chunk: number) => boolean };
  onProgress?: (p: { bytes: number; total: number; chunks: number }) => void;
  /** Called after each chunk is durable, before the next (tests pause a backup here). */
  afterChunk?: (chunk: number) => Promise<void>;
}

export interface IngestResult {
  index: StoreIndex;
  newChunks: number;
  storedBytes: number;
  readBytes: number;
}

/** Ingests one volume file into the store and writes its index; idempotent (a retry writes no chunk twice). */
export async function ingestFile(req: IngestRequest): Promise<IngestResult> {
  const { store, index: head } = req;
  const chunkSize = head.chunkSize;
  await req.store.beginWriter(req.job);
  const fh = await open(req.file, 'r');
  const whole = req.previous ? undefined : workerHasher();
  try {
    const { size } = await fh.stat();
    const count = Math.ceil(size / chunkSize);
    const prev = req.previous;
    const reuse = prev && prev.index.sizeBytes === size && prev.index.chunkSize === chunkSize ? prev : undefined;
    const chunks: string[] = [];
    let newChunks = 0;
    let storedBytes = 0;
    let readBytes = 0;
    let hashing: Promise<void> | undefined;
    for (let i = 0; i < count; i++) {
      const length = Math.min(chunkSize, size - i * chunkSize);
      const known = reuse && !reuse.changed(i) ? reuse.index.chunks[i] : undefined;
      if (known !== undefined && (await store.touch(known))) {
        chunks.push(known);
      } else {
        // A fresh buffer per chunk: the hashing thread may still be reading the one before.
        const block = allocBlock(length, whole?.shared ?? false);
        const { bytesRead } = await fh.read(block, 0, length, i * chunkSize);
        if (bytesRead !== length)
          throw new DeviceFaultError(
            req.file,
            `${req.file} ended at ${i * chunkSize + bytesRead} bytes while reading chunk ${i}; it shrank during the backup`,
          );
        readBytes += length;
        await hashing;
        hashing = whole?.update(block);
        const digest = sha256Hex(block);
        const put = await store.put(digest, block);
        if (put.written) {
          newChunks += 1;
          storedBytes += put.storedBytes;
        }
        chunks.push(digest);
      }
      req.onProgress?.({ bytes: Math.min(size, (i + 1) * chunkSize), total: size, chunks: i + 1 });
      await req.afterChunk?.(i);
    }
    await hashing;
    const sha256 = whole ? await whole.digest() : null;
    const index: StoreIndex = { kind: 'kura-store-index', ...head, sizeBytes: size, sha256, chunks };
    await store.writeIndex(index);
    return { index, newChunks, storedBytes, readBytes };
  } catch (err) {
    whole?.discard();
    throw err;
  } finally {
    await fh.close();
    await req.store.endWriter(req.job);
  }
}
