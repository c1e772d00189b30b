/**
 * The estate report's activity (docs/adr/035), on the `kura-control` queue: measures the copy's lag
 * and records it, then writes the report page from the catalog, the drills and the stores.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import type { Catalog } from '../catalog/store';
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import { parseWith } from '../domain/validate';
import { buildEstateReport, defaultReportFile } from '../report/build';
import { mapFailures } from './failures';

const ReportInput = z.object({ out: z.string().min(1).optional(), at: z.string().min(1) });

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
