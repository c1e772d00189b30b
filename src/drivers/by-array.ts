/**
 * Routes each storage and array-function call to the engine kura.yaml names for that array
 * (`arrays[].driver`): the lab's files, or the array's qemu-storage-daemon.
 */
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import { findSite } from '../config/targets';
import { ArrayDriver } from '../domain/array-engine';
import { QsdDriver } from './qsd/driver';
import { InvalidInputError, NotFoundError } from '../domain/errors';
import type {
  ArrayFunctions,
  ChangeTracking,
  PairInfo,
  RestoreVolumes,
  SnapshotInfo,
  StorageDriver,
  VolumeImages,
  VolumeInfo,
  VolumeRef,
} from './types';

/** The lab's implementations the dispatcher sends `driver: lab` arrays to. */
export interface LabArrayDrivers {
  storage: StorageDriver;
  functions: ArrayFunctions;
  /** Which files hold the lab volumes' images, for the copy device; without it, none may be read through here. */
  images?: VolumeImages;
}

/**
 * One object that is the StorageDriver, the ArrayFunctions, the copy device's VolumeImages and the
 * restores' RestoreVolumes of a worker, whatever engine each array runs on. Wire it as all four:
 * `const arrays = new ByArrayDrivers(loaded, paths, lab)`.
 */
export class ByArrayDrivers implements StorageDriver, ArrayFunctions, VolumeImages, RestoreVolumes {
  readonly qsd: QsdDriver;

  constructor(
    private readonly loaded: LoadedConfig,
    paths: KuraPaths,
    private readonly lab: LabArrayDrivers,
  ) {
    this.qsd = new QsdDriver(loaded, paths);
  }

  /** The engine of one array; NotFoundError for an array the site does not have. */
  driverOf(site: string, array: string): ArrayDriver {
    const a = findSite(this.loaded.config, site).arrays.find((x) => x.name === array);
    if (!a) throw new NotFoundError(`no array ${array} in site ${site} (${this.loaded.file})`, { site, array });
    return a.driver;
  }

  private storage(site: string, array: string): StorageDriver {
    return this.driverOf(site, array) === ArrayDriver.qsd ? this.qsd : this.lab.storage;
  }

  private functions(site: string, array: string): ArrayFunctions {
    return this.driverOf(site, array) === ArrayDriver.qsd ? this.qsd : this.lab.functions;
  }

  async imageFile(ref: VolumeRef, readPath?: string): Promise<{ file: string; sizeBytes: number }> {
    if (this.driverOf(ref.site, ref.array) === ArrayDriver.qsd) return this.qsd.imageFile(ref, readPath);
    if (!this.lab.images)
      throw new InvalidInputError(
        `no copy device reads the lab array ${ref.site}/${ref.array} through this dispatcher; give it the lab's images`,
      );
    return this.lab.images.imageFile(ref, readPath);
  }

  /** A qsd array's dirty bitmaps; the lab's arrays keep none (their store backups compare digests). */
  changeTracking(ref: VolumeRef): ChangeTracking | undefined {
    return this.driverOf(ref.site, ref.array) === ArrayDriver.qsd ? this.qsd : undefined;
  }

  async allocateVolume(ref: VolumeRef, sizeBytes: number, job: string): Promise<{ file: string }> {
    return this.restoreVolumes(ref).allocateVolume(ref, sizeBytes, job);
  }
  async commitVolume(ref: VolumeRef, job: string): Promise<{ sizeBytes: number; nbdUri: string }> {
    return this.restoreVolumes(ref).commitVolume(ref, job);
  }
  async releaseVolume(ref: VolumeRef, job: string): Promise<void> {
    return this.restoreVolumes(ref).releaseVolume(ref, job);
  }

  /** Only an engine with a block layer of its own creates volumes; the lab's arrays are kura.yaml's files. */
  private restoreVolumes(ref: VolumeRef): RestoreVolumes {
    if (this.driverOf(ref.site, ref.array) === ArrayDriver.qsd) return this.qsd;
    throw new InvalidInputError(
      `array ${ref.site}/${ref.array} runs on the lab's files, whose volumes are kura.yaml's; restore to a new volume on an array with driver: qsd, or restore to a file`,
    );
  }

  async describeVolume(site: string, array: string, volume: string): Promise<VolumeInfo> {
    return this.storage(site, array).describeVolume(site, array, volume);
  }
  async checkAccess(site: string, array: string, volume: string, server: string): Promise<void> {
    return this.storage(site, array).checkAccess(site, array, volume, server);
  }
  async createPair(ref: VolumeRef): Promise<PairInfo> {
    return this.functions(ref.site, ref.array).createPair(ref);
  }
  async pairStatus(ref: VolumeRef): Promise<PairInfo> {
    return this.functions(ref.site, ref.array).pairStatus(ref);
  }
  async splitPair(ref: VolumeRef): Promise<PairInfo> {
    return this.functions(ref.site, ref.array).splitPair(ref);
  }
  async resyncPair(ref: VolumeRef): Promise<PairInfo> {
    return this.functions(ref.site, ref.array).resyncPair(ref);
  }
  async deletePair(ref: VolumeRef): Promise<void> {
    return this.functions(ref.site, ref.array).deletePair(ref);
  }
  async createSnapshot(ref: VolumeRef, name: string): Promise<SnapshotInfo> {
    return this.functions(ref.site, ref.array).createSnapshot(ref, name);
  }
  async deleteSnapshot(ref: VolumeRef, name: string): Promise<void> {
    return this.functions(ref.site, ref.array).deleteSnapshot(ref, name);
  }
  async listPairs(site: string, array: string): Promise<PairInfo[]> {
    return this.functions(site, array).listPairs(site, array);
  }
  async listSnapshots(site: string, array: string): Promise<SnapshotInfo[]> {
    return this.functions(site, array).listSnapshots(site, array);
  }
}
