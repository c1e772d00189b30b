/**
 * The lab's copy devices: move byte ranges between volume files and cartridge files with tape
 * semantics (append at a position, a header per piece), a SHA-256 per piece, resumable
 * transfers, and the faults injected through the lab state. The bytes move through the data
 * mover; the piece format is in piece-format.ts, the fault injection in src/lab/fault-gate.ts.
 */
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import type { LoadedConfig } from '../../config/load';
import type { KuraPaths } from '../../config/paths';
import {
  ChecksumMismatchError,
  DeviceFaultError,
  InvalidInputError,
  KuraError,
  TapeFullError,
} from '../../domain/errors';
import { fileRange } from '../../datamover/file-range';
import { abortableSleep, moveBytes, type ByteSource, type MoveRequest } from '../../datamover/mover';
import { StoreName, type StoreName as StoreNameT } from '../../domain/store';
import { ChunkStore } from '../../store/chunk-store';
import { storeRoots } from '../../store/lag';
import { openStoreBackup } from '../../store/range';
import { newSha256 } from '../../datamover/sha256';
import { FaultGate } from '../../lab/fault-gate';
import { LABEL_BYTES, readCartridgeLabel, sizeOf } from '../../lab/files';
import type { LabState } from '../../lab/state';
import {
  PIECE_HEADER_BYTES,
  type CopyDeviceDriver,
  type CopyResult,
  type CopyToTapeRequest,
  type DeviceHealth,
  type ProgressFn,
  type ReadFromTapeRequest,
  type SegmentCommand,
  type TapeAddress,
  type VerifyOnTapeRequest,
  type VolumeImages,
  type VolumeRef,
} from '../types';
import { labReplicaPath } from './array-functions';
import { expectPieceAt, pieceHeaderBlock, readHeaderAt, sameHeader } from './piece-format';
import { findSite, labVolumeFile } from './storage';
import { cartridgeFile, cartridgeSpaceError, findCartridge, findDrive } from './tape';

export interface LabCopyOptions {
  /**
   * Progress is reported at least every this many bytes (8 MiB), so it sets the heartbeat rate
   * of an activity. Reads and writes themselves use blocks of at most 512 KiB.
   */
  chunkBytes?: number;
}

const DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024;
/** How long a probe waits for a device's answer unless told otherwise. */
const DEFAULT_PROBE_TIMEOUT_MS = 5000;
/** How often a probe held by a `hang` fault looks whether the fault was cleared. */
const PROBE_POLL_MS = 100;

/**
 * The images of the lab arrays' volumes: the volume's file, the replica of its split pair, or one
 * of its snapshots, as the lab state records them now.
 */
export class LabVolumeImages implements VolumeImages {
  constructor(
    private readonly loaded: LoadedConfig,
    private readonly paths: KuraPaths,
    private readonly state: LabState,
  ) {}

  async imageFile(ref: VolumeRef, readPath?: string): Promise<{ file: string; sizeBytes: number }> {
    const volume = await labVolumeFile(this.loaded, this.paths, ref.site, ref.array, ref.volume);
    if (readPath === undefined) return volume;
    const file = path.resolve(readPath);
    const pair = this.state.pair(ref.site, ref.array, ref.volume);
    const replica = pair?.state === 'split' ? labReplicaPath(this.paths, ref.site, ref.array, ref.volume) : undefined;
    const snapshots = this.state
      .snapshots(ref.site, ref.array)
      .filter((s) => s.volume === ref.volume)
      .map((s) => path.resolve(s.file));
    if (file !== replica && !snapshots.includes(file)) {
      const known = [...(replica ? [replica] : []), ...snapshots];
      throw new InvalidInputError(
        `readPath ${file} is not an image of ${ref.array}/${ref.volume}: the copy reads only the volume's split replica or its snapshots (${known.join(', ') || 'it has none now'}); plan the copy again`,
      );
    }
    return { file, sizeBytes: volume.sizeBytes };
  }
}

/** CopyDeviceDriver over the lab's volume and cartridge files. */
export class LabCopyDevice implements CopyDeviceDriver {
  private readonly chunkBytes: number;
  private readonly images: VolumeImages;
  /** The deduplicated store's two copies, which a copy of a store backup reads (docs/adr/042). */
  private readonly stores: Record<StoreNameT, ChunkStore>;

  /**
   * `images` says which files hold a volume's images: the engine of each volume's array (the
   * worker's ByArrayDrivers), or by default the lab's own arrays only.
   */
  constructor(
    private readonly loaded: LoadedConfig,
    private readonly paths: KuraPaths,
    private readonly state: LabState,
    opts: LabCopyOptions = {},
    images?: VolumeImages,
  ) {
    this.images = images ?? new LabVolumeImages(loaded, paths, state);
    const roots = storeRoots(paths.home, loaded.config.store);
    this.stores = { primary: new ChunkStore(roots.primary), copy: new ChunkStore(roots.copy) };
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
    // A backup server's data path: the lab's copy throttle (lab.serverCopyRate) holds it.
    return this.writePiece(req, { rate: this.loaded.config.lab.serverCopyRate }, onProgress, signal);
  }

  /**
   * A copy device's segment command: the same piece written the same way, from the copy device's
   * own worker and not held to the backup servers' throttle; its events name the copy device.
   */
  async executeSegment(cmd: SegmentCommand, onProgress: ProgressFn, signal?: AbortSignal): Promise<CopyResult> {
    requireInt(cmd.sourceAddress, 'sourceAddress', 0);
    requireInt(cmd.length, 'length', 1);
    if (!cmd.devices.includes(cmd.copyDevice)) {
      throw new InvalidInputError(
        `the segment command of copy device ${cmd.copyDevice} lists devices ${cmd.devices.join(', ')}, which do not include it; list the devices the bytes cross, the copy device first`,
      );
    }
    const site = findSite(this.loaded, cmd.site);
    if (!site.copyDevices.some((c) => c.name === cmd.copyDevice && c.segmentCopy)) {
      throw new InvalidInputError(
        `site ${cmd.site} has no copy device ${cmd.copyDevice} able to run segment commands; copy through a backup server (LAN-free) instead`,
      );
    }
    return this.writePiece(
      {
        site: cmd.site,
        devices: cmd.devices,
        source: { ...cmd.source, offset: cmd.sourceAddress, length: cmd.length },
        target: { ...cmd.target, position: cmd.targetAddress },
        header: cmd.header,
        resumeBytes: cmd.resumeBytes,
      },
      { copyDevice: cmd.copyDevice },
      onProgress,
      signal,
    );
  }

  private async writePiece(
    req: CopyToTapeRequest,
    by: { rate?: number | undefined; copyDevice?: string },
    onProgress: ProgressFn,
    signal?: AbortSignal,
  ): Promise<CopyResult> {
    const { site, source, target, header } = req;
    const where = `tape ${target.tape} of library ${target.library}`;
    requireInt(source.offset, 'source.offset', 0);
    requireInt(source.length, 'source.length', 1);
    requireInt(source.volumeSize, 'source.volumeSize', 1);
    requirePosition(target.position, 'target.position');
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
    const image = await this.openSource(req, by.copyDevice);
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
    return withCartridge(tapeFile, 'r+', target, `writing ${where}`, async (tape) => {
      const src = await image.open();
      try {
        let resume = 0;
        if (req.resumeBytes > 0) {
          const onTape = await readHeaderAt(tape, target.position);
          // Keep only what lies behind the very same header; anything else is restarted from 0.
          if (onTape !== undefined && sameHeader(onTape, header))
            resume = Math.min(req.resumeBytes, Math.max(0, endOfData - dataStart));
        }
        const onCartridge = fileRange(tape, dataStart, { name: target.tape });
        if (resume > 0) {
          await tape.truncate(dataStart + resume);
        } else {
          await tape.truncate(target.position);
          await fileRange(tape, target.position, { name: target.tape }).write(headerBlock, 0);
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
          ...(by.copyDevice === undefined ? {} : { copyDevice: by.copyDevice }),
        });

        // A resumed copy's checksum is rebuilt from the bytes already on the cartridge.
        const sha256 = await this.movePiece(
          'copy-done',
          { ...target, site, devices: req.devices, volumeSize: source.volumeSize, pieceStart: source.offset },
          {
            source: src.range(source.offset),
            sink: {
              read: onCartridge.read,
              write: (buf, at) => {
                mounted();
                return onCartridge.write(buf, at);
              },
              flush: onCartridge.flush,
            },
            length: source.length,
            from: resume,
          },
          tape,
          onProgress,
          signal,
          by.rate,
        );
        return { sha256, bytes: source.length, position: target.position, nextPosition, resumedBytes: resume };
      } finally {
        await src.close();
      }
    });
  }

  /**
   * Where a piece's bytes come from: the volume's image file, or a backup in the deduplicated store
   * (docs/adr/042), whose chunks are read in order and checked against their digests. Checked
   * before the cartridge is touched; opened once the copy begins.
   */
  private async openSource(
    req: CopyToTapeRequest,
    copyDevice: string | undefined,
  ): Promise<{ open: () => Promise<{ range: (start: number) => ByteSource; close: () => Promise<void> }> }> {
    const { site, source } = req;
    if (source.store !== undefined) {
      const from = source.store;
      if (copyDevice !== undefined)
        throw new InvalidInputError(
          `copy device ${copyDevice} reads volumes, not the deduplicated store; copy store backup ${from.backupId} through a backup server (LAN-free)`,
        );
      const opened = await openStoreBackup({
        stores: [StoreName.Primary, StoreName.Copy].map((name) => ({ name, store: this.stores[name] })),
        backupId: from.backupId,
        indexDigest: from.indexDigest,
      });
      if (opened.index.sizeBytes !== source.volumeSize)
        throw new InvalidInputError(
          `source.volumeSize is ${source.volumeSize} but store backup ${from.backupId} holds ${opened.index.sizeBytes} bytes; describe the backup again`,
        );
      return { open: async () => ({ range: (start) => opened.range(start), close: async () => undefined }) };
    }
    const volume = await this.images.imageFile({ site, array: source.array, volume: source.volume }, source.readPath);
    if (volume.sizeBytes !== source.volumeSize) {
      throw new InvalidInputError(
        `source.volumeSize is ${source.volumeSize} but volume ${site}/${source.array}/${source.volume} holds ${volume.sizeBytes} bytes; describe the volume again`,
      );
    }
    if (source.readPath !== undefined) await requireImageSize(volume.file, source);
    return {
      open: async () => {
        const fh = await openOrFault(volume.file, 'r', source.volume);
        return { range: (start) => fileRange(fh, start, { name: source.volume }), close: () => fh.close() };
      },
    };
  }

  /**
   * Moves one piece between a cartridge and a file through the faults injected on its devices,
   * makes it durable in `durable` (the file written), records `event` and returns the piece's
   * SHA-256. A resumed move (`move.from`) rebuilds the checksum from the bytes already at the sink.
   */
  private async movePiece(
    event: 'copy-done' | 'read-done',
    piece: TapeAddress & { position: number; devices: string[]; volumeSize: number; pieceStart: number },
    move: Pick<MoveRequest, 'source' | 'sink' | 'length'> & { from: number },
    durable: FileHandle,
    onProgress: ProgressFn,
    signal: AbortSignal | undefined,
    rateBytesPerSec?: number,
  ): Promise<string> {
    const gate = new FaultGate(this.state, {
      devices: piece.devices,
      volumeSize: piece.volumeSize,
      pieceStart: piece.pieceStart,
      pieceEnd: piece.pieceStart + move.length,
      drive: piece.drive,
      signal,
    });
    const { sha256 } = await moveBytes({
      ...move,
      progressBytes: this.chunkBytes,
      ...(rateBytesPerSec === undefined ? {} : { rateBytesPerSec }),
      onProgress,
      gate,
      signal,
      abortError: (reason) => gate.abortError(reason),
    });
    await durable.sync();
    this.state.recordEvent(piece.drive, event, {
      site: piece.site,
      library: piece.library,
      tape: piece.tape,
      position: piece.position,
      bytes: move.length,
      sha256,
      resumedBytes: move.from,
    });
    return sha256;
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
    const image = newSha256();
    const total = req.pieces.reduce((n, p) => n + p.expect.sizeBytes, 0);
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
        const before = done;
        // The piece's own digest, and the image's across every piece, from one read.
        const { sha256: got } = await moveBytes({
          source: fileRange(open.fh, source.position + PIECE_HEADER_BYTES, { name: source.tape }),
          length: p.expect.sizeBytes,
          observe: (block) => image.update(block),
          progressBytes: this.chunkBytes,
          onProgress: (pr) => onProgress({ bytes: before + pr.bytes, total }),
          signal,
          abortError: (reason) =>
            new DeviceFaultError(
              source.drive,
              `verification of ${source.tape} was stopped: ${String(reason ?? 'cancelled')}`,
            ),
        });
        done += p.expect.sizeBytes;
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
   * The lab's probe: each device answers a small real request, all at once, bounded by
   * `timeoutMs`. A drive reads the label of the cartridge it holds (or reports itself empty), a
   * cartridge its own label, a library its drives' contents; every device first meets the faults
   * registered on it as a transfer would, without consuming them: `fail` fails the probe, `hang`
   * keeps it from answering until the fault is cleared, `slow` answers. A device that failed or did
   * not answer in time is reported; one that answered is not.
   */
  async probe(site: string, devices: string[], opts: { timeoutMs?: number } = {}): Promise<DeviceHealth[]> {
    findSite(this.loaded, site);
    const timeoutMs = opts.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
    const limit = new AbortController();
    const timer = setTimeout(() => limit.abort(), timeoutMs);
    try {
      const health = await Promise.all(
        [...new Set(devices)].map(async (device): Promise<DeviceHealth | undefined> => {
          try {
            await withinProbe(this.probeOne(site, device, limit.signal), limit.signal);
            this.state.recordEvent(device, 'probe-answered', { site });
            return undefined;
          } catch (err) {
            const reason = limit.signal.aborted
              ? `did not answer a probe within ${timeoutMs / 1000} s`
              : `failed a probe: ${err instanceof Error ? err.message : String(err)}`;
            this.state.recordEvent(device, 'probe-failed', { site, reason });
            return { device, reason };
          }
        }),
      );
      return health.filter((h): h is DeviceHealth => h !== undefined);
    } finally {
      clearTimeout(timer);
    }
  }

  /** One device's answer to a probe: its faults as a transfer meets them, then its real I/O. */
  private async probeOne(site: string, device: string, signal: AbortSignal): Promise<void> {
    for (const f of this.state.faultsFor([device])) {
      if (f.kind === 'fail')
        throw new DeviceFaultError(device, `lab fault on ${device}: injected failure (lab fault ${f.id})`);
      // A hung device answers nothing until its fault is gone; the probe's time limit ends the wait.
      while (f.kind === 'hang' && !signal.aborted && this.state.faultsFor([device]).some((x) => x.id === f.id)) {
        await abortableSleep(PROBE_POLL_MS, signal);
      }
    }
    const libraries = findSite(this.loaded, site).libraries;
    const driveOf = libraries.find((l) => l.drives.some((d) => d.id === device));
    const tapeOf = libraries.find((l) => l.cartridges.some((c) => c.id === device));
    const library = libraries.find((l) => l.name === device);
    if (driveOf !== undefined) {
      // A drive reads the label of the cartridge it holds, as a real drive reads its position.
      const tape = this.state.driveContents(site, device);
      if (tape !== null) await this.checkLabel(site, driveOf.name, tape, device);
    } else if (tapeOf !== undefined) {
      await this.checkLabel(site, tapeOf.name, device, device);
    } else if (library !== undefined) {
      for (const d of library.drives) this.state.driveContents(site, d.id);
    }
  }

  /** Reads a cartridge's label and checks it names the cartridge: DeviceFaultError on `device` otherwise. */
  private async checkLabel(site: string, library: string, tape: string, device: string): Promise<void> {
    const { file } = await cartridgeFile(this.paths, site, library, tape);
    const label = await readCartridgeLabel(file);
    if (label.site !== site || label.library !== library || label.tape !== tape) {
      throw new DeviceFaultError(
        device,
        `cartridge ${tape} reads as ${label.site}/${label.library}/${label.tape}, not ${site}/${library}/${tape}`,
      );
    }
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
    requirePosition(source.position, 'source.position');
    requireInt(destination.offset, 'destination.offset', 0);
    requireInt(req.resumeBytes, 'resumeBytes', 0);
    if (!path.isAbsolute(destination.path)) {
      throw new InvalidInputError(`destination.path "${destination.path}" must be an absolute path`);
    }
    findDrive(this.loaded, site, source.library, source.drive);
    findCartridge(this.loaded, site, source.library, source.tape);
    const { file: tapeFile, endOfData } = await cartridgeFile(this.paths, site, source.library, source.tape);

    return withCartridge(tapeFile, 'r', source, `reading ${where}`, async (tape) => {
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
        let resume = 0;
        if (req.resumeBytes > 0) {
          const present = (await dest.stat()).size - destination.offset;
          resume = Math.min(req.resumeBytes, Math.max(0, present));
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

        const volumeSize = found.volumeSize ?? found.offset + found.sizeBytes;
        // A resumed read's checksum is rebuilt from the bytes already in the destination.
        const sha256 = await this.movePiece(
          'read-done',
          { ...source, site, devices: req.devices, volumeSize, pieceStart: found.offset },
          {
            source: fileRange(tape, dataStart, { name: source.tape }),
            sink: fileRange(dest, destination.offset, { name: destination.path }),
            length: found.sizeBytes,
            from: resume,
          },
          dest,
          onProgress,
          signal,
        );
        return { sha256, bytes: found.sizeBytes, resumedBytes: resume };
      } finally {
        await dest.close();
      }
    });
  }
}

/**
 * Runs `work` with a cartridge's file open and closes it after; an operating-system error on the
 * way becomes a retryable fault of the drive, `doing` what it was doing, except a write to the
 * cartridge that its file system has no room for (StorageFull).
 */
async function withCartridge<T>(
  file: string,
  flags: string,
  at: { drive: string; library: string; tape: string },
  doing: string,
  work: (tape: FileHandle) => Promise<T>,
): Promise<T> {
  const tape = await openOrFault(file, flags, at.tape);
  try {
    return await work(tape);
  } catch (err) {
    // Read-only, the file written is the restore's destination, not the cartridge.
    throw asDeviceFault(flags === 'r' ? err : cartridgeSpaceError(err, file, at), at.drive, doing);
  } finally {
    await tape.close();
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

/** A replica's or snapshot's file must hold exactly the volume's size: anything else is not its image. */
async function requireImageSize(file: string, source: CopyToTapeRequest['source']): Promise<void> {
  const size = await sizeOf(file);
  if (size !== source.volumeSize) {
    throw new InvalidInputError(
      size === undefined
        ? `the image ${file} of ${source.array}/${source.volume} does not exist (the replica or snapshot is gone); plan the copy again`
        : `the image ${file} holds ${size} bytes but volume ${source.array}/${source.volume} holds ${source.volumeSize}`,
    );
  }
}

function requireInt(n: number, what: string, min: number, why?: string): void {
  if (!Number.isSafeInteger(n) || n < min) {
    throw new InvalidInputError(`${what} must be a whole number of at least ${min}${why ? ` (${why})` : ''}, not ${n}`);
  }
}

/** A piece's position on a cartridge: a whole number of bytes past the cartridge's label. */
function requirePosition(position: number, what: string): void {
  requireInt(position, what, LABEL_BYTES, `the first ${LABEL_BYTES} bytes of a cartridge hold its label`);
}

/** A probe's answer, or a rejection as soon as its time limit passes (the answer is then ignored). */
function withinProbe(answer: Promise<void>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(new Error('the probe timed out'));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    answer.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
