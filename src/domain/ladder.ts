/**
 * The escalating restart ladder of seed 001 and the VM guardian around it: the rungs in order, the
 * depth of a fault (which rung cures it), the ladder policy of kura.yaml, and the JSON-plain
 * shapes the two workflows take, answer and keep across continue-as-new.
 */
import { z } from 'zod';
import { NameSchema } from './names';
import { AUTOMATIC_RUNGS, HHMM, type AutomaticRung, type LadderConfig } from './ladder-config';

export { AUTOMATIC_RUNGS, type AutomaticRung } from './ladder-config';

/** The rungs, lowest first (S11–S18): each widens the initialization range of the one below. */
export const RUNGS = ['apl-restart', 'mw-restart', 'os-reboot', 'data-swap', 'guarantee-swap', 'human'] as const;
export type Rung = (typeof RUNGS)[number];
export const RungSchema = z.enum(RUNGS);

/**
 * How deep a fault sits: the narrowest action that cures it. `none` is cured by no rung (only a
 * rebuild on other hardware); the lab's `kura lab vm-fault --cured-by` injects one.
 */
export const CURE_DEPTHS = ['apl', 'mw', 'os', 'data', 'guarantee', 'none'] as const;
export type CureDepth = (typeof CURE_DEPTHS)[number];
export const CureDepthSchema = z.enum(CURE_DEPTHS, { error: `must be one of ${CURE_DEPTHS.join(', ')}` });

/** The rung that cures a fault of this depth (index-aligned: depth `os` ↔ rung `os-reboot`). */
export function rungForDepth(depth: CureDepth): Rung {
  return RUNGS[CURE_DEPTHS.indexOf(depth)] as Rung;
}

/** The restart scopes a hypervisor performs; each includes the narrower ones. */
export const RESTART_SCOPES = ['apl', 'mw', 'os'] as const;
export type RestartScope = (typeof RESTART_SCOPES)[number];

/** Whether an action of this depth (a restart scope, or a data/guarantee swap) cures a fault of that depth. */
export function cures(action: CureDepth, fault: CureDepth): boolean {
  if (fault === 'none') return false;
  return CURE_DEPTHS.indexOf(action) >= CURE_DEPTHS.indexOf(fault);
}

/** One rung's settings as the ladder workflow receives them (milliseconds). */
export const RungPolicySchema = z.object({
  attempts: z.number().int().min(1).max(10),
  healthWaitMs: z.number().int().min(0),
  backoffMs: z.number().int().min(0),
  /**
   * Health checks in a row that must report a definite failure before the rung gives up early;
   * absent or 0: the rung waits its whole `healthWaitMs` (policies from before early escalation).
   */
  failedChecks: z.number().int().min(0).optional(),
});
export type RungPolicy = z.infer<typeof RungPolicySchema>;

/** The policy a guardian and its ladders run with, resolved from kura.yaml into milliseconds. */
export const LadderPolicySchema = z.object({
  rungs: z.object(
    Object.fromEntries(AUTOMATIC_RUNGS.map((r) => [r, RungPolicySchema])) as Record<
      AutomaticRung,
      typeof RungPolicySchema
    >,
  ),
  healthCheckEveryMs: z.number().int().min(1),
  stabilityWindowMs: z.number().int().min(0),
  keepImages: z.number().int().min(1),
  /** UTC HH:MM of the daily backup, unless `backupEveryMs` is set. */
  dailyBackup: HHMM,
  backupEveryMs: z.number().int().min(1).optional(),
  healthPollMs: z.number().int().min(0),
  maxHistoryEvents: z.number().int().min(50),
  /** How long a VM activity may stay silent before it is considered hung and retried. */
  activityHeartbeatMs: z.number().int().min(200),
});
export type LadderPolicy = z.infer<typeof LadderPolicySchema>;

/** Resolves the `ladder` section into the policy workflows take. */
export function ladderPolicy(cfg: LadderConfig, activityHeartbeatMs = 30_000): LadderPolicy {
  const rungs = Object.fromEntries(
    AUTOMATIC_RUNGS.map((r) => {
      const o = cfg.rungs[r] ?? {};
      return [
        r,
        {
          attempts: o.attempts ?? cfg.attempts,
          healthWaitMs: o.healthWait ?? cfg.healthWait,
          backoffMs: o.backoff ?? cfg.backoff,
          failedChecks: o.failedChecks ?? cfg.failedChecks,
        },
      ];
    }),
  ) as Record<AutomaticRung, RungPolicy>;
  return {
    rungs,
    healthCheckEveryMs: cfg.healthCheckEvery,
    stabilityWindowMs: cfg.stabilityWindow,
    keepImages: cfg.keepImages,
    dailyBackup: cfg.dailyBackup,
    ...(cfg.backupEvery === undefined ? {} : { backupEveryMs: cfg.backupEvery }),
    healthPollMs: cfg.healthPoll,
    maxHistoryEvents: cfg.maxHistoryEvents,
    activityHeartbeatMs,
  };
}

/** An image in Kura's image store (store 33 of seed 001). */
export const ImageKind = { Data: 'data', Guarantee: 'guarantee', Software: 'software' } as const;
export type ImageKind = (typeof ImageKind)[keyof typeof ImageKind];
export const ImageRecordSchema = z.object({
  imageId: z.string().min(1),
  site: z.string(),
  vm: z.string(),
  kind: z.enum(ImageKind),
  file: z.string(),
  sizeBytes: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.string(),
});
export type ImageRecord = z.infer<typeof ImageRecordSchema>;

/**
 * How a health wait ends: the VM answered healthy; it reported a definite failure at the policy's
 * number of checks in a row (the rung escalates early); or the whole wait passed without either.
 */
export const HEALTH_ENDS = ['healthy', 'failed-checks', 'timeout'] as const;
export type HealthEnd = (typeof HEALTH_ENDS)[number];

/** The outcome of one attempt of a rung. */
export const AttemptSchema = z.object({
  attempt: z.number().int().min(1),
  startedAt: z.string(),
  endedAt: z.string().optional(),
  /** `healthy`: the rung cured the VM; `unhealthy`: not within the wait; `failed`: the action itself failed. */
  outcome: z.enum(['running', 'healthy', 'unhealthy', 'failed']),
  detail: z.string().optional(),
  /** How long the rung's action took (ms), and how long the VM then took to answer the health check. */
  actionMs: z.number().min(0).optional(),
  healthWaitMs: z.number().min(0).optional(),
  /**
   * The health wait after the action: since when, for at most how long, and after how many
   * definite failures in a row it ends early (0: never) — so a view of a rung in progress can say
   * how long it has waited and how long it will wait still.
   */
  healthSince: z.string().optional(),
  healthLimitMs: z.number().min(0).optional(),
  escalateAfter: z.number().int().min(0).optional(),
  /** How the wait ended, and the health checks it made (in all, and failed in a row at the end). */
  healthEnd: z.enum(HEALTH_ENDS).optional(),
  checks: z.number().int().min(0).optional(),
  failedChecks: z.number().int().min(0).optional(),
});
export type Attempt = z.infer<typeof AttemptSchema>;

export const RungRecordSchema = z.object({
  rung: RungSchema,
  status: z.enum(['pending', 'skipped', 'running', 'failed', 'cured', 'waiting', 'done']),
  attempts: z.array(AttemptSchema),
  detail: z.string().optional(),
});
export type RungRecord = z.infer<typeof RungRecordSchema>;

/** What the `ladder` query answers and `kura ladder show` renders. */
export const LadderViewSchema = z.object({
  workflowId: z.string(),
  site: z.string(),
  vm: z.string(),
  incident: z.string(),
  reason: z.string(),
  status: z.enum(['climbing', 'waiting-for-human', 'recovered', 'resolved', 'rebuilt']),
  currentRung: RungSchema.nullable(),
  startedAt: z.string(),
  endedAt: z.string().optional(),
  rungs: z.array(RungRecordSchema),
  note: z.string().optional(),
});
export type LadderView = z.infer<typeof LadderViewSchema>;

export const LadderInputSchema = z.object({
  site: NameSchema,
  vm: NameSchema,
  incident: z.string().min(1),
  reason: z.string().min(1),
  /** The rung to start at: the bottom, or above the last cure when the VM failed again within the stability window. */
  startRung: RungSchema.default('apl-restart'),
  /** Hosts of the site: a rebuild may only name one of them. */
  hosts: z.array(NameSchema).min(1),
  policy: LadderPolicySchema,
});
export type LadderInput = z.input<typeof LadderInputSchema>;

export const LadderResultSchema = z.object({
  outcome: z.enum(['recovered', 'resolved', 'rebuilt']),
  /** The rung that cured the VM (or `human` for resolved/rebuilt). */
  rung: RungSchema,
  endedAt: z.string(),
  view: LadderViewSchema,
});
export type LadderResult = z.infer<typeof LadderResultSchema>;

/** Update `resolve`: a person fixed the VM by hand. */
export const ResolveRequestSchema = z.object({
  note: z.string().min(1, 'say what was done, e.g. --note "replaced the NIC"').max(2000),
  by: z.string().min(1).default('operator'),
});
export type ResolveRequest = z.input<typeof ResolveRequestSchema>;
/** Update `rebuild`: recreate the VM on a substitute host from its two images. */
export const RebuildRequestSchema = z.object({ host: NameSchema, by: z.string().min(1).default('operator') });
export type RebuildRequest = z.input<typeof RebuildRequestSchema>;

/** Signal `failureDetected`: the VM (or a monitor) reports a failure. */
export const FailureReportSchema = z.object({
  reason: z.string().min(1).max(2000),
  at: z.string().optional(),
  /** A workflow to signal `ladderEnded` to when the ladder this report joined or started has ended. */
  replyTo: z.string().min(1).optional(),
});
export type FailureReport = z.infer<typeof FailureReportSchema>;

/** Signal `ladderEnded`: the outcome of the ladder a report with `replyTo` joined or started. */
export const LadderOutcomeSchema = z.object({
  /** The ladder's workflow id. */
  ladder: z.string().min(1),
  /** Its result when it recovered the VM or a person dealt with it… */
  result: LadderResultSchema.optional(),
  /** …or why it failed. */
  failure: z.object({ type: z.string(), message: z.string() }).optional(),
});
export type LadderOutcome = z.infer<typeof LadderOutcomeSchema>;

/** Update `requestDataBackup`: the VM asks for an image of its data volume now. */
export const DataBackupRequestSchema = z.object({ requestedBy: z.string().min(1).default('vm') });
export type DataBackupRequest = z.input<typeof DataBackupRequestSchema>;

/** Workflow `vmFailureReport`: a failure reported on a caller's behalf, who waits for the ladder's outcome. */
export const VmFailureRequestSchema = z.object({
  site: NameSchema,
  vm: NameSchema,
  reason: FailureReportSchema.shape.reason,
  requestedBy: z.string().min(1),
  /** When the failure was seen; it also names the workflow. */
  requestedAt: z.iso.datetime({ offset: true }),
});
export type VmFailureRequest = z.input<typeof VmFailureRequestSchema>;

/** Workflow `vmDataBackup`: a data-volume image asked of the guardian on a caller's behalf. */
export const VmDataBackupRequestSchema = VmFailureRequestSchema.omit({ reason: true });
export type VmDataBackupRequest = z.input<typeof VmDataBackupRequestSchema>;

export const GuardianInputSchema = z.object({
  site: NameSchema,
  vm: NameSchema,
  policy: LadderPolicySchema,
  /** Carried across continue-as-new. */
  state: z
    .object({
      incidents: z.number().int().min(0),
      lastRecovery: z.object({ at: z.string(), rung: RungSchema, incident: z.string() }).optional(),
      lastLadder: z.string().optional(),
      nextBackupAt: z.string().optional(),
      lastBackup: z.object({ imageId: z.string(), at: z.string() }).optional(),
      backups: z.number().int().min(0),
      pendingFailure: FailureReportSchema.optional(),
    })
    .default({ incidents: 0, backups: 0 }),
});
export type GuardianInput = z.input<typeof GuardianInputSchema>;
export type GuardianState = z.infer<typeof GuardianInputSchema>['state'];

/** What the `guardian` query answers. */
export interface GuardianView {
  site: string;
  vm: string;
  state: GuardianState;
  /** The ladder running now, if any. */
  currentLadder: string | null;
  backupRunning: boolean;
}

/**
 * The rung a new ladder starts at (S11 vs. the stability window): from the bottom when the VM has
 * been healthy for longer than the window since its last recovery, else one above the rung that
 * last cured it (a human hand-over when that was already the last automatic rung).
 */
export function startRungFor(
  lastRecovery: { at: string; rung: Rung } | undefined,
  failedAt: string,
  stabilityWindowMs: number,
): Rung {
  if (!lastRecovery) return 'apl-restart';
  const healthyFor = Date.parse(failedAt) - Date.parse(lastRecovery.at);
  if (healthyFor > stabilityWindowMs) return 'apl-restart';
  const i = RUNGS.indexOf(lastRecovery.rung);
  return RUNGS[Math.min(i + 1, RUNGS.length - 1)] as Rung;
}

/** The next daily backup instant after `now` (UTC HH:MM), or now + every when an interval is set. */
export function nextBackupAt(nowMs: number, policy: Pick<LadderPolicy, 'dailyBackup' | 'backupEveryMs'>): number {
  if (policy.backupEveryMs !== undefined) return nowMs + policy.backupEveryMs;
  const [h, m] = policy.dailyBackup.split(':').map(Number) as [number, number];
  const d = new Date(nowMs);
  let at = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), h, m);
  if (at <= nowMs) at += 24 * 3_600_000;
  return at;
}

/**
 * Whether one health check is a definite failure: the VM is up and its monitor says it is failing.
 * A VM restarting or stopped may still be on its way back from the rung's action, so such a check
 * is not one (and ends a run of failed checks).
 */
export function isDefiniteFailure(h: { healthy: boolean; state: string }): boolean {
  return !h.healthy && h.state === 'faulty';
}

/** The health wait of a rung in progress, as `kura ladder show` and `kura status` report it. */
export interface HealthWait {
  rung: Rung;
  attempt: number;
  since: string;
  /** How long it has waited, and the most it will wait still (it ends sooner when the VM answers). */
  waitedMs: number;
  remainingMs: number;
  /** Definite failures in a row that end it early (0: it waits the whole time). */
  escalateAfter: number;
}

/** The health wait the ladder is in at `nowMs`, if it is waiting for its VM's health now. */
export function healthWaitOf(view: LadderView, nowMs: number): HealthWait | undefined {
  if (view.status !== 'climbing' || view.currentRung === null) return undefined;
  const rec = view.rungs.find((r) => r.rung === view.currentRung);
  const a = rec?.attempts.at(-1);
  if (!rec || !a || a.outcome !== 'running' || a.healthSince === undefined || a.healthLimitMs === undefined)
    return undefined;
  const waitedMs = Math.max(0, nowMs - Date.parse(a.healthSince));
  return {
    rung: rec.rung,
    attempt: a.attempt,
    since: a.healthSince,
    waitedMs,
    remainingMs: Math.max(0, a.healthLimitMs - waitedMs),
    escalateAfter: a.escalateAfter ?? 0,
  };
}
