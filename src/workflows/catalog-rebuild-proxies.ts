/**
 * Activity proxies of the catalog rebuild: comparing and writing on the control queue, and reading
 * a mounted cartridge on the queue of the backup server the pool granted. Refusals are never
 * retried; a device fault is, a bounded number of times, before the cartridge is given up.
 */
import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { createCatalogReadActivities, createCatalogRebuildActivities } from '../activities/catalog-rebuild';
import { NON_RETRYABLE_ERROR_TYPES } from '../domain/errors';
import type { JobTuning } from '../domain/jobs';
import { serverTaskQueue } from '../api/task-queues';

export type CatalogReadActivities = ReturnType<typeof createCatalogReadActivities>;
export type CatalogRebuildActivities = ReturnType<typeof createCatalogRebuildActivities>;

const nonRetryableErrorTypes = [...NON_RETRYABLE_ERROR_TYPES];

/** Comparing with the catalog and writing the rebuilt file, on the control queue. */
export function catalogRebuildActivities(t: Pick<JobTuning, 'deviceAttempts'>): CatalogRebuildActivities {
  return proxyActivities<CatalogRebuildActivities>({
    startToCloseTimeout: '10 minutes',
    retry: {
      maximumAttempts: t.deviceAttempts,
      initialInterval: '500ms',
      backoffCoefficient: 2,
      nonRetryableErrorTypes,
    },
  });
}

/** Reading a cartridge's catalog blocks, on the backup server's own queue beside this workflow's. */
export function catalogReadActivities(server: string, t: Pick<JobTuning, 'deviceAttempts'>): CatalogReadActivities {
  return proxyActivities<CatalogReadActivities>({
    taskQueue: serverTaskQueue(server, workflowInfo().taskQueue),
    // A drive scans the whole cartridge for its catalog blocks, stepping over the data between.
    startToCloseTimeout: '30 minutes',
    retry: { maximumAttempts: t.deviceAttempts, initialInterval: '1s', backoffCoefficient: 2, nonRetryableErrorTypes },
  });
}
