/**
 * The journal of seed 002 (111): every host write received in backup mode, appended with its
 * reception time, its data and a reflected flag, and written to the file before the write is
 * acknowledged — made durable (fdatasync) before the ack too when every write must be, else on the
 * host's FLUSH or FUA (`sync`; docs/adr/046). After a crash the journal is read back in order; a
 * torn record at the tail was never acknowledged (its write had not returned) and is cut off.
 *
 * Record layout, little-endian, 40-byte header then data:
 *   0 magic u32 "KJRN" · 4 crc32 u32 (bytes 9..end) · 8 reflected u8 · 9 kind u8 · 10 pad u16 ·
 *   12 seq u64 · 20 receivedAt f64 (ms since epoch) · 28 offset u64 · 36 length u32 · 40 data
 * The reflected flag sits outside the checksum so it can be set in place without rewriting.
 */
import { writeSync, writevSync } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib';

const MAGIC = 0x4e524a4b; // "KJRN" read as little-endian
const EMPTY = Buffer.alloc(0);
/** Records per write and fdatasync at most: two buffers each stay well within a writev's IOV_MAX of 1024. */
const MAX_BATCH = 256;
export const JOURNAL_HEADER_BYTES = 40;
/**
 * Batches up to this size are written with a synchronous pwritev (a page-cache copy, microseconds)
 * rather than through libuv's thread pool; the fdatasync that makes them durable always goes there.
 */
const SYNC_WRITE_MAX = 1024 * 1024;
const REFLECTED = Buffer.from([1]);
/**
 * The file is kept written with zeroes this far past its last record, and synced with it, so a
 * batch overwrites blocks that exist rather than growing the file: on ext4 the fdatasync of an
 * append must commit the file system's journal (the size changed), that of an overwrite only
 * flushes the data — measured here at 405 µs → 162 µs median, 9.3 → 2.2 ms at the 90th
 * percentile. Replay stops at the zeroes (no record magic) and cuts them off, like a torn tail, and at a seq no
 * higher than the one before it: what is left of a failed batch that a shorter one overwrote.
 */
const ZEROED_AHEAD = 1024 * 1024;
let zeroes: Buffer | null = null;

/**
 * When a record is made durable against power loss: `every-write` before its append resolves (one
 * fdatasync per batch of appends), `on-flush` only by `sync` — an append resolves once the record is
 * in the file, which is what survives a kill of the process.
 */
export type JournalSync = 'every-write' | 'on-flush';

/** What a journal record holds: a write's data, or a zeroing of a range (no data). */
export const JournalKind = { Write: 1, Zeroes: 2 } as const;
export type JournalKind = (typeof JournalKind)[keyof typeof JournalKind];

export interface JournalEntry {
  seq: number;
  kind: JournalKind;
  /** Reception time 111a, ms since the epoch. */
  receivedAt: number;
  offset: number;
  length: number;
  /** Data 111b (writes only). */
  data: Buffer | null;
  /** Record flag 111c as last written: 1 once applied to the snapshot. */
  reflected: boolean;
  /** Where the record starts in the file. */
  position: number;
}

/** A record waiting for its batch's fdatasync. */
interface Queued {
  header: Buffer;
  body: Buffer;
  entry: JournalEntry;
  resolve: (e: JournalEntry) => void;
  reject: (err: unknown) => void;
}

export class Journal {
  private queue: Queued[] = [];
  private committing: Promise<void> | null = null;
  /** The fdatasync of `sync` in progress, and the one that follows it for the calls made meanwhile. */
  private syncing: Promise<void> | null = null;
  private nextSync: Promise<void> | null = null;
  private end: number;
  /** The file's size: the records, then zeroes (made durable with the batch that wrote them). */
  private size: number;
  private seq: number;
  private count: number;

  private readonly fd: number;

  private constructor(
    readonly file: string,
    private readonly fh: FileHandle,
    end: number,
    lastSeq: number,
    count: number,
    private readonly mode: JournalSync,
  ) {
    this.fd = fh.fd;
    this.end = end;
    this.size = end;
    this.seq = lastSeq;
    this.count = count;
  }

  /**
   * Opens (creating when missing) a journal and reads every intact record back, in order. A torn
   * or corrupt tail is truncated away so new records follow the last intact one. `mode` says when
   * an append is durable (default: before it resolves).
   */
  static async open(
    file: string,
    mode: JournalSync = 'every-write',
  ): Promise<{ journal: Journal; entries: JournalEntry[] }> {
    const fh = await open(file, 'a+');
    await fh.close();
    const rw = await open(file, 'r+');
    const { size } = await rw.stat();
    const all = size > 0 ? Buffer.alloc(size) : Buffer.alloc(0);
    if (size > 0) await rw.read(all, 0, size, 0);
    const entries: JournalEntry[] = [];
    let pos = 0;
    while (pos + JOURNAL_HEADER_BYTES <= size) {
      const h = all.subarray(pos, pos + JOURNAL_HEADER_BYTES);
      if (h.readUInt32LE(0) !== MAGIC) break;
      const kind = h.readUInt8(9) as JournalKind;
      const length = h.readUInt32LE(36);
      const dataBytes = kind === JournalKind.Write ? length : 0;
      if (pos + JOURNAL_HEADER_BYTES + dataBytes > size) break;
      const covered = all.subarray(pos + 9, pos + JOURNAL_HEADER_BYTES + dataBytes);
      if (crc32(covered) !== h.readUInt32LE(4)) break;
      // Seqs only grow in the file; a lower one is a record of a failed batch that a shorter batch
      // overwrote only in part. It was never acknowledged and may be older than what precedes it.
      const seq = Number(h.readBigUInt64LE(12));
      const prev = entries[entries.length - 1];
      if (prev !== undefined && seq <= prev.seq) break;
      entries.push({
        seq,
        kind,
        receivedAt: h.readDoubleLE(20),
        offset: Number(h.readBigUInt64LE(28)),
        length,
        data: dataBytes
          ? Buffer.from(all.subarray(pos + JOURNAL_HEADER_BYTES, pos + JOURNAL_HEADER_BYTES + dataBytes))
          : null,
        reflected: h.readUInt8(8) === 1,
        position: pos,
      });
      pos += JOURNAL_HEADER_BYTES + dataBytes;
    }
    if (pos < size) {
      await rw.truncate(pos);
      await rw.datasync();
    }
    const last = entries[entries.length - 1];
    return { journal: new Journal(file, rw, pos, last?.seq ?? 0, entries.length, mode), entries };
  }

  /** Records written so far (including those read back at open). */
  get entries(): number {
    return this.count;
  }

  get lastSeq(): number {
    return this.seq;
  }

  /** Bytes of the file: durable records (headers and data), then up to ZEROED_AHEAD of zeroes for the next ones. */
  get bytes(): number {
    return this.size;
  }

  /**
   * S302: appends one record with flag 0. Resolves once the caller may acknowledge the write to the
   * host: in `every-write` mode after the fdatasync that covers it — appends made in the same turn
   * of the event loop (the requests of one read from the socket), and those that arrive while a
   * batch is being made durable, go together: one write and one fdatasync for all of them (group
   * commit); in `on-flush` mode once the record is in the file, written on the spot (a page-cache
   * copy) unless it is large or a large one before it is still being written. Records land in the
   * file in the order of the calls, and seqs are given in that order too.
   */
  append(
    kind: JournalKind,
    offset: number,
    length: number,
    data: Buffer | null,
    receivedAt: number,
  ): Promise<JournalEntry> {
    const { header: h, body, entry } = encodeRecord(++this.seq, kind, offset, length, data, receivedAt);
    if (this.canAppendNow(body.length)) {
      try {
        this.writeNow(h, body, entry);
      } catch (err) {
        return Promise.reject(err);
      }
      return Promise.resolve(entry);
    }
    return new Promise<JournalEntry>((resolve, reject) => {
      this.queue.push({ header: h, body, entry, resolve, reject });
      if (!this.committing) this.committing = this.commit();
    });
  }

  /**
   * Whether a record with `dataBytes` of data would be appended on the spot (`appendNow`): in
   * `on-flush` mode, small enough, and with no earlier record still waiting to be written.
   */
  canAppendNow(dataBytes: number): boolean {
    return (
      this.mode === 'on-flush' &&
      this.queue.length === 0 &&
      !this.committing &&
      JOURNAL_HEADER_BYTES + dataBytes <= SYNC_WRITE_MAX
    );
  }

  /**
   * As `append`, written to the file before it returns; only when `canAppendNow` says so. Throws
   * when the write fails: nothing is acknowledged, and the next record takes its place in the file.
   */
  appendNow(kind: JournalKind, offset: number, length: number, data: Buffer | null, receivedAt: number): JournalEntry {
    const dataBytes = kind === JournalKind.Write ? length : 0;
    if (!this.canAppendNow(dataBytes)) throw new Error('journal: a record cannot be appended on the spot now');
    // The number is taken only once the record is in the file: a failed write leaves it to the next.
    const { header, body, entry } = encodeRecord(this.seq + 1, kind, offset, length, data, receivedAt);
    this.writeNow(header, body, entry);
    this.seq = entry.seq;
    return entry;
  }

  /** Writes one record at the end of the file, synchronously, and counts it. */
  private writeNow(h: Buffer, body: Buffer, entry: JournalEntry): void {
    const bytes = h.length + body.length;
    const written = writevSync(this.fd, body.length ? [h, body] : [h], this.end);
    if (written !== bytes) throw new Error(`journal: wrote ${written} of a record's ${bytes} bytes`);
    entry.position = this.end;
    this.end += bytes;
    if (this.end > this.size) this.size = this.end;
    this.count++;
  }

  /** Writes and syncs the queued records, batch after batch, until none is left. */
  private async commit(): Promise<void> {
    try {
      // The first batch waits for the end of this turn, so the appends made in it share its fdatasync.
      await new Promise<void>((r) => setImmediate(r));
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_BATCH);
        const bufs: Buffer[] = [];
        let at = this.end;
        for (const r of batch) {
          r.entry.position = at;
          at += r.header.length + r.body.length;
          bufs.push(r.header);
          if (r.body.length) bufs.push(r.body);
        }
        const durable = this.mode === 'every-write';
        const grows = at > this.size;
        try {
          const bytes = at - this.end;
          const written =
            bytes <= SYNC_WRITE_MAX
              ? writevSync(this.fd, bufs, this.end)
              : (await this.fh.writev(bufs, this.end)).bytesWritten;
          if (written !== bytes) throw new Error(`journal: wrote ${written} of a batch's ${bytes} bytes`);
          // Past the zeroes: this batch's fdatasync grows the file once for the batches to come.
          // Without a sync per batch there is nothing to spare: a FLUSH's fdatasync is rare.
          if (durable) {
            if (grows) await this.zeroAhead(at);
            await this.fh.datasync();
          }
        } catch (err) {
          // Nothing of this batch is acknowledged; the next one overwrites whatever part of it landed.
          for (const r of batch) r.reject(err);
          continue;
        }
        this.end = at;
        if (grows) this.size = durable ? at + ZEROED_AHEAD : at;
        this.count += batch.length;
        for (const r of batch) r.resolve(r.entry);
      }
    } finally {
      this.committing = null;
    }
  }

  /** Writes ZEROED_AHEAD bytes of zeroes from `from` (the end of a batch's records). */
  private async zeroAhead(from: number): Promise<void> {
    zeroes ??= Buffer.alloc(ZEROED_AHEAD);
    const { bytesWritten } = await this.fh.write(zeroes, 0, ZEROED_AHEAD, from);
    if (bytesWritten !== ZEROED_AHEAD)
      throw new Error(`journal: wrote ${bytesWritten} of ${ZEROED_AHEAD} bytes of zeroes`);
  }

  /**
   * S305: sets a record's flag to 1 "reflected". Not synced on its own: after a crash the snapshot
   * is rebuilt from every record anyway, so the flag informs, it does not decide.
   */
  async markReflected(entry: JournalEntry): Promise<void> {
    this.markReflectedNow(entry);
  }

  /** As `markReflected`, before it returns. */
  markReflectedNow(entry: JournalEntry): void {
    // One byte in a page the append just wrote: a synchronous pwrite, not a trip through the thread pool.
    writeSync(this.fd, REFLECTED, 0, 1, entry.position + 8);
    entry.reflected = true;
  }

  /**
   * Makes every record appended so far durable (fdatasync): a host's FLUSH, a FUA write, in
   * `on-flush` mode. Calls made while one is in progress share the next one (it must start after
   * their records were written). In `every-write` mode the records already are: nothing to do.
   */
  sync(): Promise<void> {
    if (this.mode === 'every-write') return Promise.resolve();
    if (!this.syncing) {
      this.syncing = this.fh.datasync().finally(() => {
        this.syncing = null;
      });
      return this.syncing;
    }
    this.nextSync ??= this.syncing
      .catch(() => undefined)
      .then(() => {
        this.nextSync = null;
        return this.sync();
      });
    return this.nextSync;
  }

  /** Closes the file; a clean stop leaves the records durable, as a switch back leaves main storage. */
  async close(): Promise<void> {
    await this.closeFile(true);
  }

  private async closeFile(sync: boolean): Promise<void> {
    await this.committing;
    if (sync && this.mode === 'on-flush') await this.sync().catch(() => undefined);
    await this.fh.close().catch(() => undefined);
  }

  /** Closes and deletes the journal: everything in it is on main storage (made durable there). */
  async remove(): Promise<void> {
    await this.closeFile(false);
    await rm(this.file, { force: true });
  }
}

/** One journal record: its header (with the CRC over the header's tail and the data), its data, and the entry it becomes. */
function encodeRecord(
  seq: number,
  kind: JournalKind,
  offset: number,
  length: number,
  data: Buffer | null,
  receivedAt: number,
): { header: Buffer; body: Buffer; entry: JournalEntry } {
  const dataBytes = kind === JournalKind.Write ? length : 0;
  const header = Buffer.allocUnsafe(JOURNAL_HEADER_BYTES);
  header.writeUInt32LE(MAGIC, 0);
  header.writeUInt8(0, 8);
  header.writeUInt8(kind, 9);
  header.writeUInt16LE(0, 10);
  header.writeBigUInt64LE(BigInt(seq), 12);
  header.writeDoubleLE(receivedAt, 20);
  header.writeBigUInt64LE(BigInt(offset), 28);
  header.writeUInt32LE(length, 36);
  const body = dataBytes && data ? data.subarray(0, dataBytes) : EMPTY;
  header.writeUInt32LE(crc32(body, crc32(header.subarray(9))), 4);
  const entry: JournalEntry = {
    seq,
    kind,
    receivedAt,
    offset,
    length,
    data: dataBytes ? body : null,
    reflected: false,
    position: 0,
  };
  return { header, body, entry };
}
