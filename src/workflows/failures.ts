/**
 * Failure helpers for workflow code: find the typed failure at the root of an activity error and
 * re-throw it with the job's context, keeping its type and the whole cause chain.
 */
import {
  ApplicationFailure,
  CancellationScope,
  TemporalFailure,
  TimeoutFailure,
  isCancellation,
} from '@temporalio/workflow';
import type { ZodType, output } from 'zod';
import type { StreamRecord } from '../domain/catalog';
import { KuraError, ErrorType } from '../domain/errors';
import { parseWith } from '../domain/validate';
import type { ControlActivities } from './proxies';

export interface RootFailure {
  type: string;
  message: string;
}

/** The deepest ApplicationFailure in the cause chain (the activity's own typed error). */
export function rootFailure(err: unknown): RootFailure {
  let cur: unknown = err;
  let found: RootFailure | undefined;
  for (let depth = 0; cur && depth < 10; depth++) {
    if (cur instanceof ApplicationFailure) found = { type: cur.type ?? 'Error', message: cur.message };
    cur = cur instanceof TemporalFailure || cur instanceof Error ? (cur as Error).cause : undefined;
  }
  if (found) return found;
  if (isCancellation(err)) return { type: ErrorType.Cancelled, message: 'the job was cancelled' };
  if (deviceTrouble(err).timedOut)
    return {
      type: ErrorType.DeviceFault,
      message: 'the copy stopped answering (no heartbeat within the copy heartbeat timeout)',
    };
  return { type: 'Error', message: err instanceof Error ? err.message : String(err) };
}

/**
 * What a failed copy says about its devices: the device a typed DeviceFault names, and whether the
 * copy stopped answering (its heartbeat or start-to-close timeout passed) rather than failing.
 */
export function deviceTrouble(err: unknown): { device?: string; timedOut: boolean } {
  let device: string | undefined;
  let timedOut = false;
  let cur: unknown = err;
  for (let depth = 0; cur && depth < 10; depth++) {
    if (cur instanceof TimeoutFailure) timedOut = true;
    if (cur instanceof ApplicationFailure && cur.type === ErrorType.DeviceFault) {
      const d = (cur.details?.[0] as { device?: unknown } | undefined)?.device;
      if (typeof d === 'string') device = d;
    }
    cur = cur instanceof TemporalFailure || cur instanceof Error ? (cur as Error).cause : undefined;
  }
  return { device, timedOut };
}

/**
 * A non-retryable failure for the whole job that says what failed and why, typed like its root
 * cause (so `InvalidInput`, `NoResources`, `DeviceFault` … reach the caller intact).
 */
export function jobFailure(context: string, err: unknown): ApplicationFailure {
  const root = rootFailure(err);
  return ApplicationFailure.create({
    message: `${context}: ${root.message}`,
    type: root.type,
    nonRetryable: true,
    cause: err instanceof Error ? err : undefined,
  });
}

/**
 * Step 1 of every job, and every update's validator: the input parsed with domain's one
 * validation helper; its InvalidInputError leaves the workflow as a non-retryable
 * ApplicationFailure of the same type and message, changing nothing.
 */
export function acceptInput<S extends ZodType>(schema: S, input: unknown, what: string): output<S> {
  try {
    return parseWith(schema, input, what);
  } catch (err) {
    if (err instanceof KuraError) throw ApplicationFailure.nonRetryable(err.message, err.type, { issues: err.issues });
    throw err;
  }
}

/**
 * A backup failed (or was cancelled): the catalog marks it failed with the root cause (and what
 * became of each stream), and people are told — both even while the job is being cancelled, and
 * neither allowed to hide the original failure.
 */
export async function reportBackupFailure(
  control: Pick<ControlActivities, 'failBackup' | 'notify'>,
  o: { subject: string; workflowId: string; backupId: string; err: unknown; streams?: StreamRecord[] },
): Promise<void> {
  const root = rootFailure(o.err);
  await CancellationScope.nonCancellable(async () => {
    await control
      .failBackup({
        backupId: o.backupId,
        error: `${root.type}: ${root.message}`,
        endedAt: new Date().toISOString(),
        streams: o.streams,
      })
      .catch(() => undefined);
    await control
      .notify({
        subject: o.subject,
        detail: { workflowId: o.workflowId, backupId: o.backupId, type: root.type, error: root.message },
      })
      .catch(() => undefined);
  });
}

/**
 * A job refused before it touched anything (AccessDenied, say), or one failed that keeps no catalog
 * record (a restore): people are told through the events feed, without letting a failure to tell
 * hide the job's own.
 */
export async function notifyJobFailure(
  control: Pick<ControlActivities, 'notify'>,
  o: { subject: string; workflowId: string; site: string; err: unknown },
): Promise<void> {
  const root = rootFailure(o.err);
  await CancellationScope.nonCancellable(() =>
    control
      .notify({
        subject: o.subject,
        detail: { workflowId: o.workflowId, site: o.site, type: root.type, error: root.message },
      })
      .then(() => undefined)
      .catch(() => undefined),
  );
}
