/**
 * The base copy of an online backup (S201–S202): frozen main storage copied to the image, paced,
 * with progress reported only once the bytes behind it are durable, and resumable from there. It
 * is one function with a data mover's signature on purpose, so a shared mover can take its place.
 */
import { open } from 'node:fs/promises';
import { pace } from './sync';

const COPY_CHUNK = 1024 * 1024;
/** Progress is made durable (and reported) every PROGRESS_EVERY bytes, and at the end. */
const PROGRESS_EVERY = 8 * 1024 * 1024;

export interface BaseCopyRequest {
  /** Frozen main storage: the volume file, nobody writes it during the copy. */
  source: string;
  /** The image, already created with the source's size. */
  destination: string;
  /** Where to resume: the last progress reported (0 for a new copy). Bytes before it are not read again. */
  from: number;
  /** Awaited each time the destination durably holds the source up to `copied` bytes. */
  onProgress: (copied: number) => Promise<void>;
  /** Stops the copy between two chunks; it then resolves with the bytes it reached. */
  signal: AbortSignal;
  /** Cap on the copy's rate in bytes/s (0: as fast as the disks go). */
  bytesPerSecond: number;
}

/**
 * Copies `source` to `destination` from byte `from` to the source's end. Resolves with `bytes`,
 * the offset the copy reached: the source's size when complete, less when stopped by `signal`.
 * Bytes past the last `onProgress` may not be durable yet.
 */
export async function copyBase(req: BaseCopyRequest): Promise<{ bytes: number }> {
  const src = await open(req.source, 'r');
  try {
    const dst = await open(req.destination, 'r+');
    try {
      const size = (await src.stat()).size;
      const buf = Buffer.alloc(COPY_CHUNK);
      const t0 = Date.now();
      let offset = req.from;
      let sinceSync = 0;
      while (offset < size && !req.signal.aborted) {
        const n = Math.min(COPY_CHUNK, size - offset);
        const { bytesRead } = await src.read(buf, 0, n, offset);
        await dst.write(buf, 0, bytesRead, offset);
        offset += bytesRead;
        sinceSync += bytesRead;
        if (sinceSync >= PROGRESS_EVERY || offset >= size) {
          // Reported only once durable, so a copy resumed from the report never skips a byte.
          await dst.datasync();
          await req.onProgress(offset);
          sinceSync = 0;
        }
        await pace(req.bytesPerSecond, offset - req.from, t0);
      }
      return { bytes: offset };
    } finally {
      await dst.close();
    }
  } finally {
    await src.close();
  }
}
