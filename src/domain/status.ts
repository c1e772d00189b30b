/**
 * The operator's one page (`kura status`): what runs now, how the last night went, which targets
 * are past their recovery point objective, which devices are out of service and which ladders
 * wait for a person. The schema is what `kura status --json` prints for scripts; each section is
 * a key of its own, so a section for a new kind of work (restore drills, remote copies, a second
 * store) is one more key, and a page without it still parses.
 */
import { z } from 'zod';
import { RungSchema } from './ladder';

/** How far a running job has come, in one shape whatever its kind. */
export const JobProgressSchema = z.object({
  /** The job's own phase or state word (`launch`, `base-copy`, `climbing`, …). */
  phase: z.string(),
  /** What it does now, one line. */
  activity: z.string(),
  /** Done so far ÷ all, when the job knows both (bytes, cartridges, targets); null otherwise. */
  fraction: z.number().min(0).max(1).nullable(),
  done: z.number().min(0).optional(),
  total: z.number().min(0).optional(),
  /** What `done` and `total` count. */
  unit: z.enum(['bytes', 'cartridges', 'targets']).optional(),
});
export type JobProgress = z.infer<typeof JobProgressSchema>;

/** A rung in progress waiting for its VM's health: how long so far, and the most it will wait still. */
export const HealthWaitSchema = z.object({
  rung: RungSchema,
  attempt: z.number().int().min(1),
  since: z.string(),
  waitedMs: z.number().min(0),
  remainingMs: z.number().min(0),
  escalateAfter: z.number().int().min(0),
});

/** One job running now, from Temporal's visibility and the job's own progress query. */
export const RunningJobSchema = z.object({
  workflowId: z.string(),
  kind: z.string(),
  site: z.string().nullable(),
  target: z.string().nullable(),
  startedAt: z.string(),
  /** Null when the job did not answer its progress query (yet); `problem` then says why. */
  progress: JobProgressSchema.nullable(),
  /** Ladders: the rung they are on, and the health wait when they are in one. */
  rung: RungSchema.nullable().optional(),
  healthWait: HealthWaitSchema.optional(),
  problem: z.string().optional(),
});
export type RunningJob = z.infer<typeof RunningJobSchema>;

/** Backups of one class in the window: the method (tape, or online to disk) and the class of target. */
export const BackupClassSchema = z.object({
  method: z.enum(['tape', 'online']),
  targetClass: z.enum(['vm', 'volume']),
  complete: z.number().int().min(0),
  failed: z.number().int().min(0),
  running: z.number().int().min(0),
  bytes: z.number().int().min(0),
  /** The failed backups of the class (at most a few), with their errors. */
  failures: z.array(z.object({ backupId: z.string(), target: z.string(), error: z.string().nullable() })),
});
export type BackupClass = z.infer<typeof BackupClassSchema>;

/** A fleet run (a policy's night) that started in the window. */
export const FleetRunSchema = z.object({
  workflowId: z.string(),
  policy: z.string(),
  site: z.string().nullable(),
  status: z.string(),
  startedAt: z.string(),
  closedAt: z.string().nullable(),
  succeeded: z.number().int().min(0).nullable(),
  failed: z.number().int().min(0).nullable(),
  targets: z.number().int().min(0).nullable(),
});
export type FleetRun = z.infer<typeof FleetRunSchema>;

/** Jobs of one kind that ended in the window, counted by how they ended. */
export const ClosedJobsSchema = z.object({
  kind: z.string(),
  byStatus: z.record(z.string(), z.number().int().min(0)),
});
export type ClosedJobs = z.infer<typeof ClosedJobsSchema>;

export const LastNightSchema = z.object({
  /** The window: from `since` to the page's time. */
  since: z.string(),
  byClass: z.array(BackupClassSchema),
  fleetRuns: z.array(FleetRunSchema),
  closedJobs: z.array(ClosedJobsSchema),
});
export type LastNight = z.infer<typeof LastNightSchema>;

/** A target whose last good backup is older than its policy's RPO allows (or that has none). */
export const RpoBreachSchema = z.object({
  site: z.string(),
  policy: z.string(),
  target: z.string(),
  rpoMs: z.number().int().min(0),
  lastBackupId: z.string().nullable(),
  /** The instant the last good backup's data shows, and its age at the page's time. */
  lastDataTime: z.string().nullable(),
  ageMs: z.number().min(0).nullable(),
});
export type RpoBreach = z.infer<typeof RpoBreachSchema>;

export const RpoSchema = z.object({
  /** Targets checked (every target of every policy), and those in breach. */
  checked: z.number().int().min(0),
  breaches: z.array(RpoBreachSchema),
});
export type Rpo = z.infer<typeof RpoSchema>;

/** A device its site's pool holds out of service, and why. */
export const DeviceOutSchema = z.object({
  site: z.string(),
  kind: z.string(),
  name: z.string(),
  reason: z.string(),
});
export type DeviceOut = z.infer<typeof DeviceOutSchema>;

/** A ladder that has handed its VM over to a person. */
export const WaitingLadderSchema = z.object({
  workflowId: z.string(),
  site: z.string(),
  vm: z.string(),
  reason: z.string(),
  /** When the last automatic rung gave up (the hand-over). */
  since: z.string(),
  tried: z.array(RungSchema),
  resolve: z.string(),
  rebuild: z.string(),
});
export type WaitingLadder = z.infer<typeof WaitingLadderSchema>;

/** A section the page could not fill, and why; the other sections are shown all the same. */
export const StatusProblemSchema = z.object({ section: z.string(), message: z.string() });
export type StatusProblem = z.infer<typeof StatusProblemSchema>;

/** The whole page. A section Kura has no such work for is absent, never faked. */
export const StatusPageSchema = z.object({
  at: z.string(),
  namespace: z.string(),
  taskQueue: z.string(),
  sites: z.array(z.string()),
  running: z.array(RunningJobSchema).optional(),
  lastNight: LastNightSchema.optional(),
  rpo: RpoSchema.optional(),
  devicesOut: z.array(DeviceOutSchema).optional(),
  waitingForPerson: z.array(WaitingLadderSchema).optional(),
  problems: z.array(StatusProblemSchema),
});
export type StatusPage = z.infer<typeof StatusPageSchema>;

/** The sections of the page in the order it shows them; each is a key of `StatusPage`. */
export const STATUS_SECTIONS = ['running', 'waitingForPerson', 'devicesOut', 'rpo', 'lastNight'] as const;
export type StatusSection = (typeof STATUS_SECTIONS)[number];

/** The age at `nowMs` of a target's last good backup, and whether it breaks the RPO. */
export function rpoBreach(
  last: { backupId: string; dataTime: string } | undefined,
  rpoMs: number,
  nowMs: number,
): { breach: boolean; ageMs: number | null } {
  if (!last) return { breach: true, ageMs: null };
  const ageMs = Math.max(0, nowMs - Date.parse(last.dataTime));
  return { breach: ageMs > rpoMs, ageMs };
}

/** The class of a target: a VM (its data volume) or an `array/volume` named directly. */
export function targetClassOf(target: string): 'vm' | 'volume' {
  return target.includes('/') ? 'volume' : 'vm';
}
