/**
 * The pairs and snapshots of a site's arrays as the arrays report them now (`kura san pairs`,
 * `kura san snapshots`): a short workflow, so the CLI reaches the arrays' function software through
 * a worker, like every other request, and never opens a driver itself.
 */
import { z } from 'zod';
import type { PairInfo, SnapshotInfo } from '../drivers/types';
import { NameSchema } from '../domain/names';
import { acceptInput } from './failures';
import { controlActivities } from './proxies';

const SanListingRequestSchema = z.object({ site: NameSchema });

/** What the arrays of a site hold of seed 003's function software. */
export interface SanListing {
  site: string;
  pairs: PairInfo[];
  snapshots: SnapshotInfo[];
}

/** Lists every pair and snapshot of the site's arrays. */
export async function sanListing(input: z.input<typeof SanListingRequestSchema>): Promise<SanListing> {
  const req = acceptInput(SanListingRequestSchema, input, 'SAN listing request');
  const found = await controlActivities().listArrayFunctions({ site: req.site });
  return { site: req.site, ...found };
}
