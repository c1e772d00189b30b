/**
 * Activities that talk to a site's resource pool workflow: reserve and release streams, mark
 * devices and read the tables, starting the pool first when it is not running yet. (The worker
 * starts every site's pool at start-up with `ensurePool` of the client, src/api/pool.ts.)
 */
import { Context } from '@temporalio/activity';
import {
  WithStartWorkflowOperation,
  WorkflowUpdateFailedError,
  type Client,
  type WorkflowHandle,
  type WorkflowStartOptions,
} from '@temporalio/client';
import { ApplicationFailure, CancelledFailure, WorkflowNotFoundError, type UpdateDefinition } from '@temporalio/common';
import { ErrorType, NON_RETRYABLE_ERROR_TYPES } from '../domain/errors';
import { parseWith } from '../domain/validate';
import { mapFailures } from './failures';
import type { Site } from '../domain/inventory';
import {
  MarkRequestSchema,
  ReleaseRequestSchema,
  ReserveRequestSchema,
  type Grant,
  type MarkRequest,
  type PoolTables,
  type ReleaseRequest,
  type ReserveRequest,
} from '../domain/pool';
import { markDeviceSignal, releaseUpdate, reserveStreamsUpdate, tablesQuery } from '../messages';
import { poolWorkflowId } from '../api/workflow-ids';
import { installationOfTaskQueue } from '../api/task-queues';
import type { resourcePool } from '../workflows/resource-pool';
import { findDevice, tablesFromSite } from '../domain/pool-tables';
import { EventKind } from '../domain/events';
import { activityEventKey, type EventFeed } from './events';

/** What the pool activities need from the worker. */
export interface PoolActivityDeps {
  client: Client;
  /** The sites of the current configuration (read on every call, so a reload is seen). */
  sites: () => Site[];
  /**
   * Task queue the pool workflow runs on. By default the queue this activity runs on: the pool
   * activities live on the control queue, where the workflows run too.
   */
  taskQueue?: string;
  /** How often a waiting reservation heartbeats. */
  heartbeatMs?: number;
  /** The memo a pool starts with: the search attribute hash key, when kura.yaml asks for hashing. */
  memo?: Record<string, string>;
  /** The events feed a device marked unavailable is published to (docs/adr/031). */
  feed?: EventFeed;
}

/** Creates the pool activities bound to a Temporal client and the configured sites. */
export function createPoolActivities(deps: PoolActivityDeps) {
  const heartbeatMs = deps.heartbeatMs ?? 2000;

  /** The start of the site's pool workflow, for when it is not running yet. */
  function poolStart(siteName: string): WorkflowStartOptions<typeof resourcePool> & {
    workflowIdConflictPolicy: 'USE_EXISTING';
  } {
    const site = deps.sites().find((s) => s.name === siteName);
    if (!site) {
      const known = deps.sites().map((s) => s.name);
      throw ApplicationFailure.nonRetryable(
        `no site ${siteName} in the configuration; known sites: ${known.join(', ') || '(none)'}`,
        ErrorType.NotFound,
      );
    }
    // The pool is of the installation whose queue this runs on (the worker has refused any other's work).
    const taskQueue = deps.taskQueue ?? Context.current().info.taskQueue;
    return {
      workflowId: poolWorkflowId(siteName, installationOfTaskQueue(taskQueue)),
      taskQueue,
      workflowIdConflictPolicy: 'USE_EXISTING',
      args: [{ site: siteName, tables: tablesFromSite(site) }],
      memo: deps.memo ?? {},
      staticSummary: `resource pool of site ${siteName}`,
    };
  }

  /** Starts the pool of the site unless it runs, and returns a handle that follows its runs. */
  async function pool(siteName: string): Promise<WorkflowHandle<typeof resourcePool>> {
    const start = poolStart(siteName);
    await deps.client.workflow.start<typeof resourcePool>('resourcePool', start);
    // A handle without a run id: the pool continues as new, and the start above may have returned
    // a run that is not the first of the chain, which a run-bound handle would reject.
    return deps.client.workflow.getHandle<typeof resourcePool>(start.workflowId);
  }

  /**
   * Sends a job's update to the pool of `site` and waits for the answer. The update id is the same
   * on every attempt of this activity, so a retry after a lost reply joins the first update instead
   * of queueing twice; a later call by the same job is a new activity and gets a fresh update (the
   * pool answers it from its tables, by job). The update goes to the running pool; only when there
   * is none is it sent again with the pool's start (update-with-start). The worker starts every
   * site's pool, so that is rare, and the plain update is the cheaper call (docs/adr/053).
   */
  async function poolUpdate<Ret, Arg extends { job: string }>(
    site: string,
    kind: string,
    update: UpdateDefinition<Ret, [Arg]>,
    arg: Arg,
  ): Promise<Ret> {
    const start = poolStart(site);
    const handle = deps.client.workflow.getHandle<typeof resourcePool>(start.workflowId);
    const updateId = callKey(kind, arg.job);
    return waitForUpdate(arg.job, handle, async () => {
      try {
        return await handle.executeUpdate(update, { args: [arg], updateId });
      } catch (err) {
        if (!(err instanceof WorkflowNotFoundError)) throw err;
        return deps.client.workflow.executeUpdateWithStart(update, {
          args: [arg],
          updateId,
          startWorkflowOperation: new WithStartWorkflowOperation<typeof resourcePool>('resourcePool', start),
        });
      }
    });
  }

  /**
   * Runs one pool update while heartbeating, so the activity stays alive while the request waits in
   * the pool's queue and learns of its cancellation. When the calling workflow cancels (or is gone),
   * the job's request is withdrawn with a release so it neither stays queued nor holds a late grant.
   */
  async function waitForUpdate<T>(
    job: string,
    handle: WorkflowHandle<typeof resourcePool>,
    run: () => Promise<T>,
  ): Promise<T> {
    const ctx = Context.current();
    // A local activity (a backup's release, which never waits) has no heartbeat to send: the
    // workflow task it runs in is kept alive by the worker itself.
    const beat = ctx.info.isLocal ? undefined : (ctx.heartbeat(), setInterval(() => ctx.heartbeat(), heartbeatMs));
    const work = deps.client.withAbortSignal(ctx.cancellationSignal, run);
    // If cancellation wins the race, the aborted call's rejection must not go unhandled.
    work.catch(() => undefined);
    try {
      return await Promise.race([work, ctx.cancelled]);
    } catch (err) {
      if (err instanceof CancelledFailure) {
        const why = ctx.cancellationDetails;
        if (why?.cancelRequested || why?.notFound) {
          await handle
            .executeUpdate(releaseUpdate, { args: [{ job, tapeUsage: {} }], updateId: `${callKey('withdraw', job)}` })
            .catch((e: unknown) => ctx.log.warn(`could not withdraw the request of ${job}`, { error: String(e) }));
        }
      }
      throw mapUpdateFailure(err);
    } finally {
      clearInterval(beat);
    }
  }

  return {
    /** Reserves disjoint streams for a job (all or nothing), waiting in line up to `waitMs`. */
    async reserveStreams(site: string, req: ReserveRequest): Promise<Grant> {
      return mapFailures(async () => {
        const parsed = parseWith(ReserveRequestSchema, req, 'reservation request');
        return poolUpdate(site, 'reserve', reserveStreamsUpdate, parsed);
      });
    },

    /**
     * Reserves disjoint streams for a job only if the pool can grant them at once: nobody waits
     * ahead and the devices are free; otherwise answers with the pool's reason and joins no queue. A
     * backup asks this first, as a local activity, and only a job that would wait asks
     * `reserveStreams` (docs/adr/045). A refusal is an answer, not a failure: a failed activity is
     * logged with its stack by the worker, and a busy pool is what a fleet meets all the time.
     */
    async reserveStreamsNow(site: string, req: ReserveRequest): Promise<Grant | { refused: string }> {
      return mapFailures(async () => {
        const parsed = parseWith(ReserveRequestSchema, { ...req, waitMs: 0 }, 'reservation request');
        try {
          return await poolUpdate(site, 'reserve-now', reserveStreamsUpdate, parsed);
        } catch (err) {
          if (err instanceof ApplicationFailure && err.type === ErrorType.NoResources) return { refused: err.message };
          throw err;
        }
      });
    },

    /** Frees everything the job holds and records each cartridge's end of data. */
    async releaseStreams(site: string, req: ReleaseRequest): Promise<{ released: number }> {
      return mapFailures(async () => {
        const parsed = parseWith(ReleaseRequestSchema, req, 'release request');
        return poolUpdate(site, 'release', releaseUpdate, parsed);
      });
    },

    /** Marks a device (un)available; an unknown device fails as NotFound instead of being ignored. */
    async markDevice(site: string, req: MarkRequest): Promise<void> {
      return mapFailures(async () => {
        const parsed = parseWith(MarkRequestSchema, req, 'mark request');
        const handle = await pool(site);
        const tables = await handle.query(tablesQuery);
        if (!findDevice(tables, parsed.device)) {
          throw ApplicationFailure.nonRetryable(
            `no device ${parsed.device} in the pool of site ${site}`,
            ErrorType.NotFound,
          );
        }
        await handle.signal(markDeviceSignal, parsed);
        // A device taken out of service is a device fault for the feed; bringing one back is not.
        if (parsed.state === 'unavailable' && deps.feed)
          await deps.feed.publish({
            key: activityEventKey(Context.current().info),
            at: new Date().toISOString(),
            kind: EventKind.DeviceFault,
            subject: `device ${parsed.device} of site ${site} is at fault and out of service${parsed.reason ? `: ${parsed.reason}` : ''}`,
            site,
            type: ErrorType.DeviceFault,
            device: parsed.device,
            job: Context.current().info.workflowExecution?.workflowId,
            detail: {
              site,
              device: parsed.device,
              reason: parsed.reason ?? null,
              bringBack: `kura pool mark ${parsed.device} available`,
            },
          });
      });
    },

    /** The pool's tables, as seed 004 Figs. 3–6 show them. */
    async poolTables(site: string): Promise<PoolTables> {
      const handle = await pool(site);
      return handle.query(tablesQuery);
    },
  };
}

/** The activity functions, for `proxyActivities<PoolActivities>` in workflows. */
export type PoolActivities = ReturnType<typeof createPoolActivities>;

/**
 * An update id that is stable across the attempts of one activity and distinct between activities:
 * the calling run and the activity id, not the attempt number.
 */
function callKey(kind: string, job: string): string {
  const info = Context.current().info;
  const run = info.workflowExecution?.runId ?? 'standalone';
  return `${kind}/${job}/${run}/${info.activityId}`;
}

/**
 * A failed or rejected update carries the pool's typed failure as its cause; it is re-thrown with
 * the same type, message and details, non-retryable when the type says no retry can help. Anything else
 * (the server unreachable, a cancellation) passes through unchanged.
 */
function mapUpdateFailure(err: unknown): unknown {
  if (err instanceof WorkflowUpdateFailedError && err.cause instanceof ApplicationFailure) {
    const { type, message, details } = err.cause;
    const fatal = typeof type === 'string' && (NON_RETRYABLE_ERROR_TYPES as readonly string[]).includes(type);
    // Details travel on: a restore reads from them which devices marked unavailable stand in its way.
    return ApplicationFailure.create({
      message,
      type: type ?? undefined,
      nonRetryable: fatal,
      details: details ?? undefined,
    });
  }
  return err;
}
