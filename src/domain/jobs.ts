/**
 * Job requests, plans and progress: the inputs of Kura's workflows and what their queries answer.
 * Every workflow takes one JSON-plain input object parsed by one of these schemas.
 */
import { z } from 'zod';
import { NameSchema } from './inventory';
import { BackupIdSchema } from './catalog';

/** Timeouts and sizes a job runs with; from kura.yaml's `tuning`, overridable per job (tests use small ones). */
export const JobTuningSchema = z.object({
  pieceSize: z.number().int().min(4096),
  copyHeartbeatTimeoutMs: z.number().int().min(200),
  deviceAttempts: z.number().int().min(1).max(20),
  /** How long to wait in the pool's queue for free devices. */
  reserveWaitMs: z.number().int().min(0),
});
export type JobTuning = z.infer<typeof JobTuningSchema>;

export const IsoTimeSchema = z.iso.datetime({ offset: true });

export const BackupRequestSchema = z.object({
  kind: z.literal('backup'),
  site: NameSchema,
  /** A VM name (its data volume) or array/volume. */
  target: z.string().min(1),
  /** Who asked: `cli:<user>`, `schedule:<policy>`, `fleet:<id>`, `workflow:<id>`. */
  requestedBy: z.string().min(1),
  /** The request's instant; it names the backup and the workflow, so one request runs once. */
  requestedAt: IsoTimeSchema,
  streams: z.number().int().min(1).max(8).default(1),
  tuning: JobTuningSchema,
});
export type BackupRequest = z.input<typeof BackupRequestSchema>;

export const RestoreRequestSchema = z.object({
  backupId: BackupIdSchema,
  /** Absolute path of the file to create; it must lie under a configured restore root. */
  destination: z.string().min(1),
  requestedBy: z.string().min(1),
  requestedAt: IsoTimeSchema,
  tuning: JobTuningSchema,
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

export const StepStatus = { Pending: 'pending', Running: 'running', Done: 'done', Failed: 'failed', Skipped: 'skipped' } as const;
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
  startedAt?: string;
  endedAt?: string;
  detail?: string;
}

export interface PlanView {
  workflowId: string;
  kind: string;
  target: string;
  phase: Phase;
  steps: PlanStep[];
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
}

export interface BackupReport {
  backupId: string;
  workflowId: string;
  site: string;
  target: string;
  array: string;
  volume: string;
  sizeBytes: number;
  /** SHA-256 of the whole image, from reading it back; each piece has its own too. */
  sha256: string;
  pieces: { piece: number; library: string; tape: string; position: number; sizeBytes: number; sha256: string }[];
  server: string;
  startedAt: string;
  endedAt: string;
}

export interface RestoreReport {
  backupId: string;
  workflowId: string;
  destination: string;
  sizeBytes: number;
  sha256: string;
  pieces: number;
  startedAt: string;
  endedAt: string;
}
