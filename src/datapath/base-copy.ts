/**
 * The base copy of an online backup (S201–S202): frozen main storage copied to the image by the
 * data mover, paced, with progress reported only once the bytes behind it are durable, and
 * resumable from there.
 */
import { open } from 'node:fs/promises';
import { fileRange } from '../datamover/file-range';
import { moveBytes } from '../datamover/mover';

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
  /** Stops the copy between two blocks; it then resolves with the bytes last made durable. */
  signal: AbortSignal;
  /** Cap on the copy's rate in bytes/s (0: as fast as the disks go). */
  bytesPerSecond: number;
}

/**
 * Copies `source` to `destination` from byte `from` to the source's end, through the data mover
 * (no checksum: the image is hashed when it is recorded). Resolves with `bytes`: the source's size
 * when complete, or the last durable offset when stopped by `signal`, from which a later copy resumes.
 */
export async function copyBase(req: BaseCopyRequest): Promise<{ bytes: number }> {
  const src = await open(req.source, 'r');
  try {
    const dst = await open(req.destination, 'r+');
    try {
      const size = (await src.stat()).size;
      let durable = req.from;
      try {
        await moveBytes({
          source: fileRange(src, 0, { name: req.source }),
          sink: fileRange(dst, 0, { name: req.destination }),
          length: size,
          from: req.from,
          hash: false,
          progressBytes: PROGRESS_EVERY,
          // Reported only once durable, so a copy resumed from the report never skips a byte.
          onDurable: async (bytes) => {
            durable = bytes;
            await req.onProgress(bytes);
          },
          rateBytesPerSec: req.bytesPerSecond,
          signal: req.signal,
        });
        return { bytes: size };
      } catch (err) {
        if (req.signal.aborted) return { bytes: durable };
        throw err;
      }
    } finally {
      await dst.close();
    }
  } finally {
    await src.close();
  }
}
