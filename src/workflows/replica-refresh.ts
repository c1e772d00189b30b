/**
 * The SAN operation of kind `replica-refresh` (seed 003): the same six steps as every other kind —
 * bring the target's pair in sync (pairing it from the free pool when it has none, resynchronising
 * only the changed chunks when it is split), put the application into backup mode, split, leave
 * backup mode — and keep the split replica as a point-in-time copy for reporting or tests. Its
 * own workflow type only because its report is a replica, not a backup.
 */
import {
  ApplicationFailure,
  isCancellation,
  patched,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { ReplicaRefreshRequestSchema, type ReplicaRefreshRequest, type ReplicaReport } from '../domain/jobs';
import { ErrorType } from '../domain/errors';
import { KuraKind, KuraSite, KuraTarget, JobKind } from '../search-attributes';
import { planOperation } from './operation-plan';
import { controlActivities } from './proxies';
import { acceptInput, notifyJobFailure } from './failures';
import { Compensations } from './compensations';
import { OperationState } from './operation-state';
import { operationPlanInput, resolveOperation, splitPair, syncPair, type ArrayLaunch } from './array-launches';
import { label } from './labels';

/** Refreshes one target's replica and keeps it split. */
export async function replicaRefresh(input: ReplicaRefreshRequest): Promise<ReplicaReport> {
  const { workflowId } = workflowInfo();
  const op = new OperationState(workflowId, 'replica-refresh', input.target);

  // 1. Accept the request (from a person, a schedule or another workflow).
  const req = acceptInput(ReplicaRefreshRequestSchema, input, 'replica-refresh request');
  upsertSearchAttributes([
    { key: KuraKind, value: JobKind.ReplicaRefresh },
    { key: KuraTarget, value: label(req.target) },
    { key: KuraSite, value: label(req.site) },
  ]);
  const control = controlActivities(req.tuning);
  const startedAt = new Date().toISOString();

  // 2. Resolve: the volume, its pair as it stands, the application's hook.
  op.enter('resolve', `resolving ${req.target}`);
  const found = await resolveOperation(control, req, 'replica-refresh').catch((err) =>
    op.fail(`replica-refresh of ${req.target} refused`, err),
  );
  const { resolved } = found;
  const ref = { site: req.site, array: resolved.array, volume: resolved.volume };

  // 3. Plan the launches.
  op.enter('plan', 'planning');
  const plan = operationPlanInput('replica-refresh', req, found);
  op.steps = planOperation(plan);
  op.bytesTotal = resolved.sizeBytes;
  const undo = new Compensations();
  const launch: ArrayLaunch = {
    op,
    undo,
    control,
    ref,
    target: req.target,
    plan,
    tuning: req.tuning,
  };

  // 4. Launch; 5. collect each result.
  op.enter('launch', found.pair === null ? 'pairing and copying' : 'bringing the replica up to date');
  try {
    const synced = await syncPair(launch);
    if (!synced.inSync) {
      throw ApplicationFailure.nonRetryable(
        `the pair of ${ref.array}/${ref.volume} was not in sync within ${req.pairWaitMs} ms (${synced.pair.state}, ${synced.pair.copiedBytes} of ${synced.pair.totalBytes} bytes copied); wait longer (pairWaitMs) or refresh later`,
        ErrorType.Unavailable,
      );
    }
    op.bytesDone = synced.pair.copiedBytes;
    const pair = await splitPair(launch);
    // Kept split on purpose: the replica is the point-in-time copy this operation was asked for.
    undo.done('resync');
    undo.done('delete-pair');

    // 6. Report the result to the requester.
    op.enter('report', 'done');
    const report: ReplicaReport = {
      ...resolved,
      workflowId,
      kind: 'replica-refresh',
      replica: pair.replica,
      readPath: pair.readPath,
      splitAt: pair.splitAt ?? new Date().toISOString(),
      copiedBytes: synced.pair.copiedBytes,
      changes: op.changes,
      startedAt,
      endedAt: new Date().toISOString(),
    };
    op.enter('done', `replica ${pair.replica} of ${ref.array}/${ref.volume} split at ${report.splitAt}`);
    return report;
  } catch (err) {
    await undo.unwind();
    if (isCancellation(err)) throw err;
    // The events feed hears of every failed job (docs/adr/031); earlier runs only failed.
    if (patched('replica-refresh-failure-event'))
      await notifyJobFailure(control, {
        subject: `replica-refresh of ${req.target} failed at ${op.currentStep ?? op.phase}`,
        workflowId: workflowInfo().workflowId,
        site: req.site,
        err,
      });
    return op.fail(`replica-refresh of ${req.target} failed at ${op.currentStep ?? op.phase}`, err);
  }
}
