/**
 * The chunk store on its own: chunks addressed by SHA-256 and never written twice, compression only
 * where it pays, indexes written last, garbage collection that spares a running backup, and the
 * retention rules of prune.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/datamover/sha256';
import { selectRetained } from '../../src/domain/store';
import { ChunkStore } from '../../src/store/chunk-store';
import { ingestFile } from '../../src/store/ingest';
import { readBackup } from '../../src/store/read';
import { ChecksumMismatchError, NotFoundError } from '../../src/domain/errors';

const KiB = 1024;
const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'kura-store-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function volume(dir: string, bytes: Buffer): string {
  const f = path.join(dir, `vol-${randomBytes(3).toString('hex')}.img`);
  writeFileSync(f, bytes);
  return f;
}

const head = (backupId: string) => ({
  backupId,
  target: 'vm-01',
  array: 'array-01',
  volume: 'vm-01-data',
  chunkSize: 64 * KiB,
  dataTime: '2026-11-29T00:00:00.000Z',
});

describe('the chunk store', () => {
  it('lays chunks out as .chunks/ab/cd/<digest> and writes a chunk it holds never again', async () => {
    const dir = tmp();
    const store = new ChunkStore(path.join(dir, 'store'));
    const data = Buffer.concat([randomBytes(64 * KiB), randomBytes(64 * KiB)]);
    // The same 64 KiB twice more: four chunks, two distinct.
    const file = volume(dir, Buffer.concat([data, data]));
    const first = await ingestFile({ store, file, job: 'j1', index: head('vm-01@20261129T000000Z') });
    expect(first.newChunks).toBe(2);
    expect(first.index.chunks).toHaveLength(4);
    const digest = sha256Hex(data.subarray(0, 64 * KiB));
    expect(statSync(path.join(store.root, '.chunks', digest.slice(0, 2), digest.slice(2, 4), digest)).isFile()).toBe(
      true,
    );
    const second = await ingestFile({ store, file, job: 'j2', index: head('vm-01@20261129T010000Z') });
    expect(second.newChunks).toBe(0);
    expect(second.storedBytes).toBe(0);
    expect((await store.usage()).chunks).toBe(2);
  });

  it('compresses a chunk only when that saves a sixteenth, and reads either back exactly', async () => {
    const dir = tmp();
    const store = new ChunkStore(path.join(dir, 'store'));
    const text = Buffer.from('kura '.repeat((64 * KiB) / 5 + 1)).subarray(0, 64 * KiB);
    const noise = randomBytes(64 * KiB);
    const a = await store.put(sha256Hex(text), text);
    const b = await store.put(sha256Hex(noise), noise);
    expect(a.storedBytes).toBeLessThan(4 * KiB);
    expect(b.storedBytes).toBe(64 * KiB + 1);
    expect((await store.get(sha256Hex(text))).equals(text)).toBe(true);
    expect((await store.get(sha256Hex(noise))).equals(noise)).toBe(true);
  });

  it('refuses a damaged chunk with ChecksumMismatch and a missing one with NotFound', async () => {
    const dir = tmp();
    const store = new ChunkStore(path.join(dir, 'store'));
    const noise = randomBytes(4 * KiB);
    const d = sha256Hex(noise);
    await store.put(d, noise);
    const f = store.chunkPath(d);
    const bytes = readFileSync(f);
    bytes[100] = (bytes[100] ?? 0) ^ 0xff;
    writeFileSync(f, bytes);
    await expect(store.get(d)).rejects.toThrow(ChecksumMismatchError);
    await expect(store.get(d)).rejects.toThrow(/hashes to [0-9a-f]{64}, not to its name/);
    await expect(store.get('0'.repeat(64))).rejects.toThrow(NotFoundError);
  });

  it('refuses to write an index that names a chunk it lacks', async () => {
    const store = new ChunkStore(path.join(tmp(), 'store'));
    await expect(
      store.writeIndex({
        kind: 'kura-store-index',
        ...head('vm-01@20261129T000000Z'),
        sizeBytes: 1,
        sha256: null,
        chunks: ['a'.repeat(64)],
      }),
    ).rejects.toThrow(/names 1 chunk\(s\) the store .* lacks/);
    expect(await store.listIndexes()).toEqual([]);
  });

  it('takes a chunk from the other store when the chosen one has it damaged, and says so', async () => {
    const dir = tmp();
    const one = new ChunkStore(path.join(dir, 'one'));
    const two = new ChunkStore(path.join(dir, 'two'));
    const bytes = randomBytes(256 * KiB);
    const file = volume(dir, bytes);
    const id = 'vm-01@20261129T000000Z';
    const { index } = await ingestFile({ store: one, file, job: 'j', index: head(id) });
    for (const d of index.chunks) await two.putEncoded(d, await one.getEncoded(d));
    await two.writeIndex(index);
    const bad = index.chunks[2] as string;
    writeFileSync(one.chunkPath(bad), Buffer.concat([Buffer.of(0), randomBytes(64 * KiB)]));
    const out = path.join(dir, 'restored.img');
    const r = await readBackup({
      stores: [
        { name: 'primary', store: one },
        { name: 'copy', store: two },
      ],
      backupId: id,
      destination: { path: out, offset: 0 },
    });
    expect(readFileSync(out).equals(bytes)).toBe(true);
    expect(r.fallbacks).toEqual([
      { chunk: 2, digest: bad, from: 'copy', reason: expect.stringMatching(/^primary: chunk .* hashes to/) },
    ]);
  });
});

describe('garbage collection', () => {
  it('removes unreferenced chunks past the grace period and keeps every chunk an index names', async () => {
    const dir = tmp();
    const store = new ChunkStore(path.join(dir, 'store'));
    const keep = await ingestFile({
      store,
      file: volume(dir, randomBytes(128 * KiB)),
      job: 'a',
      index: head('vm-01@20261129T000000Z'),
    });
    const drop = await ingestFile({
      store,
      file: volume(dir, randomBytes(128 * KiB)),
      job: 'b',
      index: head('vm-01@20261129T010000Z'),
    });
    await store.removeIndex(drop.index.backupId);
    const r = await store.gc({ graceMs: 0 });
    expect(r).toMatchObject({ marked: 2, removed: 2, pending: 0 });
    expect(keep.index.chunks.every((d) => store.has(d))).toBe(true);
    expect(drop.index.chunks.some((d) => store.has(d))).toBe(false);
  });

  it('running in the middle of a backup deletes nothing that backup needs, even chunks it reused', async () => {
    const dir = tmp();
    const store = new ChunkStore(path.join(dir, 'store'));
    const old = randomBytes(256 * KiB);
    // An old backup whose chunks nothing references any more once it is pruned …
    const gone = await ingestFile({ store, file: volume(dir, old), job: 'old', index: head('vm-01@20261128T000000Z') });
    await store.removeIndex(gone.index.backupId);
    // … and a new backup of a volume sharing half of them: garbage collection runs (grace 0) after
    // its second chunk, before its index exists.
    const next = Buffer.concat([old.subarray(0, 128 * KiB), randomBytes(128 * KiB)]);
    let gc: Awaited<ReturnType<ChunkStore['gc']>> | undefined;
    const r = await ingestFile({
      store,
      file: volume(dir, next),
      job: 'new',
      index: head('vm-01@20261129T000000Z'),
      afterChunk: async (i) => {
        if (i === 1) gc = await store.gc({ graceMs: 0 });
      },
    });
    expect(gc?.removed).toBe(2);
    expect(r.index.chunks.every((d) => store.has(d))).toBe(true);
    const out = path.join(dir, 'restored.img');
    await readBackup({
      stores: [{ name: 'primary', store }],
      backupId: r.index.backupId,
      destination: { path: out, offset: 0 },
    });
    expect(readFileSync(out).equals(next)).toBe(true);
    expect(readdirSync(path.join(store.root, '.writers'))).toEqual([]);
  });
});

describe('retention', () => {
  const at = (iso: string) => ({ backupId: `t@${iso}`, dataTime: iso });
  const backups = [
    at('2026-11-29T02:00:00.000Z'),
    at('2026-11-29T01:00:00.000Z'),
    at('2026-11-28T02:00:00.000Z'),
    at('2026-11-21T02:00:00.000Z'),
    at('2026-10-31T02:00:00.000Z'),
    at('2026-09-30T02:00:00.000Z'),
  ];
  it('keeps the last N', () => {
    expect([...selectRetained(backups, { keepLast: 2, keepDaily: 0, keepWeekly: 0, keepMonthly: 0 })]).toEqual([
      't@2026-11-29T02:00:00.000Z',
      't@2026-11-29T01:00:00.000Z',
    ]);
  });
  it('keeps the newest of each of the last days, weeks and months', () => {
    const kept = selectRetained(backups, { keepLast: 0, keepDaily: 2, keepWeekly: 2, keepMonthly: 2 });
    expect([...kept].sort()).toEqual(
      [
        't@2026-11-29T02:00:00.000Z',
        't@2026-11-28T02:00:00.000Z',
        't@2026-11-21T02:00:00.000Z',
        't@2026-10-31T02:00:00.000Z',
      ].sort(),
    );
  });
});
