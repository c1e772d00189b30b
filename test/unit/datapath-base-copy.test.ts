/**
 * The base copy and the storage files on their own: bytes copied equal, progress reported only at
 * durable points, a copy resumed from its last report, a copy stopped by its signal; and the block
 * store's reads past the end and its zeroing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { copyBase } from '../../src/datapath/base-copy';
import { BlockStore } from '../../src/datapath/block-store';

const MiB = 1024 * 1024;
const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'kura-basecopy-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A source of `size` random bytes and an empty destination of the same size. */
function pair(size: number): { source: string; destination: string; bytes: Buffer } {
  const d = tmp();
  const bytes = randomBytes(size);
  const source = path.join(d, 'main.img');
  const destination = path.join(d, 'image.img');
  writeFileSync(source, bytes);
  writeFileSync(destination, '');
  truncateSync(destination, size);
  return { source, destination, bytes };
}

describe('the base copy', () => {
  it('copies every byte and reports progress every 8 MiB and at the end', async () => {
    const { source, destination, bytes } = pair(9 * MiB + 512);
    const reports: number[] = [];
    const done = await copyBase({
      source,
      destination,
      from: 0,
      signal: new AbortController().signal,
      bytesPerSecond: 0,
      onProgress: (copied) => Promise.resolve(void reports.push(copied)),
    });
    expect(done).toEqual({ bytes: 9 * MiB + 512 });
    expect(reports).toEqual([8 * MiB, 9 * MiB + 512]);
    expect(readFileSync(destination).equals(bytes)).toBe(true);
  });

  it('resumes from an offset without reading or writing the bytes before it', async () => {
    const { source, destination, bytes } = pair(3 * MiB);
    const reports: number[] = [];
    const done = await copyBase({
      source,
      destination,
      from: 2 * MiB,
      signal: new AbortController().signal,
      bytesPerSecond: 0,
      onProgress: (copied) => Promise.resolve(void reports.push(copied)),
    });
    expect([done.bytes, reports]).toEqual([3 * MiB, [3 * MiB]]);
    const image = readFileSync(destination);
    expect(image.subarray(0, 2 * MiB).every((b) => b === 0)).toBe(true);
    expect(image.subarray(2 * MiB).equals(bytes.subarray(2 * MiB))).toBe(true);
  });

  it('stops between chunks when its signal is aborted and resolves with the offset it reached', async () => {
    const { source, destination, bytes } = pair(10 * MiB);
    const stop = new AbortController();
    const reports: number[] = [];
    const done = await copyBase({
      source,
      destination,
      from: 0,
      signal: stop.signal,
      bytesPerSecond: 0,
      onProgress: (copied) => {
        reports.push(copied);
        stop.abort();
        return Promise.resolve();
      },
    });
    expect([done.bytes, reports]).toEqual([8 * MiB, [8 * MiB]]);
    expect(
      readFileSync(destination)
        .subarray(0, 8 * MiB)
        .equals(bytes.subarray(0, 8 * MiB)),
    ).toBe(true);

    const none = await copyBase({
      source,
      destination,
      from: 8 * MiB,
      signal: AbortSignal.abort(),
      bytesPerSecond: 0,
      onProgress: () => Promise.reject(new Error('no progress expected')),
    });
    expect(none).toEqual({ bytes: 8 * MiB });
  });

  it('keeps to its rate cap', async () => {
    const { source, destination } = pair(2 * MiB);
    const t0 = performance.now();
    await copyBase({
      source,
      destination,
      from: 0,
      signal: new AbortController().signal,
      bytesPerSecond: 8 * MiB,
      onProgress: () => Promise.resolve(),
    });
    // 2 MiB at 8 MiB/s: the second chunk is due at 250 ms.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(240);
  });
});

describe('the block store', () => {
  it('reads zeroes past the end of the file, and creates a file of the size asked', async () => {
    const d = tmp();
    const file = path.join(d, 'img');
    const s = await BlockStore.create(file, 8192);
    try {
      expect(s.sizeBytes).toBe(8192);
      await s.write(8190, Buffer.from('ab'));
      const got = await s.read(8188, 8);
      expect([...got]).toEqual([0, 0, 0x61, 0x62, 0, 0, 0, 0]);
    } finally {
      await s.close();
    }
    expect(readFileSync(file).length).toBe(8192);
  });

  it('zeroes a range larger than its zeroing buffer and leaves the bytes around it', async () => {
    const d = tmp();
    const file = path.join(d, 'vol');
    writeFileSync(file, Buffer.alloc(3 * MiB, 0xff));
    const s = await BlockStore.open(file);
    try {
      await s.writeZeroes(100, 2 * MiB + 7);
      await s.sync();
    } finally {
      await s.close();
    }
    const bytes = readFileSync(file);
    expect(bytes[99]).toBe(0xff);
    expect(bytes.subarray(100, 100 + 2 * MiB + 7).every((b) => b === 0)).toBe(true);
    expect(bytes[100 + 2 * MiB + 7]).toBe(0xff);
  });
});
