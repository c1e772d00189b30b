/**
 * The lab's copy devices: move byte ranges between volume files and cartridge files with tape
 * semantics (append at a position, a header per piece), a SHA-256 per piece, resumable
 * transfers, and the faults injected through the lab state.
 */
import { createHash, type Hash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import type { LoadedConfig } from '../../config/load';
import type { KuraPaths } from '../../config/paths';
import {
  ChecksumMismatchError,
  DeviceFaultError,
  InvalidInputError,
  KuraError,
  TapeFullError,
} from '../../domain/errors';
import { DEFAULT_SLOW_RATE_BYTES_PER_SEC, faultPoint, type Fault } from '../../domain/faults';
import { PieceHeaderSchema } from '../../domain/catalog';
import { LABEL_BYTES, jsonBlock, parseBlock } from '../../lab/files';
import type { LabState } from '../../lab/state';
import {
  PIECE_HEADER_BYTES,
  type CopyDeviceDriver,
  type CopyResult,
  type CopyToTapeRequest,
  type DeviceHealth,
  type PieceHeader,
  type ProgressFn,
  type ReadFromTapeRequest,
  type TapeAddress,
  type VerifyOnTapeRequest,
} from '../types';
import { findSite, labVolumeFile } from './storage';
import { cartridgeFile, findCartridge, findDrive } from './tape';

/** The header block as written on the cartridge: the PieceHeader, a kind tag, and the volume size. */
export const TapePieceHeaderSchema = PieceHeaderSchema.extend({
  kind: z.literal('kura-piece'),
  /**
   * Size of the whole volume the piece was cut from. Not part of PieceHeader; recorded so a read
   * can place percentage faults on the same volume bytes as the write did.
   */
  volumeSize: z.number().int().min(0).optional(),
});
export type TapePieceHeader = z.infer<typeof TapePieceHeaderSchema>;

export interface LabCopyOptions {
  /**
   * Progress is reported at least every this many bytes (8 MiB), so it sets the heartbeat rate
   * of an activity. Reads and writes themselves use blocks of at most 512 KiB.
   */
  chunkBytes?: number;
}

const DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024;
/** How stale the cached fault list may get, so a fault added by another process takes effect. */
const FAULT_REFRESH_MS = 200;
/** A hung transfer gives up on its own after this long, so a forgotten fault cannot pin a worker. */
const MAX_HANG_MS = 10 * 60 * 1000;
/** While throttled, chunks are cut to about this fraction of a second so progress stays smooth. */
const THROTTLED_CHUNKS_PER_SEC = 5;
/** Written bytes after which a background fdatasync is started (one at a time). */
const FLUSH_EVERY_BYTES = 64 * 1024 * 1024;
/**
 * Size of each read and write. Measured on a 2-vCPU VM over 1 GiB: 512 KiB blocks hash about 1.5×
 * faster than 8 MiB ones, which fall out of the CPU's cache between the read and the hash.
 */
const IO_BLOCK_BYTES = 512 * 1024;
/** Buffers in the ring: blocks read ahead, being hashed, and written concurrently behind (8 measured best). */
const PIPELINE_BLOCKS = 8;

/** CopyDeviceDriver over the lab's volume and cartridge files. */
export class LabCopyDevice implements CopyDeviceDriver {
  private readonly chunkBytes: number;

  constructor(
    private readonly loaded: LoadedConfig,
    private readonly paths: KuraPaths,
    private readonly state: LabState,
    opts: LabCopyOptions = {},
  ) {
    this.chunkBytes = opts.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    if (!Number.isSafeInteger(this.chunkBytes) || this.chunkBytes < 1) {
      throw new InvalidInputError(`chunkBytes must be a whole number of bytes of at least 1, not ${opts.chunkBytes}`);
    }
  }

  /**
   * Writes `source.length` bytes of the volume from `source.offset` as one piece at
   * `target.position` of the cartridge: header block, then data. Like a tape drive, writing at a
   * position discards whatever followed it, which is what makes a retry idempotent. With
   * `resumeBytes`, data already on the tape behind the same header is kept and only re-read to
   * rebuild the checksum.
   */
  async copyToTape(req: CopyToTapeRequest, onProgress: ProgressFn, signal?: AbortSignal): Promise<CopyResult> {
    const { site, source, target, header } = req;
    const where = `tape ${target.tape} of library ${target.library}`;
    requireInt(source.offset, 'source.offset', 0);
    requireInt(source.length, 'source.length', 1);
    requireInt(source.volumeSize, 'source.volumeSize', 1);
    requireInt(
      target.position,
      'target.position',
      LABEL_BYTES,
      `the first ${LABEL_BYTES} bytes of a cartridge hold its label`,
    );
    requireInt(req.resumeBytes, 'resumeBytes', 0);
    if (source.offset + source.length > source.volumeSize) {
      throw new InvalidInputError(
        `source range ${source.offset}+${source.length} runs past the end of volume ${source.array}/${source.volume} (${source.volumeSize} bytes); ask for at most ${source.volumeSize - source.offset} bytes from that offset`,
      );
    }
    if (header.offset !== source.offset || header.sizeBytes !== source.length) {
      throw new InvalidInputError(
        `the piece header says offset ${header.offset}, ${header.sizeBytes} bytes, but the copy is of offset ${source.offset}, ${source.length} bytes; the header must describe the data it precedes`,
      );
    }
    if (req.resumeBytes > source.length) {
      throw new InvalidInputError(
        `resumeBytes ${req.resumeBytes} is more than the piece's ${source.length} bytes; pass the bytes of this piece already copied`,
      );
    }
    const volume = await labVolumeFile(this.loaded, this.paths, site, source.array, source.volume);
    if (volume.sizeBytes !== source.volumeSize) {
      throw new InvalidInputError(
        `source.volumeSize is ${source.volumeSize} but volume ${site}/${source.array}/${source.volume} holds ${volume.sizeBytes} bytes; describe the volume again`,
      );
    }
    findDrive(this.loaded, site, target.library, target.drive);
    const cartridge = findCartridge(this.loaded, site, target.library, target.tape);
    const { file: tapeFile, endOfData } = await cartridgeFile(this.paths, site, target.library, target.tape);
    if (target.position > endOfData) {
      throw new InvalidInputError(
        `position ${target.position} is past the end of recorded data (${endOfData}) on ${where}; a tape is written in sequence, append at ${endOfData}`,
      );
    }
    const nextPosition = target.position + PIECE_HEADER_BYTES + source.length;
    if (nextPosition > cartridge.capacity) {
      throw new TapeFullError(
        `${where} has no room for ${source.length} bytes at position ${target.position}: it holds ${cartridge.capacity} bytes and ${Math.max(0, cartridge.capacity - target.position - PIECE_HEADER_BYTES)} are left; use another cartridge`,
        { library: target.library, tape: target.tape, position: target.position, capacityBytes: cartridge.capacity },
      );
    }
    const headerBlock = pieceHeaderBlock(header, source.volumeSize);
    const mounted = this.mountGuard(site, target.drive, target.tape);

    const dataStart = target.position + PIECE_HEADER_BYTES;
    const hash = createHash('sha256');
    const tape = await openOrFault(tapeFile, 'r+', target.tape);
    try {
      const src = await openOrFault(volume.file, 'r', source.volume);
      try {
        let resume = 0;
        if (req.resumeBytes > 0) {
          const onTape = await readHeaderAt(tape, target.position);
          // Keep only what lies behind the very same header; anything else is restarted from 0.
          if (onTape !== undefined && sameHeader(onTape, header))
            resume = Math.min(req.resumeBytes, Math.max(0, endOfData - dataStart));
        }
        if (resume > 0) {
          await tape.truncate(dataStart + resume);
          await rehash(tape, dataStart, resume, hash);
        } else {
          await tape.truncate(target.position);
          await writeFully(tape, headerBlock, target.position);
        }
        this.state.recordEvent(target.drive, 'copy-start', {
          site,
          library: target.library,
          tape: target.tape,
          position: target.position,
          resumeBytes: resume,
          backupId: header.backupId,
          piece: header.piece,
          offset: source.offset,
          length: source.length,
        });
        if (resume > 0) onProgress({ bytes: resume, total: source.length });

        const gate = new FaultGate(
          this.state,
          req.devices,
          source.volumeSize,
          source.offset,
          source.offset + source.length,
          target.drive,
          signal,
        );
        await pump({
          read: (buf, at) => readFully(src, buf, source.offset + at, source.volume),
          write: (buf, at) => {
            mounted();
            return writeFully(tape, buf, dataStart + at);
          },
          length: source.length,
          from: resume,
          chunkBytes: this.chunkBytes,
          hash,
          gate,
          volumeBase: source.offset,
          onProgress,
          flush: () => tape.datasync(),
        });
        await tape.sync();
        const sha256 = hash.digest('hex');
        this.state.recordEvent(target.drive, 'copy-done', {
          site,
          library: target.library,
          tape: target.tape,
          position: target.position,
          bytes: source.length,
          sha256,
          resumedBytes: resume,
        });
        return { sha256, bytes: source.length, position: target.position, nextPosition, resumedBytes: resume };
      } finally {
        await src.close();
      }
    } catch (err) {
      throw asDeviceFault(err, target.drive, `writing ${where}`);
    } finally {
      await tape.close();
    }
  }

  /**
   * A drive writes only the cartridge mounted in it. Checks now (nothing is written when the
   * cartridge is not in the drive) and returns a check for the copy to repeat (at most every
   * 100 ms): a cartridge unloaded mid-copy — its job released it — takes no more bytes.
   */
  private mountGuard(site: string, drive: string, tape: string): () => void {
    let checkedAt = 0;
    let started = false;
    const check = () => {
      const now = Date.now();
      if (started && now - checkedAt < 100) return;
      checkedAt = now;
      const inDrive = this.state.driveContents(site, drive);
      if (inDrive !== tape) {
        const there = inDrive ? `${inDrive} is in it` : 'the drive is empty';
        throw new DeviceFaultError(
          drive,
          started
            ? `cartridge ${tape} left drive ${drive} during the copy (${there}); no more bytes are written to it`
            : `cartridge ${tape} is not in drive ${drive} (${there}); load it first — nothing was written`,
        );
      }
      started = true;
    };
    check();
    return check;
  }

  async verifyOnTape(
    req: VerifyOnTapeRequest,
    onProgress: ProgressFn,
    signal?: AbortSignal,
  ): Promise<{ sha256: string; bytes: number }> {
    const { site } = req;
    const image = createHash('sha256');
    const total = req.pieces.reduce((n, p) => n + p.expect.sizeBytes, 0);
    const buf = Buffer.allocUnsafe(Math.min(IO_BLOCK_BYTES, Math.max(1, total)));
    let done = 0;
    /** The open cartridge of the current run of pieces; a copy cut by failover spans several. */
    let open: { key: string; fh: FileHandle; endOfData: number } | undefined;
    const tapes = new Set<string>();
    try {
      for (const p of req.pieces) {
        const source = p.source;
        const key = `${source.library}/${source.tape}`;
        if (open?.key !== key) {
          await open?.fh.close();
          open = undefined;
          findDrive(this.loaded, site, source.library, source.drive);
          findCartridge(this.loaded, site, source.library, source.tape);
          const { file, endOfData } = await cartridgeFile(this.paths, site, source.library, source.tape);
          open = { key, fh: await openOrFault(file, 'r', source.tape), endOfData };
          tapes.add(key);
        }
        await expectPieceAt(open.fh, open.endOfData, source, p.expect);
        const piece = createHash('sha256');
        for (let at = 0; at < p.expect.sizeBytes;) {
          if (signal?.aborted)
            throw new DeviceFaultError(
              source.drive,
              `verification of ${source.tape} was stopped: ${String(signal.reason ?? 'cancelled')}`,
            );
          const len = Math.min(buf.length, p.expect.sizeBytes - at);
          const block = buf.subarray(0, len);
          await readFully(open.fh, block, source.position + PIECE_HEADER_BYTES + at, source.tape);
          piece.update(block);
          image.update(block);
          at += len;
          done += len;
          if (done % this.chunkBytes < len || done === total) onProgress({ bytes: done, total });
        }
        const got = piece.digest('hex');
        if (got !== p.sha256) {
          throw new ChecksumMismatchError(
            `read back from ${source.library}/${source.tape} at position ${source.position}, piece ${p.expect.piece} of ${p.expect.backupId} hashes to ${got} but was written as ${p.sha256}; the cartridge did not keep what was written — back up again onto another cartridge`,
            { library: source.library, tape: source.tape, position: source.position },
          );
        }
      }
    } finally {
      await open?.fh.close();
    }
    const sha256 = image.digest('hex');
    const first = req.pieces[0]?.source;
    this.state.recordEvent(first?.drive ?? 'verify', 'verify-done', {
      site,
      tapes: [...tapes],
      pieces: req.pieces.length,
      bytes: done,
      sha256,
    });
    return { sha256, bytes: done };
  }

  /**
   * The lab's self-test: a device with a `fail` or `hang` fault still registered reports it. A
   * `slow` device answers, so it is healthy.
   */
  async probe(site: string, devices: string[]): Promise<DeviceHealth[]> {
    findSite(this.loaded, site);
    return this.state
      .faultsFor(devices)
      .filter((f) => f.kind !== 'slow')
      .map((f) => ({
        device: f.device,
        reason: `${f.kind === 'hang' ? 'stops answering' : 'fails'} from volume byte ${'bytes' in f.after ? f.after.bytes : `${f.after.percent}%`} (lab fault ${f.id})`,
      }));
  }

  /**
   * Reads the piece at `source.position` into `destination.path` at `destination.offset`,
   * checking first that the header there is the one expected. The destination is created when
   * missing and never truncated, so the pieces of a backup can be restored into one file.
   */
  async readFromTape(
    req: ReadFromTapeRequest,
    onProgress: ProgressFn,
    signal?: AbortSignal,
  ): Promise<{ sha256: string; bytes: number; resumedBytes: number }> {
    const { site, source, expect, destination } = req;
    const where = `tape ${source.tape} of library ${source.library}`;
    requireInt(
      source.position,
      'source.position',
      LABEL_BYTES,
      `the first ${LABEL_BYTES} bytes of a cartridge hold its label`,
    );
    requireInt(destination.offset, 'destination.offset', 0);
    requireInt(req.resumeBytes, 'resumeBytes', 0);
    if (!path.isAbsolute(destination.path)) {
      throw new InvalidInputError(`destination.path "${destination.path}" must be an absolute path`);
    }
    findDrive(this.loaded, site, source.library, source.drive);
    findCartridge(this.loaded, site, source.library, source.tape);
    const { file: tapeFile, endOfData } = await cartridgeFile(this.paths, site, source.library, source.tape);

    const tape = await openOrFault(tapeFile, 'r', source.tape);
    try {
      const found = await expectPieceAt(tape, endOfData, source, expect);
      const dataStart = source.position + PIECE_HEADER_BYTES;
      if (req.resumeBytes > found.sizeBytes) {
        throw new InvalidInputError(
          `resumeBytes ${req.resumeBytes} is more than the piece's ${found.sizeBytes} bytes; pass the bytes of this piece already restored`,
        );
      }

      await mkdir(path.dirname(destination.path), { recursive: true });
      // O_CREAT without O_TRUNC: create when missing, and never cut a file other pieces went into.
      const dest = await openOrFault(destination.path, fsConstants.O_RDWR | fsConstants.O_CREAT, source.drive);
      try {
        const hash = createHash('sha256');
        let resume = 0;
        if (req.resumeBytes > 0) {
          const present = (await dest.stat()).size - destination.offset;
          resume = Math.min(req.resumeBytes, Math.max(0, present));
          await rehash(dest, destination.offset, resume, hash);
        }
        this.state.recordEvent(source.drive, 'read-start', {
          site,
          library: source.library,
          tape: source.tape,
          position: source.position,
          resumeBytes: resume,
          backupId: found.backupId,
          piece: found.piece,
          destination: destination.path,
        });
        if (resume > 0) onProgress({ bytes: resume, total: found.sizeBytes });

        const volumeSize = found.volumeSize ?? found.offset + found.sizeBytes;
        const gate = new FaultGate(
          this.state,
          req.devices,
          volumeSize,
          found.offset,
          found.offset + found.sizeBytes,
          source.drive,
          signal,
        );
        await pump({
          read: (buf, at) => readFully(tape, buf, dataStart + at, source.tape),
          write: (buf, at) => writeFully(dest, buf, destination.offset + at),
          length: found.sizeBytes,
          from: resume,
          chunkBytes: this.chunkBytes,
          hash,
          gate,
          volumeBase: found.offset,
          onProgress,
          flush: () => dest.datasync(),
        });
        await dest.sync();
        const sha256 = hash.digest('hex');
        this.state.recordEvent(source.drive, 'read-done', {
          site,
          library: source.library,
          tape: source.tape,
          position: source.position,
          bytes: found.sizeBytes,
          sha256,
          resumedBytes: resume,
        });
        return { sha256, bytes: found.sizeBytes, resumedBytes: resume };
      } finally {
        await dest.close();
      }
    } catch (err) {
      throw asDeviceFault(err, source.drive, `reading ${where}`);
    } finally {
      await tape.close();
    }
  }
}

/** The NUL-padded header block written in front of a piece. */
export function pieceHeaderBlock(header: PieceHeader, volumeSize: number): Buffer {
  const value: TapePieceHeader = {
    kind: 'kura-piece',
    backupId: header.backupId,
    target: header.target,
    job: header.job,
    copy: header.copy,
    piece: header.piece,
    offset: header.offset,
    sizeBytes: header.sizeBytes,
    dataTime: header.dataTime,
    volumeSize,
  };
  const parsed = TapePieceHeaderSchema.safeParse(value);
  if (!parsed.success)
    throw new InvalidInputError(
      `the piece header is not valid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  const size = Buffer.byteLength(JSON.stringify(value), 'utf8');
  if (size > PIECE_HEADER_BYTES) {
    throw new InvalidInputError(
      `the piece header of ${header.backupId} takes ${size} bytes as JSON, more than the ${PIECE_HEADER_BYTES}-byte header block; shorten the backup id, target or job`,
    );
  }
  return jsonBlock(value, PIECE_HEADER_BYTES);
}

/** The piece header at a position of an open cartridge, or undefined when there is none. */
/**
 * The header of the piece at `source.position`, which must be the expected piece and be whole on
 * the cartridge; ChecksumMismatchError saying what is there instead.
 */
async function expectPieceAt(
  tape: FileHandle,
  endOfData: number,
  source: TapeAddress & { position: number },
  expect: Pick<PieceHeader, 'backupId' | 'piece' | 'sizeBytes'>,
): Promise<TapePieceHeader> {
  const where = `tape ${source.tape} of library ${source.library}`;
  const found =
    source.position + PIECE_HEADER_BYTES <= endOfData ? await readHeaderAt(tape, source.position) : undefined;
  if (
    found === undefined ||
    found.backupId !== expect.backupId ||
    found.piece !== expect.piece ||
    found.sizeBytes !== expect.sizeBytes
  ) {
    throw new ChecksumMismatchError(
      `${where} holds ${found === undefined ? 'no piece header' : `piece ${found.piece} of ${found.backupId} (${found.sizeBytes} bytes)`} at position ${source.position}, ` +
        `not piece ${expect.piece} of ${expect.backupId} (${expect.sizeBytes} bytes); the catalog and the cartridge disagree — check the catalog row or read another copy`,
      { library: source.library, tape: source.tape, position: source.position, found: found ?? null },
    );
  }
  const dataStart = source.position + PIECE_HEADER_BYTES;
  if (dataStart + found.sizeBytes > endOfData) {
    throw new ChecksumMismatchError(
      `piece ${found.piece} of ${found.backupId} at position ${source.position} of ${where} is incomplete: ${Math.max(0, endOfData - dataStart)} of ${found.sizeBytes} bytes are on the tape; read another copy`,
      { library: source.library, tape: source.tape, position: source.position },
    );
  }
  return found;
}

export async function readHeaderAt(fh: FileHandle, position: number): Promise<TapePieceHeader | undefined> {
  const block = Buffer.alloc(PIECE_HEADER_BYTES);
  const { bytesRead } = await fh.read(block, 0, PIECE_HEADER_BYTES, position);
  if (bytesRead < PIECE_HEADER_BYTES) return undefined;
  return parseBlock(block, TapePieceHeaderSchema);
}

function sameHeader(a: TapePieceHeader, b: PieceHeader): boolean {
  return (
    a.backupId === b.backupId &&
    a.target === b.target &&
    a.job === b.job &&
    a.copy === b.copy &&
    a.piece === b.piece &&
    a.offset === b.offset &&
    a.sizeBytes === b.sizeBytes &&
    a.dataTime === b.dataTime
  );
}

interface PumpArgs {
  /** Fill `buf` completely with the bytes at `at` (relative to the piece). */
  read(buf: Buffer, at: number): Promise<void>;
  write(buf: Buffer, at: number): Promise<void>;
  length: number;
  /** Bytes already done (resumed). */
  from: number;
  /** Progress is reported at least every this many bytes. */
  chunkBytes: number;
  hash: Hash;
  gate: FaultGate;
  /** Volume byte of the piece's first byte, where faults are placed. */
  volumeBase: number;
  onProgress: ProgressFn;
  /** Makes the written bytes durable (fdatasync of the destination). */
  flush(): Promise<void>;
}

/**
 * Moves the bytes through a ring of small buffers so that reading, hashing and writing overlap:
 * reads run ahead into free buffers, this thread hashes each block in order and queues its
 * write, and a buffer is refilled only once its write has finished. Hashing is the one step that
 * cannot be split, so the ring is sized to keep it busy: several blocks are read ahead and
 * written behind, which hides the round trips to the I/O threads, and blocks stay small enough to
 * still be in the CPU's cache when they are hashed and written.
 */
async function pump(a: PumpArgs): Promise<void> {
  const blockBytes = Math.min(a.chunkBytes, IO_BLOCK_BYTES);
  const slots = Array.from({ length: PIPELINE_BLOCKS }, () => ({
    buf: Buffer.allocUnsafe(blockBytes),
    free: Promise.resolve(),
  }));
  let nextSlot = 0;
  const reads: { at: number; len: number; slot: (typeof slots)[number]; p: Promise<void> }[] = [];
  let planned = a.from;
  let done = a.from;
  let written = a.from;
  let reported = a.from;
  let failure: { err: unknown } | undefined;
  // Set from the write and flush callbacks; read through a function so no stale narrowing hides it.
  const rethrow = () => {
    if (failure !== undefined) throw failure.err;
  };
  // Writes run concurrently (positional, so order on the medium is exact); `written` only moves
  // over the completed prefix, so progress and resume points never count a byte not yet written.
  const inflight: { end: number; len: number; cut: boolean; done: boolean; p: Promise<void> }[] = [];
  const allWritten = async () => {
    while (inflight.length > 0) await Promise.all(inflight.map((w) => w.p));
  };
  const advance = () => {
    while (inflight.length > 0 && (inflight[0] as (typeof inflight)[number]).done) {
      const w = inflight.shift() as (typeof inflight)[number];
      written = w.end;
      unflushed += w.len;
      if (unflushed >= FLUSH_EVERY_BYTES && flushing === undefined) startFlush();
      // A block cut short by the gate ends at a fault's byte or is a throttled step: report it.
      if (written - reported >= a.chunkBytes || written === a.length || w.cut) report();
    }
  };
  // Flushing as the copy goes, rather than only at the end, lets the disk write back while later
  // blocks are still being read and hashed (the final fsync then has little left to do), and
  // keeps the bytes reported as progress close to the bytes that would survive a crash.
  let flushing: Promise<void> | undefined;
  let unflushed = 0;

  const report = () => {
    reported = written;
    a.onProgress({ bytes: written, total: a.length });
  };
  const planReads = () => {
    while (reads.length < PIPELINE_BLOCKS - 1 && planned < a.length) {
      const at = planned;
      const len = Math.min(blockBytes, a.length - at, a.gate.peekLimit(a.volumeBase + at));
      const slot = slots[nextSlot] as (typeof slots)[number];
      nextSlot = (nextSlot + 1) % slots.length;
      const p = slot.free.then(() => a.read(slot.buf.subarray(0, len), at));
      // Awaited in order below or in finally; this only keeps Node from calling it unhandled meanwhile.
      p.catch(() => undefined);
      reads.push({ at, len, slot, p });
      planned += len;
    }
  };
  const dropReads = async () => {
    for (const r of reads.splice(0)) await r.p.catch(() => undefined);
  };
  const startFlush = () => {
    unflushed = 0;
    flushing = a.flush().then(
      () => {
        flushing = undefined;
      },
      (err: unknown) => {
        failure ??= { err };
        flushing = undefined;
      },
    );
  };

  try {
    while (done < a.length) {
      rethrow();
      // Everything queued is written and reported before a fault stops or stalls the transfer,
      // so a retry resumes from the last byte really on the medium.
      if (a.gate.due(a.volumeBase + done)) {
        await allWritten();
        rethrow();
        if (written > reported) report();
      }
      const limit = await a.gate.before(a.volumeBase + done);
      planReads();
      const r = reads.shift();
      if (r === undefined || r.at !== done) throw new Error(`internal: read-ahead out of order at ${done}`);
      await r.p;
      const len = Math.min(r.len, a.length - done, limit);
      if (len < r.len) {
        // The read-ahead was planned before a fault appeared and no longer fits: take what is
        // needed from this block and read the rest again.
        await dropReads();
        planned = done + len;
      }
      const at = done;
      const end = done + len;
      const cut = len === limit;
      const block = r.slot.buf.subarray(0, len);
      // The write is queued first so the I/O thread copies the block while this thread hashes it.
      const write = failure === undefined ? a.write(block, at) : Promise.resolve();
      a.hash.update(block);
      r.slot.free = write.catch(() => undefined);
      const entry = { end, len, cut, done: false, p: Promise.resolve() };
      entry.p = write.then(
        () => {
          entry.done = true;
          advance();
        },
        (err: unknown) => {
          failure ??= { err };
        },
      );
      inflight.push(entry);
      done = end;
      planReads();
      await a.gate.after(len);
    }
    await allWritten();
    rethrow();
  } finally {
    // Never leave a read, write or flush in flight on a buffer or file handle the caller is about to drop.
    await dropReads();
    await allWritten();
    if (flushing !== undefined) await flushing;
  }
  rethrow();
}

/**
 * Applies the faults injected on the devices of one transfer. A fault fires when the transfer
 * reaches its volume byte, or at the first chunk when the piece starts past that byte (a broken
 * device stays broken); a piece that ends before the byte never meets it.
 */
class FaultGate {
  private faults: Fault[] = [];
  private readAt = Number.NEGATIVE_INFINITY;
  /** Faults already applied in this transfer: each acts at most once per transfer. */
  private readonly fired = new Set<number>();
  private throttle: { rate: number; since: number; bytes: number } | undefined;

  constructor(
    private readonly state: LabState,
    private readonly devices: string[],
    private readonly volumeSize: number,
    private readonly pieceStart: number,
    private readonly pieceEnd: number,
    /** The drive the transfer runs on, named in events and in errors not tied to a fault. */
    private readonly drive: string,
    private readonly signal: AbortSignal | undefined,
  ) {}

  /** Fires the faults due at volume byte `vpos`; returns how many bytes the next chunk may take. */
  async before(vpos: number): Promise<number> {
    this.throwIfAborted();
    this.refresh(false);
    for (const f of this.faults) {
      if (this.fired.has(f.id) || this.point(f) > vpos) continue;
      this.fired.add(f.id);
      const detail = { faultId: f.id, kind: f.kind, volumeByte: vpos, drive: this.drive };
      if (f.kind === 'fail') {
        this.state.markTriggered(f.id);
        this.state.recordEvent(f.device, 'fault-fail', detail);
        throw new DeviceFaultError(f.device, `lab fault on ${f.device}: injected failure at volume byte ${vpos}`);
      }
      if (f.kind === 'slow') {
        this.state.markTriggered(f.id);
        const rate = Math.min(
          f.rateBytesPerSec ?? DEFAULT_SLOW_RATE_BYTES_PER_SEC,
          this.throttle?.rate ?? Number.POSITIVE_INFINITY,
        );
        this.state.recordEvent(f.device, 'fault-slow', { ...detail, rateBytesPerSec: rate });
        this.throttle = { rate, since: Date.now(), bytes: 0 };
      } else {
        this.state.recordEvent(f.device, 'fault-hang', detail);
        await this.hang(f, vpos);
      }
    }
    return this.peekLimit(vpos);
  }

  /** Whether a fault is due to fire at volume byte `vpos` (the fault list is refreshed first). */
  due(vpos: number): boolean {
    this.refresh(false);
    return this.faults.some((f) => !this.fired.has(f.id) && this.point(f) <= vpos);
  }

  /** How far the next chunk from `vpos` may reach without stepping over a fault's byte. */
  peekLimit(vpos: number): number {
    let limit = Number.POSITIVE_INFINITY;
    for (const f of this.faults) {
      const p = this.point(f);
      if (!this.fired.has(f.id) && p > vpos) limit = Math.min(limit, p - vpos);
    }
    if (this.throttle !== undefined)
      limit = Math.min(limit, Math.max(64 * 1024, Math.floor(this.throttle.rate / THROTTLED_CHUNKS_PER_SEC)));
    return limit;
  }

  /** Accounts a finished chunk; under a `slow` fault, waits until the rate allows the next one. */
  async after(bytes: number): Promise<void> {
    if (this.throttle === undefined) return;
    this.throttle.bytes += bytes;
    const due = this.throttle.since + (this.throttle.bytes / this.throttle.rate) * 1000;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait, this.signal);
    this.throwIfAborted();
  }

  /**
   * Stops making progress until the transfer is aborted, the fault is cleared, or the hang limit
   * passes. A `once` hang is consumed only when it ends, so it is not gone (and the hang over)
   * the instant it starts.
   */
  private async hang(f: Fault, vpos: number): Promise<void> {
    if (!f.once) this.state.markTriggered(f.id);
    const deadline = Date.now() + MAX_HANG_MS;
    for (;;) {
      const aborted = this.signal?.aborted === true;
      if (aborted || Date.now() >= deadline) {
        if (f.once) this.state.markTriggered(f.id);
        this.state.recordEvent(f.device, 'fault-hang-ended', {
          faultId: f.id,
          volumeByte: vpos,
          drive: this.drive,
          reason: aborted ? 'aborted' : 'hang limit',
        });
        throw new DeviceFaultError(
          f.device,
          `lab fault on ${f.device}: the transfer hung at volume byte ${vpos} and ${aborted ? 'was aborted' : `gave up after ${MAX_HANG_MS / 60000} minutes`}`,
        );
      }
      await sleep(Math.min(FAULT_REFRESH_MS, deadline - Date.now()), this.signal);
      this.refresh(true);
      if (!this.faults.some((x) => x.id === f.id)) {
        this.state.recordEvent(f.device, 'fault-hang-cleared', { faultId: f.id, volumeByte: vpos, drive: this.drive });
        return;
      }
    }
  }

  private refresh(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.readAt < FAULT_REFRESH_MS) return;
    this.faults = this.state.faultsFor(this.devices);
    this.readAt = now;
  }

  private point(f: Fault): number {
    const p = faultPoint(f.after, this.volumeSize);
    // Past the piece's end the fault is never met; before its start it fires at once.
    return p >= this.pieceEnd ? Number.POSITIVE_INFINITY : Math.max(p, this.pieceStart);
  }

  private throwIfAborted(): void {
    if (this.signal?.aborted !== true) return;
    const reason: unknown = this.signal.reason;
    // The caller's reason (e.g. Temporal's cancellation) is re-thrown as is, so it keeps its meaning.
    throw reason instanceof Error
      ? reason
      : new DeviceFaultError(this.drive, `the transfer on drive ${this.drive} was aborted`);
  }
}

/** Waits `ms`, or less when the signal aborts (the caller checks the signal afterwards). */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener('abort', done, { once: true });
  });
}

async function rehash(fh: FileHandle, start: number, length: number, hash: Hash): Promise<void> {
  const buf = Buffer.allocUnsafe(Math.min(IO_BLOCK_BYTES, Math.max(1, length)));
  for (let at = 0; at < length;) {
    const len = Math.min(buf.length, length - at);
    await readFully(fh, buf.subarray(0, len), start + at, 'resume');
    hash.update(buf.subarray(0, len));
    at += len;
  }
}

async function readFully(fh: FileHandle, buf: Buffer, position: number, device: string): Promise<void> {
  for (let got = 0; got < buf.length;) {
    const { bytesRead } = await fh.read(buf, got, buf.length - got, position + got);
    if (bytesRead === 0)
      throw new DeviceFaultError(
        device,
        `unexpected end of data on ${device} at byte ${position + got}; the file is shorter than the inventory says`,
      );
    got += bytesRead;
  }
}

async function writeFully(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  for (let put = 0; put < buf.length;) {
    const { bytesWritten } = await fh.write(buf, put, buf.length - put, position + put);
    put += bytesWritten;
  }
}

async function openOrFault(file: string, flags: string | number, device: string): Promise<FileHandle> {
  try {
    return await open(file, flags, 0o644);
  } catch (err) {
    throw new DeviceFaultError(device, `cannot open ${file} for ${device}: ${(err as Error).message}`, err);
  }
}

/** An operating-system error (EIO, ENOSPC, …) becomes a retryable fault of the drive; Kura errors and abort reasons pass through. */
function asDeviceFault(err: unknown, drive: string, doing: string): unknown {
  if (err instanceof KuraError) return err;
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  if (typeof code === 'string' && code.startsWith('E')) {
    return new DeviceFaultError(drive, `I/O error on drive ${drive} while ${doing}: ${(err as Error).message}`, err);
  }
  return err;
}

function requireInt(n: number, what: string, min: number, why?: string): void {
  if (!Number.isSafeInteger(n) || n < min) {
    throw new InvalidInputError(`${what} must be a whole number of at least ${min}${why ? ` (${why})` : ''}, not ${n}`);
  }
}
