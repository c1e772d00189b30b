/**
 * Every signal, query and update of Kura's workflows, declared once with stable kebab-case wire
 * names. Workflows and the client both import these, so they cannot drift apart.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { Grant, MarkRequest, PoolTables, ReleaseRequest, ReserveRequest } from './domain/pool';
import type { PlanView, Progress } from './domain/jobs';
import type { FleetProgress } from './domain/fleet';
import type { OnlineProgress } from './domain/datapath';
import type { CatalogRebuildProgress } from './domain/catalog-rebuild';
import type {
  DataBackupRequest,
  FailureReport,
  GuardianView,
  ImageRecord,
  LadderOutcome,
  LadderView,
  RebuildRequest,
  ResolveRequest,
} from './domain/ladder';
import type { FailbackReport, FailoverReport, RemoteStatus, RemoteSwitch } from './domain/remote';

/** Resource pool: grant N disjoint streams to a job, all or nothing. */
export const reserveStreamsUpdate = defineUpdate<Grant, [ReserveRequest]>('reserve-streams');
/** Resource pool: free everything a job holds; idempotent. */
export const releaseUpdate = defineUpdate<{ released: number }, [ReleaseRequest]>('release');
/** Resource pool: an operator or a fault marks a device (un)available. */
export const markDeviceSignal = defineSignal<[MarkRequest]>('mark-device');
/** Resource pool: the inventory changed; add new devices, drop removed free ones. */
export const syncInventorySignal = defineSignal<[PoolTables]>('sync-inventory');
/** Resource pool: the tables, as seed 004 Figs. 3–6 show them. */
export const tablesQuery = defineQuery<PoolTables>('tables');

/** Any job: where it is, for the CLI's progress bar and the UI. */
export const progressQuery = defineQuery<Progress>('progress');
/** SAN operation: the plan of step 3 and each step's state. */
export const planQuery = defineQuery<PlanView>('plan');

/** Fleet run: per-target states. */
export const fleetProgressQuery = defineQuery<FleetProgress>('fleet-progress');

/**
 * Online backup: phase, ETA and convergence path. The same wire name as `progressQuery`, so every
 * tool that asks a job for its `progress` gets an answer; this constant types the online shape.
 */
export const onlineProgressQuery = defineQuery<OnlineProgress>('progress');
/**
 * Catalog rebuild: cartridges read, given up and in all, and what each library is reading. The
 * same wire name as `progressQuery`; this constant types the rebuild's shape.
 */
export const catalogRebuildProgressQuery = defineQuery<CatalogRebuildProgress>('progress');
/** VM guardian: the VM asks for an image of its data volume now; answers with the image kept. */
export const requestDataBackupUpdate = defineUpdate<ImageRecord, [DataBackupRequest]>('request-data-backup');
/** VM guardian: the VM or a monitor reports a software failure; the guardian runs the ladder. */
export const failureDetectedSignal = defineSignal<[FailureReport]>('failure-detected');
/** VM guardian, to whoever reported a failure with `replyTo`: the ladder it joined or started has ended. */
export const ladderEndedSignal = defineSignal<[LadderOutcome]>('ladder-ended');
/** VM guardian: its state, the ladder running now and the last one. */
export const guardianQuery = defineQuery<GuardianView>('guardian');
/** Recovery ladder: the rungs with their attempts, times and outcomes. */
export const ladderQuery = defineQuery<LadderView>('ladder');
/** Recovery ladder, handed over to a person: they fixed the VM themselves. */
export const resolveUpdate = defineUpdate<LadderView, [ResolveRequest]>('resolve');
/** Recovery ladder, handed over to a person: recreate the VM on a substitute host from its images. */
export const rebuildUpdate = defineUpdate<LadderView, [RebuildRequest]>('rebuild');
/**
 * SAN operation, from the activity holding an application's session (the `postgres` hook): the
 * application is in backup mode for hold `round`, so the split or snapshot may go ahead.
 */
export const backupModeEnteredSignal =
  defineSignal<[{ round: number; startLsn: string; pid: number; at: string }]>('backup-mode-entered');
/**
 * SAN operation, asked by the activity holding the session: the last hold round whose image is
 * taken (0: none yet), so that round's hold may leave backup mode.
 */
export const backupModeReleasedQuery = defineQuery<number>('backup-mode-released');

/** A chunk on tape, as a stream's copy run reports it: where it was written and what it hashes to. */
export interface ChunkLanded {
  /** The run (one copy activity over a stream's chunks) that wrote it, as the workflow named the run. */
  run: string;
  piece: number;
  result: {
    sha256: string;
    bytes: number;
    position: number;
    nextPosition: number;
    resumedBytes: number;
    startedAt: string;
    endedAt: string;
  };
}
/**
 * SAN operation, from the activity copying a stream's chunks: a chunk reached tape. Sent before the
 * next chunk is begun, so the history holds every chunk on tape and a run resumed after a lost
 * worker starts after it (docs/adr/020-fleet-cost.md).
 */
export const chunkLandedSignal = defineSignal<[ChunkLanded]>('chunk-landed');

/** Remote copy: the group's role, lag and last failover, as the CLI's `kura remote status` renders them. */
export const remoteStatusQuery = defineQuery<RemoteStatus>('remote-status');
/** Remote copy: make the remote copy the primary; answers with the data lost (the lag at that instant). */
export const remoteFailoverUpdate = defineUpdate<FailoverReport, [RemoteSwitch]>('remote-failover');
/** Remote copy: return to the main site, resynchronising only the blocks that differ. */
export const remoteFailbackUpdate = defineUpdate<FailbackReport, [RemoteSwitch]>('remote-failback');
