/**
 * Control activities, run on the `kura-control` queue: resolve targets, move cartridges, keep the
 * catalog, zone paths, guard restore destinations and notify people. Each concern has its own
 * module; this one puts them together under the names workflows call them by.
 */
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import type { Catalog } from '../catalog/store';
import type { Drivers } from '../drivers/types';
import { createAccessActivities } from './access';
import { createArrayActivities } from './array-functions';
import { createCatalogActivities } from './catalog';
import { createFabricActivities } from './fabric';
import { createNotifyActivities } from './notify';
import { createRestoreFileActivities } from './restore-files';
import { createStreamEndActivities } from './stream-end';
import { createTapeActivities } from './tape';
import { createTargetActivities } from './targets';

export interface ControlDeps {
  loaded: LoadedConfig;
  paths: KuraPaths;
  drivers: Drivers;
  catalog: Catalog;
}

/** Creates the control activities bound to one worker's configuration, drivers and catalog. */
export function createControlActivities(deps: ControlDeps) {
  return {
    ...createTargetActivities(deps),
    ...createTapeActivities(deps),
    ...createCatalogActivities(deps),
    ...createFabricActivities(deps),
    ...createStreamEndActivities(deps),
    ...createRestoreFileActivities(deps),
    ...createNotifyActivities(deps),
    ...createArrayActivities(deps),
    ...createAccessActivities(deps),
  };
}

export type ControlActivities = ReturnType<typeof createControlActivities>;
