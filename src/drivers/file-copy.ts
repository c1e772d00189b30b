/**
 * Copying whole volume and image files with progress, an optional rate limit and resumption, and
 * hashing them: the byte-moving part of image backups, volume creation and rebuilds. It sits with the
 * drivers, which use it, so no driver reaches up into the image store.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, stat } from 'node:fs/promises';
import * as path from 'node:path';
import type { ProgressFn } from './types';

const CHUNK = 1024 * 1024;

export interface CopyOptions {
  onProgress?: ProgressFn;
  /** Bytes of `dest` already written by an earlier attempt; copying continues after them. */
  resumeBytes?: number;
  /** Bytes per second; unlimited when omitted. */
  rateBytesPerSec?: number;
  signal?: AbortSignal;
}

/**
 * Copies `src` to `dest` (created or continued in place) and returns the bytes copied by this
 * call and the whole file's size. `dest` is synced before returning.
 */
export async function copyFileRange(
  src: string,
  dest: string,
  opts: CopyOptions = {},
): Promise<{ sizeBytes: number; copied: number }> {
  const total = (await stat(src)).size;
  await mkdir(path.dirname(dest), { recursive: true });
  const have = await stat(dest).then(
    (s) => s.size,
    () => 0,
  );
  const from = Math.min(opts.resumeBytes ?? 0, have, total);
  const input = await open(src, 'r');
  const output = await open(dest, from > 0 ? 'r+' : 'w');
  const t0 = Date.now();
  let copied = 0;
  try {
    await output.truncate(Math.max(from, 0));
    const buf = Buffer.alloc(CHUNK);
    for (let at = from; at < total;) {
      opts.signal?.throwIfAborted();
      const { bytesRead } = await input.read(buf, 0, Math.min(CHUNK, total - at), at);
      if (bytesRead === 0) break;
      await output.write(buf, 0, bytesRead, at);
      at += bytesRead;
      copied += bytesRead;
      opts.onProgress?.({ bytes: at, total });
      if (opts.rateBytesPerSec) {
        const due = t0 + (copied / opts.rateBytesPerSec) * 1000;
        const wait = due - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
    }
    await output.sync();
  } finally {
    await input.close();
    await output.close();
  }
  return { sizeBytes: total, copied };
}

/** Copies `src` to a temporary name beside `dest`, then renames it into place, so `dest` is never partial. */
export async function copyFileAtomic(
  src: string,
  dest: string,
  opts: Omit<CopyOptions, 'resumeBytes'> = {},
): Promise<{ sizeBytes: number; sha256: string }> {
  const tmp = `${dest}.partial-${process.pid}`;
  const { sizeBytes } = await copyFileRange(src, tmp, opts);
  const sha256 = await sha256Of(tmp);
  await rename(tmp, dest);
  return { sizeBytes, sha256 };
}

/** SHA-256 (hex) of a whole file. */
export async function sha256Of(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: CHUNK })) h.update(chunk as Buffer);
  return h.digest('hex');
}
