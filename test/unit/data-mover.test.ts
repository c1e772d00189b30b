import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fileRange } from '../../src/datamover/file-range';
import { copyFile, sha256File } from '../../src/datamover/files';
import { moveBytes, type ByteSink, type TransferGate } from '../../src/datamover/mover';
import { sharedBlockStats } from '../../src/datamover/hash-worker';
import {
  ChecksumMismatchError,
  DeviceFaultError,
  ErrorType,
  InvalidInputError,
  KuraError,
} from '../../src/domain/errors';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Not a multiple of the 512 KiB block, so the last block is short. */
const LENGTH = 3 * MiB + 12_345;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const dirs: string[] = [];
const handles: FileHandle[] = [];

afterEach(async () => {
  for (const fh of handles.splice(0)) await fh.close().catch(() => undefined);
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** A source file of random bytes, and an empty destination, both open. */
async function files(length = LENGTH) {
  const dir = await mkdtemp(path.join(tmpdir(), 'kura-mover-'));
  dirs.push(dir);
  const data = randomBytes(length);
  const srcFile = path.join(dir, 'src.img');
  const destFile = path.join(dir, 'dest.img');
  await writeFile(srcFile, data);
  await writeFile(destFile, Buffer.alloc(0));
  const src = await open(srcFile, 'r');
  const dest = await open(destFile, 'r+');
  handles.push(src, dest);
  return { dir, data, srcFile, destFile, src, dest };
}

/** A sink over a file that records every write it was given. */
function recordingSink(fh: FileHandle, name: string) {
  const inner = fileRange(fh, 0, { name });
  const writes: { at: number; len: number }[] = [];
  const sink: Required<ByteSink> = {
    read: inner.read,
    flush: inner.flush,
    write: (buf, at) => {
      writes.push({ at, len: buf.length });
      return inner.write(buf, at);
    },
  };
  return { sink, writes };
}

/** Awaits a rejection and checks its class, returning it for further checks. */
async function rejection<T extends Error>(p: Promise<unknown>, type: new (...args: never[]) => T): Promise<T> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(type);
  return err as T;
}

describe('moveBytes: bytes and checksum', () => {
  it('writes exactly the source bytes and returns the SHA-256 node:crypto computes over them', async () => {
    const f = await files();
    const r = await moveBytes({
      source: fileRange(f.src, 0, { name: 'src' }),
      sink: fileRange(f.dest, 0, { name: 'dest' }),
      length: LENGTH,
    });
    const out = await readFile(f.destFile);
    expect(out.equals(f.data)).toBe(true);
    expect(r).toEqual({ bytes: LENGTH, moved: LENGTH, resumedBytes: 0, sha256: sha(f.data) });
  });

  it('moves a range at offsets of both ends, leaving the bytes around it alone', async () => {
    const f = await files();
    await f.dest.write(Buffer.alloc(4 * MiB, 0xee), 0, 4 * MiB, 0);
    const r = await moveBytes({
      source: fileRange(f.src, 1000, { name: 'src' }),
      sink: fileRange(f.dest, 2000, { name: 'dest' }),
      length: MiB,
    });
    const out = await readFile(f.destFile);
    expect(out.subarray(2000, 2000 + MiB).equals(f.data.subarray(1000, 1000 + MiB))).toBe(true);
    expect(out.subarray(0, 2000).every((b) => b === 0xee)).toBe(true);
    expect(out.subarray(2000 + MiB).every((b) => b === 0xee)).toBe(true);
    expect(r.sha256).toBe(sha(f.data.subarray(1000, 1000 + MiB)));
  });

  it('without a sink only reads: sha256File equals node:crypto over the file, an empty file included', async () => {
    const f = await files();
    expect(await sha256File(f.srcFile)).toBe(sha(f.data));
    expect(await sha256File(f.destFile)).toBe(sha(Buffer.alloc(0)));
  });

  it('leaves the checksum out when asked to, and still moves every byte', async () => {
    const f = await files();
    const r = await moveBytes({
      source: fileRange(f.src, 0, { name: 'src' }),
      sink: fileRange(f.dest, 0, { name: 'dest' }),
      length: LENGTH,
      hash: false,
    });
    expect(r.sha256).toBeNull();
    expect((await readFile(f.destFile)).equals(f.data)).toBe(true);
  });

  it('shows every block to an observer in order, so a second digest can span several moves', async () => {
    const f = await files();
    const image = createHash('sha256');
    for (const [from, to] of [
      [0, MiB + 7],
      [MiB + 7, LENGTH],
    ] as const) {
      await moveBytes({
        source: fileRange(f.src, from, { name: 'src' }),
        length: to - from,
        observe: (block) => image.update(block),
      });
    }
    expect(image.digest('hex')).toBe(sha(f.data));
  });
});

describe('moveBytes: resume', () => {
  it('resumed at an offset, writes only the rest and returns the digest of the whole range', async () => {
    const f = await files();
    const from = MiB + 4321;
    await f.dest.write(f.data, 0, from, 0);
    const { sink, writes } = recordingSink(f.dest, 'dest');
    const progress: number[] = [];
    const r = await moveBytes({
      source: fileRange(f.src, 0, { name: 'src' }),
      sink,
      length: LENGTH,
      from,
      onProgress: (p) => progress.push(p.bytes),
    });
    expect(r).toEqual({ bytes: LENGTH, moved: LENGTH - from, resumedBytes: from, sha256: sha(f.data) });
    expect(Math.min(...writes.map((w) => w.at))).toBe(from);
    expect(writes.reduce((n, w) => n + w.len, 0)).toBe(LENGTH - from);
    expect(progress[0]).toBe(from);
    expect(progress.at(-1)).toBe(LENGTH);
    expect((await readFile(f.destFile)).equals(f.data)).toBe(true);
  });

  it('rebuilds the digest from what the sink really holds, so a damaged prefix shows in the checksum', async () => {
    const f = await files();
    const from = MiB;
    const damaged = Buffer.from(f.data.subarray(0, from));
    damaged[10] = (damaged[10] as number) ^ 0xff;
    await f.dest.write(damaged, 0, from, 0);
    const r = await moveBytes({
      source: fileRange(f.src, 0, { name: 'src' }),
      sink: fileRange(f.dest, 0, { name: 'dest' }),
      length: LENGTH,
      from,
    });
    expect(r.sha256).toBe(sha(Buffer.concat([damaged, f.data.subarray(from)])));
    expect(r.sha256).not.toBe(sha(f.data));
  });

  it('copyFile continues a partial copy in place and returns the whole file’s size, digest and the bytes it copied', async () => {
    const f = await files();
    const dest = path.join(f.dir, 'copy.img');
    await writeFile(dest, f.data.subarray(0, 2 * MiB));
    const r = await copyFile(f.srcFile, dest, { resumeBytes: 2 * MiB });
    expect(r).toEqual({ sizeBytes: LENGTH, copied: LENGTH - 2 * MiB, sha256: sha(f.data) });
    expect((await readFile(dest)).equals(f.data)).toBe(true);
  });

  it('refuses to resume past the end of the range with InvalidInputError', async () => {
    const f = await files();
    const err = await rejection(
      moveBytes({ source: fileRange(f.src, 0, { name: 'src' }), length: MiB, from: MiB + 1 }),
      InvalidInputError,
    );
    expect(err.message).toBe(`cannot resume after ${MiB + 1} bytes of a ${MiB}-byte range; resume inside it`);
  });
});

describe('moveBytes: progress and durability', () => {
  it('reports progress only over the written prefix, even when writes finish out of order', async () => {
    const f = await files();
    const inner = fileRange(f.dest, 0, { name: 'dest' });
    const finished: { at: number; end: number }[] = [];
    const delays = [30, 5, 20, 1, 12, 3, 25, 8];
    let n = 0;
    const sink: ByteSink = {
      write: async (buf, at) => {
        await new Promise((r) => setTimeout(r, delays[n++ % delays.length]));
        await inner.write(buf, at);
        finished.push({ at, end: at + buf.length });
      },
    };
    const problems: string[] = [];
    await moveBytes({
      source: fileRange(f.src, 0, { name: 'src' }),
      sink,
      length: LENGTH,
      progressBytes: 256 * KiB,
      onProgress: ({ bytes }) => {
        // Every byte below the reported count must be in a finished write.
        const covered = finished
          .filter((w) => w.at < bytes)
          .sort((a, b) => a.at - b.at)
          .reduce((end, w) => (w.at <= end ? Math.max(end, w.end) : end), 0);
        if (covered < bytes) problems.push(`reported ${bytes} with only ${covered} written`);
      },
    });
    expect(problems).toEqual([]);
    expect((await readFile(f.destFile)).equals(f.data)).toBe(true);
  });

  it('calls onDurable at every progress point only after the bytes before it are written and flushed', async () => {
    const f = await files();
    const inner = fileRange(f.dest, 0, { name: 'dest' });
    let writtenEnd = 0;
    let flushedEnd = 0;
    const sink: ByteSink = {
      write: async (buf, at) => {
        await inner.write(buf, at);
        writtenEnd = Math.max(writtenEnd, at + buf.length);
      },
      flush: async () => {
        await inner.flush();
        flushedEnd = writtenEnd;
      },
    };
    const points: { bytes: number; flushed: number }[] = [];
    await moveBytes({
      source: fileRange(f.src, 0, { name: 'src' }),
      sink,
      length: LENGTH,
      hash: false,
      progressBytes: MiB,
      onDurable: async (bytes) => {
        points.push({ bytes, flushed: flushedEnd });
      },
    });
    expect(points.map((p) => p.bytes)).toEqual([MiB, 2 * MiB, 3 * MiB, LENGTH]);
    expect(points.every((p) => p.flushed >= p.bytes)).toBe(true);
  });

  it('stopped and started again from its last durable point, a copy without a checksum ends byte for byte equal', async () => {
    // The shape of a copy that keeps its own resume point (the datapath's base copy): no digest,
    // the point saved only once the bytes behind it are durable, a stop by signal, a later resume.
    const f = await files(8 * MiB);
    await f.dest.truncate(8 * MiB);
    let saved = 0;
    const run = (stopAt: number) => {
      const stop = new AbortController();
      return moveBytes({
        source: fileRange(f.src, 0, { name: 'main' }),
        sink: fileRange(f.dest, 0, { name: 'image' }),
        length: 8 * MiB,
        from: saved,
        hash: false,
        progressBytes: MiB,
        signal: stop.signal,
        onDurable: async (bytes) => {
          saved = bytes;
          if (bytes === stopAt) stop.abort(new Error('stop'));
        },
      });
    };
    await expect(run(3 * MiB)).rejects.toThrow('stop');
    expect(saved).toBe(3 * MiB);
    const resumedFrom = saved;
    const r = await run(-1);
    expect(r).toEqual({ bytes: 8 * MiB, moved: 8 * MiB - resumedFrom, resumedBytes: resumedFrom, sha256: null });
    expect(saved).toBe(8 * MiB);
    expect((await readFile(f.destFile)).equals(f.data)).toBe(true);
  });

  it('holds a rate when given one', async () => {
    const f = await files();
    const started = Date.now();
    await moveBytes({
      source: fileRange(f.src, 0, { name: 'src' }),
      sink: fileRange(f.dest, 0, { name: 'dest' }),
      length: MiB,
      rateBytesPerSec: 4 * MiB,
    });
    // 1 MiB at 4 MiB/s: about a quarter of a second.
    expect(Date.now() - started).toBeGreaterThanOrEqual(240);
  });
});

describe('moveBytes: abort and errors', () => {
  it("stops when the signal aborts, throwing the caller's reason, with the rest of the range never written", async () => {
    const f = await files();
    const { sink, writes } = recordingSink(f.dest, 'dest');
    const abort = new AbortController();
    const err = await rejection(
      moveBytes({
        source: fileRange(f.src, 0, { name: 'src' }),
        sink,
        length: LENGTH,
        progressBytes: 256 * KiB,
        onProgress: (p) => {
          if (p.bytes >= MiB) abort.abort(new Error('activity cancelled'));
        },
        signal: abort.signal,
      }),
      Error,
    );
    expect(err.message).toBe('activity cancelled');
    const written = writes.reduce((n, w) => n + w.len, 0);
    // At most the blocks already queued behind the stop are written after it.
    expect(written).toBeGreaterThanOrEqual(MiB);
    expect(written).toBeLessThanOrEqual(MiB + 8 * 256 * KiB);
    // Nothing is still in flight: the destination holds exactly what was written before the stop.
    expect((await f.dest.stat()).size).toBe(Math.max(...writes.map((w) => w.at + w.len)));
  });

  it('an abort with no Error of its own throws a Cancelled KuraError, and nothing is written when already aborted', async () => {
    const f = await files();
    const { sink, writes } = recordingSink(f.dest, 'dest');
    const abort = new AbortController();
    abort.abort('operator said stop');
    const err = await rejection(
      moveBytes({ source: fileRange(f.src, 0, { name: 'src' }), sink, length: LENGTH, signal: abort.signal }),
      KuraError,
    );
    expect(err.type).toBe(ErrorType.Cancelled);
    expect(err.message).toBe('the transfer was aborted: operator said stop');
    expect(writes).toEqual([]);
  });

  it('a source file shorter than the range surfaces as DeviceFaultError naming it and the byte', async () => {
    const f = await files(MiB);
    const err = await rejection(
      moveBytes({
        source: fileRange(f.src, 0, { name: 'vm-001-data' }),
        sink: fileRange(f.dest, 0, { name: 'dest' }),
        length: 2 * MiB,
      }),
      DeviceFaultError,
    );
    expect(err.device).toBe('vm-001-data');
    expect(err.message).toBe(
      `unexpected end of data on vm-001-data at byte ${MiB}; the file is shorter than the inventory says`,
    );
  });

  it('a short source can name its own error type instead', async () => {
    const f = await files(MiB);
    const err = await rejection(
      moveBytes({
        source: fileRange(f.src, 0, {
          name: 'image',
          endOfData: (at) => new ChecksumMismatchError(`the image ends after ${at} bytes`),
        }),
        length: 2 * MiB,
      }),
      ChecksumMismatchError,
    );
    expect(err.message).toBe(`the image ends after ${MiB} bytes`);
  });

  it('an I/O error of the source surfaces as it was thrown, code and all, and stops the writes', async () => {
    const f = await files();
    const inner = fileRange(f.src, 0, { name: 'src' });
    const eio = Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
    const { sink, writes } = recordingSink(f.dest, 'dest');
    const err = await rejection(
      moveBytes({
        source: { read: (buf, at) => (at >= MiB ? Promise.reject(eio) : inner.read(buf, at)) },
        sink,
        length: LENGTH,
      }),
      Error,
    );
    expect(err).toBe(eio);
    expect((err as Error & { code: string }).code).toBe('EIO');
    expect(Math.max(...writes.map((w) => w.at + w.len))).toBeLessThanOrEqual(MiB);
  });

  it('a write error surfaces as it was thrown', async () => {
    const f = await files();
    const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    const err = await rejection(
      moveBytes({
        source: fileRange(f.src, 0, { name: 'src' }),
        sink: { write: (_buf, at) => (at >= MiB ? Promise.reject(enospc) : Promise.resolve()) },
        length: LENGTH,
      }),
      Error,
    );
    expect(err).toBe(enospc);
  });

  it('a gate stops the move at its point after everything before it is written and reported', async () => {
    const f = await files();
    const failAt = MiB + 100;
    const gate: TransferGate = {
      due: (at) => at >= failAt,
      before: async (at) => {
        if (at >= failAt) throw new DeviceFaultError('drive-1', `failed at ${at}`);
        return failAt - at;
      },
      peekLimit: (at) => (at < failAt ? failAt - at : Number.POSITIVE_INFINITY),
      after: async () => undefined,
    };
    const progress: number[] = [];
    const err = await rejection(
      moveBytes({
        source: fileRange(f.src, 0, { name: 'src' }),
        sink: fileRange(f.dest, 0, { name: 'dest' }),
        length: LENGTH,
        gate,
        onProgress: (p) => progress.push(p.bytes),
      }),
      DeviceFaultError,
    );
    expect(err.message).toBe(`failed at ${failAt}`);
    expect(progress.at(-1)).toBe(failAt);
    expect((await f.dest.stat()).size).toBe(failAt);
    expect((await readFile(f.destFile)).equals(f.data.subarray(0, failAt))).toBe(true);
  });
});

// The hashing thread keeps every SharedArrayBuffer it is sent until its own rare garbage collection,
// so the memory a move shares with it must be reused, or the worker's RSS grows with every move.
describe('moveBytes: the memory shared with the hashing thread', () => {
  /** The eight 512 KiB buffers of one move's ring (mover.ts PIPELINE_BLOCKS). */
  const RING = 8;

  it('is reused by move after move, failed moves included, and every byte and checksum stays right', async () => {
    const f = await files();
    const move = (length: number) =>
      moveBytes({ source: fileRange(f.src, 0, { name: 'src' }), sink: fileRange(f.dest, 0, { name: 'dest' }), length });
    await move(LENGTH);
    const before = sharedBlockStats().made;
    // Shorter moves after longer ones: a reused buffer still holds the bytes of the move before.
    for (let i = 0; i < 30; i++) {
      const length = i % 2 === 0 ? LENGTH : 2 * MiB + i;
      const r = await move(length);
      expect(r.sha256).toBe(sha(f.data.subarray(0, length)));
    }
    const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    for (let i = 0; i < 5; i++) {
      const err = await rejection(
        moveBytes({
          source: fileRange(f.src, 0, { name: 'src' }),
          sink: { write: (_buf, at) => (at >= MiB ? Promise.reject(enospc) : Promise.resolve()) },
          length: LENGTH,
        }),
        Error,
      );
      expect(err).toBe(enospc);
    }
    expect(sharedBlockStats().made).toBe(before);
    expect((await readFile(f.destFile)).equals(f.data)).toBe(true);
  });

  it('is never handed to two moves at once: concurrent moves each write and hash their own bytes', async () => {
    const a = await files();
    const b = await files();
    const c = await files();
    const before = sharedBlockStats().made;
    const results = await Promise.all(
      [a, b, c].map((f) =>
        moveBytes({
          source: fileRange(f.src, 0, { name: 'src' }),
          sink: fileRange(f.dest, 0, { name: 'dest' }),
          length: LENGTH,
        }),
      ),
    );
    for (const [i, f] of [a, b, c].entries()) {
      expect(results[i]!.sha256).toBe(sha(f.data));
      expect((await readFile(f.destFile)).equals(f.data)).toBe(true);
    }
    // At most one more ring per move beyond those already pooled, and all of them back in the pool.
    expect(sharedBlockStats().made - before).toBeLessThanOrEqual(3 * RING);
    expect(sharedBlockStats().pooled).toBe(sharedBlockStats().made);
  });
});
