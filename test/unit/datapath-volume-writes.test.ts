/**
 * Host writes in flight together on one volume: writes of one block keep the order they were
 * issued in, writes of other blocks do not wait for them — during an online backup they share one
 * fdatasync of the journal, while a later write of a block waits for the one before it — and the bytes read back, and reflected to main storage, are the last
 * ones written.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Volume } from '../../src/datapath/volume';
import { DatapathConfigSchema } from '../../src/domain/inventory';

const B = 4096;
const SIZE = 16 * B;
const dirs: string[] = [];

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function volume(settings: object = {}): Promise<{ v: Volume; mainFile: string; dir: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'kura-volume-writes-'));
  dirs.push(dir);
  const mainFile = path.join(dir, 'main.img');
  writeFileSync(mainFile, Buffer.alloc(SIZE, 0xaa));
  const v = await Volume.open({
    name: 'array-01/vol',
    mainFile,
    stateDir: path.join(dir, 'state'),
    settings: DatapathConfigSchema.parse(settings),
  });
  return { v, mainFile, dir };
}

/** Writes issued in one turn: three over block 2, one split across blocks 5 and 6, the rest one block each. */
function issue(v: Volume, model: Buffer): Promise<void>[] {
  const out: Promise<void>[] = [];
  const write = (at: number, length: number, fill: number, pieces = 1) => {
    const data = Buffer.alloc(length, fill);
    const step = Math.ceil(length / pieces);
    const parts = Array.from({ length: pieces }, (_, i) => data.subarray(i * step, (i + 1) * step));
    out.push(v.write(at, pieces === 1 ? data : parts, false));
    data.copy(model, at);
  };
  write(2 * B, B, 0x21);
  for (const b of [0, 7, 9, 12]) write(b * B, B, 0x40 + b);
  write(2 * B + 100, 50, 0x22);
  write(5 * B + 2000, B, 0x56, 3);
  write(2 * B + 120, 10, 0x23);
  return out;
}

describe('writes in flight together', () => {
  it('keeps the order of writes of one block and the bytes of every write, in passthrough', async () => {
    const { v, mainFile } = await volume();
    const model = Buffer.alloc(SIZE, 0xaa);
    await Promise.all(issue(v, model));
    expect((await v.read(0, SIZE)).equals(model)).toBe(true);
    await v.close();
    expect(readFileSync(mainFile).equals(model)).toBe(true);
  });

  it('during an online backup, journals the independent ones with one fdatasync, reads them back, and reflects them to main storage', async () => {
    // Every record durable before its ack: the mode in which writes that arrive together share one fdatasync.
    const { v, mainFile, dir } = await volume({ journalSync: 'every-write' });
    await v.enterBackup('b1', path.join(dir, 'image.img'));
    const fh = (v as unknown as { journal: { fh: { datasync: () => Promise<void> } } }).journal.fh;
    let syncs = 0;
    const datasync = fh.datasync.bind(fh);
    fh.datasync = () => (syncs++, datasync());
    const model = Buffer.alloc(SIZE, 0xaa);
    const writes = issue(v, model);
    await Promise.all(writes);
    // The first write of block 2 and every independent one shared one fdatasync; each later write of
    // block 2 waited for the one before it to be durable and applied, and went alone.
    expect(syncs).toBe(3);
    expect(v.status().journalEntries).toBe(writes.length);
    expect((await v.read(0, SIZE)).equals(model)).toBe(true);
    expect(readFileSync(mainFile).equals(Buffer.alloc(SIZE, 0xaa))).toBe(true);
    await v.abort('b1');
    await v.close();
    expect(readFileSync(mainFile).equals(model)).toBe(true);
  });

  it('during an online backup, by default, syncs the journal only on FLUSH and for a FUA write, never for a plain write', async () => {
    const { v, mainFile, dir } = await volume();
    await v.enterBackup('b1', path.join(dir, 'image.img'));
    const journal = (v as unknown as { journal: { fh: { datasync: () => Promise<void> }; entries: number } }).journal;
    const fh = journal.fh;
    // The records in the file at each fdatasync: what it makes durable.
    const at: number[] = [];
    const datasync = fh.datasync.bind(fh);
    fh.datasync = () => (at.push(journal.entries), datasync());
    const model = Buffer.alloc(SIZE, 0xaa);
    const writes = issue(v, model);
    await Promise.all(writes);
    expect(at).toEqual([]);
    expect(v.status().journalEntries).toBe(writes.length);
    expect((await v.read(0, SIZE)).equals(model)).toBe(true);
    await v.flush();
    expect(at).toEqual([writes.length]);
    await v.write(15 * B, Buffer.alloc(B, 0x77), true);
    Buffer.alloc(B, 0x77).copy(model, 15 * B);
    expect(at).toEqual([writes.length, writes.length + 1]);
    // Two FLUSHes while a third is in progress share one more fdatasync, after it.
    await Promise.all([v.flush(), v.flush(), v.flush()]);
    expect(at).toEqual([writes.length, writes.length + 1, writes.length + 1, writes.length + 1]);
    expect((await v.read(0, SIZE)).equals(model)).toBe(true);
    expect(readFileSync(mainFile).equals(Buffer.alloc(SIZE, 0xaa))).toBe(true);
    await v.abort('b1');
    await v.close();
    expect(readFileSync(mainFile).equals(model)).toBe(true);
  });

  it('in passthrough, does a small write at once unless an earlier write of its blocks is still in flight', async () => {
    const { v, mainFile } = await volume();
    // Through `write`, it holds its blocks until its promise has settled: in flight past this turn.
    const big = Buffer.alloc(SIZE, 0x11);
    const first = v.write(0, big, false);
    const small = [Buffer.alloc(100, 0x22), Buffer.alloc(28, 0x23)];
    // Block 3 overlaps the big write in flight: not done at once, and nothing written.
    expect(v.writeNow(3 * B + 10, small, 128, false)).toBe(false);
    const later = v.write(3 * B + 10, small, false);
    await Promise.all([first, later]);
    const model = Buffer.alloc(SIZE, 0x11);
    Buffer.concat(small).copy(model, 3 * B + 10);
    expect((await v.read(0, SIZE)).equals(model)).toBe(true);
    // Nothing in flight now: done before writeNow returns, in main storage already.
    expect(v.writeNow(5 * B, small, 128, false)).toBe(true);
    Buffer.concat(small).copy(model, 5 * B);
    expect(readFileSync(mainFile).equals(model)).toBe(true);
    // FUA asks for an fdatasync, which is not done on the spot.
    expect(v.writeNow(6 * B, small, 128, true)).toBe(false);
    await v.close();
  });

  it('during an online backup with every write made durable before its ack, does no write at once: each goes through the journal and the snapshot', async () => {
    const { v, mainFile, dir } = await volume({ journalSync: 'every-write' });
    await v.enterBackup('b1', path.join(dir, 'image.img'));
    const small = [Buffer.alloc(B, 0x33)];
    expect(v.writeNow(0, small, B, false)).toBe(false);
    await v.write(0, small, false);
    const out = Buffer.alloc(B);
    await v.readInto(out, 0);
    expect(out.equals(small[0]!)).toBe(true);
    expect(readFileSync(mainFile).subarray(0, B).equals(Buffer.alloc(B, 0xaa))).toBe(true);
    await v.abort('b1');
    expect(v.readNow(out.fill(0), 0)).toBe(true);
    expect(out.equals(small[0]!)).toBe(true);
    await v.close();
  });

  it('during an online backup, journals a small write at once and reads from the snapshot at once, unless a write of those blocks is still in flight', async () => {
    const { v, mainFile, dir } = await volume();
    await v.enterBackup('b1', path.join(dir, 'image.img'));
    const model = Buffer.alloc(SIZE, 0xaa);
    // Unaligned and in two pieces: the block's edges come from frozen main storage.
    const small = [Buffer.alloc(100, 0x33), Buffer.alloc(28, 0x34)];
    expect(v.writeNow(B + 10, small, 128, false)).toBe(true);
    Buffer.concat(small).copy(model, B + 10);
    expect(v.status().journalEntries).toBe(1);
    const out = Buffer.alloc(3 * B);
    expect(v.readNow(out, 0)).toBe(true);
    expect(out.equals(model.subarray(0, 3 * B))).toBe(true);
    // Main storage stays frozen; the journal holds the record (replayed after a restart).
    expect(readFileSync(mainFile).equals(Buffer.alloc(SIZE, 0xaa))).toBe(true);
    // A FUA write waits for its fdatasync (held here until released): in flight, its block is
    // neither written at once nor, once the write is being applied, read at once.
    const fh = (v as unknown as { journal: { fh: { datasync: () => Promise<void> } } }).journal.fh;
    const datasync = fh.datasync.bind(fh);
    let release!: () => void;
    const syncing = new Promise<void>((r) => (fh.datasync = () => (r(), new Promise<void>((go) => (release = go)))));
    const fua = v.write(4 * B, Buffer.alloc(B, 0x44), true);
    Buffer.alloc(B, 0x44).copy(model, 4 * B);
    expect(v.writeNow(4 * B, [Buffer.alloc(B, 0x45)], B, false)).toBe(false);
    await syncing;
    expect(v.readNow(Buffer.alloc(B), 4 * B)).toBe(false);
    // Other blocks are not held up by it.
    expect(v.readNow(out.subarray(0, B), B)).toBe(true);
    expect(out.subarray(0, B).equals(model.subarray(B, 2 * B))).toBe(true);
    fh.datasync = datasync;
    release();
    await fua;
    expect(v.readNow(out.subarray(0, B), 4 * B)).toBe(true);
    expect(out.subarray(0, B).equals(model.subarray(4 * B, 5 * B))).toBe(true);
    expect((await v.read(0, SIZE)).equals(model)).toBe(true);
    await v.close();

    // Reopened as after a restart: the journal gives both writes back.
    const again = await Volume.open({
      name: 'array-01/vol',
      mainFile,
      stateDir: path.join(dir, 'state'),
      settings: DatapathConfigSchema.parse({}),
    });
    expect(again.status()).toMatchObject({ mode: 'backup', replayedEntries: 2 });
    expect((await again.read(0, SIZE)).equals(model)).toBe(true);
    await again.abort('b1');
    await again.close();
    expect(readFileSync(mainFile).equals(model)).toBe(true);
  });
});
