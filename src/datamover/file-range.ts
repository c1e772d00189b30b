/**
 * The data mover's ends over open files: a byte range of a file, read and written by position,
 * flushed with fdatasync.
 */
import type { FileHandle } from 'node:fs/promises';
import { DeviceFaultError } from '../domain/errors';
import type { ByteSink, ByteSource } from './mover';

export interface FileRangeOptions {
  /** Names the file or device in errors (a drive, a cartridge, a path). */
  name: string;
  /**
   * The error for a file that ends before the range does, given the file's last byte; by default
   * a DeviceFaultError of `name` (the medium is shorter than the inventory says).
   */
  endOfData?: (position: number) => Error;
}

/** The bytes of `fh` from `start` on, as a source and a sink of the data mover. */
export function fileRange(fh: FileHandle, start: number, opts: FileRangeOptions): ByteSource & Required<ByteSink> {
  const endOfData =
    opts.endOfData ??
    ((position: number) =>
      new DeviceFaultError(
        opts.name,
        `unexpected end of data on ${opts.name} at byte ${position}; the file is shorter than the inventory says`,
      ));
  return {
    read: (buf, at) => readFully(fh, buf, start + at, endOfData),
    write: (buf, at) => writeFully(fh, buf, start + at),
    flush: () => fh.datasync(),
  };
}

/** Fills `buf` from `position` of the file; a file that ends first throws `endOfData(its length)`. */
async function readFully(
  fh: FileHandle,
  buf: Buffer,
  position: number,
  endOfData: (position: number) => Error,
): Promise<void> {
  for (let got = 0; got < buf.length;) {
    const { bytesRead } = await fh.read(buf, got, buf.length - got, position + got);
    if (bytesRead === 0) throw endOfData(position + got);
    got += bytesRead;
  }
}

/** Writes all of `buf` at `position` of the file. */
async function writeFully(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  for (let put = 0; put < buf.length;) {
    const { bytesWritten } = await fh.write(buf, put, buf.length - put, position + put);
    put += bytesWritten;
  }
}
