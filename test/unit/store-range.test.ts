/**
 * A store backup read by range, as the copy to tape reads it (docs/adr/042): any range equals the
 * volume's bytes across chunk boundaries; a chunk lost in the first store comes from the copy; a
 * chunk lost in both, or an index that is not the one catalogued, is refused with a typed error.
 */
import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ChecksumMismatchError, NotFoundError } from '../../src/domain/errors';
import { ChunkStore } from '../../src/store/chunk-store';
import { indexDigest, ingestFile } from '../../src/store/ingest';
import { openStoreBackup } from '../../src/store/range';

const KiB = 1024;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A store holding one backup of `bytes` in 64 KiB chunks, and a synced copy of it. */
async function storedBackup(bytes: Buffer) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kura-range-'));
  dirs.push(dir);
  const file = path.join(dir, 'vol.img');
  writeFileSync(file, bytes);
  const primary = new ChunkStore(path.join(dir, 'primary'));
  const backupId = 'vm-01@20261129T000000Z';
  const { index } = await ingestFile({
    store: primary,
    file,
    job: 'j1',
    index: {
      backupId,
      target: 'vm-01',
      array: 'array-01',
      volume: 'vm-01-data',
      chunkSize: 64 * KiB,
      dataTime: '2026-11-29T00:00:00.000Z',
    },
  });
  cpSync(primary.root, path.join(dir, 'copy'), { recursive: true });
  const copy = new ChunkStore(path.join(dir, 'copy'));
  const stores = [
    { name: 'primary' as const, store: primary },
    { name: 'copy' as const, store: copy },
  ];
  return { primary, copy, stores, backupId, index, digest: indexDigest(index) };
}

async function read(src: Awaited<ReturnType<typeof openStoreBackup>>, start: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  await src.range(start).read(buf, 0);
  return buf;
}

describe('a store backup read by range', () => {
  it('gives the volume bytes of any range, across chunk boundaries and with reads in flight at once', async () => {
    const bytes = randomBytes(5 * 64 * KiB + 1000);
    const b = await storedBackup(bytes);
    const src = await openStoreBackup({ stores: b.stores, backupId: b.backupId, indexDigest: b.digest });
    expect(src.indexFrom).toBe('primary');
    expect(await read(src, 0, bytes.length)).toEqual(bytes);
    expect(await read(src, 64 * KiB - 10, 20)).toEqual(bytes.subarray(64 * KiB - 10, 64 * KiB + 10));
    const parts = await Promise.all([0, 1, 2, 3, 4].map((i) => read(src, 100 + i * 60 * KiB, 50 * KiB)));
    parts.forEach((p, i) => expect(p).toEqual(bytes.subarray(100 + i * 60 * KiB, 100 + i * 60 * KiB + 50 * KiB)));
    // Positions are relative to the range's start, as the data mover reads a piece.
    const piece = Buffer.alloc(1000);
    await src.range(3 * 64 * KiB).read(piece, 64 * KiB);
    expect(piece).toEqual(bytes.subarray(4 * 64 * KiB, 4 * 64 * KiB + 1000));
  });

  it('reads a chunk lost in the first store from the copy, and refuses one lost in both, naming it', async () => {
    const bytes = randomBytes(3 * 64 * KiB);
    const b = await storedBackup(bytes);
    const lost = b.index.chunks[1]!;
    rmSync(b.primary.chunkPath(lost));
    const src = await openStoreBackup({ stores: b.stores, backupId: b.backupId, indexDigest: b.digest });
    expect(await read(src, 0, bytes.length)).toEqual(bytes);

    rmSync(b.copy.chunkPath(lost));
    const again = await openStoreBackup({ stores: b.stores, backupId: b.backupId, indexDigest: b.digest });
    const err = await read(again, 64 * KiB, 10).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChecksumMismatchError);
    expect((err as Error).message).toMatch(
      new RegExp(
        `^chunk 1 \\(${lost}\\) of ${b.backupId} cannot be read intact from any store \\(primary: .*; copy: .*\\)`,
      ),
    );
  });

  it('refuses an index that is not the one the catalog recorded, and a range past the end', async () => {
    const b = await storedBackup(randomBytes(2 * 64 * KiB));
    const err = await openStoreBackup({ stores: b.stores, backupId: b.backupId, indexDigest: 'ab'.repeat(32) }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toMatch(
      new RegExp(
        `^no store holds the index of ${b.backupId} that the catalog recorded \\(primary: its index digests to ${b.digest}, not to the ${'ab'.repeat(32)} the catalog recorded; copy: .*\\); the store backup cannot be copied to tape`,
      ),
    );
    const src = await openStoreBackup({ stores: b.stores, backupId: b.backupId, indexDigest: b.digest });
    await expect(read(src, 2 * 64 * KiB - 5, 10)).rejects.toThrow(/lie past the end of store backup/);
  });
});
