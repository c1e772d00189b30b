/** A fleet run: one backup per target of a policy (or of the whole estate), a bounded number at once. */
import { z } from 'zod';
import { NameSchema } from './names';
import { CopySettingsSchema, IsoTimeSchema, JobTuningSchema } from './jobs';

export const FleetRequestSchema = z.object({
  site: NameSchema,
  /** The policy's name, or `all` for every VM of the site. */
  policy: z.string().min(1),
  /** Explicit targets; when omitted the policy's targets are read from the configuration at run time. */
  targets: z.array(z.string().min(1)).min(1).optional(),
  /** How many backups run at once (a sliding window); the policy's when omitted. */
  concurrency: z.number().int().min(1).max(200).optional(),
  requestedBy: z.string().min(1),
  /** Names the run's backups; the workflow's start time when omitted (Schedules). */
  requestedAt: IsoTimeSchema.optional(),
  tuning: JobTuningSchema.optional(),
  /** Streams, mode and chunks of every backup; the policy's when omitted. */
  copy: CopySettingsSchema.optional(),
  /** Carried across continue-as-new: outcomes so far. */
  done: z
    .array(
      z.object({
        target: z.string(),
        state: z.enum(['done', 'failed']),
        workflowId: z.string().optional(),
        backupId: z.string().optional(),
        bytes: z.number().optional(),
        error: z.string().optional(),
      }),
    )
    .default([]),
  startedAt: IsoTimeSchema.optional(),
});
export type FleetRequest = z.input<typeof FleetRequestSchema>;

export const TargetState = { Pending: 'pending', Running: 'running', Done: 'done', Failed: 'failed' } as const;
export type TargetState = (typeof TargetState)[keyof typeof TargetState];

export interface FleetTarget {
  target: string;
  state: TargetState;
  workflowId?: string;
  backupId?: string;
  bytes?: number;
  error?: string;
}

export interface FleetProgress {
  site: string;
  policy: string;
  concurrency: number;
  startedAt: string;
  targets: FleetTarget[];
}

export interface FleetReport {
  site: string;
  policy: string;
  startedAt: string;
  endedAt: string;
  succeeded: number;
  failed: number;
  bytes: number;
  targets: FleetTarget[];
}
