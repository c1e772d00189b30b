/**
 * A storage file of the datapath — main storage (the volume file) or backup storage (the image) —
 * as positional reads and writes of byte ranges, zeroing and durability. It knows nothing of
 * phases, journals or snapshots.
 */
import { readSync, writeSync, writevSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

/** Pieces per vectored write: well within IOV_MAX (1024). */
const MAX_IOV = 512;
/** Zeroes are written in pieces of at most this size, so a large WRITE_ZEROES does not allocate its length. */
const ZERO_CHUNK = 1024 * 1024;
/**
 * Reads and writes up to this size are done with synchronous pread/pwrite on the event loop: a
 * page-cache copy of a few KiB costs about a microsecond, while a trip through libuv's thread pool
 * costs tens of them (a thread wake-up each way, on a machine whose two cores the client shares).
 * Larger ones go to the thread pool, where the copy of one overlaps with the event loop taking in
 * the next request on the other core (and a copy of up to 32 MiB cannot stall every connection);
 * so does fdatasync, which waits for the disk.
 */
const SYNC_IO_MAX = 64 * 1024;
/**
 * Writes go on the spot up to this larger size (docs/adr/046): a pwritev of 256 KiB into the page
 * cache takes tens of microseconds, and its hand-off to the thread pool cost a futex wake-up each
 * way, about five futex calls a write, for no overlap worth having on two cores the client shares.
 */
const SYNC_WRITE_MAX = 256 * 1024;

export class BlockStore {
  private readonly fd: number;

  private constructor(
    readonly file: string,
    private readonly fh: FileHandle,
    readonly sizeBytes: number,
  ) {
    this.fd = fh.fd;
  }

  /** Opens an existing file for reading and writing; its size is the store's size. */
  static async open(file: string): Promise<BlockStore> {
    const fh = await open(file, 'r+');
    try {
      return new BlockStore(file, fh, (await fh.stat()).size);
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
  }

  /** Creates (or empties) a file of `sizeBytes`, sparse until written. */
  static async create(file: string, sizeBytes: number): Promise<BlockStore> {
    const fh = await open(file, 'w+');
    await fh.truncate(sizeBytes);
    return new BlockStore(file, fh, sizeBytes);
  }

  /** Reads `length` bytes at `offset`; bytes past the end of the file read as zeroes. */
  async read(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    await this.readInto(out, offset);
    return out;
  }

  /** Fills `out` with the bytes at `offset`; bytes past the end of the file read as zeroes. */
  async readInto(out: Buffer, offset: number): Promise<void> {
    if (this.readNow(out, offset)) return;
    const length = out.length;
    let done = 0;
    for (let n = -1; done < length && n !== 0; done += n)
      n = (await this.fh.read(out, done, length - done, offset + done)).bytesRead;
    if (done < length) out.fill(0, done);
  }

  /** Whether a read of `length` bytes is done on the spot (`readNow`) rather than on the thread pool. */
  static immediate(length: number): boolean {
    return length <= SYNC_IO_MAX;
  }

  /** Whether a write of `length` bytes is done on the spot (`writeNow`) rather than on the thread pool. */
  static immediateWrite(length: number): boolean {
    return length <= SYNC_WRITE_MAX;
  }

  /**
   * As `readInto`, done before it returns when `out` is small enough (`immediate`); false, with
   * nothing read, when it is not.
   */
  readNow(out: Buffer, offset: number): boolean {
    const length = out.length;
    if (length > SYNC_IO_MAX) return false;
    let done = 0;
    for (let n = -1; done < length && n !== 0; done += n)
      n = readSync(this.fd, out, done, length - done, offset + done);
    if (done < length) out.fill(0, done);
    return true;
  }

  /**
   * As `write`, done before it returns when the data is small enough (`immediateWrite`); false, with
   * nothing written, when it is not.
   */
  writeNow(offset: number, data: Buffer | readonly Buffer[]): boolean {
    if (Buffer.isBuffer(data)) {
      if (data.length > SYNC_WRITE_MAX) return false;
      for (let done = 0; done < data.length;) done += writeSync(this.fd, data, done, data.length - done, offset + done);
      return true;
    }
    let total = 0;
    for (const b of data) total += b.length;
    if (total > SYNC_WRITE_MAX) return false;
    if (total === 0) return true;
    if (data.length === 1) return this.writeNow(offset, data[0]!);
    const done = data.length > MAX_IOV ? 0 : writevSync(this.fd, data as Buffer[], offset);
    // A short vectored write is all but unheard of for a regular file; the rest goes in one piece.
    if (done < total) this.writeNow(offset + done, Buffer.concat(data, total).subarray(done));
    return true;
  }

  /**
   * Writes `data` at `offset`. It may come in pieces (a request's payload as the socket delivered
   * it), written with one vectored pwrite, so a large write is not first copied into one buffer.
   * The pieces must stay unchanged until it resolves.
   */
  async write(offset: number, data: Buffer | readonly Buffer[]): Promise<void> {
    if (this.writeNow(offset, data)) return;
    if (Buffer.isBuffer(data)) return this.writeOne(offset, data);
    const total = data.reduce((n, b) => n + b.length, 0);
    if (data.length === 1 || data.length > MAX_IOV)
      return this.writeOne(offset, data.length === 1 ? data[0]! : Buffer.concat(data, total));
    const done = (await this.fh.writev(data as Buffer[], offset)).bytesWritten;
    // A short vectored write is all but unheard of for a regular file; the rest goes in one piece.
    if (done < total) await this.writeOne(offset + done, Buffer.concat(data, total).subarray(done));
  }

  private async writeOne(offset: number, data: Buffer): Promise<void> {
    if (this.writeNow(offset, data)) return;
    for (let done = 0; done < data.length;)
      done += (await this.fh.write(data, done, data.length - done, offset + done)).bytesWritten;
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    const zeroes = Buffer.alloc(Math.min(length, ZERO_CHUNK));
    for (let done = 0; done < length; done += zeroes.length) {
      const n = Math.min(zeroes.length, length - done);
      await this.writeOne(offset + done, n === zeroes.length ? zeroes : zeroes.subarray(0, n));
    }
  }

  /** fdatasync: everything written so far survives a crash. */
  async sync(): Promise<void> {
    await this.fh.datasync();
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
