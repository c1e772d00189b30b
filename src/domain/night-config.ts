/**
 * The `night` section of a site in kura.yaml: the backup window of the night planner (seed 003's
 * internet-data-centre example) and the throughput it assumes where no past job measured one. Kept
 * apart from the planner so the inventory schema includes it without an import cycle.
 */
import { z } from 'zod';
import { SizeSchema } from './units';
import { HHMM } from './ladder-config';

/** Whether `zone` is an IANA time zone that Intl (and so Temporal's schedules) knows. */
function knownTimeZone(zone: string): boolean {
  if (/^[+-]/.test(zone)) return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

export const NightConfigSchema = z.object({
  /**
   * The backup window as local wall-clock times, HH:MM; an end at or before the start is on the
   * next day (22:00–06:00). Every planned job starts and ends inside it.
   */
  window: z
    .object({ start: HHMM.default('00:00'), end: HHMM.default('06:00') })
    .default({ start: '00:00', end: '06:00' }),
  /** IANA time zone of the window and of the schedules `kura plan apply` installs. */
  timezone: z
    .string()
    .refine(knownTimeZone, 'must be an IANA time zone such as UTC, Europe/London or Asia/Tokyo')
    .default('UTC'),
  /**
   * Bytes per second one backup moves, for a target no complete backup in the catalog has measured
   * yet (a number or a size such as 100MB, read as per second).
   */
  throughput: SizeSchema.refine((n) => n > 0, 'must be more than 0').default(100_000_000),
});
export type NightConfig = z.infer<typeof NightConfigSchema>;

/** The night of a site without a `night` section: 00:00–06:00 UTC at 100 MB/s. */
export const DEFAULT_NIGHT: NightConfig = NightConfigSchema.parse({});
