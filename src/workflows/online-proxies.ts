/**
 * Activity proxies of the online backup. Datapath calls are retried through `Unavailable` (a
 * restart of the datapath service) with backoff; the base copy must heartbeat, so a hung copy is
 * noticed; refusals (InvalidInput, AlreadyRunning, …) are never retried.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { createOnlineActivities } from '../activities/online';
import { NON_RETRYABLE_ERROR_TYPES } from '../domain/errors';

export type OnlineActivities = ReturnType<typeof createOnlineActivities>;

/** The online activities with retries sized by `attempts`; `heartbeatMs` bounds a silent call. */
export function onlineActivities(attempts: number, heartbeatMs: number): OnlineActivities {
  return proxyActivities<OnlineActivities>({
    startToCloseTimeout: '24 hours',
    heartbeatTimeout: heartbeatMs,
    retry: {
      maximumAttempts: attempts,
      initialInterval: '500ms',
      backoffCoefficient: 2,
      maximumInterval: '10 seconds',
      nonRetryableErrorTypes: [...NON_RETRYABLE_ERROR_TYPES],
    },
  });
}
