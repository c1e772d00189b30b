/**
 * Builds the estate report page (docs/adr/035) from one configuration's catalog, drills and stores,
 * for the nightly workflow and for `kura report` alike.
 */
import * as path from 'node:path';
import type { Catalog } from '../catalog/store';
import { DrillLog } from '../catalog/drills';
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import { ChunkStore } from '../store/chunk-store';
import { storeLag, storeRoots } from '../store/lag';
import { gatherEstate, renderEstateReport } from './estate';

/** Where a report of `at` is written when no file is named. */
export function defaultReportFile(paths: KuraPaths, at: string): string {
  return path.join(paths.home, 'reports', `estate-${at.slice(0, 10)}.html`);
}

/**
 * Builds the report page: the copy's lag is measured now and recorded (when `record`), so the
 * report's lag plot grows a point each night.
 */
export async function buildEstateReport(deps: {
  loaded: LoadedConfig;
  paths: KuraPaths;
  catalog: Catalog;
  at: string;
  record: boolean;
}): Promise<string> {
  const roots = storeRoots(deps.paths.home, deps.loaded.config.store);
  const lag = await storeLag(
    new ChunkStore(roots.primary),
    new ChunkStore(roots.copy),
    deps.loaded.config.store.maxLag,
  );
  const drills = new DrillLog(deps.paths.catalog);
  try {
    if (deps.record)
      drills.recordLag({ at: deps.at, lagMs: lag.lagMs, behind: lag.behind.length, maxLagMs: lag.maxLagMs });
    return renderEstateReport(
      gatherEstate({ loaded: deps.loaded, catalog: deps.catalog, drills, lag, now: Date.parse(deps.at) }),
    );
  } finally {
    drills.close();
  }
}
