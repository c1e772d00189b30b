/**
 * The events feed (seed 003's central console): one record of every device fault and every job
 * failure, kept in the catalog and posted to the notify webhook, read by `kura events`.
 */
import { z } from 'zod';

/** What an event is about: a device found at fault, or a job that failed or was refused. */
export const EventKind = { DeviceFault: 'device-fault', JobFailure: 'job-failure' } as const;
export type EventKind = (typeof EventKind)[keyof typeof EventKind];
export const EventKindSchema = z.enum([EventKind.DeviceFault, EventKind.JobFailure]);

/** An event as it is published: `key` makes a retried publication of the same event a no-op. */
export const NewEventSchema = z.object({
  key: z.string().min(1).max(500),
  at: z.iso.datetime({ offset: true }),
  kind: EventKindSchema,
  subject: z.string().min(1),
  site: z.string().optional(),
  /** The failure type (an ErrorType, e.g. AccessDenied or DeviceFault). */
  type: z.string().optional(),
  device: z.string().optional(),
  /** The workflow id of the job. */
  job: z.string().optional(),
  detail: z.record(z.string(), z.unknown()).default({}),
});
export type NewEvent = z.input<typeof NewEventSchema>;

/** An event as the feed holds it: numbered in the order it was recorded. */
export const FeedEventSchema = NewEventSchema.omit({ key: true }).extend({
  seq: z.number().int().min(1),
  site: z.string().nullable(),
  type: z.string().nullable(),
  device: z.string().nullable(),
  job: z.string().nullable(),
});
export type FeedEvent = z.infer<typeof FeedEventSchema>;
