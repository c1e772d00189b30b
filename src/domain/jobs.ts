/**
 * Job requests, plans and progress: the inputs of Kura's workflows and what their queries answer.
 * Every workflow takes one JSON-plain input object parsed by one of these schemas.
 */
import { z } from 'zod';
import { NameSchema } from './names';
import type { SanAccessPlan } from './tenancy';
import { BackupIdSchema, type BackupModeRecord, type StreamRecord } from './catalog';
import { StoreNameSchema, type StoreFallback, type StoreName } from './store';

export type { BackupModeRecord };

/** Timeouts and sizes a job runs with; from kura.yaml's `tuning`, overridable per job (tests use small ones). */
export const JobTuningSchema = z.object({
  pieceSize: z.number().int().min(4096),
  copyHeartbeatTimeoutMs: z.number().int().min(200),
  deviceAttempts: z.number().int().min(1).max(20),
  /** How long to wait in the pool's queue for free devices. */
  reserveWaitMs: z.number().int().min(0),
  /**
   * Whether that wait also covers devices marked unavailable, until an operator marks them
   * available again (`kura restore --wait`). Unset, a restore does not wait for them: it takes
   * another copy or fails at once, naming them; a backup waits for them, as the pool's default.
   */
  waitForUnavailable: z.boolean().optional(),
});
export type JobTuning = z.infer<typeof JobTuningSchema>;

export const IsoTimeSchema = z.iso.datetime({ offset: true });

/**
 * How a backup uses its streams (seed 004): `failover` (method 2) copies chunk by chunk on one
 * stream and moves the failed chunk and every chunk after it to the next; `parallel` (method 1)
 * copies the whole volume on every stream at once and succeeds when at least one finishes.
 */
export const CopyMode = { Failover: 'failover', Parallel: 'parallel' } as const;
export type CopyMode = (typeof CopyMode)[keyof typeof CopyMode];
export const CopyModeSchema = z.enum([CopyMode.Failover, CopyMode.Parallel]);

/**
 * How a stream moves the bytes (seed 003 Fig. 9, seed 004 copy devices): `lan-free` — a backup
 * server reads the volume over the SAN and writes the drive; `direct` — a copy device moves volume →
 * drive itself by segment commands, and the backup server does not read the data (docs/adr/029).
 * A backup asks for `direct`; a stream is direct only when the pool could give it a copy device able to.
 */
export const StreamKind = { LanFree: 'lan-free', Direct: 'direct' } as const;
export type StreamKind = (typeof StreamKind)[keyof typeof StreamKind];
export const StreamKindSchema = z.enum([StreamKind.LanFree, StreamKind.Direct]);

/** The stream settings of a backup: how many, how they are used, and how the copy is cut. */
export const CopySettingsSchema = z.object({
  /** Disjoint streams reserved, all or nothing (seed 004 reserves at least two). */
  streams: z.number().int().min(1).max(8).default(2),
  mode: CopyModeSchema.default(CopyMode.Failover),
  /** The copy is cut into this many chunks (seed 004: 100 MB as 10 × 10 MB)… */
  chunks: z.number().int().min(1).max(1000).default(10),
  /** …unless a chunk size is given, which wins. */
  chunkSize: z.number().int().min(4096).optional(),
  /** The kind of stream asked for; unset: LAN-free, as before copy devices carried streams. */
  streamKind: StreamKindSchema.optional(),
});
export type CopySettings = z.infer<typeof CopySettingsSchema>;

/** Step 2's answer: the array volume a target names, and its size. */
export interface ResolvedTarget {
  site: string;
  target: string;
  array: string;
  volume: string;
  sizeBytes: number;
  /** For a volume a company owns: which backup servers may copy it, and why the others may not (ADR 031). */
  access?: SanAccessPlan;
}

/**
 * The kinds of SAN operation (seed 003): `backup` copies the volume itself to tape (direct or
 * LAN-free); `split-backup` splits the volume's pair and copies the replica (Fig. 5a);
 * `snapshot-backup` copies a snapshot taken at once (Fig. 5b); `replica-refresh` brings the
 * replica up to date and splits it, keeping it as a point-in-time copy; `restore` reads a backup
 * back (the `restore` workflow, which runs the same phases and plan state).
 */
export const OperationKind = {
  Backup: 'backup',
  SplitBackup: 'split-backup',
  SnapshotBackup: 'snapshot-backup',
  ReplicaRefresh: 'replica-refresh',
  Restore: 'restore',
} as const;
export type OperationKind = (typeof OperationKind)[keyof typeof OperationKind];

/** How `kura backup --method` names the backup kinds. */
export const BackupMethod = { Direct: 'direct', Split: 'split', Snapshot: 'snapshot' } as const;
export type BackupMethod = (typeof BackupMethod)[keyof typeof BackupMethod];
export const BackupMethodSchema = z.enum([BackupMethod.Direct, BackupMethod.Split, BackupMethod.Snapshot]);

/** The operation kind a backup method runs as. */
export function kindOfMethod(method: BackupMethod): 'backup' | 'split-backup' | 'snapshot-backup' {
  if (method === BackupMethod.Split) return OperationKind.SplitBackup;
  if (method === BackupMethod.Snapshot) return OperationKind.SnapshotBackup;
  return OperationKind.Backup;
}

/**
 * Throughputs (bytes/s) step 3 estimates each launch's duration with: the array's pair copy, a
 * snapshot, and a copy to tape. Defaults are the lab's order of magnitude; a site can give its own.
 */
export const ThroughputSchema = z.object({
  pairCopy: z
    .number()
    .positive()
    .default(200 * 1024 * 1024),
  snapshot: z
    .number()
    .positive()
    .default(1024 * 1024 * 1024),
  tape: z
    .number()
    .positive()
    .default(100 * 1024 * 1024),
});
export type Throughput = z.infer<typeof ThroughputSchema>;

/** What every operation on a pair is planned with: its wait for the pair, and the expected rates. */
const PairSettingsSchema = z.object({
  /** How long an operation waits for the pair to be in sync (a split then falls back to a snapshot). */
  pairWaitMs: z
    .number()
    .int()
    .min(0)
    .default(10 * 60_000),
  throughput: ThroughputSchema.default(ThroughputSchema.parse({})),
});

export const BackupRequestSchema = z.object({
  /** Older requests name only `backup`; `method` then picks the kind. */
  kind: z.enum([OperationKind.Backup, OperationKind.SplitBackup, OperationKind.SnapshotBackup]),
  /** `direct`, `split` or `snapshot`: the same as kind `backup`, `split-backup`, `snapshot-backup`. */
  method: BackupMethodSchema.optional(),
  ...PairSettingsSchema.shape,
  site: NameSchema,
  /** A VM name (its data volume) or array/volume. */
  target: z.string().min(1),
  /** Who asked: `cli:<user>`, `schedule:<policy>`, `fleet:<id>`, `workflow:<id>`. */
  requestedBy: z.string().min(1),
  /** The request's instant; it names the backup and the workflow, so one request runs once. */
  requestedAt: IsoTimeSchema,
  ...CopySettingsSchema.shape,
  tuning: JobTuningSchema,
  /**
   * The backup server that asks for the copy (a company's own, on a shared SAN): the copy runs on it
   * alone, and is refused when it may not read the volume. Unset: any server the volume admits.
   */
  server: NameSchema.optional(),
  /**
   * Copy a backup of the deduplicated store to tape instead of the volume (docs/adr/042): the
   * store backup's bytes, read from its chunks, go through the same streams; `target` must be the
   * store backup's target. Only kind `backup` copies one, LAN-free.
   */
  fromStore: z.object({ backupId: BackupIdSchema }).optional(),
});
export type BackupRequest = z.input<typeof BackupRequestSchema>;

/** A replica-refresh: bring the target's replica up to date and split it, keeping it as a point-in-time copy. */
export const ReplicaRefreshRequestSchema = z.object({
  kind: z.literal(OperationKind.ReplicaRefresh),
  site: NameSchema,
  target: z.string().min(1),
  requestedBy: z.string().min(1),
  requestedAt: IsoTimeSchema,
  ...PairSettingsSchema.shape,
  tuning: JobTuningSchema,
});
export type ReplicaRefreshRequest = z.input<typeof ReplicaRefreshRequestSchema>;

/** A new volume a restore creates on an array whose engine can (driver: qsd), in the backup's site. */
export const RestoreVolumeSchema = z.object({ array: NameSchema, volume: NameSchema });
export type RestoreVolume = z.infer<typeof RestoreVolumeSchema>;

export const RestoreRequestSchema = z
  .object({
    backupId: BackupIdSchema,
    /** Absolute path of the file to create; it must lie under a configured restore root. */
    destination: z.string().min(1).optional(),
    /** Or a new volume to create and restore into, which the array then serves to hosts. */
    toVolume: RestoreVolumeSchema.optional(),
    /** For a backup in the deduplicated store: the store to read first (the other is the fallback). */
    fromStore: StoreNameSchema.optional(),
    requestedBy: z.string().min(1),
    requestedAt: IsoTimeSchema,
    tuning: JobTuningSchema,
  })
  .refine((r) => (r.destination === undefined) !== (r.toVolume === undefined), {
    message: 'a restore goes to a new file (destination) or to a new volume (toVolume): give exactly one of them',
    path: ['destination'],
  });
export type RestoreRequest = z.input<typeof RestoreRequestSchema>;

/** The six steps of seed 003's management sequence. */
export const Phase = {
  Accept: 'accept',
  Resolve: 'resolve',
  Plan: 'plan',
  Launch: 'launch',
  Collect: 'collect',
  Report: 'report',
  Done: 'done',
  Failed: 'failed',
} as const;
export type Phase = (typeof Phase)[keyof typeof Phase];

export const StepStatus = {
  Pending: 'pending',
  Running: 'running',
  Done: 'done',
  Failed: 'failed',
  Skipped: 'skipped',
} as const;
export type StepStatus = (typeof StepStatus)[keyof typeof StepStatus];

export interface PlanStep {
  /** Stable id, e.g. `copy:3`. */
  id: string;
  /** What the step does, in words an operator reads. */
  title: string;
  /** Which function software it launches: pool, library, copy device, catalog. */
  actor: string;
  dependsOn: string[];
  status: StepStatus;
  /** The device the function runs on (an array, a library), when one is known at planning. */
  device?: string;
  /** The expected duration from size ÷ throughput, in milliseconds. */
  expectedMs?: number;
  startedAt?: string;
  endedAt?: string;
  detail?: string;
}

/** A change step 5 made to the plan on a result: what changed, and why. */
export interface PlanChange {
  at: string;
  /** The step whose result caused it. */
  step: string;
  what: string;
  why: string;
}

export interface PlanView {
  workflowId: string;
  kind: string;
  target: string;
  phase: Phase;
  steps: PlanStep[];
  /** Every re-plan so far, oldest first. */
  changes?: PlanChange[];
}

/** One stream of a job as its progress shows it. */
export interface StreamProgress {
  stream: number;
  /** `server → switches → library/drive` with the cartridge. */
  path: string;
  tape: string;
  /** `standby` (reserved, not copying), `copying`, `done`, `failed`. */
  state: 'standby' | 'copying' | 'done' | 'failed';
  bytesDone: number;
  bytesTotal: number;
  error?: string;
  /** How the stream moves the bytes now; absent on LAN-free streams of runs before direct copy. */
  kind?: StreamKind;
}

/** What the `progress` query answers; the CLI adds the running activity's heartbeat to it. */
export interface Progress {
  phase: Phase;
  /** What is happening now, one line. */
  activity: string;
  bytesDone: number;
  bytesTotal: number;
  startedAt: string;
  error?: string;
  /** The job's streams, when it has reserved them. */
  streams?: StreamProgress[];
}

/** A backup's report: the target as resolved, and where each piece and stream went. */
export interface BackupReport extends ResolvedTarget {
  backupId: string;
  workflowId: string;
  /** SHA-256 of the whole image, from reading it back; each piece has its own too. */
  sha256: string;
  pieces: {
    copy: number;
    piece: number;
    stream: number;
    library: string;
    tape: string;
    position: number;
    sizeBytes: number;
    sha256: string;
  }[];
  /** The server of the first complete copy. */
  server: string;
  mode: CopyMode;
  /** Every reserved stream and what became of it. */
  streams: StreamRecord[];
  startedAt: string;
  endedAt: string;
  /** The kind that ran (a split-backup may have become a snapshot-backup); absent in older reports. */
  kind?: OperationKind;
  /** The image copied: the volume, a split replica or a snapshot. */
  source?: { from: 'volume' | 'replica' | 'snapshot' | 'store'; name?: string; at?: string };
  /** The re-plans of step 5, with their reasons. */
  changes?: PlanChange[];
  /** The application's time in backup mode around the split or snapshot (absent: no hook). */
  backupMode?: BackupModeRecord;
  /** For a tape copy of a store backup: the store backup, and its whole-volume SHA-256 when known. */
  fromStore?: { backupId: string; sha256: string | null };
}

/** A replica-refresh's report: the pair split at `splitAt`, its replica kept as a point-in-time copy. */
export interface ReplicaReport extends ResolvedTarget {
  workflowId: string;
  kind: typeof OperationKind.ReplicaRefresh;
  replica: string;
  readPath: string;
  splitAt: string;
  /** Bytes the refresh copied: the whole volume for a new pair, the changed chunks for a resync. */
  copiedBytes: number;
  changes: PlanChange[];
  startedAt: string;
  endedAt: string;
}

export interface RestoreReport {
  backupId: string;
  workflowId: string;
  /** The restored file: the new volume's image when the restore went to a volume. */
  destination: string;
  /** The new volume the restore created, and where hosts reach it (absent for a restore to a file). */
  volume?: RestoreVolume & { nbdUri: string };
  sizeBytes: number;
  sha256: string;
  pieces: number;
  /** The copies the pieces were read from, and the cartridges given up on (unavailable or failing). */
  copiesUsed: number[];
  skippedTapes: { tape: string; reason: string }[];
  startedAt: string;
  endedAt: string;
  /**
   * The application's backup mode the image was taken in, from the catalog (absent: none was
   * recorded). A restored PostgreSQL copy needs its `label` written as `backup_label` (and a
   * non-empty `tablespaceMap` as `tablespace_map`) in its data directory before it starts:
   * `kura catalog label <backup> --write <data directory>` does that.
   */
  backupMode?: BackupModeRecord;
  /** Chunks of a store backup that the chosen store could not give, and the store each came from instead. */
  storeFallbacks?: StoreFallback[];
  /** For a backup in the deduplicated store: the store read first (`storeFallbacks` names any chunk taken from the other). */
  store?: StoreName;
}
