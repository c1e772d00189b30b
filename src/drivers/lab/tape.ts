/**
 * The lab's tape libraries: cartridges are files, the robot's arm is a row in the lab state
 * saying which cartridge sits in which drive.
 */
import { open } from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import type { LoadedConfig } from '../../config/load';
import type { KuraPaths } from '../../config/paths';
import { DeviceFaultError, ErrorType, InvalidInputError, KuraError, NotFoundError } from '../../domain/errors';
import { sha256Hex } from '../../datamover/sha256';
import { PIECE_HEADER_BYTES, TapeCatalogEntrySchema, type TapeCatalogEntry } from '../../domain/catalog';
import type { Library } from '../../domain/inventory';
import { LABEL_BYTES, jsonBlock, labCartridgePath, parseBlock, readCartridgeLabel, sizeOf } from '../../lab/files';
import type { LabState } from '../../lab/state';
import type { TapeAddress, TapeLibraryDriver } from '../types';
import { findSite } from './storage';

/** A library of a site, or NotFoundError naming the libraries there are. */
export function findLibrary(loaded: LoadedConfig, site: string, library: string): Library {
  const s = findSite(loaded, site);
  const found = s.libraries.find((l) => l.name === library);
  if (found === undefined) {
    throw new NotFoundError(
      `no tape library "${library}" in site ${site}; libraries: ${s.libraries.map((l) => l.name).join(', ')}`,
      { site, library },
    );
  }
  return found;
}

/**
 * A cartridge of a library with its capacity. NotFoundError when the site has no such cartridge;
 * InvalidInputError when it belongs to another library (the robot cannot reach it).
 */
export function findCartridge(
  loaded: LoadedConfig,
  site: string,
  library: string,
  tape: string,
): { id: string; capacity: number } {
  const lib = findLibrary(loaded, site, library);
  const found = lib.cartridges.find((c) => c.id === tape);
  if (found !== undefined) return found;
  const owner = findSite(loaded, site).libraries.find((l) => l.cartridges.some((c) => c.id === tape));
  if (owner !== undefined) {
    throw new InvalidInputError(
      `tape ${tape} belongs to library ${owner.name}, not ${library}; address it through ${owner.name} (site ${site})`,
    );
  }
  throw new NotFoundError(
    `no tape "${tape}" in library ${library} of site ${site}; its cartridges are ${sample(lib.cartridges.map((c) => c.id))}`,
    { site, library, tape },
  );
}

/** Checks that a drive belongs to the library; NotFoundError naming the library's drives otherwise. */
export function findDrive(loaded: LoadedConfig, site: string, library: string, drive: string): void {
  const lib = findLibrary(loaded, site, library);
  if (!lib.drives.some((d) => d.id === drive)) {
    throw new NotFoundError(
      `no drive "${drive}" in library ${library} of site ${site}; its drives are ${lib.drives.map((d) => d.id).join(', ')}`,
      { site, library, drive },
    );
  }
}

/**
 * The cartridge's file and the end of its recorded data (the file's size). NotFoundError when
 * the file is missing: the lab was not initialised.
 */
export async function cartridgeFile(
  paths: KuraPaths,
  site: string,
  library: string,
  tape: string,
): Promise<{ file: string; endOfData: number }> {
  const file = labCartridgePath(paths, site, library, tape);
  const size = await sizeOf(file);
  if (size === undefined) {
    throw new NotFoundError(
      `the cartridge file of tape ${tape} in library ${library} (${file}) does not exist; run \`kura lab init\` to create the lab's files`,
      { site, library, tape, file },
    );
  }
  if (size < LABEL_BYTES) {
    throw new DeviceFaultError(
      tape,
      `cartridge ${tape} of library ${library} (${file}) is shorter than its ${LABEL_BYTES}-byte label; recreate it with \`kura lab init --force\``,
    );
  }
  return { file, endOfData: size };
}

/**
 * A cartridge write that its file system had no room for (ENOSPC) becomes StorageFull, naming the
 * cartridge and the directory of its file: the lab's disk is full, which neither a drive nor the
 * cartridge's capacity is to blame for, so no drive is marked faulty and no retry is spent on it.
 * Any other error is returned as it is.
 */
export function cartridgeSpaceError(err: unknown, file: string, at: { library: string; tape: string }): unknown {
  if ((err as NodeJS.ErrnoException | undefined)?.code !== 'ENOSPC') return err;
  const dir = path.dirname(file);
  return new KuraError(
    ErrorType.StorageFull,
    `the file system holding cartridge ${at.tape} of library ${at.library} (${dir}) is full (no space left on it); free space there or grow it, then run the job again`,
    { cause: err, details: { library: at.library, tape: at.tape, dir } },
  );
}

/** The block in front of a catalog written on tape: what follows, and its checksum. */
const CatalogBlockSchema = z.object({
  kind: z.literal('kura-catalog'),
  bytes: z.number().int().min(0),
  sha256: z.string(),
});
/** Just enough of a piece header to step over the piece while scanning a cartridge. */
const PieceExtentSchema = z.object({ kind: z.literal('kura-piece'), sizeBytes: z.number().int().min(0) });

/** TapeLibraryDriver over the lab's cartridge files and the lab state's drive table. */
export class LabTapeLibrary implements TapeLibraryDriver {
  constructor(
    private readonly loaded: LoadedConfig,
    private readonly paths: KuraPaths,
    private readonly state: LabState,
  ) {}

  async load(addr: TapeAddress): Promise<{ endOfData: number; capacityBytes: number }> {
    const { site, library, drive, tape } = addr;
    findDrive(this.loaded, site, library, drive);
    const cartridge = findCartridge(this.loaded, site, library, tape);
    this.failIfFaulted(addr);

    const { file, endOfData } = await cartridgeFile(this.paths, site, library, tape);
    const label = await readCartridgeLabel(file);
    if (label.site !== site || label.library !== library || label.tape !== tape) {
      throw new DeviceFaultError(
        tape,
        `cartridge file ${file} is labelled ${label.site}/${label.library}/${label.tape}, not ${site}/${library}/${tape}; recreate it with \`kura lab init --force\``,
      );
    }

    const inDrive = this.state.driveContents(site, drive);
    if (inDrive !== null && inDrive !== tape) {
      throw new DeviceFaultError(
        drive,
        `drive ${drive} of library ${library} already holds tape ${inDrive}; unload it before loading ${tape}`,
      );
    }
    const holder = this.state.driveHolding(site, tape);
    if (holder !== null && holder !== drive) {
      throw new DeviceFaultError(
        tape,
        `tape ${tape} is loaded in drive ${holder}, not ${drive}; unload it from ${holder} first`,
      );
    }
    if (inDrive === null) {
      this.state.setDriveContents(site, drive, tape);
      this.state.recordEvent(drive, 'load', { site, library, tape, endOfData });
    }
    return { endOfData, capacityBytes: cartridge.capacity };
  }

  async unload(addr: TapeAddress): Promise<void> {
    const { site, library, drive } = addr;
    findDrive(this.loaded, site, library, drive);
    const inDrive = this.state.driveContents(site, drive);
    if (inDrive === null) return;
    this.state.setDriveContents(site, drive, null);
    this.state.recordEvent(drive, 'unload', { site, library, tape: inDrive });
  }

  async writeCatalog(
    addr: TapeAddress & { position: number },
    entry: TapeCatalogEntry,
  ): Promise<{ nextPosition: number }> {
    const checked = TapeCatalogEntrySchema.parse(entry);
    const { file, endOfData } = await this.mountedCartridge(addr, false);
    const payload = Buffer.from(JSON.stringify(checked), 'utf8');
    const header = jsonBlock(
      { kind: 'kura-catalog', bytes: payload.length, sha256: sha256Hex(payload) },
      PIECE_HEADER_BYTES,
    );
    const nextPosition = addr.position + PIECE_HEADER_BYTES + payload.length;
    const capacity = findCartridge(this.loaded, addr.site, addr.library, addr.tape).capacity;
    if (nextPosition > capacity) {
      throw new DeviceFaultError(
        addr.tape,
        `cartridge ${addr.tape} has no room for its ${payload.length}-byte catalog at position ${addr.position} (capacity ${capacity})`,
      );
    }
    await writeAndCut(file, nextPosition, [
      { at: addr.position, bytes: header },
      { at: addr.position + PIECE_HEADER_BYTES, bytes: payload },
    ]).catch((err: unknown) => {
      throw cartridgeSpaceError(err, file, addr);
    });
    this.state.recordEvent(addr.drive, 'catalog-written', {
      site: addr.site,
      library: addr.library,
      tape: addr.tape,
      position: addr.position,
      backupId: checked.backup.backupId,
      pieces: checked.pieces.length,
      previousEnd: endOfData,
    });
    return { nextPosition };
  }

  async eraseFrom(addr: TapeAddress & { position: number }): Promise<void> {
    const { file, endOfData } = await this.mountedCartridge(addr, true);
    if (addr.position >= endOfData) return;
    await writeAndCut(file, addr.position);
    this.state.recordEvent(addr.drive, 'erased', {
      site: addr.site,
      library: addr.library,
      tape: addr.tape,
      from: addr.position,
      previousEnd: endOfData,
    });
  }

  async readCatalog(site: string, library: string, tape: string, drive?: string): Promise<TapeCatalogEntry[]> {
    findCartridge(this.loaded, site, library, tape);
    if (drive !== undefined) {
      findDrive(this.loaded, site, library, drive);
      const inDrive = this.state.driveContents(site, drive);
      if (inDrive !== tape) {
        throw new DeviceFaultError(
          drive,
          `cartridge ${tape} is not in drive ${drive} (${inDrive ? `${inDrive} is in it` : 'the drive is empty'}); load it first — nothing was read`,
        );
      }
    }
    const { file, endOfData } = await cartridgeFile(this.paths, site, library, tape);
    const fh = await open(file, 'r');
    const entries: TapeCatalogEntry[] = [];
    try {
      const block = Buffer.alloc(PIECE_HEADER_BYTES);
      for (let at = LABEL_BYTES; at < endOfData;) {
        const { bytesRead } = await fh.read(block, 0, PIECE_HEADER_BYTES, at);
        const piece = bytesRead === PIECE_HEADER_BYTES ? parseBlock(block, PieceExtentSchema) : undefined;
        const cat =
          piece === undefined && bytesRead === PIECE_HEADER_BYTES ? parseBlock(block, CatalogBlockSchema) : undefined;
        if (piece !== undefined) {
          at += PIECE_HEADER_BYTES + piece.sizeBytes;
          continue;
        }
        if (cat === undefined || at + PIECE_HEADER_BYTES + cat.bytes > endOfData) {
          throw new DeviceFaultError(
            tape,
            `cartridge ${tape} of library ${library} holds no readable block at position ${at} (end of data ${endOfData}); the catalog cannot be read past it`,
          );
        }
        const payload = Buffer.alloc(cat.bytes);
        await fh.read(payload, 0, cat.bytes, at + PIECE_HEADER_BYTES);
        if (sha256Hex(payload) !== cat.sha256) {
          throw new DeviceFaultError(
            tape,
            `the catalog block at position ${at} of cartridge ${tape} does not match its checksum; the cartridge is damaged there`,
          );
        }
        entries.push(TapeCatalogEntrySchema.parse(JSON.parse(payload.toString('utf8')) as unknown));
        at += PIECE_HEADER_BYTES + cat.bytes;
      }
    } finally {
      await fh.close();
    }
    return entries;
  }

  /**
   * The cartridge file when the cartridge sits in the drive (as a drive only writes what is
   * mounted), checking that `position` lies within its recorded data.
   */
  private async mountedCartridge(
    addr: TapeAddress & { position: number },
    pastEndOk: boolean,
  ): Promise<{ file: string; endOfData: number }> {
    findDrive(this.loaded, addr.site, addr.library, addr.drive);
    findCartridge(this.loaded, addr.site, addr.library, addr.tape);
    const inDrive = this.state.driveContents(addr.site, addr.drive);
    if (inDrive !== addr.tape) {
      throw new DeviceFaultError(
        addr.drive,
        `cartridge ${addr.tape} is not in drive ${addr.drive} (${inDrive ? `${inDrive} is in it` : 'the drive is empty'}); load it first — nothing was written`,
      );
    }
    const found = await cartridgeFile(this.paths, addr.site, addr.library, addr.tape);
    if (
      !Number.isSafeInteger(addr.position) ||
      addr.position < LABEL_BYTES ||
      (!pastEndOk && addr.position > found.endOfData)
    ) {
      throw new InvalidInputError(
        `position ${addr.position} is outside the recorded data of cartridge ${addr.tape} (${LABEL_BYTES}…${found.endOfData}); a tape is written in sequence, append at ${found.endOfData}`,
      );
    }
    return found;
  }

  /**
   * A `fail` fault that fires from the very first byte (after 0 bytes or 0%) makes the robot or
   * drive refuse the load. Faults placed later in the volume are left to the copy, so a test can
   * fail a stream halfway through rather than before it starts.
   */
  private failIfFaulted(addr: TapeAddress): void {
    for (const f of this.state.faultsFor([addr.library, addr.drive, addr.tape])) {
      const atStart = 'bytes' in f.after ? f.after.bytes === 0 : f.after.percent === 0;
      if (f.kind !== 'fail' || !atStart) continue;
      this.state.markTriggered(f.id);
      this.state.recordEvent(f.device, 'fault-fail', { faultId: f.id, operation: 'load', ...addr });
      throw new DeviceFaultError(
        f.device,
        `lab fault on ${f.device}: injected failure while loading tape ${addr.tape} into drive ${addr.drive}`,
      );
    }
  }
}

function sample(names: string[]): string {
  return names.length <= 6 ? names.join(', ') : `${names.slice(0, 5).join(', ')}, … (${names.length} in all)`;
}

/**
 * Writes `blocks` into a cartridge file and cuts it at `end`, durably: as on a tape, what is
 * written discards whatever followed it.
 */
async function writeAndCut(file: string, end: number, blocks: { at: number; bytes: Buffer }[] = []): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    for (const b of blocks) await fh.write(b.bytes, 0, b.bytes.length, b.at);
    await fh.truncate(end);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
