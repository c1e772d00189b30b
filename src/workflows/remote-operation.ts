/**
 * The SAN operations of a remote-copy group — `remote-setup`, `remote-failover`, `remote-failback`
 * — run as the engine's six steps (seed 003): accept, resolve, plan the launches on each site,
 * launch them, collect (a result may change the plan: a main site that does not answer is skipped,
 * and the loss is then the last lag measured), report. `op/<kind>/<group>/<time>`, with the
 * engine's `plan` and `progress` queries, so `kura plan show` draws them like any other
 * operation. The group's `remoteCopy` workflow starts them as children between shipping rounds.
 */
import { proxyActivities, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import { z } from 'zod';
import type { RemoteActivities } from '../activities/remote';
import { siteTaskQueue } from '../api/task-queues';
import { NON_RETRYABLE_ERROR_TYPES } from '../domain/errors';
import type { PlanStep } from '../domain/jobs';
import { LagSchema, type FailbackReport, type FailoverReport } from '../domain/remote';
import { JobKind, KuraKind, KuraSite, KuraTarget } from '../search-attributes';
import { acceptInput, rootFailure } from './failures';
import { label } from './labels';
import { OperationState } from './operation-state';

export const RemoteOperationKind = {
  SetUp: 'remote-setup',
  Failover: 'remote-failover',
  Failback: 'remote-failback',
} as const;
export type RemoteOperationKind = (typeof RemoteOperationKind)[keyof typeof RemoteOperationKind];

const RemoteOperationSchema = z.object({
  kind: z.enum([RemoteOperationKind.SetUp, RemoteOperationKind.Failover, RemoteOperationKind.Failback]),
  group: z.string().min(1),
  mainSite: z.string().min(1),
  remoteSite: z.string().min(1),
  /** Failover: the lag last measured, the loss when the main site does not answer. */
  lastLag: LagSchema.nullable().default(null),
  heartbeatTimeoutMs: z.number().int().min(500).default(10_000),
  fenceTimeoutMs: z.number().int().min(500).default(15_000),
});
export type RemoteOperationInput = z.input<typeof RemoteOperationSchema>;

export type RemoteOperationReport =
  | { kind: 'remote-setup'; baseSeq: number; copiedBytes: number }
  | { kind: 'remote-failover'; report: FailoverReport }
  | { kind: 'remote-failback'; report: FailbackReport };

/** One operation on a remote-copy group, through the six steps. */
export async function remoteOperation(input: RemoteOperationInput): Promise<RemoteOperationReport> {
  const { workflowId } = workflowInfo();
  // 1. Accept.
  const req = acceptInput(RemoteOperationSchema, input, 'remote-copy operation');
  const op = new OperationState(workflowId, req.kind, req.group);
  upsertSearchAttributes([
    { key: KuraKind, value: JobKind.RemoteCopy },
    { key: KuraTarget, value: label(req.group) },
    { key: KuraSite, value: label(req.mainSite) },
  ]);

  // 2. Resolve: the sites and their queues (the activities resolve the volumes at each site).
  op.enter('resolve', `${req.group}: ${req.mainSite} → ${req.remoteSite}`);
  const main = siteActivities(req.mainSite, req.heartbeatTimeoutMs);
  const remote = siteActivities(req.remoteSite, req.heartbeatTimeoutMs);
  // The fence is tried briefly: at a failover the main site is often the one that is down.
  const fence = proxyActivities<RemoteActivities>({
    taskQueue: siteTaskQueue(req.mainSite, workflowInfo().taskQueue),
    scheduleToCloseTimeout: req.fenceTimeoutMs,
    retry: { initialInterval: '200ms', maximumAttempts: 3, nonRetryableErrorTypes },
  });

  // 3. Plan the launches.
  op.enter('plan', 'planning');
  op.steps = planRemoteOperation(req.kind, req.mainSite, req.remoteSite);

  // 4. Launch; 5. collect each result.
  op.enter('launch', op.steps.map((s) => s.title).join('; '));
  try {
    let result: RemoteOperationReport;
    if (req.kind === RemoteOperationKind.SetUp) {
      const r = await op.step('base-copy', () => main.remoteSetUp({ group: req.group }));
      result = { kind: req.kind, ...r };
    } else if (req.kind === RemoteOperationKind.Failback) {
      const report = await op.step('resync', () => main.remoteFailback({ group: req.group }));
      result = { kind: req.kind, report };
    } else {
      const fenced = await op
        .step('fence', () => fence.remoteFence({ group: req.group, appliedSeq: req.lastLag?.appliedSeq ?? 0 }))
        .catch((err: unknown) => {
          const why = `the main site did not answer: ${rootFailure(err).message}`;
          op.replan(
            'fence',
            op.steps.map((s) => (s.id === 'measure-loss' ? { ...s, status: 'skipped', detail: why } : s)),
            'the loss is the last lag measured',
            why,
          );
          return null;
        });
      const promoted = await op.step('promote', () => remote.remotePromote({ group: req.group }));
      const lost = fenced
        ? await op.step('measure-loss', () => fence.remoteFence({ group: req.group, appliedSeq: promoted.applied }))
        : null;
      result = {
        kind: req.kind,
        report: {
          group: req.group,
          appliedSeq: promoted.applied,
          mainSeq: lost?.mainSeq ?? null,
          lostWrites: lost ? lost.lostWrites : (req.lastLag?.writes ?? 0),
          lostBytes: lost ? lost.lostBytes : (req.lastLag?.bytes ?? 0),
          lossFrom: lost ? 'journal' : 'last-lag',
          at: new Date().toISOString(),
        },
      };
    }
    // 6. Report to the requester.
    op.enter('report', 'done');
    op.enter('done', `${req.kind} of ${req.group} done`);
    return result;
  } catch (err) {
    return op.fail(`${req.kind} of ${req.group} failed at ${op.currentStep ?? op.phase}`, err);
  }
}

/** The execution schedule of a remote-copy operation (step 3): which site launches what, in order. */
export function planRemoteOperation(kind: RemoteOperationKind, mainSite: string, remoteSite: string): PlanStep[] {
  const step = (id: string, title: string, device: string, dependsOn: string[]): PlanStep => ({
    id,
    title,
    actor: 'remote copy',
    device,
    dependsOn,
    status: 'pending',
  });
  switch (kind) {
    case RemoteOperationKind.SetUp:
      return [step('base-copy', "copy the group's volumes whole as of the journal's last seq", mainSite, [])];
    case RemoteOperationKind.Failover:
      return [
        step('fence', "stop the main site's hosts writing the group", mainSite, []),
        step('promote', 'apply what arrived, in seq order, and make the remote copy the primary', remoteSite, [
          'fence',
        ]),
        step('measure-loss', 'count the journaled writes the remote copy does not hold', mainSite, ['promote']),
      ];
    case RemoteOperationKind.Failback:
      return [
        step(
          'resync',
          'copy back the blocks written at the remote site and those never shipped; make the main site the primary',
          mainSite,
          [],
        ),
      ];
  }
}

const nonRetryableErrorTypes = [...NON_RETRYABLE_ERROR_TYPES];

function siteActivities(site: string, heartbeatTimeoutMs: number): RemoteActivities {
  return proxyActivities<RemoteActivities>({
    taskQueue: siteTaskQueue(site, workflowInfo().taskQueue),
    startToCloseTimeout: '30 minutes',
    heartbeatTimeout: heartbeatTimeoutMs,
    retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumAttempts: 5, nonRetryableErrorTypes },
  });
}
