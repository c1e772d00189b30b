/**
 * Restore drills (seed 000; docs/adr/035): what a drill is asked, what it records per target, and
 * the pure choice of its sample — every class represented — so a workflow can make it itself.
 */
import { z } from 'zod';
import { ClassNameSchema, type ClassName } from './classes';

export const DrillRequestSchema = z.object({
  /** Targets drilled per class (each class with a backup in the store is represented). */
  perClass: z.number().int().min(1).max(16).default(1),
  /** Only these classes; every configured class when omitted. */
  classes: z.array(ClassNameSchema).min(1).optional(),
  /** How long a restored VM gets to report healthy once started, and how often it is asked. */
  healthTimeoutMs: z
    .number()
    .int()
    .min(0)
    .default(5 * 60_000),
  healthEveryMs: z.number().int().min(1).default(500),
  /** Whether people are told of a failed drill (the notify path); on unless switched off. */
  alert: z.boolean().default(true),
});
export type DrillRequest = z.infer<typeof DrillRequestSchema>;

/** One target a drill may take: its class, and the newest store backup(s) of it. */
export interface DrillCandidate {
  className: ClassName;
  site: string;
  /** The VM's name, or the server's or client's target name. */
  target: string;
  /** The store backups the restore takes: a VM's software and data of one instant, else one. */
  backupIds: string[];
  /** A VM's: the instant of its whole image (both volumes' data time). */
  dataTime?: string;
  /** Why the target cannot be drilled (no backup in the store); the drill fails it with this. */
  missing?: string;
}

export const DrillOutcome = { Healthy: 'healthy', Failed: 'failed' } as const;
export type DrillOutcome = (typeof DrillOutcome)[keyof typeof DrillOutcome];

/** One target of one drill, as the catalog records it. */
export const DrillRecordSchema = z.object({
  drillId: z.string().min(1),
  target: z.string().min(1),
  className: ClassNameSchema,
  site: z.string().min(1),
  backupId: z.string().nullable(),
  /** The store the data came from: `primary`, or `copy` when any chunk fell back to it. */
  store: z.string().nullable(),
  host: z.string().min(1),
  startedAt: z.string(),
  endedAt: z.string(),
  /** From the restore's request to healthy; null when it never became healthy. */
  rtoMs: z.number().int().min(0).nullable(),
  outcome: z.enum(['healthy', 'failed']),
  errorType: z.string().nullable(),
  error: z.string().nullable(),
});
export type DrillRecord = z.infer<typeof DrillRecordSchema>;

/**
 * The drill's sample: `perClass` targets of each class, taken from the candidates of that class at
 * `offset` (the drill's own rotation, so successive drills walk the estate). A class whose every
 * candidate is missing a backup is still represented — by a failed target.
 */
export function pickSample(candidates: DrillCandidate[], perClass: number, offset: number): DrillCandidate[] {
  const byClass = new Map<ClassName, DrillCandidate[]>();
  for (const c of candidates) byClass.set(c.className, [...(byClass.get(c.className) ?? []), c]);
  const out: DrillCandidate[] = [];
  for (const [, list] of [...byClass.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const sorted = [...list].sort((a, b) => (a.target < b.target ? -1 : a.target > b.target ? 1 : 0));
    const n = Math.min(perClass, sorted.length);
    for (let i = 0; i < n; i++) out.push(sorted[(offset + i) % sorted.length]!);
  }
  return out;
}

/** The name of the isolated lab host a drill creates for itself: never one of the inventory's hosts. */
export function drillHostName(drillId: string): string {
  let h = 0;
  for (const ch of drillId) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return `drill-${h.toString(16).padStart(8, '0')}`;
}
