/**
 * The snapshot map without storage: what a write records block by block, what a read takes from
 * the map and what from beneath it, and which blocks remain to be reflected to main storage.
 */
import { describe, expect, it } from 'vitest';
import { JournalKind } from '../../src/datapath/journal';
import { BLOCK_BYTES, SnapshotMap, blocksOf } from '../../src/datapath/snapshot-map';
import { seededRandom } from '../../src/domain/seeded-random';

const B = BLOCK_BYTES;

/** A base (what lies under the snapshot) filled with one byte, recording each range read. */
function base(fill: number) {
  const reads: [number, number][] = [];
  const read = (offset: number, length: number) => {
    reads.push([offset, length]);
    return Promise.resolve(Buffer.alloc(length, fill));
  };
  return { read, reads };
}

function write(seq: number, offset: number, data: Buffer) {
  return { seq, kind: JournalKind.Write, offset, length: data.length, data };
}

describe('blocksOf', () => {
  it('names every 4 KiB block a byte range touches, and none for an empty range', () => {
    expect(blocksOf(B - 1, 2)).toEqual([0, 1]);
    expect(blocksOf(2 * B, B)).toEqual([2]);
    expect(blocksOf(100, 0)).toEqual([]);
  });
});

describe('recording writes', () => {
  it('completes a partial block from beneath, so a read shows the write over the bytes it did not cover', async () => {
    const map = new SnapshotMap(4 * B);
    const under = base(0xaa);
    await map.apply(write(1, B + 100, Buffer.from('abc')), under.read);
    expect(under.reads).toEqual([[B, B]]);

    const got = await map.read(B, B, base(0xee).read);
    expect(got.subarray(0, 100).every((b) => b === 0xaa)).toBe(true);
    expect(got.subarray(100, 103).toString()).toBe('abc');
    expect(got.subarray(103).every((b) => b === 0xaa)).toBe(true);
  });

  it('completes a second partial write of a block from the map, not from beneath', async () => {
    const map = new SnapshotMap(4 * B);
    await map.apply(write(1, 0, Buffer.from('xy')), base(0).read);
    const under = base(0xaa);
    await map.apply(write(2, 2, Buffer.from('z')), under.read);
    expect(under.reads).toEqual([]);
    expect((await map.read(0, 4, base(0xee).read)).toString('latin1')).toBe('xyz\0');
  });

  it('zeroes the range of a WRITE_ZEROES and keeps the rest of the block', async () => {
    const map = new SnapshotMap(4 * B);
    await map.apply({ seq: 1, kind: JournalKind.Zeroes, offset: 10, length: 20, data: null }, base(0x11).read);
    const got = await map.read(0, B, base(0xee).read);
    expect([got[9], got[10], got[29], got[30]]).toEqual([0x11, 0, 0, 0x11]);
  });
});

describe('looking blocks up', () => {
  it('reads the blocks the map does not hold from beneath, one read per run', async () => {
    const map = new SnapshotMap(8 * B);
    await map.apply(write(1, 2 * B, Buffer.alloc(B, 0x22)), base(0).read);
    const under = base(0x01);
    const got = await map.read(B / 2, 4 * B, under.read);
    expect(under.reads).toEqual([
      [B / 2, 2 * B - B / 2],
      [3 * B, B + B / 2],
    ]);
    expect(got.subarray(0, 2 * B - B / 2).every((b) => b === 0x01)).toBe(true);
    expect(got.subarray(2 * B - B / 2, 3 * B - B / 2).every((b) => b === 0x22)).toBe(true);
    expect(got.subarray(3 * B - B / 2).every((b) => b === 0x01)).toBe(true);
  });

  it('makes a read of a block wait until the journaled write holding it is applied (S404)', async () => {
    const map = new SnapshotMap(2 * B);
    const applied = map.hold([1]);
    let done = false;
    const reading = map.read(B, 4, base(0x01).read).then((buf) => {
      done = true;
      return buf;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(false);
    await map.apply(write(1, B, Buffer.from('new!')), base(0).read);
    applied();
    expect((await reading).toString()).toBe('new!');
  });
});

describe('which blocks remain unreflected', () => {
  it('lists the blocks not on main storage, ascending, and only those written up to a seq when asked', async () => {
    const map = new SnapshotMap(8 * B);
    await map.apply(write(1, 5 * B, Buffer.alloc(B, 5)), base(0).read);
    await map.apply(write(2, 0, Buffer.alloc(B, 0)), base(0).read);
    await map.apply(write(3, 3 * B, Buffer.alloc(B, 3)), base(0).read);
    expect(map.unreflected()).toEqual([0, 3, 5]);
    expect(map.unreflected(2)).toEqual([0, 5]);
    expect(map.unreflectedBytes).toBe(3 * B);
    expect(map.heldBytes).toBe(3 * B);
  });

  it('writes contiguous blocks in one write, and afterwards only blocks written again', async () => {
    const map = new SnapshotMap(8 * B);
    for (const [seq, b] of [
      [1, 1],
      [2, 2],
      [3, 4],
    ] as const)
      await map.apply(write(seq, b * B, Buffer.alloc(B, b)), base(0).read);
    const writes: [number, number, number][] = [];
    const toMain = (offset: number, data: Buffer) => {
      writes.push([offset, data.length, data[data.length - 1]!]);
      return Promise.resolve();
    };
    expect(await map.reflect(map.unreflected(), toMain)).toBe(3 * B);
    expect(writes).toEqual([
      [B, 2 * B, 2],
      [4 * B, B, 4],
    ]);
    expect(map.unreflected()).toEqual([]);
    expect(map.unreflectedBytes).toBe(0);
    // Main storage holds them: reflecting them again writes nothing.
    expect(await map.reflect([1, 2, 4], toMain)).toBe(0);
    expect(writes).toHaveLength(2);
    // Held in the map still, for reads, until the switch back clears it.
    expect(map.heldBytes).toBe(3 * B);

    await map.apply(write(4, 2 * B, Buffer.alloc(B, 9)), base(0).read);
    expect(map.unreflected()).toEqual([2]);
    expect(await map.reflect([1, 2, 4], toMain)).toBe(B);
    expect(writes[2]).toEqual([2 * B, B, 9]);
  });

  it('counts a short last block at its size', async () => {
    const map = new SnapshotMap(B + 100);
    await map.apply(write(1, 0, Buffer.alloc(B + 100, 7)), base(0).read);
    expect(map.unreflected()).toEqual([0, 1]);
    expect(map.unreflectedBytes).toBe(B + 100);
    const lengths: number[] = [];
    await map.reflect([0, 1], (_o, data) => Promise.resolve(void lengths.push(data.length)));
    expect(lengths).toEqual([B + 100]);
  });

  it('forgets every block when cleared', async () => {
    const map = new SnapshotMap(2 * B);
    await map.apply(write(1, 0, Buffer.alloc(10, 1)), base(0).read);
    map.clear();
    expect([map.unreflected(), map.heldBytes, map.unreflectedBytes]).toEqual([[], 0, 0]);
    expect((await map.read(0, 10, base(0x33).read)).every((b) => b === 0x33)).toBe(true);
  });
});

describe('on the spot', () => {
  it('records and reads exactly as the promised way does, for random writes, zeroings and reads over a short last block', async () => {
    const size = 9 * B + 1000;
    const under = Buffer.alloc(size);
    for (let i = 0; i < size; i++) under[i] = (i * 7) & 0xff;
    const readBase = (offset: number, length: number) => {
      const out = Buffer.alloc(length);
      under.copy(out, 0, offset, Math.min(offset + length, size));
      return Promise.resolve(out);
    };
    const readBaseNow = (out: Buffer, offset: number) => {
      out.fill(0);
      under.copy(out, 0, offset, Math.min(offset + out.length, size));
    };
    const slow = new SnapshotMap(size);
    const fast = new SnapshotMap(size);
    const rnd = seededRandom(46);
    for (let seq = 1; seq <= 200; seq++) {
      const offset = Math.floor(rnd() * size);
      const length = 1 + Math.floor(rnd() * Math.min(3 * B, size - offset));
      const e =
        rnd() < 0.2
          ? { seq, kind: JournalKind.Zeroes, offset, length, data: null }
          : write(seq, offset, Buffer.alloc(length, seq & 0xff));
      await slow.apply(e, readBase);
      fast.applyNow(e, readBaseNow);
      const at = Math.floor(rnd() * size);
      const n = 1 + Math.floor(rnd() * Math.min(4 * B, size - at));
      const out = Buffer.alloc(n, 0xee);
      expect(fast.readNow(out, at, readBaseNow)).toBe(true);
      expect(out.equals(await slow.read(at, n, readBase))).toBe(true);
    }
    expect(fast.unreflected()).toEqual(slow.unreflected());
    expect(fast.unreflectedBytes).toBe(slow.unreflectedBytes);
  });

  it('does not read a block whose journaled write is still on its way into the map (S404)', () => {
    const m = new SnapshotMap(4 * B);
    const applied = m.hold([2]);
    const none = () => {
      throw new Error('nothing may be read');
    };
    expect(m.readNow(Buffer.alloc(B), 2 * B, none)).toBe(false);
    expect(m.readNow(Buffer.alloc(2 * B), B + 10, none)).toBe(false);
    applied();
    const out = Buffer.alloc(B, 0xee);
    expect(m.readNow(out, 2 * B, (o) => o.fill(0x11))).toBe(true);
    expect(out.equals(Buffer.alloc(B, 0x11))).toBe(true);
  });
});
