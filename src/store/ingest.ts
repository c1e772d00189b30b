/**
 * A backup into the store: the volume is read in fixed-size chunks, each hashed and written only
 * when the store lacks it, and the backup's index is written last (docs/adr/032). Each byte is
 * hashed once on this thread, into its chunk's digest; the backup's own checksum is the SHA-256 of
 * its digest list (`indexDigest`), as Proxmox Backup Server's index checksum is. When every chunk
 * is read in order, the whole-volume SHA-256 is computed too, on a second thread (docs/adr/036).
 * Reads run one chunk ahead, compression and writes on libuv's pool, and the chunks' directory
 * entries are made durable once, before the index (ChunkStore.flushDirs).
 */
import { open, type FileHandle } from 'node:fs/promises';
import { newSha256, sha256Hex } from '../datamover/sha256';
import { DeviceFaultError } from '../domain/errors';
import type { StoreIndex } from '../domain/store';
import type { ChunkStore } from './chunk-store';
import { VolumeHasher } from './volume-hash';

export interface IngestRequest {
  store: ChunkStore;
  file: string;
  /** The index to write, without its chunks, size and whole-volume checksum. */
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
  /** Called after each chunk is written, before the next (tests pause a backup here). */
  afterChunk?: (chunk: number) => Promise<void>;
}

export interface IngestResult {
  index: StoreIndex;
  newChunks: number;
  storedBytes: number;
  readBytes: number;
  /** Chunks read from the volume and hashed (the others were taken from the previous index). */
  readChunks: number;
}

/** Chunk writes (compression and data fsync) in flight at once, on libuv's pool. */
const WRITE_WINDOW = 6;
/** Chunks read between two syncs of the chunks' directories (one more comes before the index). */
const FLUSH_EVERY = 16;

/** Ingests one volume file into the store and writes its index; idempotent (a retry writes no chunk twice). */
export async function ingestFile(req: IngestRequest): Promise<IngestResult> {
  const { store, index: head } = req;
  const chunkSize = head.chunkSize;
  await req.store.beginWriter(req.job);
  const fh = await open(req.file, 'r');
  const reads = new Map<number, Promise<Buffer>>();
  const inFlight = new Set<Promise<void>>();
  let hasher: VolumeHasher | undefined;
  try {
    const { size } = await fh.stat();
    const count = Math.ceil(size / chunkSize);
    const prev = req.previous;
    const reuse = prev && prev.index.sizeBytes === size && prev.index.chunkSize === chunkSize ? prev : undefined;
    // Only a backup that reads every byte in order can hash the whole volume.
    hasher = reuse ? undefined : new VolumeHasher(size);
    const alloc = (length: number) => hasher?.block(length) ?? Buffer.allocUnsafeSlow(length);
    const wanted = (i: number) => !reuse || reuse.changed(i);
    const readAhead = (i: number) => {
      while (i < count && !wanted(i)) i++;
      if (i >= count || reads.has(i)) return;
      const p = readChunk(fh, req.file, i, chunkSize, size, alloc);
      p.catch(() => undefined);
      reads.set(i, p);
    };
    const chunks: string[] = [];
    let newChunks = 0;
    let storedBytes = 0;
    let readBytes = 0;
    let readChunks = 0;
    for (let i = 0; i < count; i++) {
      const known = wanted(i) ? undefined : reuse?.index.chunks[i];
      if (known !== undefined && (await store.touch(known))) {
        chunks.push(known);
      } else {
        readAhead(i);
        if (!reads.has(i)) reads.set(i, readChunk(fh, req.file, i, chunkSize, size, alloc));
        const block = await reads.get(i)!;
        reads.delete(i);
        readAhead(i + 1);
        readBytes += block.length;
        readChunks += 1;
        await hasher?.update(block);
        const digest = sha256Hex(block);
        chunks.push(digest);
        const put = store.put(digest, block, { batch: true }).then((p) => {
          if (p.written) {
            newChunks += 1;
            storedBytes += p.storedBytes;
          }
        });
        // Written (or found in the store): its buffer can take a later chunk once it is hashed too.
        void put.then(() => hasher?.release(block)).catch(() => undefined);
        inFlight.add(put);
        void put.finally(() => inFlight.delete(put)).catch(() => undefined);
        // Directory entries made durable in batches while reading goes on; the index waits for the last.
        if (readChunks % FLUSH_EVERY === 0) {
          const flush = Promise.all(inFlight).then(() => store.flushDirs().then(() => undefined));
          inFlight.add(flush);
          void flush.finally(() => inFlight.delete(flush)).catch(() => undefined);
        }
        if (inFlight.size >= WRITE_WINDOW) await Promise.race(inFlight);
      }
      if (req.afterChunk) {
        await Promise.all(inFlight);
        await req.afterChunk(i);
      }
      req.onProgress?.({ bytes: Math.min(size, (i + 1) * chunkSize), total: size, chunks: i + 1 });
    }
    await Promise.all(inFlight);
    const sha256 = hasher ? await hasher.digest() : null;
    const index: StoreIndex = { kind: 'kura-store-index', ...head, sizeBytes: size, sha256, chunks };
    await store.writeIndex(index);
    return { index, newChunks, storedBytes, readBytes, readChunks };
  } finally {
    // Nothing of this backup may still be running once its writer's lease ends.
    await Promise.allSettled([...reads.values(), ...inFlight]);
    await hasher?.close();
    await fh.close();
    await req.store.endWriter(req.job);
  }
}

/** Reads chunk `i` whole into a buffer the hashing thread can share; DeviceFaultError when the file shrank. */
async function readChunk(
  fh: FileHandle,
  file: string,
  i: number,
  chunkSize: number,
  size: number,
  alloc: (length: number) => Buffer,
): Promise<Buffer> {
  const length = Math.min(chunkSize, size - i * chunkSize);
  const block = alloc(length);
  const { bytesRead } = await fh.read(block, 0, length, i * chunkSize);
  if (bytesRead !== length)
    throw new DeviceFaultError(
      file,
      `${file} ended at ${i * chunkSize + bytesRead} bytes while reading chunk ${i}; it shrank during the backup`,
    );
  return block;
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
