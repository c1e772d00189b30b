/**
 * The launches of the arrays' function software and the applications' hooks inside a SAN
 * operation (seed 003 steps 4 and 5), as workflow code: bring the pair in sync, enter backup mode,
 * split or snapshot, leave backup mode — each launch followed by its compensation, and each result
 * that calls for a re-plan answered here (the pair not in sync in time; backup mode not entered;
 * a held session lost, which discards the image and enters backup mode anew).
 */
import type { SanAccessPlan } from '../domain/tenancy';
import { ApplicationFailure, CancellationScope, condition, isCancellation, setHandler } from '@temporalio/workflow';
import { ErrorType } from '../domain/errors';
import type { PairInfo, SnapshotInfo, VolumeRef } from '../drivers/types';
import { StepStatus, type BackupModeRecord, type JobTuning, type ResolvedTarget } from '../domain/jobs';
import type { Compensations } from './compensations';
import type { OperationState } from './operation-state';
import { replanStopped, type EngineKind, type OperationPlanInput } from './operation-plan';
import { holdActivities, hookActivities, pairWaitActivities, type ControlActivities } from './proxies';
import { deviceTrouble, rootFailure } from './failures';
import { backupModeEnteredSignal, backupModeReleasedQuery } from '../messages';

/**
 * Step 2 for every kind: the target's volume; its pair (for a split, refused when it has none; a
 * snapshot needs none); the application's hook. A plain backup needs neither.
 */
export async function resolveOperation(
  control: ControlActivities,
  req: { site: string; target: string },
  kind: EngineKind,
): Promise<{
  resolved: ResolvedTarget;
  pair: OperationPlanInput['pair'];
  hook: OperationPlanInput['hook'];
  access?: SanAccessPlan;
}> {
  // The access plan is step 3's to use, not a property of the volume the report repeats.
  const { access, ...resolved } = await control.resolveTarget({ site: req.site, target: req.target });
  const found = access ? { access } : {};
  if (kind === 'backup') return { resolved, pair: null, hook: { kind: 'none', timeoutMs: 0 }, ...found };
  const ref = { site: req.site, array: resolved.array, volume: resolved.volume };
  const pair = kind === 'snapshot-backup' ? null : await control.pairOf(ref);
  if (kind === 'split-backup' && pair === null)
    throw ApplicationFailure.nonRetryable(
      `volume ${resolved.array}/${resolved.volume} (${req.target}) has no pair, so there is nothing to split; back it up with --method snapshot or direct, or pair it first with \`kura san refresh ${req.target}\``,
      ErrorType.InvalidInput,
    );
  const hook = await control.applicationHook({ site: req.site, target: req.target });
  return { resolved, pair, hook, ...found };
}

/** What step 3 plans from, for every kind: step 2's findings and the request's split settings. */
export function operationPlanInput(
  kind: EngineKind,
  req: { target: string; pairWaitMs: number; throughput: OperationPlanInput['throughput'] },
  found: { resolved: ResolvedTarget; pair: OperationPlanInput['pair']; hook: OperationPlanInput['hook'] },
): OperationPlanInput {
  const { resolved } = found;
  return {
    kind,
    target: req.target,
    array: resolved.array,
    volume: resolved.volume,
    sizeBytes: resolved.sizeBytes,
    pair: found.pair,
    hook: found.hook,
    pairWaitMs: req.pairWaitMs,
    throughput: req.throughput,
  };
}

/** What the launches of one operation share. */
export interface ArrayLaunch {
  op: OperationState;
  undo: Compensations;
  control: ControlActivities;
  ref: VolumeRef;
  target: string;
  plan: OperationPlanInput;
  tuning: Pick<JobTuning, 'deviceAttempts' | 'copyHeartbeatTimeoutMs'>;
  /** The application's backup mode around the launch, once it has been left (absent: no hook). */
  backupMode?: BackupModeRecord;
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
 * `retake` undoes a launch whose backup mode was lost before it ended (a held session only).
 */
export async function inBackupMode<T>(
  l: ArrayLaunch,
  launchId: string,
  launch: () => Promise<T>,
  retake: () => Promise<void>,
): Promise<T> {
  if (l.plan.hook.session === true) return inHeldBackupMode(l, launchId, launch, retake);
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
    throw stopBeforeLaunch(l, launchId, err);
  }
  const entered = Date.now();
  const out = await op.step(launchId, launch);
  await op.step('end-backup-mode', async () => {
    if (!none) await control.endBackupMode(arg);
  });
  undo.done('end-backup-mode');
  if (!none) l.backupMode = measured(plan.hook.kind, entered, Date.now(), 1);
  return out;
}

/** How many times a held session may be lost before the operation gives up instead of entering backup mode again. */
const HOLD_ROUNDS = 3;

/**
 * `inBackupMode` for a hook that holds one session from begin to end (`postgres`, ADR 023): the
 * hold activity is started and not awaited; it signals when the application is in backup mode, the
 * launch runs, the workflow releases the round (the hold polls the `backup-mode-released` query),
 * and the hold leaves backup mode on its session and answers what the stop returned. Only a stop
 * that succeeded proves backup mode lasted through the launch: when the hold's worker dies (its
 * heartbeat stops) or its session is lost, the image is discarded (`retake`) and the engine enters
 * backup mode anew — it never keeps an image taken without backup mode.
 */
async function inHeldBackupMode<T>(
  l: ArrayLaunch,
  launchId: string,
  launch: () => Promise<T>,
  retake: () => Promise<void>,
): Promise<T> {
  const { op, undo, plan } = l;
  let entered = 0;
  let released = 0;
  setHandler(backupModeEnteredSignal, (e) => {
    entered = Math.max(entered, e.round);
  });
  setHandler(backupModeReleasedQuery, () => released);
  for (let round = 1; ; round++) {
    const scope = new CancellationScope();
    const hold = scope.run(() =>
      holdActivities(plan.hook).holdBackupMode({ site: l.ref.site, target: l.target, round }),
    );
    // Observed below at the right moment; a rejection before that must not count as unhandled.
    hold.catch(() => undefined);
    // Cancelling the hold closes its session, and PostgreSQL aborts a backup never stopped.
    const endHold = async () => {
      scope.cancel();
      await hold.catch(() => undefined);
    };
    undo.add('end-backup-mode', endHold);
    try {
      await op.step('backup-mode', async () => {
        const early = hold.then(() => {
          throw ApplicationFailure.nonRetryable('the hold ended before backup mode was entered', ErrorType.DeviceFault);
        });
        early.catch(() => undefined);
        // The hold enforces the timeout itself; the slack leaves room for its signal to arrive.
        const inTime = await Promise.race([condition(() => entered >= round, plan.hook.timeoutMs + 15_000), early]);
        if (!inTime)
          throw ApplicationFailure.nonRetryable(
            `no word from the hold within ${plan.hook.timeoutMs} ms`,
            ErrorType.HookTimeout,
          );
      });
    } catch (err) {
      if (isCancellation(err)) throw err;
      undo.done('end-backup-mode');
      await CancellationScope.nonCancellable(endHold);
      // A holder that died before entering left nothing behind: enter backup mode anew.
      if (deviceTrouble(err).timedOut && round < HOLD_ROUNDS) {
        again(
          l,
          launchId,
          false,
          `the worker holding the session of ${l.target} stopped heartbeating before backup mode was entered`,
        );
        continue;
      }
      throw stopBeforeLaunch(l, launchId, err);
    }
    const out = await op.step(launchId, launch);
    released = round;
    try {
      const r = await op.step('end-backup-mode', () => hold);
      undo.done('end-backup-mode');
      l.backupMode = { hook: plan.hook.kind, ...r, rounds: round };
      return out;
    } catch (err) {
      if (isCancellation(err)) throw err;
      undo.done('end-backup-mode');
      const lost = deviceTrouble(err).timedOut
        ? 'the worker holding its session stopped heartbeating, and PostgreSQL aborts a backup with its session'
        : rootFailure(err).message;
      const why = `backup mode of ${l.target} was lost before it ended (${lost}), so the ${launchId === 'split' ? 'split replica' : 'snapshot'} is not known to be consistent`;
      if (round >= HOLD_ROUNDS)
        throw ApplicationFailure.nonRetryable(
          `${why}; backup mode was lost ${round} times, so the operation gives up`,
          ErrorType.DeviceFault,
        );
      again(l, launchId, true, why);
      await retake();
    }
  }
}

/** Step 5 after a lost hold: the launch (and, after a split, the pair's sync) is planned again. */
function again(l: ArrayLaunch, launchId: string, taken: boolean, why: string): void {
  const ids = new Set([
    'backup-mode',
    launchId,
    'end-backup-mode',
    ...(taken && launchId === 'split' ? ['pair-sync'] : []),
  ]);
  l.op.replan(
    taken ? 'end-backup-mode' : 'backup-mode',
    l.op.steps.map((s) => (ids.has(s.id) ? { ...s, status: StepStatus.Pending, detail: why } : s)),
    taken
      ? `the ${launchId === 'split' ? 'split replica is resynchronised' : 'snapshot is deleted'} and taken again in a new backup mode`
      : 'backup mode is entered again in a new session',
    why,
  );
}

/**
 * The stop before any split or snapshot: every step left is skipped, and the failure keeps the
 * hook's type — a login refused (AccessDenied), a device fault, or else HookTimeout.
 */
function stopBeforeLaunch(l: ArrayLaunch, launchId: string, err: unknown): unknown {
  if (isCancellation(err)) return err;
  const root = rootFailure(err);
  const kept: string[] = [ErrorType.DeviceFault, ErrorType.AccessDenied];
  const type = kept.includes(root.type) ? root.type : ErrorType.HookTimeout;
  const why = `the application of ${l.target} did not enter backup mode within ${l.plan.hook.timeoutMs} ms (${root.message})`;
  l.op.replan(
    'backup-mode',
    replanStopped(l.op.steps, 'stopped before any split or snapshot: the application is not in backup mode'),
    `stopped before ${launchId === 'split' ? 'the split' : 'the snapshot'}; nothing was split or taken`,
    why,
  );
  return ApplicationFailure.nonRetryable(
    `${why}; the operation stopped before any split or snapshot and changed nothing`,
    type,
  );
}

/** The backup mode a step hook measured from the workflow's clock. */
function measured(hook: string, from: number, to: number, rounds: number): BackupModeRecord {
  return {
    hook,
    enteredAt: new Date(from).toISOString(),
    leftAt: new Date(to).toISOString(),
    seconds: (to - from) / 1000,
    rounds,
  };
}

/** Splits the pair; its undo resynchronises it, so a failed operation leaves the pair as it found it. */
export async function splitPair(l: ArrayLaunch): Promise<PairInfo> {
  return inBackupMode(
    l,
    'split',
    async () => {
      const pair = await l.control.splitPair(l.ref);
      l.undo.add('resync', () => l.control.resyncPair(l.ref));
      return pair;
    },
    // A replica split outside backup mode is resynchronised, and must be in sync before the next split.
    () =>
      l.op.step('pair-sync', async () => {
        await l.control.resyncPair(l.ref);
        l.undo.done('resync');
        const r = await pairWaitActivities(l.plan.pairWaitMs, l.tuning).waitPairInSync({
          ref: l.ref,
          waitMs: l.plan.pairWaitMs,
        });
        if (!r.inSync)
          throw ApplicationFailure.nonRetryable(
            `the pair of ${l.ref.array}/${l.ref.volume} was not in sync again within ${l.plan.pairWaitMs} ms after its split was discarded`,
            ErrorType.DeviceFault,
          );
      }),
  );
}

/** Takes the snapshot; its undo deletes it and returns its space to the free pool. */
export async function takeSnapshot(l: ArrayLaunch, name: string): Promise<SnapshotInfo> {
  return inBackupMode(
    l,
    'snapshot',
    async () => {
      const snap = await l.control.createSnapshot({ ref: l.ref, name });
      l.undo.add('delete-snapshot', () => l.control.deleteSnapshot({ ref: l.ref, name }));
      return snap;
    },
    async () => {
      await l.control.deleteSnapshot({ ref: l.ref, name });
      l.undo.done('delete-snapshot');
    },
  );
}
