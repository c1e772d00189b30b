/**
 * Starting a rebuild of the catalog from a site's cartridges: its workflow id and its request, as
 * the CLI and other clients start it.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { cliUser, type Kura } from '../api';
import { findSite } from '../config/targets';
import { jobTuning } from '../config/tuning';
import { compactTime } from '../domain/catalog';
import type { JobTuning } from '../domain/jobs';
import { JobKind } from '../search-attributes';
import type { catalogRebuild } from '../workflows';

/** `catalog-rebuild/<site>/<compact time>`: one rebuild per site and request. */
export function catalogRebuildWorkflowId(site: string, requestedAt: string): string {
  return `catalog-rebuild/${site}/${compactTime(requestedAt)}`;
}

export interface CatalogRebuildOptions {
  /** The site (default: the first in the configuration). */
  site?: string;
  /** Merge the rebuilt catalog into this file on the control worker's host (absolute). */
  out?: string;
  requestedBy?: string;
  /** The request's instant (names the job); now when omitted. */
  requestedAt?: string;
  tuning?: Partial<JobTuning>;
}

/** Starts the `catalogRebuild` workflow of a site; an unknown site is refused before anything starts. */
export async function startCatalogRebuild(
  kura: Kura,
  opts: CatalogRebuildOptions = {},
): Promise<WorkflowHandle<typeof catalogRebuild>> {
  const site = findSite(kura.loaded.config, opts.site);
  const requestedAt = opts.requestedAt ?? new Date().toISOString();
  return kura.start<typeof catalogRebuild>('catalogRebuild', catalogRebuildWorkflowId(site.name, requestedAt), {
    args: [
      {
        site: site.name,
        requestedBy: opts.requestedBy ?? cliUser(),
        requestedAt,
        tuning: { ...jobTuning(kura.loaded.config), ...opts.tuning },
        ...(opts.out === undefined ? {} : { out: opts.out }),
      },
    ],
    kind: JobKind.CatalogRebuild,
    target: 'catalog',
    site: site.name,
    summary: `catalog rebuild from the cartridges of ${site.name}`,
  });
}
