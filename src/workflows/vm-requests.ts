/**
 * What a caller of Kura's Nexus service asks of a VM's guardian, each as a workflow of its own so the
 * Nexus operation has a run to follow and to cancel: a failure report that answers with the outcome
 * of the ladder it joined or started, and a data-volume image taken now.
 */
import {
  ApplicationFailure,
  condition,
  getExternalWorkflowHandle,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import {
  LadderOutcomeSchema,
  VmDataBackupRequestSchema,
  VmFailureRequestSchema,
  type ImageRecord,
  type LadderOutcome,
  type LadderResult,
  type VmDataBackupRequest,
  type VmFailureRequest,
} from '../domain/ladder';
import { ErrorType } from '../domain/errors';
import { failureDetectedSignal, ladderEndedSignal } from '../messages';
import { JobKind, KuraKind, KuraSite, KuraTarget, KuraVm } from '../search-attributes';
import { guardianWorkflowId } from '../api/workflow-ids';
import { acceptInput, jobFailure } from './failures';
import { guardianRequestActivities } from './vm-proxies';
import { label } from './labels';
import { ownInstallation } from './installation';

/**
 * Reports a failure to the VM's guardian and waits for the ladder that takes it up to end. Cancelled,
 * it only stops waiting: the ladder owns the VM until it is done.
 */
export async function vmFailureReport(input: VmFailureRequest): Promise<LadderResult> {
  const { site, vm, reason, requestedAt } = acceptInput(VmFailureRequestSchema, input, 'VM failure report');
  tag(JobKind.VmReport, site, vm);
  let outcome: LadderOutcome | undefined;
  setHandler(ladderEndedSignal, (raw) => {
    const parsed = LadderOutcomeSchema.safeParse(raw);
    if (parsed.success) outcome ??= parsed.data;
  });

  const guardian = guardianWorkflowId(vm, ownInstallation());
  await getExternalWorkflowHandle(guardian)
    .signal(failureDetectedSignal, { reason, at: requestedAt, replyTo: workflowInfo().workflowId })
    .catch((err: unknown) => {
      throw ApplicationFailure.create({
        message: `${vm} has no running guardian (${guardian}) to take the report; start the worker, which starts it`,
        type: ErrorType.NotFound,
        nonRetryable: true,
        cause: err instanceof Error ? err : undefined,
      });
    });
  setCurrentDetails(`reported to ${guardian}: waiting for the outcome of its recovery ladder`);
  await condition(() => outcome !== undefined);
  const ended = outcome as LadderOutcome;
  if (ended.result) return ended.result;
  throw ApplicationFailure.nonRetryable(
    `the recovery ladder ${ended.ladder} of ${vm} failed: ${ended.failure?.message ?? 'no reason given'}`,
    ended.failure?.type ?? 'Error',
  );
}

/** Asks the VM's guardian for a verified image of its data volume now; answers with the image kept. */
export async function vmDataBackup(input: VmDataBackupRequest): Promise<ImageRecord> {
  const { site, vm, requestedBy } = acceptInput(VmDataBackupRequestSchema, input, 'VM data backup request');
  tag(JobKind.VmDataBackup, site, vm);
  const { requestGuardianDataBackup } = guardianRequestActivities();
  try {
    return await requestGuardianDataBackup({ site, vm, requestedBy, updateId: workflowInfo().workflowId });
  } catch (err) {
    throw jobFailure(`data backup of ${vm}`, err);
  }
}

function tag(kind: JobKind, site: string, vm: string): void {
  upsertSearchAttributes([
    { key: KuraKind, value: kind },
    { key: KuraVm, value: label(vm) },
    { key: KuraTarget, value: label(vm) },
    { key: KuraSite, value: label(site) },
  ]);
}
