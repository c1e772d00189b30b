/**
 * The snapshot map of seed 002 (112): for each 4 KiB block written since the switch, its latest
 * data, the journal seq that wrote it and the seq main storage holds — so it answers which blocks
 * a read takes from here rather than from storage, and which are not yet reflected to main storage.
 * It lives in memory and is rebuilt from the journal after a restart (ADR 013); it does no I/O of
 * its own: what lies beneath it is read, and reflected blocks are written, through the caller.
 */
import { JournalKind, type JournalEntry } from './journal';

/** The snapshot's block: the unit of the map, of read-modify-write, and of reflection. */
export const BLOCK_BYTES = 4096;

/** Reads what lies under the snapshot (main storage or the image) for a byte range. */
export type ReadBase = (offset: number, length: number) => Promise<Buffer>;
/** Fills `out` with what lies under the snapshot at `offset`, before it returns. */
export type ReadBaseNow = (out: Buffer, offset: number) => void;
/** Writes bytes to main storage at an offset. */
export type WriteMain = (offset: number, data: Buffer) => Promise<void>;

/** A block of the snapshot: its latest data, the journal seq that wrote it, and the seq main storage holds. */
interface SnapBlock {
  data: Buffer;
  seq: number;
  mainSeq: number;
}

/** A block's byte range on the volume, and the part `[from, to)` of it that a journal entry covers. */
interface BlockSpan {
  start: number;
  len: number;
  from: number;
  to: number;
  /** The entry covers the whole block, so nothing of its old bytes survives. */
  whole: boolean;
}

/** The indexes of the blocks a byte range touches, ascending. */
export function blocksOf(offset: number, length: number): number[] {
  if (length === 0) return [];
  const first = Math.floor(offset / BLOCK_BYTES);
  const last = Math.floor((offset + length - 1) / BLOCK_BYTES);
  const out: number[] = [];
  for (let b = first; b <= last; b++) out.push(b);
  return out;
}

export class SnapshotMap {
  private readonly blocks = new Map<number, SnapBlock>();
  /** Blocks whose latest data is not on main storage yet. */
  private readonly dirty = new Set<number>();
  /** Blocks with a journaled write not yet applied to the map (S404 waits on these). */
  private readonly pending = new Map<number, Promise<void>>();

  /** @param sizeBytes the volume's size: its last block may be short */
  constructor(private readonly sizeBytes: number) {}

  /** Bytes held (everything written since the switch), counted in whole blocks. */
  get heldBytes(): number {
    return this.blocks.size * BLOCK_BYTES;
  }

  /** S702: bytes not yet on main storage (the last block may be short). */
  get unreflectedBytes(): number {
    return Math.min(this.dirty.size * BLOCK_BYTES, this.sizeBytes);
  }

  /**
   * Marks these blocks as having a journaled write on its way into the map, so reads of them wait
   * (S404). Call the returned function once the write is applied, or has failed.
   */
  hold(blocks: number[]): () => void {
    let release!: () => void;
    const applied = new Promise<void>((r) => (release = r));
    for (const b of blocks) this.pending.set(b, applied);
    return () => {
      // A later write may hold the same block by now; its promise stays.
      for (const b of blocks) if (this.pending.get(b) === applied) this.pending.delete(b);
      release();
    };
  }

  /**
   * S303–S304: records a journal entry, block by block; the edges of a partial block are read
   * from the map, else from `readBase`.
   */
  async apply(e: Pick<JournalEntry, 'seq' | 'kind' | 'offset' | 'length' | 'data'>, readBase: ReadBase): Promise<void> {
    for (const b of blocksOf(e.offset, e.length)) {
      const span = this.spanOf(b, e);
      const prev = this.blocks.get(b);
      // Blocks are replaced, never changed in place: a read holding the old one stays consistent.
      const data = span.whole
        ? Buffer.alloc(span.len)
        : Buffer.from(prev ? prev.data : await readBase(span.start, span.len));
      this.put(b, e, span, data, prev);
    }
  }

  /**
   * As `apply`, done before it returns, the edges of a partial block read with `readBaseNow`. The
   * caller makes sure no write of these blocks is on its way into the map (no hold on them).
   */
  applyNow(e: Pick<JournalEntry, 'seq' | 'kind' | 'offset' | 'length' | 'data'>, readBaseNow: ReadBaseNow): void {
    for (const b of blocksOf(e.offset, e.length)) {
      const span = this.spanOf(b, e);
      const prev = this.blocks.get(b);
      let data: Buffer;
      // A whole block is overwritten entirely by `put`, so it needs no zeroing first.
      if (span.whole) data = Buffer.allocUnsafe(span.len);
      else if (prev) data = Buffer.from(prev.data);
      else readBaseNow((data = Buffer.allocUnsafe(span.len)), span.start);
      this.put(b, e, span, data, prev);
    }
  }

  /** Where block `b` lies on the volume (its last block may be short), and the part of it the entry covers. */
  private spanOf(b: number, e: Pick<JournalEntry, 'offset' | 'length'>): BlockSpan {
    const start = b * BLOCK_BYTES;
    const len = Math.min(BLOCK_BYTES, this.sizeBytes - start);
    const from = Math.max(start, e.offset);
    const to = Math.min(start + len, e.offset + e.length);
    return { start, len, from, to, whole: from === start && to === start + len };
  }

  /**
   * Lays the entry's part of block `b` (its bytes, or zeros for a trim) over `data`, the block's
   * new bytes, and records them as the block's latest, not yet on main storage.
   */
  private put(
    b: number,
    e: Pick<JournalEntry, 'seq' | 'kind' | 'offset' | 'data'>,
    span: BlockSpan,
    data: Buffer,
    prev: SnapBlock | undefined,
  ): void {
    const { start, from, to } = span;
    if (e.kind === JournalKind.Write && e.data) e.data.copy(data, from - start, from - e.offset, to - e.offset);
    else data.fill(0, from - start, to - start);
    this.blocks.set(b, { data, seq: e.seq, mainSeq: prev?.mainSeq ?? 0 });
    this.dirty.add(b);
  }

  /**
   * As `read`, into `out`, done before it returns (true); false, with `out` unspecified, when a
   * write of one of its blocks is still on its way into the map (S404: the read must wait for it).
   */
  readNow(out: Buffer, offset: number, readBaseNow: ReadBaseNow): boolean {
    const length = out.length;
    if (length === 0) return true;
    const first = Math.floor(offset / BLOCK_BYTES);
    const last = Math.floor((offset + length - 1) / BLOCK_BYTES);
    if (this.pending.size > 0) for (let b = first; b <= last; b++) if (this.pending.has(b)) return false;
    let runStart = -1;
    const flushRun = (endBlock: number) => {
      if (runStart < 0) return;
      const from = Math.max(runStart * BLOCK_BYTES, offset);
      const to = Math.min(endBlock * BLOCK_BYTES, offset + length);
      readBaseNow(out.subarray(from - offset, to - offset), from);
      runStart = -1;
    };
    for (let b = first; b <= last; b++) {
      const blk = this.blocks.get(b);
      if (!blk) {
        if (runStart < 0) runStart = b;
        continue;
      }
      flushRun(b);
      const from = Math.max(b * BLOCK_BYTES, offset);
      const to = Math.min((b + 1) * BLOCK_BYTES, offset + length);
      blk.data.copy(out, from - offset, from - b * BLOCK_BYTES, to - b * BLOCK_BYTES);
    }
    flushRun(last + 1);
    return true;
  }

  /**
   * S401–S406: a byte range as the host sees it — each block from the map, after any write of it
   * still being applied; runs of blocks the map does not hold from `readBase`.
   */
  async read(offset: number, length: number, readBase: ReadBase): Promise<Buffer> {
    const out = Buffer.alloc(length);
    const first = Math.floor(offset / BLOCK_BYTES);
    const last = Math.floor((offset + length - 1) / BLOCK_BYTES);
    let runStart = -1;
    const flushRun = async (endBlock: number) => {
      if (runStart < 0) return;
      const from = Math.max(runStart * BLOCK_BYTES, offset);
      const to = Math.min(endBlock * BLOCK_BYTES, offset + length);
      const data = await readBase(from, to - from);
      data.copy(out, from - offset);
      runStart = -1;
    };
    for (let b = first; b <= last; b++) {
      const wait = this.pending.get(b);
      if (wait) await wait;
      const blk = this.blocks.get(b);
      if (!blk) {
        if (runStart < 0) runStart = b;
        continue;
      }
      await flushRun(b);
      const from = Math.max(b * BLOCK_BYTES, offset);
      const to = Math.min((b + 1) * BLOCK_BYTES, offset + length);
      blk.data.copy(out, from - offset, from - b * BLOCK_BYTES, to - b * BLOCK_BYTES);
    }
    await flushRun(last + 1);
    return out;
  }

  /**
   * The blocks not yet on main storage, ascending; with `upToSeq`, only those last written at or
   * before that journal seq (S502: the snapshot as of time T).
   */
  unreflected(upToSeq?: number): number[] {
    const all = [...this.dirty];
    const due = upToSeq === undefined ? all : all.filter((b) => (this.blocks.get(b)?.seq ?? 0) <= upToSeq);
    return due.sort((a, b) => a - b);
  }

  /**
   * Writes the current data of these blocks (ascending) through `write`, skipping those main
   * storage already holds; contiguous ones go in one write. Returns the bytes written. The caller
   * serialises this with host writes, so a block cannot be written stale after a newer one.
   */
  async reflect(blocks: number[], write: WriteMain): Promise<number> {
    const due = blocks.flatMap((b) => {
      const blk = this.blocks.get(b);
      return blk && blk.mainSeq < blk.seq ? [{ b, blk }] : [];
    });
    let bytes = 0;
    for (let k = 0; k < due.length;) {
      let m = k;
      while (m + 1 < due.length && due[m + 1]!.b === due[m]!.b + 1) m++;
      const run = due.slice(k, m + 1);
      const data = Buffer.concat(run.map((x) => x.blk.data));
      await write(run[0]!.b * BLOCK_BYTES, data);
      for (const x of run) {
        x.blk.mainSeq = x.blk.seq;
        this.dirty.delete(x.b);
      }
      bytes += data.length;
      k = m + 1;
    }
    return bytes;
  }

  /** Forgets every block: at the switch, and once main storage holds everything. */
  clear(): void {
    this.blocks.clear();
    this.dirty.clear();
  }
}
