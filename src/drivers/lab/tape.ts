/**
 * The lab's tape libraries: cartridges are files, the robot's arm is a row in the lab state
 * saying which cartridge sits in which drive.
 */
import { stat } from 'node:fs/promises';
import type { LoadedConfig } from '../../config/load';
import type { KuraPaths } from '../../config/paths';
import { DeviceFaultError, InvalidInputError, NotFoundError } from '../../domain/errors';
import type { Library } from '../../domain/inventory';
import { LABEL_BYTES, labCartridgePath, readCartridgeLabel } from '../../lab/files';
import type { LabState } from '../../lab/state';
import type { TapeAddress, TapeLibraryDriver } from '../types';
import { findSite } from './storage';

/** A library of a site, or NotFoundError naming the libraries there are. */
export function findLibrary(loaded: LoadedConfig, site: string, library: string): Library {
  const s = findSite(loaded, site);
  const found = s.libraries.find((l) => l.name === library);
  if (found === undefined) {
    throw new NotFoundError(`no tape library "${library}" in site ${site}; libraries: ${s.libraries.map((l) => l.name).join(', ')}`, { site, library });
  }
  return found;
}

/**
 * A cartridge of a library with its capacity. NotFoundError when the site has no such cartridge;
 * InvalidInputError when it belongs to another library (the robot cannot reach it).
 */
export function findCartridge(loaded: LoadedConfig, site: string, library: string, tape: string): { id: string; capacity: number } {
  const lib = findLibrary(loaded, site, library);
  const found = lib.cartridges.find((c) => c.id === tape);
  if (found !== undefined) return found;
  const owner = findSite(loaded, site).libraries.find((l) => l.cartridges.some((c) => c.id === tape));
  if (owner !== undefined) {
    throw new InvalidInputError(`tape ${tape} belongs to library ${owner.name}, not ${library}; address it through ${owner.name} (site ${site})`);
  }
  throw new NotFoundError(`no tape "${tape}" in library ${library} of site ${site}; its cartridges are ${sample(lib.cartridges.map((c) => c.id))}`, { site, library, tape });
}

/** Checks that a drive belongs to the library; NotFoundError naming the library's drives otherwise. */
export function findDrive(loaded: LoadedConfig, site: string, library: string, drive: string): void {
  const lib = findLibrary(loaded, site, library);
  if (!lib.drives.some((d) => d.id === drive)) {
    throw new NotFoundError(`no drive "${drive}" in library ${library} of site ${site}; its drives are ${lib.drives.map((d) => d.id).join(', ')}`, { site, library, drive });
  }
}

/**
 * The cartridge's file and the end of its recorded data (the file's size). NotFoundError when
 * the file is missing: the lab was not initialised.
 */
export async function cartridgeFile(paths: KuraPaths, site: string, library: string, tape: string): Promise<{ file: string; endOfData: number }> {
  const file = labCartridgePath(paths, site, library, tape);
  try {
    const size = (await stat(file)).size;
    if (size < LABEL_BYTES) {
      throw new DeviceFaultError(tape, `cartridge ${tape} of library ${library} (${file}) is shorter than its ${LABEL_BYTES}-byte label; recreate it with \`kura lab init --force\``);
    }
    return { file, endOfData: size };
  } catch (err) {
    if (err instanceof DeviceFaultError) throw err;
    throw new NotFoundError(`the cartridge file of tape ${tape} in library ${library} (${file}) does not exist; run \`kura lab init\` to create the lab's files`, { site, library, tape, file });
  }
}

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
      throw new DeviceFaultError(tape, `cartridge file ${file} is labelled ${label.site}/${label.library}/${label.tape}, not ${site}/${library}/${tape}; recreate it with \`kura lab init --force\``);
    }

    const inDrive = this.state.driveContents(site, drive);
    if (inDrive !== null && inDrive !== tape) {
      throw new DeviceFaultError(drive, `drive ${drive} of library ${library} already holds tape ${inDrive}; unload it before loading ${tape}`);
    }
    const holder = this.state.driveHolding(site, tape);
    if (holder !== null && holder !== drive) {
      throw new DeviceFaultError(tape, `tape ${tape} is loaded in drive ${holder}, not ${drive}; unload it from ${holder} first`);
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
      throw new DeviceFaultError(f.device, `lab fault on ${f.device}: injected failure while loading tape ${addr.tape} into drive ${addr.drive}`);
    }
  }
}

function sample(names: string[]): string {
  return names.length <= 6 ? names.join(', ') : `${names.slice(0, 5).join(', ')}, … (${names.length} in all)`;
}
