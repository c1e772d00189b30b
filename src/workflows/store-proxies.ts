/**
 * Proxies of the store activities (docs/adr/032): long ones that read or write a whole volume, or
 * walk every chunk of a store, must heartbeat; typed failures that no retry cures are not retried.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { createStoreActivities } from '../activities/store';
import type { createStoreTapeActivities } from '../activities/store-tape';
import { NON_RETRYABLE_ERROR_TYPES } from '../domain/errors';

export type StoreActivities = ReturnType<typeof createStoreActivities>;

/** The store's activities on the control queue, with a heartbeat timeout of `heartbeatMs`. */
export function storeActivities(heartbeatMs = 60_000): StoreActivities {
  return proxyActivities<StoreActivities>({
    startToCloseTimeout: '2 hours',
    heartbeatTimeout: heartbeatMs,
    retry: {
      maximumAttempts: 5,
      initialInterval: '1s',
      backoffCoefficient: 2,
      nonRetryableErrorTypes: [...NON_RETRYABLE_ERROR_TYPES],
    },
  });
}

export type StoreTapeActivities = ReturnType<typeof createStoreTapeActivities>;

/** The activities of the store's copies to tape (docs/adr/042): short reads of the catalog and the stores. */
export function storeTapeActivities(): StoreTapeActivities {
  return proxyActivities<StoreTapeActivities>({
    startToCloseTimeout: '5 minutes',
    retry: {
      maximumAttempts: 5,
      initialInterval: '1s',
      backoffCoefficient: 2,
      nonRetryableErrorTypes: [...NON_RETRYABLE_ERROR_TYPES],
    },
  });
}
