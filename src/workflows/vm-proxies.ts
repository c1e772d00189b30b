/**
 * Activity proxies of the VM guardian and the recovery ladder: typed failures no retry can cure
 * are never retried; VM actions must heartbeat (or finish) within the policy's heartbeat timeout,
 * so a worker that dies mid-action is noticed and the action retried on another worker with the
 * same request id.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { createControlActivities } from '../activities/control';
import type { createVmActivities } from '../activities/vm';
import type { createGuardianRequestActivities } from '../activities/guardian-requests';
import type { LadderPolicy } from '../domain/ladder';
import { NON_RETRYABLE_ERROR_TYPES } from '../domain/errors';

export type VmActivities = ReturnType<typeof createVmActivities>;
type ControlActivities = ReturnType<typeof createControlActivities>;

const nonRetryableErrorTypes = [...NON_RETRYABLE_ERROR_TYPES];

/** VM actions, image backups and health checks on the control queue. */
export function vmActivities(policy: Pick<LadderPolicy, 'activityHeartbeatMs'>, longestWaitMs = 0): VmActivities {
  return proxyActivities<VmActivities>({
    // A health wait may last its whole timeout; everything else is bounded by the heartbeat.
    startToCloseTimeout: longestWaitMs + 10 * 60_000,
    heartbeatTimeout: policy.activityHeartbeatMs,
    retry: {
      maximumAttempts: 5,
      initialInterval: '500ms',
      backoffCoefficient: 2,
      maximumInterval: '10s',
      nonRetryableErrorTypes,
    },
  });
}

/** Telling people (log and webhook); it never fails the caller for long. */
export function notifyActivities(): Pick<ControlActivities, 'notify'> {
  return proxyActivities<ControlActivities>({
    startToCloseTimeout: '1 minute',
    retry: { maximumAttempts: 3, initialInterval: '1s', nonRetryableErrorTypes },
  });
}

type GuardianRequestActivities = ReturnType<typeof createGuardianRequestActivities>;

/**
 * Requests to a guardian on a caller's behalf: the activity heartbeats while the guardian works, and
 * a retry joins the request it sent before (the same update id).
 */
export function guardianRequestActivities(): GuardianRequestActivities {
  return proxyActivities<GuardianRequestActivities>({
    startToCloseTimeout: '1 hour',
    heartbeatTimeout: '30 seconds',
    retry: { maximumAttempts: 5, initialInterval: '1s', nonRetryableErrorTypes },
  });
}
