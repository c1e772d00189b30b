/**
 * The shapes of async remote copy (seed 003, Fig. 10): remote-copy groups in kura.yaml, the lab
 * WAN's settings and faults, the remote-copy workflow's input, its lag and its failover and
 * failback reports. Pure: workflow code imports it too.
 */
import { z } from 'zod';
import { DurationSchema, SizeSchema } from './units';

const NameSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/,
    'must start with a letter or digit and hold only letters, digits, ".", "_" or "-" (at most 63)',
  );

/** `array/volume` of a site. */
export const VolumeRefSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\/[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be "array/volume"');

/** One volume of a group: its copy at the main site and the one at the remote site (the same name by default). */
export const RemoteVolumeSchema = z.union([
  VolumeRefSchema.transform((v) => ({ main: v, remote: v })),
  z.object({ main: VolumeRefSchema, remote: VolumeRefSchema }),
]);
export type RemoteVolume = z.infer<typeof RemoteVolumeSchema>;

/**
 * A remote-copy group: volumes whose write order is kept across all of them (a database's data
 * and WAL volumes), copied from the main site to the remote site.
 */
export const RemoteGroupSchema = z
  .object({
    name: NameSchema,
    /** The site whose hosts write (the primary until a failover). */
    main: NameSchema,
    /** The disaster-recovery site that receives the copy. */
    remote: NameSchema,
    volumes: z.array(RemoteVolumeSchema).min(1, 'a remote-copy group needs at least one volume'),
    /** The remote site's receiver listens on this loopback port (the far end of the WAN). */
    receiverPort: z.number().int().min(1).max(65535),
  })
  .superRefine((g, ctx) => {
    if (g.main === g.remote)
      ctx.addIssue({ code: 'custom', path: ['remote'], message: `must differ from main (both are "${g.main}")` });
  });
export type RemoteGroup = z.infer<typeof RemoteGroupSchema>;

/** The lab WAN between the sites: what a link is like when nothing is wrong. */
export const WanSettingsSchema = z.object({
  /** Bytes per second each way (0: unlimited). */
  bandwidth: SizeSchema.default(0),
  /** One-way delay of every message. */
  latency: DurationSchema.default(0),
});
export type WanSettings = z.infer<typeof WanSettingsSchema>;

/** kura.yaml's `remoteCopy` section. */
export const RemoteCopyConfigSchema = z
  .object({
    wan: WanSettingsSchema.default(WanSettingsSchema.parse({})),
    groups: z.array(RemoteGroupSchema).default([]),
    /** Entries per shipped batch at most. */
    batchEntries: z.number().int().min(1).max(10_000).default(64),
    /** A batch not acknowledged within this long is sent again. */
    resendAfter: DurationSchema.default(500),
    /**
     * The link's shared secret, a 0600 file both sites hold (relative to kura.yaml); default
     * `<home>/remote/link.secret`, written by the side that starts first.
     */
    secretFile: z.string().min(1).optional(),
  })
  .superRefine((rc, ctx) => {
    const seen = new Map<string, number>();
    rc.groups.forEach((g, i) => {
      const first = seen.get(g.name);
      if (first !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['groups', i, 'name'],
          message: `remote-copy group "${g.name}" is defined twice (also groups[${first}])`,
        });
      else seen.set(g.name, i);
    });
  });
export type RemoteCopyConfig = z.infer<typeof RemoteCopyConfigSchema>;

/**
 * Faults injected into the lab WAN (`kura lab wan …`, tests). Probabilities are per message of the
 * main site's direction; a partition drops every message both ways until its end.
 */
export const WanFaultsSchema = z.object({
  /** Extra delay of every message, on top of the latency. */
  delayMs: z.number().int().nonnegative().default(0),
  /** Chance a message is held back by up to `reorderMs` more, so later ones overtake it. */
  reorder: z.number().min(0).max(1).default(0),
  reorderMs: z.number().int().nonnegative().default(50),
  /** Chance a message is lost. */
  drop: z.number().min(0).max(1).default(0),
  /** Until this instant (ms since the epoch) nothing gets through. */
  partitionUntil: z.number().nonnegative().default(0),
  /** Seed of the fault dice, so a run can be repeated. */
  seed: z.number().int().nonnegative().default(1),
});
export type WanFaults = z.infer<typeof WanFaultsSchema>;

/** The remote-copy workflow's input: one group, and how long each shipping round runs. */
export const RemoteCopyInputSchema = z.object({
  group: NameSchema,
  /** Each round ships and applies for this long; the lag is reported between rounds. */
  roundMs: z.number().int().min(100).max(600_000).default(2_000),
  /** Rounds per run before continue-as-new. */
  roundsPerRun: z.number().int().min(1).max(10_000).default(200),
  /** Pause between the writes of one applied batch (a lab knob: lets a test kill the applier mid-batch). */
  applyPauseMs: z.number().int().nonnegative().max(10_000).default(0),
  /** A shipper or applier silent this long is taken for lost, and its round's activity runs again elsewhere. */
  heartbeatTimeoutMs: z.number().int().min(500).max(600_000).default(10_000),
  /** A failover waits this long for the main site's fence; past it the main site is taken for down. */
  fenceTimeoutMs: z.number().int().min(500).max(600_000).default(15_000),
  /** Carried over continue-as-new. */
  state: z
    .object({
      role: z.enum(['shipping', 'failed-over']),
      rounds: z.number().int().nonnegative(),
      lag: z.lazy(() => LagSchema).nullable(),
      failover: z.lazy(() => FailoverReportSchema).nullable(),
      lastOperation: z.string().nullable().default(null),
    })
    .optional(),
});
export type RemoteCopyInput = z.input<typeof RemoteCopyInputSchema>;
export type RemoteCopyRequest = z.output<typeof RemoteCopyInputSchema>;

/** The lag of the remote copy: what the main site has journaled that the remote has not applied. */
export const LagSchema = z.object({
  /** Last seq the main site journaled. */
  mainSeq: z.number().int().nonnegative(),
  /** Last seq the remote applied (and acknowledged). */
  appliedSeq: z.number().int().nonnegative(),
  /** Writes and bytes journaled but not applied remotely. */
  writes: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
  /** Age of the oldest write not applied remotely (0 when none). */
  seconds: z.number().nonnegative(),
  measuredAt: z.string(),
});
export type Lag = z.infer<typeof LagSchema>;

/** What a failover reports: the remote copy is the primary, and what the main site had not shipped is lost. */
export const FailoverReportSchema = z.object({
  group: z.string(),
  /** The last write the remote copy holds. */
  appliedSeq: z.number().int().nonnegative(),
  /** The last write the main site had journaled (null: the main site did not answer). */
  mainSeq: z.number().int().nonnegative().nullable(),
  lostWrites: z.number().int().nonnegative(),
  lostBytes: z.number().int().nonnegative(),
  /** Whether the loss was measured on the main site's journal, or taken from the last lag measured. */
  lossFrom: z.enum(['journal', 'last-lag']),
  at: z.string(),
});
export type FailoverReport = z.infer<typeof FailoverReportSchema>;

/** What a failback reports: the main site is the primary again, resynchronised with only what changed. */
export const FailbackReportSchema = z.object({
  group: z.string(),
  /** Blocks copied remote → main, and their bytes: those written at the remote since the failover, and those the main site had not shipped. */
  blocks: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
  /** Bytes of the group's volumes: what a full resync would have copied. */
  totalBytes: z.number().int().nonnegative(),
  /** The seq both sites agree on from here. */
  baseSeq: z.number().int().nonnegative(),
  at: z.string(),
});
export type FailbackReport = z.infer<typeof FailbackReportSchema>;

/** What the remote-copy workflow's query answers. */
export const RemoteStatusSchema = z.object({
  group: z.string(),
  role: z.enum(['shipping', 'failed-over']),
  rounds: z.number().int().nonnegative(),
  lag: LagSchema.nullable(),
  failover: FailoverReportSchema.nullable(),
  step: z.string(),
  /** The workflow id of the group's last SAN operation (set-up, failover, failback): `kura plan show` draws it. */
  lastOperation: z.string().nullable(),
});
export type RemoteStatus = z.infer<typeof RemoteStatusSchema>;

/** Input of the failover and failback updates. */
export const RemoteSwitchSchema = z.object({ reason: z.string().max(500).default('') });
export type RemoteSwitch = z.input<typeof RemoteSwitchSchema>;
