/**
 * Feeds a worker's metrics from the activities it runs, as a Temporal activity interceptor: every
 * activity's outcome passes through it, so the activities stay about their work and the metrics
 * are counted where the work happened, in the worker, never in (replayed) workflow code. It reads
 * the few activities that mark the end of something worth counting: a backup recorded complete or
 * failed in the catalog, a VM's data-volume image kept, a ladder rung that made a VM healthy.
 */
import type { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import type { BackupRecord } from '../domain/catalog';
import { ErrorType } from '../domain/errors';
import type { ImageRecord } from '../domain/ladder';
import { BackupMethod, TargetClass, targetClass, type WorkerMetrics } from './worker-metrics';

/** The interceptor factory a Worker takes in `interceptors.activity`. */
export function metricsInterceptor(metrics: WorkerMetrics): ActivityInterceptorsFactory {
  return (ctx) => ({
    inbound: {
      async execute(input, next) {
        const t0 = Date.now();
        let result: unknown;
        try {
          result = await next(input);
        } catch (err) {
          metrics.activityFailed(ctx.info.activityType, failureType(err));
          throw err;
        }
        try {
          observe(metrics, ctx, input.args[0], result, (Date.now() - t0) / 1000);
        } catch {
          // A metric that cannot be read from an unexpected shape is not worth failing the activity for.
        }
        return result;
      },
    },
  });
}

/** Counts what a successful activity finished. */
function observe(metrics: WorkerMetrics, ctx: Context, arg: unknown, result: unknown, seconds: number): void {
  switch (ctx.info.activityType) {
    // A SAN operation's backup, recorded once every copy is verified.
    case 'completeBackup': {
      const b = result as BackupRecord;
      metrics.backupCompleted({
        class: targetClass(b.target),
        method: methodOf(ctx),
        bytes: b.sizeBytes,
        seconds: (Date.parse(b.endedAt ?? '') - Date.parse(b.startedAt)) / 1000,
      });
      return;
    }
    // An online backup's image, hashed and recorded; the job began at `startedAt`.
    case 'recordOnlineImage': {
      const i = arg as { target: string; sizeBytes: number; startedAt: string };
      metrics.backupCompleted({
        class: targetClass(i.target),
        method: BackupMethod.Online,
        bytes: i.sizeBytes,
        seconds: (Date.now() - Date.parse(i.startedAt)) / 1000,
      });
      return;
    }
    // The catalog marks a backup failed with `<type>: <message>` (reportBackupFailure).
    case 'failBackup': {
      const f = arg as { backupId: string; error: string };
      const target = f.backupId.slice(0, f.backupId.lastIndexOf('@'));
      metrics.backupFailed({ class: targetClass(target), method: methodOf(ctx), type: typeOfMessage(f.error) });
      return;
    }
    // A guardian's image of its VM's data volume: the activity is the whole copy.
    case 'backupDataVolume': {
      const { image } = result as { image: ImageRecord };
      metrics.backupCompleted({ class: TargetClass.Vm, method: BackupMethod.Image, bytes: image.sizeBytes, seconds });
      return;
    }
    // A rung's health wait that saw the VM healthy: that rung cured the incident.
    case 'awaitHealthy': {
      const rung = (arg as { rung?: string }).rung;
      if (rung && (result as { healthy: boolean }).healthy) metrics.ladderCured(rung);
      return;
    }
  }
}

/**
 * The method of the backup the calling workflow runs: `online` for the datapath's, else the kind
 * of SAN operation its id names (`op/<kind>/<target>/<time>`, see `operationWorkflowId`).
 */
function methodOf(ctx: Context): string {
  const { workflowType, workflowExecution } = ctx.info;
  if (workflowType === 'onlineBackup') return BackupMethod.Online;
  const kind = /^op\/([^/]+)\//.exec(workflowExecution?.workflowId ?? '')?.[1];
  return kind ?? workflowType ?? 'unknown';
}

/** The type of a failure as Temporal carries it: an ApplicationFailure's type, a cancellation, or the error's name. */
function failureType(err: unknown): string {
  if (err instanceof ApplicationFailure) return err.type ?? 'Error';
  if (err instanceof CancelledFailure) return ErrorType.Cancelled;
  return err instanceof Error ? err.name : 'Error';
}

/** `DeviceFault: drive-1 …` → `DeviceFault`; a message without a type prefix is `Error`. */
function typeOfMessage(message: string): string {
  return /^([A-Za-z][A-Za-z0-9]*): /.exec(message)?.[1] ?? 'Error';
}
