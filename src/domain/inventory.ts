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

export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export const NameSchema = z
  .string()
  .regex(NAME_PATTERN, 'must start with a letter or digit and hold only letters, digits, ".", "_" or "-" (at most 63)');

const WwnSchema = z.string().regex(/^([0-9a-f]{2}:){7}[0-9a-f]{2}$/i, 'must be a WWN such as 50:06:0e:80:00:00:00:01');

export const VolumeSchema = z.object({
  id: NameSchema,
  size: SizeSchema.refine((n) => n > 0, 'must be larger than 0'),
});
export type Volume = z.infer<typeof VolumeSchema>;

export const ArraySchema = z.object({
  name: NameSchema,
  ports: z.array(z.object({ name: NameSchema, wwn: WwnSchema })).default([]),
  volumes: z.array(VolumeSchema).default([]),
  /** LUN security: only the listed WWNs may reach the volume through the LUN. */
  lunMasks: z
    .array(z.object({ volume: NameSchema, lun: z.number().int().min(0).max(16383), wwns: z.array(WwnSchema) }))
    .default([]),
});
export type StorageArray = z.infer<typeof ArraySchema>;

export const HostSchema = z.object({ name: NameSchema, wwn: WwnSchema.optional() });

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

export const CopyDeviceSchema = z.object({ name: NameSchema, capacity: z.number().int().min(1).default(1) });

export const PolicySchema = z.object({
  name: NameSchema,
  /** VM names (their data volume is backed up), `array/volume` refs, or `*` for every VM. */
  targets: z.array(z.string().min(1)).min(1, 'a policy needs at least one target'),
  /** Local wall-clock time of the nightly run, HH:MM. */
  nightly: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'must be a time of day as HH:MM, e.g. 02:00'),
  timezone: z.string().default('UTC'),
  /** How many backups of this policy run at once. */
  concurrency: z.number().int().min(1).max(200).default(4),
  /** Streams, mode and chunks of this policy's backups; `tuning` gives the defaults. */
  streams: z.number().int().min(1).max(8).optional(),
  mode: z.enum(['failover', 'parallel']).optional(),
  chunks: z.number().int().min(1).max(1000).optional(),
});
export type Policy = z.infer<typeof PolicySchema>;

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
});
export type DatapathConfig = z.infer<typeof DatapathConfigSchema>;

export const ConfigSchema = z
  .object({
    version: z.literal(1),
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
    sites: z.array(SiteSchema).min(1, 'the configuration needs at least one site'),
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
  });
export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;

type SiteShape = {
  hosts: { name: string }[];
  vms: { name: string; host: string; softwareVolume: string; dataVolume: string }[];
  arrays: { name: string; volumes: { id: string }[]; lunMasks: { volume: string }[] }[];
  libraries: { name: string; drives: { id: string }[]; cartridges: { id: string }[] }[];
  switches: { name: string }[];
  servers: { name: string }[];
  copyDevices: { name: string }[];
  links: [string, string][];
  policies: { targets: string[] }[];
};

/** Checks that every name is unique within the site and every reference points at something. */
function checkSiteReferences(site: SiteShape, ctx: z.RefinementCtx): void {
  const names = new Map<string, string>();
  const claim = (name: string, where: (string | number)[]) => {
    const prior = names.get(name);
    if (prior !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: where,
        message: `name "${name}" is already used by ${prior}; names must be unique within a site`,
      });
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

  const volumes = new Set<string>();
  site.arrays.forEach((a, i) => {
    const own = new Set<string>();
    a.volumes.forEach((v, j) => {
      if (own.has(v.id))
        ctx.addIssue({
          code: 'custom',
          path: ['arrays', i, 'volumes', j, 'id'],
          message: `volume "${v.id}" is defined twice in array "${a.name}"`,
        });
      own.add(v.id);
      volumes.add(`${a.name}/${v.id}`);
    });
    a.lunMasks.forEach((m, j) => {
      if (!own.has(m.volume))
        ctx.addIssue({
          code: 'custom',
          path: ['arrays', i, 'lunMasks', j, 'volume'],
          message: `no volume "${m.volume}" in array "${a.name}"`,
        });
    });
  });

  const hosts = new Set(site.hosts.map((h) => h.name));
  const vmNames = new Set<string>();
  site.vms.forEach((vm, i) => {
    if (vmNames.has(vm.name))
      ctx.addIssue({ code: 'custom', path: ['vms', i, 'name'], message: `VM "${vm.name}" is defined twice` });
    vmNames.add(vm.name);
    if (!hosts.has(vm.host))
      ctx.addIssue({
        code: 'custom',
        path: ['vms', i, 'host'],
        message: `no host "${vm.host}" in this site; add it under hosts`,
      });
    for (const key of ['softwareVolume', 'dataVolume'] as const) {
      if (!volumes.has(vm[key]))
        ctx.addIssue({
          code: 'custom',
          path: ['vms', i, key],
          message: `no volume "${vm[key]}" in this site's arrays`,
        });
    }
    if (vm.softwareVolume === vm.dataVolume)
      ctx.addIssue({
        code: 'custom',
        path: ['vms', i, 'dataVolume'],
        message: 'the data volume must differ from the software volume',
      });
  });

  const linkable = new Set([
    ...site.arrays.map((a) => a.name),
    ...site.switches.map((s) => s.name),
    ...site.servers.map((s) => s.name),
    ...site.libraries.map((l) => l.name),
    ...site.copyDevices.map((c) => c.name),
  ]);
  site.links.forEach((link, i) => {
    link.forEach((end, j) => {
      if (!linkable.has(end))
        ctx.addIssue({
          code: 'custom',
          path: ['links', i, j],
          message: `"${end}" is not an array, switch, backup server, library or copy device of this site`,
        });
    });
    if (link[0] === link[1])
      ctx.addIssue({ code: 'custom', path: ['links', i], message: 'a link must join two different things' });
  });

  site.policies.forEach((p, i) => {
    p.targets.forEach((t, j) => {
      if (t === '*' || vmNames.has(t) || volumes.has(t)) return;
      ctx.addIssue({
        code: 'custom',
        path: ['policies', i, 'targets', j],
        message: `"${t}" is neither a VM, an array/volume of this site, nor "*"`,
      });
    });
  });
}
