/**
 * Proxies of the store activities (docs/adr/032): long ones that read or write a whole volume, or
 * walk every chunk of a store, must heartbeat; typed failures that no retry cures are not retried.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { createStoreActivities } from '../activities/store';
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
