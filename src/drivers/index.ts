/** Chooses the drivers a worker uses to reach a site's hardware; the lab's file-backed set for now. */
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import type { LabState } from '../lab/state';
import { LabCopyDevice, type LabCopyOptions } from './lab/copy';
import { LabFabric } from './lab/fabric';
import { LabHypervisor } from './lab/hypervisor';
import { LabStorage } from './lab/storage';
import { LabTapeLibrary } from './lab/tape';
import type { Drivers } from './types';

/**
 * The lab's drivers over one configuration: volumes and cartridges are files under
 * `paths.lab`, device state and injected faults live in `state`.
 */
export function labDrivers(loaded: LoadedConfig, paths: KuraPaths, state: LabState, opts: LabCopyOptions = {}): Drivers {
  return {
    hypervisor: new LabHypervisor(loaded, state, paths),
    storage: new LabStorage(loaded, paths),
    fabric: new LabFabric(loaded, state),
    tape: new LabTapeLibrary(loaded, paths, state),
    copy: new LabCopyDevice(loaded, paths, state, opts),
  };
}
