/**
 * A fleet run: one SAN backup operation per target of a policy (or every VM of a site), started
 * as child workflows in a sliding window so at most `concurrency` run at once. A failed target
 * does not stop the others; the run reports every outcome. Long runs continue as new.
 */
import {
  ParentClosePolicy,
  condition,
  continueAsNew,
  setCurrentDetails,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { FleetRequestSchema, type FleetReport, type FleetRequest, type FleetTarget } from '../domain/fleet';
import type { BackupReport } from '../domain/jobs';
import { fleetProgressQuery } from '../messages';
import { KuraKind, KuraSite, KuraTarget, JobKind } from '../search-attributes';
import { backupWorkflowId } from '../api/workflow-ids';
import { acceptInput, rootFailure } from './failures';
import { controlActivities } from './proxies';
import { sanOperation } from './san-operation';
import { label, labelMemo } from './labels';
import { ownInstallation } from './installation';

/** How many targets one run handles before it continues as new, keeping its history small. */
const TARGETS_PER_RUN = 2000;

/** Backs up every target of a policy, a bounded number at once. */
export async function fleetProtection(input: FleetRequest): Promise<FleetReport> {
  const req = acceptInput(FleetRequestSchema, input, 'fleet request');
  const info = workflowInfo();
  const requestedAt = req.requestedAt ?? new Date(info.runStartTime).toISOString();
  const startedAt = req.startedAt ?? new Date().toISOString();
  upsertSearchAttributes([
    { key: KuraKind, value: JobKind.Fleet },
    { key: KuraTarget, value: label(req.policy) },
    { key: KuraSite, value: label(req.site) },
  ]);

  // What to protect, how many at once, and with which tuning: explicit, or from the configuration.
  const settings =
    req.targets && req.concurrency && req.tuning && req.copy
      ? { targets: req.targets, concurrency: req.concurrency, tuning: req.tuning, copy: req.copy }
      : await controlActivities()
          .fleetSettings({ site: req.site, policy: req.policy })
          .then((s) => ({
            targets: req.targets ?? s.targets,
            concurrency: req.concurrency ?? s.concurrency,
            tuning: req.tuning ?? s.tuning,
            copy: req.copy ?? s.copy,
          }));

  const finished = new Map(req.done.map((d) => [d.target, d]));
  const targets: FleetTarget[] = settings.targets.map((t) => finished.get(t) ?? { target: t, state: 'pending' });
  setHandler(fleetProgressQuery, () => ({
    site: req.site,
    policy: req.policy,
    concurrency: settings.concurrency,
    startedAt,
    targets,
  }));

  let running = 0;
  let startedThisRun = 0;
  const summary = () => {
    const done = targets.filter((t) => t.state === 'done').length;
    const failed = targets.filter((t) => t.state === 'failed').length;
    setCurrentDetails(
      `${done + failed} of ${targets.length} targets finished (${failed} failed), ${running} running, window ${settings.concurrency}`,
    );
  };
  summary();

  for (const t of targets) {
    if (t.state !== 'pending') continue;
    if (startedThisRun >= TARGETS_PER_RUN) break;
    await condition(() => running < settings.concurrency);
    running++;
    startedThisRun++;
    t.state = 'running';
    t.workflowId = backupWorkflowId(t.target, requestedAt, ownInstallation());
    summary();
    void runOne(t).finally(() => {
      running--;
      summary();
    });
  }
  await condition(() => running === 0);

  const outcomes = targets.filter((t) => t.state === 'done' || t.state === 'failed');
  if (outcomes.length < targets.length) {
    await continueAsNew<typeof fleetProtection>({
      ...input,
      requestedAt,
      startedAt,
      targets: settings.targets,
      concurrency: settings.concurrency,
      tuning: settings.tuning,
      copy: settings.copy,
      done: outcomes.map((o) => ({
        target: o.target,
        state: o.state as 'done' | 'failed',
        workflowId: o.workflowId,
        backupId: o.backupId,
        bytes: o.bytes,
        error: o.error,
      })),
    });
  }

  return {
    site: req.site,
    policy: req.policy,
    startedAt,
    endedAt: new Date().toISOString(),
    succeeded: targets.filter((t) => t.state === 'done').length,
    failed: targets.filter((t) => t.state === 'failed').length,
    bytes: targets.reduce((n, t) => n + (t.bytes ?? 0), 0),
    targets,
  };

  /** Runs one target's backup as a child workflow and records its outcome. */
  async function runOne(t: FleetTarget): Promise<void> {
    try {
      const child = await startChild(sanOperation, {
        workflowId: t.workflowId,
        args: [
          {
            kind: 'backup',
            site: req.site,
            target: t.target,
            requestedBy: `fleet:${info.workflowId}`,
            requestedAt,
            ...settings.copy,
            tuning: settings.tuning,
          },
        ],
        parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
        memo: { requestedBy: `fleet:${info.workflowId}`, ...labelMemo() },
        staticSummary: `backup of ${t.target} (fleet ${req.policy})`,
      });
      const report: BackupReport = await child.result();
      t.state = 'done';
      t.backupId = report.backupId;
      t.bytes = report.sizeBytes;
    } catch (err) {
      t.state = 'failed';
      const root = rootFailure(err);
      t.error = `${root.type}: ${root.message}`;
    }
  }
}
