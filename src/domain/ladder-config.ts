/**
 * The `ladder` and `lab` sections of kura.yaml: the recovery policy every VM guardian runs with,
 * and how long the lab's simulated VMs take to restart. Kept apart from the ladder's workflow
 * shapes so the inventory schema can include it without an import cycle.
 */
import { z } from 'zod';
import { DurationSchema } from './units';

/** Rungs the ladder runs by itself; `human` is the hand-over. */
export const AUTOMATIC_RUNGS = ['apl-restart', 'mw-restart', 'os-reboot', 'data-swap', 'guarantee-swap'] as const;
export type AutomaticRung = (typeof AUTOMATIC_RUNGS)[number];

export const HHMM = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'must be a time of day as HH:MM, e.g. 03:00');

/** Per-rung settings in kura.yaml; anything left out comes from the ladder's defaults. */
const RungOverrideSchema = z.object({
  attempts: z.number().int().min(1).max(10).optional(),
  healthWait: DurationSchema.optional(),
  backoff: DurationSchema.optional(),
  failedChecks: z.number().int().min(0).max(1000).optional(),
});

/** The `ladder` section of kura.yaml: the recovery policy every VM guardian runs with. */
export const LadderConfigSchema = z.object({
  /** Attempts of each rung before the ladder widens the range. */
  attempts: z.number().int().min(1).max(10).default(1),
  /** How long the VM may take to report healthy after a rung's action. */
  healthWait: DurationSchema.default(120_000),
  /** How often the health is checked while waiting. */
  healthCheckEvery: DurationSchema.refine((n) => n > 0, 'must be more than 0').default(2_000),
  /** Pause between two attempts of the same rung. */
  backoff: DurationSchema.default(10_000),
  /**
   * A rung whose VM reports a definite failure (it is up and its monitor says it is failing, not
   * restarting) at this many health checks in a row after the rung's action escalates at once,
   * instead of waiting out `healthWait`; 0 always waits the whole `healthWait`.
   */
  failedChecks: z.number().int().min(0).max(1000).default(3),
  /** Overrides per rung, e.g. `{ os-reboot: { healthWait: 10m } }`. */
  rungs: z.partialRecord(z.enum(AUTOMATIC_RUNGS), RungOverrideSchema).default({}),
  /** Healthy for longer than this and the next failure starts at the bottom rung again. */
  stabilityWindow: DurationSchema.default(30 * 60_000),
  /** Data images kept per VM (the startup-guarantee image is kept besides). */
  keepImages: z.number().int().min(1).max(100).default(3),
  /** Daily data-volume backup, UTC time of day. */
  dailyBackup: HHMM.default('03:00'),
  /** Back up every this long instead of daily at `dailyBackup` (tests use milliseconds). */
  backupEvery: DurationSchema.refine((n) => n > 0, 'must be more than 0').optional(),
  /** How often each guardian polls its VM's health; 0 turns polling off (failure reports only). */
  healthPoll: DurationSchema.default(30_000),
  /** Start one guardian per VM when the control worker starts. */
  guardVms: z.boolean().default(true),
  /** History length after which a guardian continues as new. */
  maxHistoryEvents: z.number().int().min(50).default(2000),
  /**
   * Step times of the manual five-step rebuild of seed 000 (install OS, install DB software,
   * restore DB, install programs, configure), used as the baseline in `bench/ladder.ts`.
   */
  manualRebuild: z
    .object({
      installOs: DurationSchema.default(90 * 60_000),
      installDb: DurationSchema.default(45 * 60_000),
      restoreDb: DurationSchema.default(30 * 60_000),
      installPrograms: DurationSchema.default(60 * 60_000),
      configure: DurationSchema.default(45 * 60_000),
    })
    .default({
      installOs: 90 * 60_000,
      installDb: 45 * 60_000,
      restoreDb: 30 * 60_000,
      installPrograms: 60 * 60_000,
      configure: 45 * 60_000,
    }),
});
export type LadderConfig = z.infer<typeof LadderConfigSchema>;

/** The `lab` section of kura.yaml: how long the lab's simulated VMs take to restart. */
export const LabTimingSchema = z.object({
  aplRestart: DurationSchema.default(2_000),
  mwRestart: DurationSchema.default(5_000),
  osReboot: DurationSchema.default(20_000),
  /** Bytes per second at which the lab creates a volume from an image (unlimited when omitted). */
  volumeCopyRate: z.number().int().positive().optional(),
  /**
   * Bytes per second a backup server's data path carries in the lab (unlimited when omitted): a copy
   * through a server (LAN-free) is held to it, one by a copy device (direct) is not (docs/adr/029).
   */
  serverCopyRate: z.number().int().positive().optional(),
});
export type LabTiming = z.infer<typeof LabTimingSchema>;
