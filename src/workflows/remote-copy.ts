/**
 * Async remote copy of one group (seed 003, Fig. 10), `remote/<group>`: set up the remote copy
 * once, then ship forever in rounds — the main site's shipper and the remote site's applier run
 * side by side, each on its own site's queue, and the lag measured at the end of each round is the
 * query, the search attributes and `kura remote status`. Failover and failback are updates that
 * run the engine's six steps (accept, resolve, plan, launch, collect, report) between rounds. The
 * run continues as new after `roundsPerRun` rounds or when Temporal suggests it.
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  isCancellation,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
  allHandlersFinished,
} from '@temporalio/workflow';
import type { RemoteActivities } from '../activities/remote';
import { siteTaskQueue } from '../api/task-queues';
import { ErrorType, NON_RETRYABLE_ERROR_TYPES } from '../domain/errors';
import {
  RemoteCopyInputSchema,
  RemoteSwitchSchema,
  type FailbackReport,
  type FailoverReport,
  type Lag,
  type RemoteCopyInput,
  type RemoteCopyRequest,
  type RemoteStatus,
} from '../domain/remote';
import { remoteFailbackUpdate, remoteFailoverUpdate, remoteStatusQuery } from '../messages';
import { JobKind, KuraKind, KuraLagBytes, KuraLagSeconds, KuraSite, KuraTarget } from '../search-attributes';
import { acceptInput } from './failures';
import { label } from './labels';

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
  const fence = fenceActivities(mainSite);

  let role: RemoteStatus['role'] = req.state?.role ?? 'shipping';
  let totalRounds = req.state?.rounds ?? 0;
  let lag: Lag | null = req.state?.lag ?? null;
  let failover: FailoverReport | null = req.state?.failover ?? null;
  let step = req.state ? 'resumed' : 'set-up';
  let runRounds = 0;
  let roundScope: CancellationScope | null = null;
  let inRound = false;
  let switching = false;

  upsertSearchAttributes([
    { key: KuraKind, value: JobKind.RemoteCopy },
    { key: KuraTarget, value: label(group) },
    { key: KuraSite, value: label(mainSite) },
  ]);
  setHandler(remoteStatusQuery, () => ({ group, role, rounds: totalRounds, lag, failover, step }));

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

  setHandler(
    remoteFailoverUpdate,
    (sw) =>
      between(async () => {
        // 2. Resolve: the group and what the remote holds — 3. plan: fence the main site, then promote.
        step = 'failover: fencing the main site';
        const appliedBefore = lag?.appliedSeq ?? 0;
        // 4. Launch; 5. collect. The main site may be down (that is what a failover is for): its
        // loss is then the last lag measured.
        const fenced = await fence.remoteFence({ group, appliedSeq: appliedBefore }).catch(() => null);
        step = 'failover: promoting the remote copy';
        const promoted = await remote.remotePromote({ group });
        const lost = fenced ? await fence.remoteFence({ group, appliedSeq: promoted.applied }).catch(() => null) : null;
        // 6. Report.
        const report: FailoverReport = {
          group,
          appliedSeq: promoted.applied,
          mainSeq: lost?.mainSeq ?? null,
          lostWrites: lost ? lost.lostWrites : (lag?.writes ?? 0),
          lostBytes: lost ? lost.lostBytes : (lag?.bytes ?? 0),
          lossFrom: lost ? 'journal' : 'last-lag',
          at: new Date().toISOString(),
        };
        failover = report;
        role = 'failed-over';
        step = `failed over${sw.reason ? `: ${sw.reason}` : ''}: ${report.lostWrites} writes (${report.lostBytes} bytes) lost`;
        return report;
      }),
    {
      // 1. Accept.
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
        step = 'failback: resynchronising the main site';
        const report: FailbackReport = await main.remoteFailback({ group });
        role = 'shipping';
        failover = null;
        lag = null;
        step = `failed back${sw.reason ? `: ${sw.reason}` : ''}: ${report.bytes} of ${report.totalBytes} bytes resynchronised`;
        return report;
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
    await main.remoteSetUp({ group });
    step = 'shipping';
  }

  for (;;) {
    if (runRounds >= req.roundsPerRun || workflowInfo().continueAsNewSuggested) {
      await condition(() => !switching && allHandlersFinished());
      return continueAsNew<typeof remoteCopy>({
        ...input,
        state: { role, rounds: totalRounds, lag, failover },
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

/** The failover's fence of the main site: tried briefly, since the main site is often the one that is down. */
function fenceActivities(site: string): RemoteActivities {
  return proxyActivities<RemoteActivities>({
    taskQueue: siteTaskQueue(site, workflowInfo().taskQueue),
    scheduleToCloseTimeout: '15 seconds',
    retry: { initialInterval: '200ms', maximumAttempts: 3, nonRetryableErrorTypes },
  });
}
