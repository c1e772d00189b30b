/**
 * The estate report's activity (docs/adr/035), on the `kura-control` queue: measures the copy's lag
 * and records it, then writes the report page from the catalog, the drills and the stores.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import type { Catalog } from '../catalog/store';
import { DrillLog } from '../catalog/drills';
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import { parseWith } from '../domain/validate';
import { ChunkStore } from '../store/chunk-store';
import { storeLag, storeRoots } from '../store/lag';
import { gatherEstate, renderEstateReport } from '../report/estate';
import { mapFailures } from './failures';

const ReportInput = z.object({ out: z.string().min(1).optional(), at: z.string().min(1) });

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

/** Creates the report activity over one configuration's catalog and stores. */
export function createReportActivities(deps: { loaded: LoadedConfig; paths: KuraPaths; catalog: Catalog }) {
  return {
    /** Writes the estate report to `out`, or under `<home>/reports/`; the file and its size. */
    async writeEstateReport(input: z.input<typeof ReportInput>): Promise<{ file: string; bytes: number }> {
      return mapFailures(async () => {
        const r = parseWith(ReportInput, input, 'estate report');
        const html = await buildEstateReport({ ...deps, at: r.at, record: true });
        const file = path.resolve(r.out ?? defaultReportFile(deps.paths, r.at));
        await mkdir(path.dirname(file), { recursive: true });
        await writeFile(file, html);
        return { file, bytes: Buffer.byteLength(html) };
      });
    },
  };
}
