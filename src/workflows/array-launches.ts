/**
 * The launches of the arrays' function software and the applications' hooks inside a SAN
 * operation (seed 003 steps 4 and 5), as workflow code: bring the pair in sync, enter backup mode,
 * split or snapshot, leave backup mode — each launch followed by its compensation, and each result
 * that calls for a re-plan answered here (the pair not in sync in time; backup mode not entered).
 */
import { ApplicationFailure, isCancellation } from '@temporalio/workflow';
import { ErrorType } from '../domain/errors';
import type { PairInfo, SnapshotInfo, VolumeRef } from '../drivers/types';
import type { JobTuning } from '../domain/jobs';
import type { Compensations } from './compensations';
import type { OperationState } from './operation-state';
import { replanStopped, type OperationPlanInput } from './operation-plan';
import { hookActivities, pairWaitActivities, type ControlActivities } from './proxies';
import { rootFailure } from './failures';

/** What the launches of one operation share. */
export interface ArrayLaunch {
  op: OperationState;
  undo: Compensations;
  control: ControlActivities;
  ref: VolumeRef;
  target: string;
  plan: OperationPlanInput;
  tuning: Pick<JobTuning, 'deviceAttempts' | 'copyHeartbeatTimeoutMs'>;
}

/**
 * Brings the volume's pair in sync: creates it when there is none (its undo deletes it again),
 * resynchronises it when split, then waits at most `pairWaitMs`. Answers whether it got in sync.
 */
export async function syncPair(l: ArrayLaunch): Promise<{ inSync: boolean; pair: PairInfo }> {
  const { control, ref, undo } = l;
  return l.op.step('pair-sync', async () => {
    if (l.plan.pair === null) {
      await control.createPair(ref);
      // A pair this operation made is not left behind by a failed operation: nothing changed.
      undo.add('delete-pair', () => control.deletePair(ref));
    } else if (l.plan.pair.state === 'split') {
      await control.resyncPair(ref);
    }
    return pairWaitActivities(l.plan.pairWaitMs, l.tuning).waitPairInSync({
      ref,
      waitMs: l.plan.pairWaitMs,
    });
  });
}

/**
 * Runs `launch` (a split, a snapshot) with the target's application in backup mode: enter it
 * (`backup-mode`), launch, leave it (`end-backup-mode`). When the application does not enter
 * backup mode within its hook's timeout — or the hook fails — the operation stops before the
 * launch: every step left is skipped and the failure names why; nothing was split or taken.
 */
export async function inBackupMode<T>(l: ArrayLaunch, launchId: string, launch: () => Promise<T>): Promise<T> {
  const { control, op, undo, plan } = l;
  const none = plan.hook.kind === 'none';
  const arg = { site: l.ref.site, target: l.target };
  // Registered before the begin: a begin that timed out may still have taken effect in the
  // application, and leaving backup mode twice is harmless.
  if (!none) undo.add('end-backup-mode', () => control.endBackupMode(arg));
  try {
    await op.step('backup-mode', async () => {
      if (!none) await hookActivities(plan.hook.timeoutMs).beginBackupMode(arg);
    });
  } catch (err) {
    if (isCancellation(err)) throw err;
    const root = rootFailure(err);
    // A hook that failed outright stays a device fault; anything else (its timeout) is HookTimeout.
    const type = root.type === ErrorType.DeviceFault ? ErrorType.DeviceFault : ErrorType.HookTimeout;
    const why = `the application of ${l.target} did not enter backup mode within ${plan.hook.timeoutMs} ms (${root.message})`;
    op.replan(
      'backup-mode',
      replanStopped(op.steps, 'stopped before any split or snapshot: the application is not in backup mode'),
      `stopped before ${launchId === 'split' ? 'the split' : 'the snapshot'}; nothing was split or taken`,
      why,
    );
    throw ApplicationFailure.nonRetryable(
      `${why}; the operation stopped before any split or snapshot and changed nothing`,
      type,
    );
  }
  const out = await op.step(launchId, launch);
  await op.step('end-backup-mode', async () => {
    if (!none) await control.endBackupMode(arg);
  });
  undo.done('end-backup-mode');
  return out;
}

/** Splits the pair; its undo resynchronises it, so a failed operation leaves the pair as it found it. */
export async function splitPair(l: ArrayLaunch): Promise<PairInfo> {
  return inBackupMode(l, 'split', async () => {
    const pair = await l.control.splitPair(l.ref);
    l.undo.add('resync', () => l.control.resyncPair(l.ref));
    return pair;
  });
}

/** Takes the snapshot; its undo deletes it and returns its space to the free pool. */
export async function takeSnapshot(l: ArrayLaunch, name: string): Promise<SnapshotInfo> {
  return inBackupMode(l, 'snapshot', async () => {
    const snap = await l.control.createSnapshot({ ref: l.ref, name });
    l.undo.add('delete-snapshot', () => l.control.deleteSnapshot({ ref: l.ref, name }));
    return snap;
  });
}
