/**
 * The inventory and configuration schema (kura.yaml): sites with their hosts, VMs, storage arrays,
 * tape libraries, FC switches, backup servers, copy devices, links and protection policies.
 * This schema is the single source of truth; cross-references are checked here too, so a bad
 * file is reported whole, every problem with its path.
 */
import { z } from 'zod';
import { DurationSchema, SizeSchema } from './units';
import { LabTimingSchema, LadderConfigSchema } from './ladder-config';
import { HypervisorConfigSchema } from './hypervisor-config';
import { MetricsConfigSchema } from './metrics-config';
import { WorkerConfigSchema } from './worker-config';
import { ServerConfigSchema } from './server-config';
import { SecurityConfigSchema } from './security-config';
import { ArrayDriver, MOVED_QSD_KEYS, QsdArrayConfigSchema } from './array-engine';
import { formatPath } from './errors';
import { DEFAULT_INSTALLATION, InstallationSchema } from './installation';
import { NightConfigSchema } from './night-config';
import { DatapathTlsSchema } from './datapath-tls-config';
import { RemoteCopyConfigSchema } from './remote';
import { StoreConfigSchema } from './store';
import { ClassesSchema } from './classes';

import { NameSchema } from './names';
export { NAME_PATTERN, NameSchema } from './names';

const WwnSchema = z.string().regex(/^([0-9a-f]{2}:){7}[0-9a-f]{2}$/i, 'must be a WWN such as 50:06:0e:80:00:00:00:01');

export const VolumeSchema = z.object({
  id: NameSchema,
  size: SizeSchema.refine((n) => n > 0, 'must be larger than 0'),
});
export type Volume = z.infer<typeof VolumeSchema>;

export const ArraySchema = z
  .object({
    name: NameSchema,
    /** The engine of the array's function software: the lab's files (default) or a qemu-storage-daemon. */
    driver: z.enum([ArrayDriver.lab, ArrayDriver.qsd]).default(ArrayDriver.lab),
    /** What the qemu-storage-daemon of a `driver: qsd` array needs. */
    qsd: QsdArrayConfigSchema.optional(),
    ports: z.array(z.object({ name: NameSchema, wwn: WwnSchema })).default([]),
    volumes: z.array(VolumeSchema).default([]),
    /** LUN security: only the listed WWNs may reach the volume through the LUN. */
    lunMasks: z
      .array(
        z.object({
          volume: NameSchema,
          lun: z.number().int().min(0).max(16383),
          wwns: z.array(WwnSchema),
          /** The array port the LUN is presented on (seed 003's host address: port + LUN); its owner owns the LDEV. */
          port: NameSchema.optional(),
        }),
      )
      .default([]),
    /**
     * The array's free pool (seed 003): room for the replica volumes of pairs and the space of
     * snapshots, which exist only while needed. One field for every engine: the lab's files and a
     * qemu-storage-daemon allocate from it alike. Without it a lab array takes no pair or snapshot;
     * a qsd array, whose point is those functions, must have one.
     */
    freePool: z
      .object({
        size: SizeSchema,
        /** At most this many replicas and snapshots at once. */
        replicas: z.number().int().min(0).default(8),
        /**
         * How fast the array copies a pair in the background (bytes/s; 0: as fast as the disks go);
         * writes of hosts are never held back.
         */
        copyRate: SizeSchema.default(0),
      })
      .optional(),
  })
  .superRefine((a, ctx) => {
    if (a.driver === ArrayDriver.qsd && a.freePool === undefined && a.qsd?.freePool === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['freePool'],
        message: `array "${a.name}" runs on qemu-storage-daemon (driver: qsd) and needs a free pool for its replicas and snapshots, e.g. freePool: { size: 256MiB }`,
      });
    if (a.driver === ArrayDriver.lab && a.qsd !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['qsd'],
        message: `the qsd section applies only to arrays with driver: qsd; array "${a.name}" runs on the lab's files (driver: lab) — add driver: qsd or remove the section`,
      });
    for (const [key, moved] of Object.entries(MOVED_QSD_KEYS)) {
      if (a.qsd?.[key as keyof typeof MOVED_QSD_KEYS] === undefined) continue;
      ctx.addIssue({
        code: 'custom',
        path: ['qsd', key],
        message:
          a.freePool === undefined
            ? `qsd.${key} has moved to the array's ${moved}, which every engine reads; write freePool: { size: …, replicas: …, copyRate: … } beside driver: qsd instead`
            : `array "${a.name}" names its free pool twice, as freePool and as qsd.${key}; keep ${moved} and remove qsd.${key}`,
      });
    }
  });
export type StorageArray = z.infer<typeof ArraySchema>;

export const HostSchema = z
  .object({
    name: NameSchema,
    wwn: WwnSchema.optional(),
    /**
     * On a real host, where its file systems live is found, not listed: the worker resolving a
     * `host:/path` target runs `findmnt` on its own machine (it runs on the host) and asks the
     * arrays which volume the mount's device is. Instead of `mounts`, never beside them.
     */
    discoverMounts: z.boolean().default(false),
    /**
     * Where the host's file systems live (seed 003 step 2: the server knows files, the storage knows
     * volumes): each mount point on a volume of the site, so `host:/path` names the volume to copy.
     */
    mounts: z
      .array(
        z.object({
          path: z.string().regex(/^\/[^\0]*$/, 'must be an absolute path such as /var/lib/pgsql'),
          volume: z.lazy(() => VolumeRefSchema),
        }),
      )
      .default([]),
  })
  .refine((h) => !h.discoverMounts || h.mounts.length === 0, {
    path: ['discoverMounts'],
    message: 'a host either lists its mounts or discovers them (discoverMounts: true), not both; remove one',
  });

/** `array/volume`: a volume of a storage array of the same site. */
export const VolumeRefSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/, 'must name a volume as array/volume');

export const VmSchema = z.object({
  name: NameSchema,
  host: NameSchema,
  softwareVolume: VolumeRefSchema,
  dataVolume: VolumeRefSchema,
});
export type Vm = z.infer<typeof VmSchema>;

export const LibrarySchema = z.object({
  name: NameSchema,
  drives: z.array(z.object({ id: NameSchema })).min(1, 'a library needs at least one drive'),
  cartridges: z.array(z.object({ id: NameSchema, capacity: SizeSchema.refine((n) => n > 0, 'must be larger than 0') })),
});
export type Library = z.infer<typeof LibrarySchema>;

export const SwitchSchema = z.object({
  name: NameSchema,
  /** How many streams may cross the switch at once. */
  capacity: z.number().int().min(1).default(4),
});

export const ServerSchema = z.object({
  name: NameSchema,
  wwn: WwnSchema.optional(),
  /** How many streams the backup server copies at once. */
  capacity: z.number().int().min(1).default(1),
});

export const CopyDeviceSchema = z.object({
  name: NameSchema,
  capacity: z.number().int().min(1).default(1),
  /**
   * Whether the device executes segment commands (volume → drive, like EXTENDED COPY) and so can carry
   * a direct stream; a device without it is never given to one (docs/adr/029).
   */
  segmentCopy: z.boolean().default(true),
});

/** A nightly policy's default RPO: a day, plus two hours for the night's run to finish. */
export const DEFAULT_RPO_MS = 26 * 3_600_000;

export const PolicySchema = z.object({
  name: NameSchema,
  /** VM names (their data volume is backed up), `array/volume` refs, or `*` for every VM. */
  targets: z.array(z.string().min(1)).min(1, 'a policy needs at least one target'),
  /** Local wall-clock time of the nightly run, HH:MM. */
  nightly: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'must be a time of day as HH:MM, e.g. 02:00'),
  /** IANA time zone of `nightly` (Temporal's schedules take IANA names only). */
  timezone: z
    .string()
    .superRefine((zone, ctx) => {
      const problem = timeZoneProblem(zone);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .default('UTC'),
  /** How many backups of this policy run at once. */
  concurrency: z.number().int().min(1).max(200).default(4),
  /** Streams, mode and chunks of this policy's backups; `tuning` gives the defaults. */
  streams: z.number().int().min(1).max(8).optional(),
  mode: z.enum(['failover', 'parallel']).optional(),
  chunks: z.number().int().min(1).max(1000).optional(),
  /**
   * Recovery point objective: a target's last good backup may be at most this old before
   * `kura status` reports it. A day and the night's run by default.
   */
  rpo: DurationSchema.refine((n) => n > 0, 'must be more than 0').default(DEFAULT_RPO_MS),
  /**
   * `direct`: this policy's streams are moved by copy devices where the site has free ones able to
   * (else LAN-free); `lan-free`: through the backup servers. `tuning.streamKind` by default.
   */
  streamKind: z.enum(['lan-free', 'direct']).optional(),
});
export type Policy = z.infer<typeof PolicySchema>;

/**
 * An application hook (seed 003's DB coordination scripts): what puts the application on a target
 * into backup mode before a split or snapshot, and takes it out after. `script` runs argument
 * arrays, never through a shell; `postgres` holds one database session in backup mode from
 * `pg_backup_start` to `pg_backup_stop` (ADR 023).
 */
export const ScriptHookSchema = z.object({
  /** The VM or array/volume whose application the hook coordinates. */
  target: z.string().min(1),
  kind: z.literal('script'),
  /** The command entering backup mode, as an argument array: `['/usr/local/bin/db-begin', '--fast']`. */
  begin: z.array(z.string().min(1)).min(1),
  /** The command leaving backup mode. */
  end: z.array(z.string().min(1)).min(1),
  /** Run before `begin` (e.g. to open the application's admin session); none by default. */
  login: z.array(z.string().min(1)).min(1).optional(),
  /** Run after `end`, and after a `begin` that failed, whenever `login` succeeded or there is none. */
  logout: z.array(z.string().min(1)).min(1).optional(),
  /** Each command not done within this long is killed; backup mode not entered in time stops the operation before any split. */
  timeout: DurationSchema.default(60_000),
});
export type ScriptHookSpec = z.infer<typeof ScriptHookSchema>;

export const PostgresHookSchema = z.object({
  target: z.string().min(1),
  kind: z.literal('postgres'),
  /** A host name or address, or the directory of the server's Unix socket. */
  host: z.string().min(1).default('127.0.0.1'),
  port: z.number().int().min(1).max(65535).default(5432),
  /** A role allowed to run pg_backup_start and pg_backup_stop (a superuser, or granted both). */
  user: z.string().min(1),
  database: z.string().min(1).default('postgres'),
  /** The environment variable of the worker that holds the role's password; none: trust or peer login. */
  passwordEnv: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be the name of an environment variable')
    .optional(),
  /** Logging in and pg_backup_start (its checkpoint) not done within this long: the operation stops before any split. */
  timeout: DurationSchema.default(60_000),
  /**
   * The hold's heartbeat timeout: a worker holding the session that is silent this long is taken
   * for dead, its session (and so PostgreSQL's backup) gone, and the engine enters backup mode anew.
   */
  heartbeat: DurationSchema.refine((n) => n >= 1000, 'must be at least 1s').default(10_000),
  /** Whether pg_backup_stop waits until the WAL up to the backup's end is archived (needs archive_mode). */
  waitForArchive: z.boolean().default(false),
});
export type PostgresHookSpec = z.infer<typeof PostgresHookSchema>;

/**
 * Freezes the file system mounted at `path` on the worker's machine for the split or snapshot
 * (`fsfreeze -f`, then `fsfreeze -u`): its image on the volume is clean, and writers block meanwhile.
 */
export const FsfreezeHookSchema = z.object({
  target: z.string().min(1),
  kind: z.literal('fsfreeze'),
  /** The mount point of the file system, absolute. */
  path: z.string().regex(/^\/.*/, 'must be the absolute path of a mount point, e.g. /var/lib/postgresql'),
  /** Not frozen within this long: the operation stops before any split. */
  timeout: DurationSchema.default(60_000),
});
export type FsfreezeHookSpec = z.infer<typeof FsfreezeHookSchema>;

export const HookSchema = z.discriminatedUnion('kind', [ScriptHookSchema, PostgresHookSchema, FsfreezeHookSchema]);
export type Hook = z.infer<typeof HookSchema>;

/**
 * A company (tenant) sharing the site's SAN (seed 003's internet data centre): its hosts and
 * backup servers (initiators, by name), the array ports assigned to it (`array/port`), and its FC
 * zones. A LUN presented on a company's port belongs to that company; only its own servers may
 * read it and only to its own volumes may its backups be restored (docs/adr/031).
 */
export const TenantSchema = z.object({
  name: NameSchema,
  hosts: z.array(NameSchema).default([]),
  servers: z.array(NameSchema).default([]),
  /** Array ports assigned to the company, as array/port. */
  ports: z
    .array(
      z
        .string()
        .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/, 'must name an array port as array/port'),
    )
    .default([]),
  /** FC zones of the company: members by WWN (its initiators and its array ports); a zone isolates them from others. */
  zones: z.array(z.object({ name: NameSchema, members: z.array(WwnSchema).min(2) })).default([]),
});
export type Tenant = z.infer<typeof TenantSchema>;

export const SiteSchema = z
  .object({
    name: NameSchema,
    hosts: z.array(HostSchema).default([]),
    vms: z.array(VmSchema).default([]),
    arrays: z.array(ArraySchema).min(1, 'a site needs at least one storage array'),
    libraries: z.array(LibrarySchema).min(1, 'a site needs at least one tape library'),
    switches: z.array(SwitchSchema).default([]),
    servers: z.array(ServerSchema).min(1, 'a site needs at least one backup server'),
    copyDevices: z.array(CopyDeviceSchema).default([]),
    /** Cables between named things (arrays, switches, servers, libraries, copy devices). */
    links: z.array(z.tuple([NameSchema, NameSchema])).default([]),
    policies: z.array(PolicySchema).default([]),
    hooks: z.array(HookSchema).default([]),
    /** The night planner's window and fallback throughput (`kura plan night`); 00:00–06:00 UTC at 100 MB/s when absent. */
    night: NightConfigSchema.optional(),
    /** Companies sharing the SAN (none: one owner, every LUN open to the servers its mask admits). */
    tenants: z.array(TenantSchema).default([]),
  })
  .superRefine(checkSiteReferences);
export type Site = z.infer<typeof SiteSchema>;

export const NotifySchema = z.object({
  /** Posted a JSON body when a job fails or needs a person. */
  webhook: z.url().optional(),
});

export const TuningSchema = z.object({
  /** Bytes per piece written to tape. */
  pieceSize: SizeSchema.default(256 * 1024 * 1024),
  /** A copy that reports no progress for this long is considered hung. */
  copyHeartbeatTimeout: DurationSchema.default(30_000),
  /** Attempts of a device operation before the job gives up on it. */
  deviceAttempts: z.number().int().min(1).max(20).default(3),
  /** How long a job waits in the pool's queue for free devices before it fails with NoResources. */
  reserveWait: DurationSchema.default(30 * 60_000),
  /** Disjoint streams each backup reserves (seed 004: at least two, so one can fail). */
  streams: z.number().int().min(1).max(8).default(2),
  /** `failover` (chunks move to the next stream on a fault) or `parallel` (a copy on every stream). */
  mode: z.enum(['failover', 'parallel']).default('failover'),
  /** Chunks a copy is cut into; a failed chunk and the ones after it move to the next stream. */
  chunks: z.number().int().min(1).max(1000).default(10),
  /** `lan-free` (a backup server moves the bytes) or `direct` (a copy device does, where it can). */
  streamKind: z.enum(['lan-free', 'direct']).default('lan-free'),
});
export type Tuning = z.infer<typeof TuningSchema>;

/** The `datapath` section of kura.yaml: the online-backup middlebox of seed 002 (src/datapath). */
export const DatapathConfigSchema = z.object({
  /** Port of the NBD server on 127.0.0.1 (10809 is NBD's registered port). */
  nbdPort: z.number().int().min(0).max(65535).default(10809),
  /** Port of the control API (loopback HTTP) the activities call. */
  controlPort: z.number().int().min(0).max(65535).default(10819),
  /** The site whose volumes are served (default: the first site). */
  site: NameSchema.optional(),
  /** Volumes served, as array/volume (default: the data volume of every VM of the site). */
  volumes: z.array(VolumeRefSchema).optional(),
  /** The host's I/O timeout (iSCSI response or TCP session timeout): the quiesce window must stay below it. */
  ioTimeout: DurationSchema.default(30_000),
  /** Finish when the estimated drain time is below ioTimeout × safetyFactor. */
  safetyFactor: z.number().gt(0).max(1).default(0.5),
  /** The write rates behind the ETA are measured over this recent window, not the lifetime. */
  rateWindow: DurationSchema.default(5_000),
  /** After this many catch-up rounds in which writes outpaced the copy, incoming writes are throttled. */
  throttleAfterRounds: z.number().int().min(0).default(3),
  /** After this many such rounds, writes also go to main storage synchronously (active mode). */
  activeAfterRounds: z.number().int().min(0).default(6),
  /** Delay added to each write while throttled. */
  throttleDelay: DurationSchema.default(5),
  /** Cap on the base copy and catch-up rate in bytes/s (0: as fast as the disks go). */
  copyRate: SizeSchema.default(0),
  /**
   * The control API's token file (owner-only, 0600), written anew at each start; relative to this
   * file. Default: datapath/control.token under Kura's home.
   */
  tokenFile: z.string().min(1).optional(),
  /** TLS of the NBD exports (NBD_OPT_STARTTLS), ADR 034: the server's PEM certificate and key, relative to this file. */
  tls: DatapathTlsSchema.optional(),
  /**
   * When a host write during an online backup is made durable against power loss (docs/adr/046).
   * `on-flush` (NBD's rule): its journal record is written to the file before the ack, which
   * survives a kill of the datapath, and made durable by the host's FLUSH, by FUA for that write,
   * and at the switch back. `every-write`: each record is made durable (fdatasync, shared by the
   * writes that arrive together) before its ack, for hosts that never flush.
   */
  journalSync: z.enum(['on-flush', 'every-write']).default('on-flush'),
});
export type DatapathConfig = z.infer<typeof DatapathConfigSchema>;

export const ConfigSchema = z
  .object({
    version: z.literal(1),
    /**
     * The id of this installation (`kura lab init` generates one): it goes into every task queue and
     * workflow id, so two installations on one Temporal namespace never take each other's work.
     * Without it, the installation is `default`, whose queues and ids are those of before (docs/adr/027).
     */
    installation: InstallationSchema.default(DEFAULT_INSTALLATION),
    /** Where Kura keeps its state (catalog, lab files); relative to this file. */
    home: z.string().default('.kura'),
    /** Restores may only write below these directories; relative to this file. */
    restoreRoots: z.array(z.string().min(1)).default(['restores']),
    temporal: z.object({ address: z.string().optional(), namespace: z.string().optional() }).default({}),
    notify: NotifySchema.default({}),
    tuning: TuningSchema.default(TuningSchema.parse({})),
    datapath: DatapathConfigSchema.default(DatapathConfigSchema.parse({})),
    /** The restart ladder's policy (seed 001): attempts, waits, stability window, images kept, backup time. */
    ladder: LadderConfigSchema.default(LadderConfigSchema.parse({})),
    /** How the lab's simulated VMs behave (restart times). */
    lab: LabTimingSchema.default(LabTimingSchema.parse({})),
    /** The hypervisor driver: the lab (default) or libvirt on real hosts. */
    hypervisor: HypervisorConfigSchema.default({ driver: 'lab' }),
    /** Prometheus endpoints on loopback ports (all off unless set). */
    metrics: MetricsConfigSchema.default(MetricsConfigSchema.parse({})),
    /** How a worker process bounds its memory: V8's heap growth, the SDK's workflow cache (docs/adr/048). */
    worker: WorkerConfigSchema.default(WorkerConfigSchema.parse({})),
    /** How the embedded Temporal dev server bounds its memory: its history cache (docs/adr/052). */
    server: ServerConfigSchema.default(ServerConfigSchema.parse({})),
    /** Payload encryption, hashed search attributes and the UI's codec server (docs/security.md). */
    security: SecurityConfigSchema.default(SecurityConfigSchema.parse({})),
    sites: z.array(SiteSchema).min(1, 'the configuration needs at least one site'),
    /** Async remote copy (seed 003, Fig. 10): groups copied to a second site over the lab WAN (docs/adr/028). */
    remoteCopy: RemoteCopyConfigSchema.default(RemoteCopyConfigSchema.parse({})),
    /** The deduplicated store and its copy in another building (seed 000; docs/adr/032). */
    store: StoreConfigSchema.default(StoreConfigSchema.parse({})),
    /** Target classes with their method, schedule and retention in the store (seed 000). */
    classes: ClassesSchema.default({}),
  })
  .superRefine((cfg, ctx) => {
    const seen = new Map<string, number>();
    cfg.sites.forEach((s, i) => {
      const first = seen.get(s.name);
      if (first !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['sites', i, 'name'],
          message: `site "${s.name}" is defined twice (also sites[${first}])`,
        });
      else seen.set(s.name, i);
    });
    checkVmNamesAcrossSites(cfg.sites, ctx);
    checkDatapathReferences(cfg, ctx);
    checkClassTargets(cfg, ctx);
    if (cfg.security.hashSearchAttributes && cfg.security.keyFile === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['security', 'hashSearchAttributes'],
        message: 'hashing search attributes needs a key: set security.keyFile too',
      });
  });
export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;

type SiteShape = {
  hosts: { name: string; wwn?: string; mounts?: { path: string; volume: string }[] }[];
  vms: { name: string; host: string; softwareVolume: string; dataVolume: string }[];
  arrays: {
    name: string;
    ports: { name: string; wwn: string }[];
    volumes: { id: string }[];
    lunMasks: { volume: string; lun: number; wwns: string[]; port?: string }[];
  }[];
  libraries: { name: string; drives: { id: string }[]; cartridges: { id: string }[] }[];
  switches: { name: string }[];
  servers: { name: string; wwn?: string }[];
  copyDevices: { name: string }[];
  links: [string, string][];
  policies: { name: string; targets: string[] }[];
  hooks?: { target: string }[];
  tenants?: {
    name: string;
    hosts: string[];
    servers: string[];
    ports: string[];
    zones: { name: string; members: string[] }[];
  }[];
};

/** The policy name `kura schedule trigger` and fleet runs take to mean every VM of the site. */
export const ALL_VMS_POLICY = 'all';

/** Checks that every name is unique within the site and every reference points at something. */
function checkSiteReferences(site: SiteShape, ctx: z.RefinementCtx): void {
  const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });
  const names = new Map<string, string>();
  const claim = (name: string, where: (string | number)[]) => {
    const prior = names.get(name);
    if (prior !== undefined) {
      issue(where, `name "${name}" is already used by ${prior}; names must be unique within a site`);
    } else {
      names.set(name, where.join('.'));
    }
  };
  site.hosts.forEach((h, i) => claim(h.name, ['hosts', i, 'name']));
  site.arrays.forEach((a, i) => claim(a.name, ['arrays', i, 'name']));
  site.libraries.forEach((l, i) => {
    claim(l.name, ['libraries', i, 'name']);
    l.drives.forEach((d, j) => claim(d.id, ['libraries', i, 'drives', j, 'id']));
    l.cartridges.forEach((c, j) => claim(c.id, ['libraries', i, 'cartridges', j, 'id']));
  });
  site.switches.forEach((s, i) => claim(s.name, ['switches', i, 'name']));
  site.servers.forEach((s, i) => claim(s.name, ['servers', i, 'name']));
  site.copyDevices.forEach((c, i) => claim(c.name, ['copyDevices', i, 'name']));

  // A WWN names one FC port: two things with one WWN would pass each other's LUN masks.
  const wwns = new Map<string, string>();
  const claimWwn = (wwn: string | undefined, where: (string | number)[]) => {
    if (wwn === undefined) return;
    const prior = wwns.get(wwn.toLowerCase());
    if (prior !== undefined)
      issue(where, `WWN ${wwn} is already used by ${prior}; a WWN names one port, and LUN masks admit by WWN`);
    else wwns.set(wwn.toLowerCase(), formatPath(where));
  };
  site.arrays.forEach((a, i) => a.ports.forEach((p, j) => claimWwn(p.wwn, ['arrays', i, 'ports', j, 'wwn'])));
  site.hosts.forEach((h, i) => claimWwn(h.wwn, ['hosts', i, 'wwn']));
  site.servers.forEach((s, i) => claimWwn(s.wwn, ['servers', i, 'wwn']));
  // LUN masks admit initiators: the hosts and backup servers of the site.
  const initiators = new Set(
    [...site.hosts, ...site.servers].flatMap((x) => (x.wwn === undefined ? [] : [x.wwn.toLowerCase()])),
  );

  const volumes = new Set<string>();
  site.arrays.forEach((a, i) => {
    const ports = new Map<string, number>();
    a.ports.forEach((p, j) => {
      const first = ports.get(p.name);
      if (first !== undefined)
        issue(
          ['arrays', i, 'ports', j, 'name'],
          `port "${p.name}" is defined twice in array "${a.name}" (also ports[${first}])`,
        );
      else ports.set(p.name, j);
    });
    const own = new Set<string>();
    a.volumes.forEach((v, j) => {
      if (own.has(v.id))
        issue(['arrays', i, 'volumes', j, 'id'], `volume "${v.id}" is defined twice in array "${a.name}"`);
      own.add(v.id);
      volumes.add(`${a.name}/${v.id}`);
    });
    const luns = new Map<number, number>();
    a.lunMasks.forEach((m, j) => {
      if (!own.has(m.volume))
        issue(['arrays', i, 'lunMasks', j, 'volume'], `no volume "${m.volume}" in array "${a.name}"`);
      const first = luns.get(m.lun);
      // Several masks may present one volume (to different WWNs), but one LUN presents one volume.
      if (first !== undefined && a.lunMasks[first]?.volume !== m.volume)
        issue(
          ['arrays', i, 'lunMasks', j, 'lun'],
          `LUN ${m.lun} of array ${a.name} already presents volume "${a.lunMasks[first]?.volume}" (lunMasks[${first}])`,
        );
      else if (first === undefined) luns.set(m.lun, j);
      m.wwns.forEach((w, k) => {
        if (!initiators.has(w.toLowerCase()))
          issue(
            ['arrays', i, 'lunMasks', j, 'wwns', k],
            `no host or backup server of this site has WWN ${w}; give that WWN to the host or server the mask is for (its wwn), or take it out of the mask`,
          );
      });
    });
  });

  site.hosts.forEach((h, i) =>
    h.mounts?.forEach((m, j) => {
      if (!volumes.has(m.volume))
        issue(['hosts', i, 'mounts', j, 'volume'], `no volume "${m.volume}" in this site's arrays`);
    }),
  );

  const hosts = new Set(site.hosts.map((h) => h.name));
  const vmNames = new Set<string>();
  /** Which VM each volume already belongs to: a data swap must not take another VM's disk away. */
  const owners = new Map<string, { vm: string; where: string; what: string }>();
  site.vms.forEach((vm, i) => {
    if (vmNames.has(vm.name)) issue(['vms', i, 'name'], `VM "${vm.name}" is defined twice`);
    vmNames.add(vm.name);
    if (!hosts.has(vm.host)) issue(['vms', i, 'host'], `no host "${vm.host}" in this site; add it under hosts`);
    for (const key of ['softwareVolume', 'dataVolume'] as const) {
      if (!volumes.has(vm[key])) issue(['vms', i, key], `no volume "${vm[key]}" in this site's arrays`);
      const owner = owners.get(vm[key]);
      if (owner && owner.vm !== vm.name)
        issue(
          ['vms', i, key],
          `"${vm[key]}" is already ${owner.what} of VM ${owner.vm} (${owner.where}); each VM needs volumes of its own`,
        );
      else if (!owner)
        owners.set(vm[key], {
          vm: vm.name,
          where: `vms[${i}].${key}`,
          what: key === 'dataVolume' ? 'the data volume' : 'the software volume',
        });
    }
    if (vm.softwareVolume === vm.dataVolume)
      issue(['vms', i, 'dataVolume'], 'the data volume must differ from the software volume');
  });

  const linkable = new Set([
    ...site.arrays.map((a) => a.name),
    ...site.switches.map((s) => s.name),
    ...site.servers.map((s) => s.name),
    ...site.libraries.map((l) => l.name),
    ...site.copyDevices.map((c) => c.name),
  ]);
  const cables = new Map<string, number>();
  site.links.forEach((link, i) => {
    link.forEach((end, j) => {
      if (!linkable.has(end))
        issue(['links', i, j], `"${end}" is not an array, switch, backup server, library or copy device of this site`);
    });
    if (link[0] === link[1]) issue(['links', i], 'a link must join two different things');
    // Links are undirected: [a, b] and [b, a] are one cable.
    const key = [...link].sort().join('\u0000');
    const first = cables.get(key);
    if (first !== undefined) {
      const [a, b] = site.links[first] ?? link;
      issue(['links', i], `${a} and ${b} are already linked (links[${first}])`);
    } else cables.set(key, i);
  });

  const policies = new Map<string, number>();
  site.policies.forEach((p, i) => {
    // Each policy names a schedule (kura/<site>/<policy>) and a fleet run: one name, one policy.
    const first = policies.get(p.name);
    if (first !== undefined)
      issue(['policies', i, 'name'], `policy "${p.name}" is defined twice (also policies[${first}])`);
    else policies.set(p.name, i);
    if (p.name === ALL_VMS_POLICY)
      issue(
        ['policies', i, 'name'],
        `"${ALL_VMS_POLICY}" is reserved: it means every VM of the site; choose another policy name (targets: ["*"] protects every VM)`,
      );
    p.targets.forEach((t, j) => {
      if (t === '*' || vmNames.has(t) || volumes.has(t)) return;
      issue(['policies', i, 'targets', j], `"${t}" is neither a VM, an array/volume of this site, nor "*"`);
    });
  });

  const hooked = new Map<string, number>();
  site.hooks?.forEach((h, i) => {
    if (!vmNames.has(h.target) && !volumes.has(h.target))
      issue(['hooks', i, 'target'], `"${h.target}" is neither a VM nor an array/volume of this site`);
    const first = hooked.get(h.target);
    if (first !== undefined)
      issue(['hooks', i, 'target'], `"${h.target}" already has a hook (hooks[${first}]); give a target one hook`);
    else hooked.set(h.target, i);
  });

  checkTenants(site, ctx);
}

/**
 * The companies of a shared SAN: each host, server and array port belongs to one company at most,
 * a LUN on a company's port is masked to that company's initiators only, and a zone holds only its
 * company's WWNs — otherwise one company could reach another's data by configuration alone.
 */
function checkTenants(site: SiteShape, ctx: z.RefinementCtx): void {
  const tenants = site.tenants ?? [];
  if (tenants.length === 0) return;
  const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });
  const hosts = new Map(site.hosts.map((h) => [h.name, h.wwn?.toLowerCase()]));
  const servers = new Map(site.servers.map((s) => [s.name, s.wwn?.toLowerCase()]));
  const ports = new Map(site.arrays.flatMap((a) => a.ports.map((p) => [`${a.name}/${p.name}`, p.wwn.toLowerCase()])));
  const ownerOf = new Map<string, string>();
  const wwnsOf = new Map<string, Set<string>>();
  const names = new Map<string, number>();
  tenants.forEach((t, i) => {
    const first = names.get(t.name);
    if (first !== undefined)
      issue(['tenants', i, 'name'], `company "${t.name}" is defined twice (also tenants[${first}])`);
    else names.set(t.name, i);
    const own = new Set<string>();
    wwnsOf.set(t.name, own);
    const claim = (key: string, what: string, known: Map<string, string | undefined>, field: string, j: number) => {
      if (!known.has(key)) {
        issue(['tenants', i, field, j], `no ${what} "${key}" in this site`);
        return;
      }
      const prior = ownerOf.get(`${what}:${key}`);
      if (prior !== undefined && prior !== t.name)
        issue(
          ['tenants', i, field, j],
          `${what} ${key} already belongs to company ${prior}; a ${what} serves one company`,
        );
      ownerOf.set(`${what}:${key}`, t.name);
      const wwn = known.get(key);
      if (wwn !== undefined) own.add(wwn);
    };
    t.hosts.forEach((h, j) => claim(h, 'host', hosts, 'hosts', j));
    t.servers.forEach((s, j) => claim(s, 'backup server', servers, 'servers', j));
    t.ports.forEach((p, j) => claim(p, 'array port', ports, 'ports', j));
    t.zones.forEach((z, j) =>
      z.members.forEach((m, k) => {
        if (!own.has(m.toLowerCase()))
          issue(
            ['tenants', i, 'zones', j, 'members', k],
            `WWN ${m} is not a host, backup server or array port of company ${t.name}; a company's zone holds only its own ports`,
          );
      }),
    );
  });
  site.arrays.forEach((a, i) => {
    const presented = new Map<string, string>();
    a.lunMasks.forEach((m, j) => {
      if (m.port === undefined) return;
      if (!a.ports.some((p) => p.name === m.port)) {
        issue(['arrays', i, 'lunMasks', j, 'port'], `no port "${m.port}" in array "${a.name}"`);
        return;
      }
      const owner = ownerOf.get(`array port:${a.name}/${m.port}`);
      if (owner === undefined) return;
      const other = presented.get(m.volume);
      if (other !== undefined && other !== owner)
        issue(
          ['arrays', i, 'lunMasks', j, 'port'],
          `volume ${a.name}/${m.volume} is already presented on a port of company ${other}; a LUN belongs to one company`,
        );
      presented.set(m.volume, owner);
      const own = wwnsOf.get(owner) ?? new Set<string>();
      m.wwns.forEach((w, k) => {
        if (!own.has(w.toLowerCase()))
          issue(
            ['arrays', i, 'lunMasks', j, 'wwns', k],
            `WWN ${w} is not an initiator of company ${owner}, which owns port ${a.name}/${m.port}; mask a company's LUN to its own hosts and servers`,
          );
      });
    });
  });
}

/** VM names are unique across sites: each VM's guardian is the workflow `vm/<vm>`, whatever its site. */
function checkVmNamesAcrossSites(sites: { name: string; vms: { name: string }[] }[], ctx: z.RefinementCtx): void {
  const seen = new Map<string, { site: number; vm: number }>();
  sites.forEach((s, i) => {
    s.vms.forEach((vm, j) => {
      const first = seen.get(vm.name);
      if (first === undefined) seen.set(vm.name, { site: i, vm: j });
      else if (first.site !== i)
        ctx.addIssue({
          code: 'custom',
          path: ['sites', i, 'vms', j, 'name'],
          message: `VM "${vm.name}" is also defined in site ${sites[first.site]?.name} (sites[${first.site}].vms[${first.vm}]); VM names must be unique across sites, since each VM's guardian is the workflow vm/<vm>`,
        });
    });
  });
}

/** The datapath serves volumes of one site: that site and those volumes must exist, each named once. */
function checkDatapathReferences(
  cfg: { datapath: DatapathConfig; sites: (SiteShape & { name: string })[] },
  ctx: z.RefinementCtx,
): void {
  const dp = cfg.datapath;
  const issue = (path: (string | number)[], message: string) =>
    ctx.addIssue({ code: 'custom', path: ['datapath', ...path], message });
  if (dp.nbdPort !== 0 && dp.nbdPort === dp.controlPort)
    issue(
      ['controlPort'],
      `port ${dp.controlPort} is already the NBD port (datapath.nbdPort); give the control API another`,
    );

  const site = dp.site === undefined ? cfg.sites[0] : cfg.sites.find((s) => s.name === dp.site);
  if (!site) {
    if (dp.site !== undefined)
      issue(['site'], `no site "${dp.site}" in this configuration; sites: ${cfg.sites.map((s) => s.name).join(', ')}`);
    return;
  }
  const volumes = new Set(site.arrays.flatMap((a) => a.volumes.map((v) => `${a.name}/${v.id}`)));
  const example = site.vms[0]?.dataVolume ?? [...volumes][0];
  const served = new Map<string, number>();
  dp.volumes?.forEach((ref, i) => {
    if (!volumes.has(ref))
      issue(
        ['volumes', i],
        `no volume "${ref}" in site ${site.name} (the datapath's site); name one as array/volume${example ? `, e.g. ${example}` : ''}`,
      );
    const first = served.get(ref);
    if (first !== undefined)
      issue(['volumes', i], `"${ref}" is already served (datapath.volumes[${first}]); name each volume once`);
    else served.set(ref, i);
  });
}

/**
 * Why `zone` is no IANA time zone a schedule can use, or undefined when it is one. ICU (behind
 * Intl) knows the zones and their aliases; what it forgives, the Temporal server does not: a
 * name in the wrong case, or a UTC offset instead of a zone.
 */
function timeZoneProblem(zone: string): string | undefined {
  const refused = `"${zone}" is not an IANA time zone`;
  const examples = 'write one such as UTC, Europe/London or Asia/Tokyo';
  if (/^[+-]/.test(zone)) return `${refused}; ${examples}`;
  let canonical: string;
  try {
    canonical = new Intl.DateTimeFormat('en-US', { timeZone: zone }).resolvedOptions().timeZone;
  } catch {
    return `${refused}; ${examples}`;
  }
  if (canonical !== zone && canonical.toLowerCase() === zone.toLowerCase())
    return `${refused}; did you mean ${canonical}?`;
  return undefined;
}

/** Every class target names a site that exists and a volume of one of its arrays. */
function checkClassTargets(
  cfg: {
    sites: { name: string; arrays: { name: string; volumes: { id: string }[] }[] }[];
    classes: { server?: { targets: ClassTarget[] }; client?: { targets: ClassTarget[] } };
  },
  ctx: z.RefinementCtx,
): void {
  for (const cls of ['server', 'client'] as const) {
    cfg.classes[cls]?.targets.forEach((t, i) => {
      const site = t.site === undefined ? cfg.sites[0] : cfg.sites.find((s) => s.name === t.site);
      const where = ['classes', cls, 'targets', i];
      if (!site) {
        ctx.addIssue({ code: 'custom', path: [...where, 'site'], message: `there is no site "${t.site}"` });
        return;
      }
      const [array, volume] = t.volume.split('/');
      if (!site.arrays.some((a) => a.name === array && a.volumes.some((v) => v.id === volume)))
        ctx.addIssue({
          code: 'custom',
          path: [...where, 'volume'],
          message: `site "${site.name}" has no volume ${t.volume}; name one of its arrays' volumes as array/volume`,
        });
    });
  }
}

type ClassTarget = { name: string; site?: string; volume: string };
