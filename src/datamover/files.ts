/**
 * Whole files through the data mover: a file's SHA-256, and copies of volume and image files
 * that resume in place or appear atomically.
 */
import { mkdir, open, rename, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { fileRange } from './file-range';
import { moveBytes, type MoveProgressFn } from './mover';

export interface Sha256FileOptions {
  onProgress?: MoveProgressFn;
  signal?: AbortSignal;
}

/** SHA-256 (hex) of a whole file: the one way Kura hashes a file. */
export async function sha256File(file: string, opts: Sha256FileOptions = {}): Promise<string> {
  const fh = await open(file, 'r');
  try {
    const { size } = await fh.stat();
    const { sha256 } = await moveBytes({
      source: fileRange(fh, 0, { name: file }),
      length: size,
      onProgress: opts.onProgress,
      signal: opts.signal,
    });
    return sha256;
  } finally {
    await fh.close();
  }
}

export interface CopyFileOptions {
  onProgress?: MoveProgressFn;
  /** Bytes of `dest` already written by an earlier attempt; copying continues after them. */
  resumeBytes?: number;
  /** Bytes per second; unlimited when omitted. */
  rateBytesPerSec?: number;
  signal?: AbortSignal;
}

/**
 * Copies `src` to `dest` (created, or continued in place after `resumeBytes`) and returns the
 * whole file's size and SHA-256 (resumed bytes are read back from `dest` for it) and the bytes
 * copied by this call. `dest` is synced before returning.
 */
export async function copyFile(
  src: string,
  dest: string,
  opts: CopyFileOptions = {},
): Promise<{ sizeBytes: number; copied: number; sha256: string }> {
  const total = (await stat(src)).size;
  await mkdir(path.dirname(dest), { recursive: true });
  const have = await stat(dest).then(
    (s) => s.size,
    () => 0,
  );
  const from = Math.min(opts.resumeBytes ?? 0, have, total);
  const input = await open(src, 'r');
  try {
    const output = await open(dest, from > 0 ? 'r+' : 'w');
    try {
      await output.truncate(from);
      const r = await moveBytes({
        source: fileRange(input, 0, { name: src }),
        sink: fileRange(output, 0, { name: dest }),
        length: total,
        from,
        onProgress: opts.onProgress,
        rateBytesPerSec: opts.rateBytesPerSec,
        signal: opts.signal,
      });
      await output.sync();
      return { sizeBytes: total, copied: r.moved, sha256: r.sha256 };
    } finally {
      await output.close();
    }
  } finally {
    await input.close();
  }
}

/**
 * Copies `src` to a temporary name beside `dest`, then renames it into place, so `dest` is never
 * partial; returns its size and SHA-256.
 */
export async function copyFileAtomic(
  src: string,
  dest: string,
  opts: Omit<CopyFileOptions, 'resumeBytes'> = {},
): Promise<{ sizeBytes: number; sha256: string }> {
  const tmp = `${dest}.partial-${process.pid}`;
  const { sizeBytes, sha256 } = await copyFile(src, tmp, opts);
  await rename(tmp, dest);
  return { sizeBytes, sha256 };
}
