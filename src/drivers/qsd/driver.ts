/**
 * The storage and array-function driver of the arrays kura.yaml puts on qemu-storage-daemon
 * (`driver: qsd`): one {@link QsdArray}, and so one daemon, per array.
 */
import * as path from 'node:path';
import type { LoadedConfig } from '../../config/load';
import type { KuraPaths } from '../../config/paths';
import { findSite } from '../../config/targets';
import { InvalidInputError, NotFoundError } from '../../domain/errors';
import { ArrayDriver } from '../../domain/array-engine';
import { LabStorage } from '../lab/storage';
import type {
  ArrayFunctions,
  ChangeTracking,
  TrackingStart,
  PairInfo,
  RestoreVolumes,
  SnapshotInfo,
  StorageDriver,
  VolumeImages,
  VolumeInfo,
  VolumeRef,
} from '../types';
import { QsdArray } from './array';
import { qsdArrayPaths } from './supervisor';

/** StorageDriver, ArrayFunctions, VolumeImages and RestoreVolumes over the `driver: qsd` arrays of one configuration. */
export class QsdDriver implements StorageDriver, ArrayFunctions, VolumeImages, RestoreVolumes, ChangeTracking {
  private readonly arrays = new Map<string, QsdArray>();
  // LUN masks are the inventory's, whichever engine serves the volume.
  private readonly masks: LabStorage;

  constructor(
    private readonly loaded: LoadedConfig,
    private readonly paths: KuraPaths,
  ) {
    this.masks = new LabStorage(loaded, paths);
  }

  /** The array's daemon-backed function software; NotFoundError or InvalidInputError when it is not a qsd array. */
  array(site: string, array: string): QsdArray {
    const key = `${site}/${array}`;
    const known = this.arrays.get(key);
    if (known) return known;
    const a = findSite(this.loaded.config, site).arrays.find((x) => x.name === array);
    if (!a) throw new NotFoundError(`no array ${array} in site ${site} (${this.loaded.file})`, { site, array });
    if (a.driver !== ArrayDriver.qsd)
      throw new InvalidInputError(
        `array ${site}/${array} runs on the ${a.driver} driver, not on qemu-storage-daemon; set driver: qsd (and its freePool) in ${this.loaded.file}`,
      );
    const dir = path.resolve(this.paths.home, a.qsd?.imageDir ?? path.join('qsd', site, array));
    const abs = (p: string | undefined) => (p === undefined ? undefined : path.resolve(this.paths.home, p));
    const created = new QsdArray(
      site,
      a,
      qsdArrayPaths(dir, { socket: abs(a.qsd?.socket), nbdSocket: abs(a.qsd?.nbdSocket) }),
    );
    this.arrays.set(key, created);
    return created;
  }

  /**
   * The volume of a qsd array of the site that `file` is the host attachment of (what a host's loop
   * device is backed by), or undefined when no qsd array of the site serves it.
   */
  volumeOfHostFile(site: string, file: string): VolumeRef | undefined {
    for (const a of findSite(this.loaded.config, site).arrays) {
      if (a.driver !== ArrayDriver.qsd) continue;
      const volume = this.array(site, a.name).volumeOfHostFile(file);
      if (volume !== undefined) return { site, array: a.name, volume };
    }
    return undefined;
  }

  async describeVolume(site: string, array: string, volume: string): Promise<VolumeInfo> {
    const a = this.array(site, array);
    const v = a.volume(volume);
    // Asking the array converges it, which creates the image of a volume new to the inventory.
    await a.session(async () => undefined);
    return { site, array, volume, sizeBytes: v.size };
  }

  async checkAccess(site: string, array: string, volume: string, server: string): Promise<void> {
    this.array(site, array).volume(volume);
    await this.masks.checkAccess(site, array, volume, server);
  }

  async imageFile(ref: VolumeRef, readPath?: string): Promise<{ file: string; sizeBytes: number }> {
    return this.array(ref.site, ref.array).imageFile(ref.volume, readPath);
  }

  changeTracking(): ChangeTracking {
    return this;
  }
  async beginTracking(ref: VolumeRef, key: string, since: string | undefined): Promise<TrackingStart> {
    return this.array(ref.site, ref.array).beginTracking(ref.volume, key, since);
  }
  async endTracking(ref: VolumeRef, key: string, keep: string): Promise<void> {
    return this.array(ref.site, ref.array).endTracking(ref.volume, key, keep);
  }

  async allocateVolume(ref: VolumeRef, sizeBytes: number, job: string): Promise<{ file: string }> {
    return this.array(ref.site, ref.array).allocateVolume(ref.volume, sizeBytes, job);
  }
  async commitVolume(ref: VolumeRef, job: string): Promise<{ sizeBytes: number; nbdUri: string }> {
    return this.array(ref.site, ref.array).commitVolume(ref.volume, job);
  }
  async releaseVolume(ref: VolumeRef, job: string): Promise<void> {
    return this.array(ref.site, ref.array).releaseVolume(ref.volume, job);
  }

  async createPair(ref: VolumeRef): Promise<PairInfo> {
    return this.array(ref.site, ref.array).createPair(ref.volume);
  }
  async pairStatus(ref: VolumeRef): Promise<PairInfo> {
    return this.array(ref.site, ref.array).pairStatus(ref.volume);
  }
  async splitPair(ref: VolumeRef): Promise<PairInfo> {
    return this.array(ref.site, ref.array).splitPair(ref.volume);
  }
  async resyncPair(ref: VolumeRef): Promise<PairInfo> {
    return this.array(ref.site, ref.array).resyncPair(ref.volume);
  }
  async deletePair(ref: VolumeRef): Promise<void> {
    return this.array(ref.site, ref.array).deletePair(ref.volume);
  }
  async createSnapshot(ref: VolumeRef, name: string): Promise<SnapshotInfo> {
    return this.array(ref.site, ref.array).createSnapshot(ref.volume, name);
  }
  async deleteSnapshot(ref: VolumeRef, name: string): Promise<void> {
    return this.array(ref.site, ref.array).deleteSnapshot(ref.volume, name);
  }
  async listPairs(site: string, array: string): Promise<PairInfo[]> {
    return this.array(site, array).listPairs();
  }
  async listSnapshots(site: string, array: string): Promise<SnapshotInfo[]> {
    return this.array(site, array).listSnapshots();
  }

  /** Stops the daemons this driver started or found (their state stays for the next start). */
  async stopAll(): Promise<void> {
    for (const a of this.arrays.values()) await a.stop();
  }
}
