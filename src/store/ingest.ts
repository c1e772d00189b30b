/**
 * A backup into the store: the volume is read in fixed-size chunks, each hashed and written only
 * when the store lacks it, and the backup's index is written last (docs/adr/032). Each byte is
 * hashed once, into its chunk's digest: the backup's own checksum is the SHA-256 of its digest
 * list (`indexDigest`), as Proxmox Backup Server's index checksum is, not a second pass over the
 * volume (which halved the ingest rate; bench/store).
 */
import { open } from 'node:fs/promises';
import { newSha256, sha256Hex } from '../datamover/sha256';
import { DeviceFaultError } from '../domain/errors';
import type { StoreIndex } from '../domain/store';
import type { ChunkStore } from './chunk-store';

export interface IngestRequest {
  store: ChunkStore;
  file: string;
  /** The index to write, without its chunks and size. */
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
  const inFlight = new Set<Promise<void>>();
  try {
    const { size } = await fh.stat();
    const count = Math.ceil(size / chunkSize);
    const prev = req.previous;
    const reuse = prev && prev.index.sizeBytes === size && prev.index.chunkSize === chunkSize ? prev : undefined;
    const chunks: string[] = [];
    let newChunks = 0;
    let storedBytes = 0;
    let readBytes = 0;
    const window = 4;
    for (let i = 0; i < count; i++) {
      const length = Math.min(chunkSize, size - i * chunkSize);
      const known = reuse && !reuse.changed(i) ? reuse.index.chunks[i] : undefined;
      if (known !== undefined && (await store.touch(known))) {
        chunks.push(known);
      } else {
        const block = Buffer.allocUnsafe(length);
        const { bytesRead } = await fh.read(block, 0, length, i * chunkSize);
        if (bytesRead !== length)
          throw new DeviceFaultError(
            req.file,
            `${req.file} ended at ${i * chunkSize + bytesRead} bytes while reading chunk ${i}; it shrank during the backup`,
          );
        readBytes += length;
        const digest = sha256Hex(block);
        chunks.push(digest);
        // Writes (each with two fsyncs) overlap the next chunks' reads and hashes; the index still
        // waits for every one of them.
        const put = store.put(digest, block).then((p) => {
          if (p.written) {
            newChunks += 1;
            storedBytes += p.storedBytes;
          }
        });
        inFlight.add(put);
        void put.finally(() => inFlight.delete(put)).catch(() => undefined);
        if (inFlight.size >= window) await Promise.race(inFlight);
      }
      if (req.afterChunk) {
        await Promise.all(inFlight);
        await req.afterChunk(i);
      }
      req.onProgress?.({ bytes: Math.min(size, (i + 1) * chunkSize), total: size, chunks: i + 1 });
    }
    await Promise.all(inFlight);
    const index: StoreIndex = { kind: 'kura-store-index', ...head, sizeBytes: size, sha256: null, chunks };
    await store.writeIndex(index);
    return { index, newChunks, storedBytes, readBytes };
  } finally {
    // A failed chunk write stops the loop; the writes still in flight end before the lease does.
    await Promise.allSettled(inFlight);
    await fh.close();
    await req.store.endWriter(req.job);
  }
}

/**
 * The checksum of a store backup: SHA-256 over its chunk digests in order (binary), which fixes
 * every byte of the volume since each chunk is checked against its digest as it is read back.
 */
export function indexDigest(index: Pick<StoreIndex, 'chunks' | 'sizeBytes'>): string {
  const h = newSha256();
  for (const d of index.chunks) h.update(Buffer.from(d, 'hex'));
  h.update(String(index.sizeBytes));
  return h.digest('hex');
}
