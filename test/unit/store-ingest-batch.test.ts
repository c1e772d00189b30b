/**
 * The store's ingest as it overlaps its work: chunk directories made durable once, before the
 * index names them; the whole-volume SHA-256 of a volume read in full (on a second thread past
 * 32 MiB); and the chunks a dirty bitmap's extents name.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { changedChunks } from '../../src/store/changed';
import { ChunkStore } from '../../src/store/chunk-store';
import { ingestFile } from '../../src/store/ingest';
import { VolumeHasher } from '../../src/store/volume-hash';

const KiB = 1024;
const MiB = 1024 * KiB;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tmp = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), 'kura-ingest-'));
  dirs.push(d);
  return d;
};
const head = (backupId: string, chunkSize: number) => ({
  backupId,
  target: 'vm-01',
  array: 'array-01',
  volume: 'vm-01-data',
  chunkSize,
  dataTime: '2026-11-29T00:00:00.000Z',
});
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('the ingest', () => {
  it('leaves no chunk directory unsynced once the index is written', async () => {
    const dir = tmp();
    const store = new ChunkStore(path.join(dir, 'store'));
    const file = path.join(dir, 'v.img');
    writeFileSync(file, randomBytes(512 * KiB));
    const synced: number[] = [];
    const flush = store.flushDirs.bind(store);
    store.flushDirs = async () => {
      const n = await flush();
      synced.push(n);
      return n;
    };
    const r = await ingestFile({ store, file, job: 'j', index: head('vm-01@20261129T000000Z', 64 * KiB) });
    expect(r.newChunks).toBe(8);
    // One flush, before the index: the eight chunk directories and the directories made for them.
    expect(synced.length).toBe(1);
    expect(synced[0]).toBeGreaterThanOrEqual(8);
    expect(await store.flushDirs()).toBe(0);
    expect(r.index.chunks.every((d) => store.has(d))).toBe(true);
  });

  it('records the whole-volume SHA-256 of a 40 MiB volume read in full (past the size hashed on a second thread)', async () => {
    const dir = tmp();
    const store = new ChunkStore(path.join(dir, 'store'));
    const file = path.join(dir, 'v.img');
    const bytes = randomBytes(40 * MiB + 123);
    writeFileSync(file, bytes);
    const r = await ingestFile({ store, file, job: 'j', index: head('vm-01@20261129T000000Z', 4 * MiB) });
    expect(r).toMatchObject({ readChunks: 11, readBytes: bytes.length });
    expect(r.index.sha256).toBe(sha(bytes));
  });

  it('reuses the few buffers it shares with the hashing thread, and every chunk it stores holds its own bytes', async () => {
    // The thread keeps every buffer it was sent until its own rare garbage collection: a buffer per
    // chunk held the whole volume in memory until the ingest ended.
    const dir = tmp();
    const store = new ChunkStore(path.join(dir, 'store'));
    const file = path.join(dir, 'v.img');
    const bytes = randomBytes(40 * MiB);
    writeFileSync(file, bytes);
    const block = VolumeHasher.prototype.block;
    const shared = new Set<ArrayBufferLike>();
    const spy = vi.spyOn(VolumeHasher.prototype, 'block').mockImplementation(function (this: VolumeHasher, n) {
      const b = block.call(this, n);
      shared.add(b.buffer);
      return b;
    });
    try {
      const r = await ingestFile({ store, file, job: 'j', index: head('vm-01@20261129T000000Z', 256 * KiB) });
      expect(r).toMatchObject({ readChunks: 160, newChunks: 160 });
      expect(r.index.sha256).toBe(sha(bytes));
      for (const [i, d] of r.index.chunks.entries()) {
        expect(d).toBe(sha(bytes.subarray(i * 256 * KiB, (i + 1) * 256 * KiB)));
        expect((await store.get(d)).equals(bytes.subarray(i * 256 * KiB, (i + 1) * 256 * KiB))).toBe(true);
      }
      // The read ahead, the hashes queued on the thread and the writes in flight, not 160 chunks.
      expect(spy).toHaveBeenCalledTimes(160);
      expect(shared.size).toBeLessThanOrEqual(16);
    } finally {
      spy.mockRestore();
    }
  });

  it('reads only the chunks marked changed, and then records no whole-volume SHA-256', async () => {
    const dir = tmp();
    const store = new ChunkStore(path.join(dir, 'store'));
    const file = path.join(dir, 'v.img');
    const bytes = randomBytes(256 * KiB);
    writeFileSync(file, bytes);
    const first = await ingestFile({ store, file, job: 'a', index: head('vm-01@20261128T000000Z', 64 * KiB) });
    expect(first.index.sha256).toBe(sha(bytes));
    randomBytes(64 * KiB).copy(bytes, 128 * KiB);
    writeFileSync(file, bytes);
    const second = await ingestFile({
      store,
      file,
      job: 'b',
      index: head('vm-01@20261129T000000Z', 64 * KiB),
      previous: { index: first.index, changed: (c) => c === 2 },
    });
    expect(second).toMatchObject({ readChunks: 1, readBytes: 64 * KiB, newChunks: 1 });
    expect(second.index.sha256).toBeNull();
    expect(second.index.chunks).toEqual([
      ...first.index.chunks.slice(0, 2),
      sha(bytes.subarray(128 * KiB, 192 * KiB)),
      first.index.chunks[3],
    ]);
  });
});

describe('changed chunks from dirty extents', () => {
  it('names every chunk an extent touches, across borders, and none past the end', () => {
    const c = 64 * KiB;
    const set = changedChunks(
      [
        { offset: 0, length: 4 * KiB },
        { offset: 10 * c + 512, length: 1024 },
        { offset: 21 * c - 2048, length: 4096 },
        { offset: 30 * c, length: 8 * c },
        { offset: 5 * c, length: 0 },
      ],
      c,
      32 * c,
    );
    expect([...set].sort((a, b) => a - b)).toEqual([0, 10, 20, 21, 30, 31]);
  });
});
