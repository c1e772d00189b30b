/**
 * Chooses the drivers a worker uses to reach a site's hardware: the lab's file-backed set, with the
 * hypervisor driver kura.yaml names (the lab's, or libvirt on real hosts).
 */
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import type { LabState } from '../lab/state';
import { LabArrayFunctions } from './lab/array-functions';
import { LabCopyDevice, LabVolumeImages, type LabCopyOptions } from './lab/copy';
import { LabFabric } from './lab/fabric';
import { LabHypervisor } from './lab/hypervisor';
import { LabStorage } from './lab/storage';
import { ByArrayDrivers } from './by-array';
import { LabTapeLibrary } from './lab/tape';
import type { Drivers, HypervisorDriver, VolumeImages } from './types';
import * as path from 'node:path';
import { LibvirtHypervisor } from './libvirt/hypervisor';

/**
 * The drivers over one configuration: volumes and cartridges are files under `paths.lab`, device
 * state and injected faults live in `state`; each array's volumes and function software go to the
 * engine kura.yaml names for it (the lab's files, or a qemu-storage-daemon).
 */
export function labDrivers(
  loaded: LoadedConfig,
  paths: KuraPaths,
  state: LabState,
  opts: LabCopyOptions = {},
): Drivers & { images: VolumeImages } {
  const arrays = new ByArrayDrivers(loaded, paths, {
    storage: new LabStorage(loaded, paths),
    functions: new LabArrayFunctions(loaded, paths, state),
    images: new LabVolumeImages(loaded, paths, state),
  });
  return {
    hypervisor: hypervisorDriver(loaded, paths, state),
    storage: arrays,
    fabric: new LabFabric(loaded, state),
    tape: new LabTapeLibrary(loaded, paths, state),
    // The copy reads each volume's images where its array's engine says they are.
    copy: new LabCopyDevice(loaded, paths, state, opts, arrays),
    arrays,
    volumes: arrays,
    // The files of volumes, which a backup into the deduplicated store reads.
    images: arrays,
  };
}

/** The hypervisor driver kura.yaml's `hypervisor` section asks for: the lab's, or libvirt's. */
export function hypervisorDriver(loaded: LoadedConfig, paths: KuraPaths, state: LabState): HypervisorDriver {
  const h = loaded.config.hypervisor;
  if (h.driver === 'lab') return new LabHypervisor(loaded, state, paths);
  return new LibvirtHypervisor(loaded, {
    uri: h.uri,
    hostUri: (host) => h.hostUri.replaceAll('{host}', host),
    softwareTarget: h.softwareTarget,
    dataTarget: h.dataTarget,
    units: h.units,
    healthCheck: h.healthCheck,
    stateDir: path.resolve(paths.home, h.stateDir),
    baseImageDir: path.resolve(paths.home, h.baseImageDir),
  });
}
