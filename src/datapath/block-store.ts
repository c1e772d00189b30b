/**
 * A storage file of the datapath — main storage (the volume file) or backup storage (the image) —
 * as positional reads and writes of byte ranges, zeroing and durability. It knows nothing of
 * phases, journals or snapshots.
 */
import { open, type FileHandle } from 'node:fs/promises';

/** Zeroes are written in pieces of at most this size, so a large WRITE_ZEROES does not allocate its length. */
const ZERO_CHUNK = 1024 * 1024;

export class BlockStore {
  private constructor(
    readonly file: string,
    private readonly fh: FileHandle,
    readonly sizeBytes: number,
  ) {}

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
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(out, done, length - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return out;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    await this.fh.write(data, 0, data.length, offset);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    const zeroes = Buffer.alloc(Math.min(length, ZERO_CHUNK));
    for (let done = 0; done < length; done += zeroes.length) {
      const n = Math.min(zeroes.length, length - done);
      await this.fh.write(zeroes, 0, n, offset + done);
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
