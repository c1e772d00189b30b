/**
 * Shapes of the online-backup datapath (seed 002): its kura.yaml section, the bodies and answers of
 * its control API, and what the onlineBackup workflow takes and reports. One zod schema per shape;
 * the control server, the activities and the CLI all parse with these.
 */
import { z } from 'zod';
import { BackupRequestSchema, type ResolvedTarget } from './jobs';

// Only the type: the schema's value lives with kura.yaml's (import it from './inventory'), whose
// evaluation the online-backup workflow, which imports this module, must not pay for (docs/adr/045).
export type { DatapathConfig } from './inventory';

/** Which way the device is serving the host. */
export const DatapathMode = { Passthrough: 'passthrough', Backup: 'backup' } as const;
export type DatapathMode = (typeof DatapathMode)[keyof typeof DatapathMode];

/** Where a volume is in seed 002's procedure. */
export const DatapathPhase = {
  Passthrough: 'passthrough',
  /** S201–S202: main storage frozen, copied to backup storage. */
  BaseCopy: 'base-copy',
  /** S501–S505: the snapshot is copied to main storage round by round. */
  CatchUp: 'catch-up',
  /** S602–S604: host commands held, everything reflected, switching back. */
  Quiescing: 'quiescing',
} as const;
export type DatapathPhase = (typeof DatapathPhase)[keyof typeof DatapathPhase];

/** Which path convergence took: the plain rounds, throttled writes, or synchronous writes to main storage. */
export const ConvergencePath = { Normal: 'normal', Throttled: 'throttled', Active: 'active' } as const;
export type ConvergencePath = (typeof ConvergencePath)[keyof typeof ConvergencePath];

export const VolumeStatusSchema = z.object({
  /** The NBD export name: array/volume. */
  export: z.string(),
  sizeBytes: z.number().int(),
  mode: z.enum(DatapathMode),
  phase: z.enum(DatapathPhase),
  backupId: z.string().nullable(),
  image: z.string().nullable(),
  /** ISO time main storage was frozen (the instant the image shows). */
  switchedAt: z.string().nullable(),
  baseCopiedBytes: z.number().int(),
  baseCopyRunning: z.boolean(),
  /** Bytes held in the snapshot map (everything written since the switch). */
  snapshotBytes: z.number().int(),
  /** Bytes of the snapshot not yet written to main storage. */
  unreflectedBytes: z.number().int(),
  /** Host writes, bytes/s over the recent window. */
  writeRate: z.number(),
  /** Writes to main storage by catch-up, bytes/s over the recent window. */
  reflectRate: z.number(),
  /** Unreflected bytes ÷ reflect rate; null while no rate has been measured. */
  etaMs: z.number().nullable(),
  rounds: z.number().int(),
  path: z.enum(ConvergencePath),
  journalEntries: z.number().int(),
  /** Journal entries replayed when the service last opened this volume. */
  replayedEntries: z.number().int(),
  lastQuiesceMs: z.number().nullable(),
  /** The last backup that switched back to passthrough, with its quiesce window (survives a restart). */
  lastFinished: z.object({ backupId: z.string(), quiesceMs: z.number() }).nullable(),
  requests: z.object({ served: z.number().int(), failed: z.number().int() }),
  /** Why the base copy stopped, if it stopped on a failure; starting it again resumes it. */
  baseCopyError: z.string().nullable(),
});
export type VolumeStatus = z.infer<typeof VolumeStatusSchema>;

export const EnterBackupSchema = z.object({
  backupId: z.string().min(1),
  /** Absolute path of the image file to create on backup storage. */
  image: z
    .string()
    .min(1)
    .refine((p) => p.startsWith('/'), 'must be an absolute path'),
});
export type EnterBackup = z.infer<typeof EnterBackupSchema>;

export const FinishSchema = z.object({
  backupId: z.string().min(1),
  /** Switch back only if the estimated drain time is below this (ioTimeout × safetyFactor). */
  maxEtaMs: z.number().int().min(0),
});
export type Finish = z.infer<typeof FinishSchema>;

export const BackupRefSchema = z.object({ backupId: z.string().min(1) });

export const RoundResultSchema = z.object({
  round: z.number().int(),
  /** The creation time T of the snapshot copy (S502), ISO. */
  copiedAt: z.string(),
  blocksWritten: z.number().int(),
  bytesWritten: z.number().int(),
  durationMs: z.number(),
  status: VolumeStatusSchema,
});
export type RoundResult = z.infer<typeof RoundResultSchema>;

export const FinishResultSchema = z.object({
  switched: z.boolean(),
  etaMs: z.number().nullable(),
  /** How long host commands were held (S602 to S604), measured; null when not switched. */
  quiesceMs: z.number().nullable(),
  /** Bytes written to main storage while quiesced. */
  drainedBytes: z.number().int(),
  status: VolumeStatusSchema,
});
export type FinishResult = z.infer<typeof FinishResultSchema>;

/** Settings of one online backup: every duration is an input, so tests run in milliseconds. */
export const OnlineSettingsSchema = z.object({
  ioTimeoutMs: z.number().int().min(1),
  safetyFactor: z.number().gt(0).max(1),
  /** Catch-up rounds before the job gives up (the datapath escalates long before). */
  maxRounds: z.number().int().min(1).max(10_000).default(200),
  /** Pause between catch-up rounds. */
  roundPauseMs: z.number().int().min(0).default(200),
  /** How often the base copy's progress is polled and heartbeated. */
  pollMs: z.number().int().min(10).default(500),
});
export type OnlineSettings = z.infer<typeof OnlineSettingsSchema>;

export const OnlineBackupRequestSchema = z.object({
  // Who asks for what, and when, is said as for a backup to tape.
  ...BackupRequestSchema.pick({ site: true, target: true, requestedBy: true, requestedAt: true }).shape,
  settings: OnlineSettingsSchema,
  deviceAttempts: z.number().int().min(1).max(20).default(5),
});
export type OnlineBackupRequest = z.input<typeof OnlineBackupRequestSchema>;

/** Phases the onlineBackup workflow reports, in the order of seed 002. */
export const OnlinePhase = {
  Accept: 'accept',
  Switch: 'switch',
  BaseCopy: 'base-copy',
  CatchUp: 'catch-up',
  Quiesce: 'quiesce',
  Record: 'record',
  Done: 'done',
  Failed: 'failed',
} as const;
export type OnlinePhase = (typeof OnlinePhase)[keyof typeof OnlinePhase];

/** What the onlineBackup workflow's `progress` query answers. */
export interface OnlineProgress {
  phase: OnlinePhase;
  activity: string;
  bytesDone: number;
  bytesTotal: number;
  startedAt: string;
  /** Estimated time to drain, from the last status; null while unknown. */
  etaMs: number | null;
  unreflectedBytes: number;
  rounds: number;
  path: ConvergencePath;
  quiesceMs: number | null;
  error?: string;
}

/** An online backup's report: the target as resolved, the image on backup storage, and how it converged. */
export interface OnlineBackupReport extends ResolvedTarget {
  backupId: string;
  workflowId: string;
  image: string;
  sha256: string;
  switchedAt: string;
  rounds: number;
  path: ConvergencePath;
  quiesceMs: number;
  ioTimeoutMs: number;
  startedAt: string;
  endedAt: string;
}
