/**
 * Tape copies of store backups (docs/adr/042): a class's policy in kura.yaml
 * (`classes.<class>.toTape`) that copies its store backups to tape through the streams, for
 * long-term keeping, and the request of `kura store to-tape`.
 */
import { z } from 'zod';

/** How often a target's store backup is copied to tape: a class run copies it once no copy is younger. */
export const ToTapeEverySchema = z.enum(['daily', 'weekly', 'monthly']);
export type ToTapeEvery = z.infer<typeof ToTapeEverySchema>;

/** The period of each `every`, in milliseconds (a month counted as 30 days). */
export const TO_TAPE_EVERY_MS: Record<ToTapeEvery, number> = {
  daily: 86_400_000,
  weekly: 7 * 86_400_000,
  monthly: 30 * 86_400_000,
};

/**
 * kura.yaml `classes.<class>.toTape`. The copy settings are the streams' own (seed 004); the mode's
 * names are CopyMode's (src/domain/jobs.ts), spelled out here because jobs.ts depends on the
 * inventory, which depends on this.
 */
export const ToTapePolicySchema = z.object({
  every: ToTapeEverySchema,
  /** Disjoint streams reserved for the copy, all or nothing. */
  streams: z.number().int().min(1).max(8).default(2),
  mode: z.enum(['failover', 'parallel']).default('failover'),
});
export type ToTapePolicy = z.infer<typeof ToTapePolicySchema>;
