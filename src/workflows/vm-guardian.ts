/**
 * The guardian of one VM (seed 001's recovery unit 11 and management device 31–33, per VM,
 * forever): backs up ONLY the data volume to an image on the VM's request and daily, keeping the
 * last K images verified; takes failure reports (a signal, or its own health polling) and runs the
 * recovery ladder as a child workflow, starting above the last cure when the VM failed again
 * within the stability window; continues as new before its history grows large.
 */
import {
  ApplicationFailure,
  ParentClosePolicy,
  allHandlersFinished,
  condition,
  continueAsNew,
  executeChild,
  getExternalWorkflowHandle,
  log,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import {
  DataBackupRequestSchema,
  FailureReportSchema,
  GuardianInputSchema,
  nextBackupAt,
  startRungFor,
  type FailureReport,
  type GuardianInput,
  type ImageRecord,
  type LadderOutcome,
  type LadderResult,
} from '../domain/ladder';
import { compactTime } from '../domain/catalog';
import { ErrorType } from '../domain/errors';
import { failureDetectedSignal, guardianQuery, ladderEndedSignal, requestDataBackupUpdate } from '../messages';
import { JobKind, KuraKind, KuraRung, KuraSite, KuraTarget, KuraVm } from '../search-attributes';
import { ladderWorkflowId } from '../api/workflow-ids';
import { acceptInput, rootFailure } from './failures';
import { recoveryLadder } from './recovery-ladder';
import { notifyActivities, vmActivities } from './vm-proxies';
import { label, labelMemo } from './labels';
import { ownInstallation } from './installation';

/** Guards one VM until cancelled; never returns (it continues as new). */
export async function vmGuardian(input: GuardianInput): Promise<never> {
  const req = acceptInput(GuardianInputSchema, input, 'VM guardian input');
  const { site, vm, policy } = req;
  const state = req.state;
  const acts = vmActivities(policy);
  const { notify } = notifyActivities();
  let currentLadder: string | null = null;
  let backupRunning = false;
  /** A report that arrived while a ladder ran: checked against the VM's health once that ladder ends. */
  let reportedDuringLadder: FailureReport | undefined;
  /**
   * Workflows that reported with `replyTo` and wait for a ladder's outcome: the next ladder's (the
   * pending failure's), and the running one's. Never carried across continue-as-new: the guardian
   * only rolls with no failure pending and no ladder running, when both lists are empty.
   */
  let nextWaiters: string[] = [];
  let lateWaiters: string[] = [];

  upsertSearchAttributes([
    { key: KuraKind, value: JobKind.Guardian },
    { key: KuraVm, value: label(vm) },
    { key: KuraTarget, value: label(vm) },
    { key: KuraSite, value: label(site) },
  ]);
  setHandler(guardianQuery, () => ({ site, vm, state, currentLadder, backupRunning }));

  setHandler(failureDetectedSignal, (raw) => {
    const report = FailureReportSchema.safeParse(raw);
    if (!report.success) {
      log.warn(`failure report for ${vm} ignored: it is not valid`, {
        issues: report.error.issues.map((i) => i.message),
      });
      return;
    }
    const failure = { reason: report.data.reason, at: report.data.at ?? new Date().toISOString() };
    // A report during a ladder may be about the failure the ladder is curing, or a new one that
    // arrived as it ended; which, the VM's health tells once the ladder is over.
    if (currentLadder !== null) {
      reportedDuringLadder ??= failure;
      if (report.data.replyTo) lateWaiters.push(report.data.replyTo);
    } else {
      state.pendingFailure ??= failure;
      if (report.data.replyTo) nextWaiters.push(report.data.replyTo);
    }
  });

  setHandler(
    requestDataBackupUpdate,
    async (raw) => runBackup(`request:${DataBackupRequestSchema.parse(raw).requestedBy}`),
    {
      validator: (raw) => {
        acceptInput(DataBackupRequestSchema, raw, 'data backup request');
        // A VM being recovered may hold bad data; its images must stay the ones it is recovered from.
        if (currentLadder !== null)
          throw ApplicationFailure.nonRetryable(
            `${vm} is being recovered by ${currentLadder}; back its data up once it is healthy`,
            ErrorType.InRecovery,
          );
      },
    },
  );

  // Fails the guardian with NotFound when the VM is not in the inventory.
  const profile = await acts.vmProfile({ site, vm });
  state.nextBackupAt ??= new Date(nextBackupAt(Date.now(), policy)).toISOString();
  publish();

  const shouldRoll = () => {
    const info = workflowInfo();
    return (
      currentLadder === null &&
      !backupRunning &&
      state.pendingFailure === undefined &&
      (info.continueAsNewSuggested || info.historyLength > policy.maxHistoryEvents)
    );
  };

  for (;;) {
    const untilBackup = Date.parse(state.nextBackupAt) - Date.now();
    const wait = Math.max(1, policy.healthPollMs > 0 ? Math.min(untilBackup, policy.healthPollMs) : untilBackup);
    const woke = await condition(() => state.pendingFailure !== undefined || shouldRoll(), wait);
    if (state.pendingFailure) {
      await runLadder(state.pendingFailure);
      continue;
    }
    if (shouldRoll()) break;
    if (Date.now() >= Date.parse(state.nextBackupAt)) {
      // Daily image acquisition; a failed one is reported and the next day's runs as planned.
      await runBackup('daily').catch(async (err: unknown) => {
        const root = rootFailure(err);
        await notify({
          subject: `daily data backup of ${vm} failed`,
          detail: { vm, site, type: root.type, error: root.message },
        }).catch(() => undefined);
      });
      state.nextBackupAt = new Date(nextBackupAt(Date.now(), policy)).toISOString();
      continue;
    }
    if (!woke && policy.healthPollMs > 0) {
      const unwell = await unwellNow();
      if (unwell) state.pendingFailure = { reason: `health poll: ${unwell.detail}`, at: new Date().toISOString() };
    }
  }

  await condition(allHandlersFinished);
  return continueAsNew<typeof vmGuardian>({ site, vm, policy, state });

  /** Takes one verified image of the data volume, one backup at a time. */
  async function runBackup(why: string): Promise<ImageRecord> {
    await condition(() => !backupRunning);
    backupRunning = true;
    publish();
    try {
      const n = state.backups + 1;
      const imageId = `${vm}@${compactTime(new Date().toISOString())}-${n}`;
      const { image, pruned } = await acts.backupDataVolume({ site, vm, imageId, keep: policy.keepImages });
      state.backups = n;
      state.lastBackup = { imageId: image.imageId, at: image.createdAt };
      if (pruned.length > 0) log.info(`pruned data images of ${vm}: ${pruned.join(', ')} (${why})`);
      return image;
    } finally {
      backupRunning = false;
      publish();
    }
  }

  /** Runs the ladder for one failure as a child workflow, and remembers where it cured the VM. */
  async function runLadder(report: FailureReport): Promise<void> {
    await condition(() => !backupRunning);
    state.incidents += 1;
    const incident = `${compactTime(new Date().toISOString())}-${state.incidents}`;
    const workflowId = ladderWorkflowId(vm, incident, ownInstallation());
    const startRung = startRungFor(state.lastRecovery, report.at ?? new Date().toISOString(), policy.stabilityWindowMs);
    currentLadder = workflowId;
    state.pendingFailure = undefined;
    const waiters = nextWaiters;
    nextWaiters = [];
    let outcome: LadderOutcome;
    upsertSearchAttributes([{ key: KuraRung, value: startRung }]);
    publish();
    try {
      const result: LadderResult = await executeChild(recoveryLadder, {
        workflowId,
        args: [{ site, vm, incident, reason: report.reason, startRung, hosts: profile.hosts, policy }],
        // The ladder finishes its rung even if this guardian is terminated; it owns the VM until then.
        parentClosePolicy: ParentClosePolicy.ABANDON,
        memo: labelMemo(),
        staticSummary: `recovery of ${vm}: ${report.reason}`,
      });
      // The VM has been healthy since the ladder ended. After a person dealt with it (resolved, or
      // rebuilt on new hardware) the next failure starts afresh.
      state.lastRecovery =
        result.outcome === 'recovered' ? { at: result.endedAt, rung: result.rung, incident } : undefined;
      outcome = { ladder: workflowId, result };
    } catch (err) {
      const root = rootFailure(err);
      outcome = { ladder: workflowId, failure: root };
      log.error(`recovery ladder ${workflowId} of ${vm} failed`, { type: root.type, error: root.message });
      await notify({
        subject: `recovery ladder of ${vm} failed`,
        detail: { workflowId, vm, site, type: root.type, error: root.message },
      }).catch(() => undefined);
      state.lastRecovery = undefined;
    } finally {
      state.lastLadder = workflowId;
      currentLadder = null;
      upsertSearchAttributes([{ key: KuraRung, value: null }]);
      publish();
    }
    const late = reportedDuringLadder;
    const lateOnes = lateWaiters;
    reportedDuringLadder = undefined;
    lateWaiters = [];
    if (late && (await unwellNow())) {
      state.pendingFailure ??= late;
      nextWaiters.push(...lateOnes);
    } else {
      // The VM is well again: the late reports were about the failure this ladder cured.
      waiters.push(...lateOnes);
    }
    await tellWaiters(waiters, outcome);
  }

  /** Signals each waiting reporter the ladder's outcome; one that has stopped waiting is skipped. */
  async function tellWaiters(waiters: string[], outcome: LadderOutcome): Promise<void> {
    await Promise.all(
      [...new Set(waiters)].map((id) =>
        getExternalWorkflowHandle(id)
          .signal(ladderEndedSignal, outcome)
          .catch((err: unknown) =>
            log.warn(`could not tell ${id} that ${outcome.ladder} ended`, { error: rootFailure(err).message }),
          ),
      ),
    );
  }

  /**
   * The VM's health when it is up and unwell; undefined when it is healthy, restarting (on its way
   * back, so not a failure), or its health could not be read.
   */
  async function unwellNow(): Promise<{ detail: string } | undefined> {
    const h = await acts.checkHealth({ site, vm }).catch(() => undefined);
    return h && !h.healthy && h.state !== 'restarting' ? h : undefined;
  }

  function publish(): void {
    setCurrentDetails(
      currentLadder
        ? `**in recovery** — ${currentLadder}`
        : `**guarding** ${vm} — ${state.backups} data backups, last ${state.lastBackup?.imageId ?? 'none'}; next ${state.nextBackupAt ?? '?'}; ${state.incidents} incidents`,
    );
  }
}
