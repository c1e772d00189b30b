/**
 * How a chunk lies on disk: one tag byte (raw or brotli) before its bytes. Brotli at quality 1 is
 * used only where it pays — when it saves at least one sixteenth of the chunk — so incompressible
 * data (encrypted or already compressed volumes) costs nothing to read back (docs/adr/033).
 */
import { promisify } from 'node:util';
import { brotliCompress, brotliCompressSync, brotliDecompressSync, constants, type BrotliOptions } from 'node:zlib';
import { ChecksumMismatchError } from '../domain/errors';

const RAW = 0;
const BROTLI = 1;
const compressAsync = promisify<Buffer, BrotliOptions, Buffer>(brotliCompress);

const options = (raw: Buffer): BrotliOptions => ({
  params: {
    [constants.BROTLI_PARAM_QUALITY]: 1,
    [constants.BROTLI_PARAM_SIZE_HINT]: raw.length,
    [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_GENERIC,
  },
});

/** The tagged form: compressed when that saves a sixteenth or more, else raw. */
function tagged(raw: Buffer, packed: Buffer): Buffer {
  if (packed.length <= raw.length - raw.length / 16) return Buffer.concat([Buffer.of(BROTLI), packed]);
  return Buffer.concat([Buffer.of(RAW), raw]);
}

/** A chunk as it is written to disk: tagged, compressed when that saves a sixteenth or more. */
export function encodeChunk(raw: Buffer): Buffer {
  return tagged(raw, brotliCompressSync(raw, options(raw)));
}

/**
 * The same encoding as {@link encodeChunk}, compressed on libuv's thread pool: the ingest hashes
 * the next chunk on the main thread meanwhile, so both cores work.
 */
export async function encodeChunkAsync(raw: Buffer): Promise<Buffer> {
  // One output buffer for the whole chunk: the default 16 KiB would cost a trip to the pool per 16 KiB.
  return tagged(raw, await compressAsync(raw, { ...options(raw), chunkSize: raw.length + 64 * 1024 }));
}

/** The chunk's own bytes from what lies on disk; `name` says which file in an error. */
export function decodeChunk(stored: Buffer, name: string): Buffer {
  const tag = stored[0];
  if (tag === RAW) return stored.subarray(1);
  if (tag === BROTLI) {
    try {
      return brotliDecompressSync(stored.subarray(1));
    } catch (err) {
      throw new ChecksumMismatchError(`chunk ${name} does not decompress (${(err as Error).message}); it is damaged`, {
        chunk: name,
      });
    }
  }
  throw new ChecksumMismatchError(`chunk ${name} starts with an unknown tag ${String(tag)}; it is damaged`, {
    chunk: name,
  });
}
