/**
 * Async remote copy of one group (seed 003, Fig. 10), `remote/<group>`: set up the remote copy
 * once, then ship forever in rounds — the main site's shipper and the remote site's applier run
 * side by side, each on its own site's queue, and the lag measured at the end of each round is the
 * query, the search attributes and `kura remote status`. Set-up, failover and failback are SAN
 * operations of the engine's six steps (remote-operation.ts), run as child workflows between
 * rounds; failover and failback are asked for by updates. The run continues as new after
 * `roundsPerRun` rounds or when Temporal suggests it.
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  executeChild,
  isCancellation,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
  allHandlersFinished,
} from '@temporalio/workflow';
import type { RemoteActivities } from '../activities/remote';
import { siteTaskQueue } from '../api/task-queues';
import { remoteOperationWorkflowId } from '../api/workflow-ids';
import { ErrorType, NON_RETRYABLE_ERROR_TYPES } from '../domain/errors';
import {
  RemoteCopyInputSchema,
  RemoteSwitchSchema,
  type FailoverReport,
  type Lag,
  type RemoteCopyInput,
  type RemoteCopyRequest,
  type RemoteStatus,
} from '../domain/remote';
import { remoteFailbackUpdate, remoteFailoverUpdate, remoteStatusQuery } from '../messages';
import { JobKind, KuraKind, KuraLagBytes, KuraLagSeconds, KuraSite, KuraTarget } from '../search-attributes';
import { acceptInput } from './failures';
import { label, labelMemo } from './labels';
import { ownInstallation } from './installation';
import { remoteOperation, RemoteOperationKind } from './remote-operation';

/** The sites of a group are not known to workflow code (it cannot read kura.yaml): they come with the input. */
export interface RemoteCopyStart extends RemoteCopyInput {
  mainSite: string;
  remoteSite: string;
}

/** Ships one remote-copy group until cancelled; failover and failback are its updates. */
export async function remoteCopy(input: RemoteCopyStart): Promise<RemoteStatus> {
  const req: RemoteCopyRequest = acceptInput(RemoteCopyInputSchema, input, 'remote-copy request');
  const { mainSite, remoteSite } = input;
  const group = req.group;
  const main = siteActivities(mainSite, req);
  const remote = siteActivities(remoteSite, req);

  let role: RemoteStatus['role'] = req.state?.role ?? 'shipping';
  let totalRounds = req.state?.rounds ?? 0;
  let lag: Lag | null = req.state?.lag ?? null;
  let failover: FailoverReport | null = req.state?.failover ?? null;
  let step = req.state ? 'resumed' : 'set-up';
  let lastOperation: string | null = req.state?.lastOperation ?? null;
  let runRounds = 0;
  let roundScope: CancellationScope | null = null;
  let inRound = false;
  let switching = false;

  upsertSearchAttributes([
    { key: KuraKind, value: JobKind.RemoteCopy },
    { key: KuraTarget, value: label(group) },
    { key: KuraSite, value: label(mainSite) },
  ]);
  setHandler(remoteStatusQuery, () => ({
    group,
    role,
    rounds: totalRounds,
    lag,
    failover,
    step,
    lastOperation,
  }));

  /** Stops the round in progress, and keeps the next from starting, while `fn` runs. */
  const between = async <T>(fn: () => Promise<T>): Promise<T> => {
    switching = true;
    roundScope?.cancel();
    await condition(() => !inRound);
    try {
      return await fn();
    } finally {
      switching = false;
    }
  };

  /** Runs one of the group's SAN operations (six steps, `op/<kind>/<group>/<time>`) as a child. */
  const operation = (kind: RemoteOperationKind) => {
    const workflowId = remoteOperationWorkflowId(kind, group, new Date().toISOString(), ownInstallation());
    lastOperation = workflowId;
    return executeChild(remoteOperation, {
      workflowId,
      args: [
        {
          kind,
          group,
          mainSite,
          remoteSite,
          lastLag: lag,
          heartbeatTimeoutMs: req.heartbeatTimeoutMs,
          fenceTimeoutMs: req.fenceTimeoutMs,
        },
      ],
      memo: labelMemo(),
    });
  };

  setHandler(
    remoteFailoverUpdate,
    (sw) =>
      between(async () => {
        step = 'failing over';
        const r = await operation(RemoteOperationKind.Failover);
        if (r.kind !== RemoteOperationKind.Failover) throw unexpected(r.kind);
        failover = r.report;
        role = 'failed-over';
        step = `failed over${sw.reason ? `: ${sw.reason}` : ''}: ${r.report.lostWrites} writes (${r.report.lostBytes} bytes) lost`;
        return r.report;
      }),
    {
      validator: (sw) => {
        acceptInput(RemoteSwitchSchema, sw, 'failover request');
        if (role !== 'shipping' || switching)
          throw ApplicationFailure.nonRetryable(
            `remote-copy group ${group} is ${switching ? 'switching' : role}: only a group that is shipping can fail over`,
            ErrorType.NotWaiting,
          );
      },
    },
  );

  setHandler(
    remoteFailbackUpdate,
    (sw) =>
      between(async () => {
        step = 'failing back';
        const r = await operation(RemoteOperationKind.Failback);
        if (r.kind !== RemoteOperationKind.Failback) throw unexpected(r.kind);
        role = 'shipping';
        failover = null;
        lag = null;
        step = `failed back${sw.reason ? `: ${sw.reason}` : ''}: ${r.report.bytes} of ${r.report.totalBytes} bytes resynchronised`;
        return r.report;
      }),
    {
      validator: (sw) => {
        acceptInput(RemoteSwitchSchema, sw, 'failback request');
        if (role !== 'failed-over' || switching)
          throw ApplicationFailure.nonRetryable(
            `remote-copy group ${group} is ${switching ? 'switching' : role}: only a failed-over group can fail back`,
            ErrorType.NotWaiting,
          );
      },
    },
  );

  if (!req.state) {
    await operation(RemoteOperationKind.SetUp);
    step = 'shipping';
  }

  for (;;) {
    if (runRounds >= req.roundsPerRun || workflowInfo().continueAsNewSuggested) {
      await condition(() => !switching && allHandlersFinished());
      return continueAsNew<typeof remoteCopy>({
        ...input,
        state: { role, rounds: totalRounds, lag, failover, lastOperation },
      });
    }
    if (switching || role !== 'shipping') {
      await condition(() => !switching && role === 'shipping', '1 minute');
      continue;
    }
    await round();
  }

  /** One round: ship and apply side by side for `roundMs`; the lag at its end is published. */
  async function round(): Promise<void> {
    inRound = true;
    const scope = new CancellationScope();
    roundScope = scope;
    try {
      const [shipped, applied] = await scope.run(() =>
        Promise.allSettled([
          main.remoteShip({ group, roundMs: req.roundMs }),
          remote.remoteApply({ group, roundMs: req.roundMs, applyPauseMs: req.applyPauseMs }),
        ]),
      );
      if (shipped.status === 'fulfilled') {
        lag = shipped.value.lag;
        upsertSearchAttributes([
          { key: KuraLagSeconds, value: lag.seconds },
          { key: KuraLagBytes, value: lag.bytes },
        ]);
      }
      if (!switching)
        step =
          applied.status === 'rejected'
            ? `shipping; the remote applier did not finish its round: ${messageOf(applied.reason)}`
            : shipped.status === 'rejected'
              ? `shipping; the shipper did not finish its round: ${messageOf(shipped.reason)}`
              : 'shipping';
    } catch (err) {
      if (!isCancellation(err)) throw err;
    } finally {
      totalRounds++;
      runRounds++;
      roundScope = null;
      inRound = false;
    }
  }
}

function unexpected(kind: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(`a remote-copy operation answered as ${kind}`, ErrorType.DeviceFault);
}

function messageOf(err: unknown): string {
  const cause = (err as { cause?: { message?: string } }).cause;
  return cause?.message ?? (err instanceof Error ? err.message : String(err));
}

const nonRetryableErrorTypes = [...NON_RETRYABLE_ERROR_TYPES];

/**
 * The remote-copy activities on one site's queue. A round's shipper and applier retry until the
 * round's bound is over (a site that is down must not end the copy); the next round starts them again.
 */
function siteActivities(site: string, req: RemoteCopyRequest): RemoteActivities {
  return proxyActivities<RemoteActivities>({
    taskQueue: siteTaskQueue(site, workflowInfo().taskQueue),
    scheduleToCloseTimeout: req.roundMs * 3 + req.heartbeatTimeoutMs * 2 + 10_000,
    heartbeatTimeout: req.heartbeatTimeoutMs,
    // A round is over only once its applier has closed its port and its files.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '2s', nonRetryableErrorTypes },
  });
}
