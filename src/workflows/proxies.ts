/**
 * Activity proxies with the timeouts and retry rules every job uses, derived from its tuning:
 * typed failures that no retry can cure are never retried; device faults are, a bounded number
 * of times; copies must heartbeat or be considered hung.
 */
import { ActivityCancellationType, proxyActivities, proxyLocalActivities, workflowInfo } from '@temporalio/workflow';
import type { createControlActivities } from '../activities/control';
import type { createCopyActivities } from '../activities/copy';
import type { createPoolActivities } from '../activities/pool';
import type { JobTuning } from '../domain/jobs';
import { NON_RETRYABLE_ERROR_TYPES } from '../domain/errors';
import { copyDeviceTaskQueue, serverTaskQueue } from '../api/task-queues';
import type { createDirectCopyActivities } from '../activities/direct-copy';

export type ControlActivities = ReturnType<typeof createControlActivities>;
export type CopyActivities = ReturnType<typeof createCopyActivities>;
export type PoolActivities = ReturnType<typeof createPoolActivities>;
export type DirectCopyActivities = ReturnType<typeof createDirectCopyActivities>;

const nonRetryableErrorTypes = [...NON_RETRYABLE_ERROR_TYPES];

/** Catalog, library and lookup activities on the control queue. */
export function controlActivities(t: Pick<JobTuning, 'deviceAttempts'> = { deviceAttempts: 3 }): ControlActivities {
  return proxyActivities<ControlActivities>({
    startToCloseTimeout: '5 minutes',
    heartbeatTimeout: '1 minute',
    retry: {
      maximumAttempts: t.deviceAttempts,
      initialInterval: '500ms',
      backoffCoefficient: 2,
      nonRetryableErrorTypes,
    },
  });
}

/**
 * The same control activities as local activities: run by the workflow's own worker inside the
 * workflow task, with their results recorded as markers. A backup's cheap control steps (resolve,
 * zone, mount, record, unmount, unzone) cost no task-queue round trip and no workflow task each
 * (docs/adr/020-fleet-cost.md). They keep the same retry rules and are as idempotent as before; a
 * worker that dies in one runs it again after the workflow task times out. None of them heartbeats:
 * they are bounded steps, not copies.
 */
export function localControlActivities(
  t: Pick<JobTuning, 'deviceAttempts'> = { deviceAttempts: 3 },
): ControlActivities {
  return proxyLocalActivities<ControlActivities>({
    startToCloseTimeout: '5 minutes',
    retry: {
      maximumAttempts: t.deviceAttempts,
      initialInterval: '500ms',
      backoffCoefficient: 2,
      nonRetryableErrorTypes,
    },
  });
}

/** Resource pool activities; a reservation may wait in the pool's queue for `reserveWaitMs`. */
export function poolActivities(t: JobTuning): PoolActivities {
  return proxyActivities<PoolActivities>({
    startToCloseTimeout: t.reserveWaitMs + 120_000,
    heartbeatTimeout: '30 seconds',
    retry: { maximumAttempts: 5, initialInterval: '500ms', nonRetryableErrorTypes },
  });
}

/**
 * The pool activities of a backup: reserving stays an activity of its own, since it may wait in
 * the pool's queue for as long as `reserveWaitMs`, heartbeating; releasing never waits (the pool
 * answers from its tables at once), so it runs as a local activity beside the job's last control
 * steps, and so does `reserveStreamsNow`, the reservation that is granted at once or not at all.
 * An update id is stable across the local retries of one call, as it is across an activity's
 * attempts.
 */
export function backupPoolActivities(t: JobTuning): PoolActivities {
  const remote = poolActivities(t);
  const local = proxyLocalActivities<PoolActivities>({
    startToCloseTimeout: '2 minutes',
    retry: { maximumAttempts: 5, initialInterval: '500ms', nonRetryableErrorTypes },
  });
  // A reservation granted at once is asked for inside the workflow task; one that would wait goes
  // to `reserveStreams` above, which may sit in the pool's queue heartbeating (docs/adr/045).
  const now = proxyLocalActivities<PoolActivities>({
    startToCloseTimeout: '1 minute',
    retry: { maximumAttempts: 2, initialInterval: '500ms', nonRetryableErrorTypes },
  });
  return {
    reserveStreams: remote.reserveStreams,
    reserveStreamsNow: now.reserveStreamsNow,
    releaseStreams: local.releaseStreams,
    markDevice: remote.markDevice,
    poolTables: remote.poolTables,
  };
}

/** The least time a job whose data is complete keeps trying to release its devices. */
export const RELEASE_PATIENCE_MS = 180_000;

/**
 * The release at the end of a backup whose data is complete, retried for a bounded time rather than
 * five attempts: after a worker is lost, the site's pool may not answer until its workflow has been
 * rebuilt from its history on another worker, which takes about a minute on a loaded machine, and a
 * job that copied everything must not fail for that. Bounded by the longer of the job's
 * `reserveWaitMs` and {@link RELEASE_PATIENCE_MS}; attempts at most 3 s apart, so the job ends soon
 * after the pool is back.
 */
export function patientReleaseActivities(t: JobTuning, local: boolean): Pick<PoolActivities, 'releaseStreams'> {
  const options = {
    startToCloseTimeout: '2 minutes',
    scheduleToCloseTimeout: Math.max(t.reserveWaitMs, RELEASE_PATIENCE_MS),
    retry: {
      initialInterval: '500ms',
      backoffCoefficient: 2,
      maximumInterval: '3 seconds',
      nonRetryableErrorTypes,
    },
  } as const;
  const proxy = local
    ? proxyLocalActivities<PoolActivities>(options)
    : proxyActivities<PoolActivities>({ ...options, heartbeatTimeout: '30 seconds' });
  return { releaseStreams: proxy.releaseStreams };
}

/**
 * Copy activities run on the reserved backup server's own task queue. `longestBytes` is the most
 * one call moves (a piece; a whole image for verification). In failover mode a chunk gets one
 * attempt (`attempts` 1): a fault moves it to the next stream instead of retrying the same device.
 */
export function copyActivities(
  server: string,
  t: JobTuning,
  longestBytes: number = t.pieceSize,
  attempts: number = t.deviceAttempts,
): CopyActivities {
  return proxyActivities<CopyActivities>({
    // The server's queue sits beside this workflow's own control queue.
    taskQueue: serverTaskQueue(server, workflowInfo().taskQueue),
    // Generous bound: the bytes at 1 MiB/s plus ten minutes; hangs are caught by the heartbeat.
    startToCloseTimeout: Math.ceil(longestBytes / (1024 * 1024)) * 1000 + 600_000,
    heartbeatTimeout: t.copyHeartbeatTimeoutMs,
    // A cancelled job waits until its copy has really stopped before it unloads and releases the
    // cartridge; otherwise a copy still running would write into the next job's data.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: { maximumAttempts: attempts, initialInterval: '1s', backoffCoefficient: 2, nonRetryableErrorTypes },
  });
}

/**
 * The wait for a pair in sync: one long activity that heartbeats the array's copy, bounded by the
 * operation's `pairWaitMs`; it answers "not in sync" itself when the wait is over.
 */
export function pairWaitActivities(
  waitMs: number,
  t: Pick<JobTuning, 'deviceAttempts' | 'copyHeartbeatTimeoutMs'>,
): ControlActivities {
  return proxyActivities<ControlActivities>({
    startToCloseTimeout: waitMs + 120_000,
    // The job's own heartbeat timeout: a worker lost mid-wait is noticed as soon as a lost copy is.
    heartbeatTimeout: t.copyHeartbeatTimeoutMs,
    retry: { maximumAttempts: t.deviceAttempts, initialInterval: '500ms', nonRetryableErrorTypes },
  });
}

/**
 * An application hook's launch: one attempt, bounded by the hook's own timeout (plus room for the
 * worker to report it). Backup mode not entered in time is a result the plan answers, not a fault
 * to retry: the application may be slow because it is busy.
 */
export function hookActivities(timeoutMs: number): ControlActivities {
  return proxyActivities<ControlActivities>({
    startToCloseTimeout: timeoutMs + 15_000,
    retry: { maximumAttempts: 1, nonRetryableErrorTypes },
  });
}

/**
 * The hold of an application's session in backup mode (the `postgres` hook): one attempt, because
 * a retried hold would be a new session — the workflow decides whether to enter backup mode anew.
 * The heartbeat timeout is the hook's: a dead holder is noticed that fast. A cancelled hold is
 * waited for, so the session is closed (and PostgreSQL's backup aborted) before the undo goes on.
 */
export function holdActivities(hook: { timeoutMs: number; heartbeatMs?: number }): ControlActivities {
  return proxyActivities<ControlActivities>({
    // Login and start within the hook's timeout, then the split or snapshot; a hold never outlives a day.
    startToCloseTimeout: hook.timeoutMs + 24 * 3600_000,
    heartbeatTimeout: hook.heartbeatMs ?? 10_000,
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: { maximumAttempts: 1, nonRetryableErrorTypes },
  });
}

/**
 * The direct copy of a copy device, on its own task queue (docs/adr/029), with the timeouts and
 * retry rules of {@link copyActivities}.
 */
export function directCopyActivities(
  copyDevice: string,
  t: JobTuning,
  longestBytes: number = t.pieceSize,
  attempts: number = t.deviceAttempts,
): DirectCopyActivities {
  return proxyActivities<DirectCopyActivities>({
    taskQueue: copyDeviceTaskQueue(copyDevice, workflowInfo().taskQueue),
    startToCloseTimeout: Math.ceil(longestBytes / (1024 * 1024)) * 1000 + 600_000,
    heartbeatTimeout: t.copyHeartbeatTimeoutMs,
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: { maximumAttempts: attempts, initialInterval: '1s', backoffCoefficient: 2, nonRetryableErrorTypes },
  });
}
