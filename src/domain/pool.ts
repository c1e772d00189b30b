/**
 * The resource pool's tables (seed 004, tables 420–470) and the shapes of reservation requests
 * and grants. Each row has a number, a name, a state, and the job/stream numbers holding it.
 */
import { z } from 'zod';
import { NameSchema } from './names';

export const DeviceState = { Available: 'available', InUse: 'in-use', Unavailable: 'unavailable' } as const;
export type DeviceState = (typeof DeviceState)[keyof typeof DeviceState];

export const DeviceKind = {
  Server: 'server',
  Library: 'library',
  Drive: 'drive',
  Tape: 'tape',
  Switch: 'switch',
  CopyDevice: 'copy-device',
} as const;
export type DeviceKind = (typeof DeviceKind)[keyof typeof DeviceKind];

export const HolderSchema = z.object({ job: z.string(), stream: z.number().int().min(0) });
export type Holder = z.infer<typeof HolderSchema>;

export const DeviceRowSchema = z.object({
  number: z.number().int().min(0),
  name: z.string(),
  kind: z.enum(DeviceKind),
  /** `unavailable` is set by an operator or after a fault, and wins over holders. */
  state: z.enum(DeviceState),
  /** Streams the device can carry at once (drives and tapes: 1). */
  capacity: z.number().int().min(1),
  holders: z.array(HolderSchema),
  /** Why the device is unavailable, when it is. */
  reason: z.string().optional(),
  /** Drives and tapes: the library they belong to. */
  library: z.string().optional(),
  /** Tapes: nominal capacity and the end of recorded data, in bytes. */
  capacityBytes: z.number().int().optional(),
  usedBytes: z.number().int().optional(),
  /** Copy devices: false when the device cannot run segment commands, so never carries a direct stream. */
  segmentCopy: z.boolean().optional(),
});
export type DeviceRow = z.infer<typeof DeviceRowSchema>;

export const PoolTablesSchema = z.object({
  site: z.string(),
  servers: z.array(DeviceRowSchema),
  libraries: z.array(DeviceRowSchema),
  drives: z.array(DeviceRowSchema),
  tapes: z.array(DeviceRowSchema),
  switches: z.array(DeviceRowSchema),
  copyDevices: z.array(DeviceRowSchema),
  /** Cables between named devices, from the inventory. */
  links: z.array(z.tuple([z.string(), z.string()])),
});
export type PoolTables = z.infer<typeof PoolTablesSchema>;

/** One independent copy path: server, library + drive + cartridge, and the switches between. */
export const StreamSchema = z.object({
  stream: z.number().int().min(0),
  server: z.string(),
  library: z.string(),
  drive: z.string(),
  tape: z.string(),
  /** Switches the path crosses, in order from the storage array towards the library. */
  switches: z.array(z.string()),
  copyDevice: z.string().optional(),
});
export type Stream = z.infer<typeof StreamSchema>;

export const ReserveRequestSchema = z.object({
  /** Job number: the reserving workflow's id. Reserving again with the same job returns its grant. */
  job: z.string().min(1),
  /** Number of disjoint streams, all or nothing. */
  streams: z.number().int().min(1).max(8).default(1),
  /**
   * The storage array the data is read from: every stream's path must reach it. Omitted by a job
   * that only reads cartridges into the backup server (a catalog rebuild): its stream's path then
   * runs from the server to the library alone.
   */
  array: NameSchema.optional(),
  /**
   * Only these backup servers may carry the streams (on a SAN shared by companies, the owner's own
   * that the volume's LUN masks admit); unset: any server.
   */
  servers: z.array(NameSchema).optional(),
  /** Bytes each stream writes to its cartridge; cartridges with less room are not chosen. */
  bytes: z.number().int().min(0).default(0),
  /** Restore: the cartridge that must be in the stream (its library follows). */
  tape: z.string().optional(),
  /** Wait up to this long (ms) in the pool's first-come queue instead of failing at once. */
  waitMs: z.number().int().min(0).default(0),
  /**
   * Whether the wait also covers devices marked unavailable, until an operator marks them available
   * again. When false, a request that only such devices stand in the way of fails at once, naming
   * them. Unset: false when a cartridge is named (a restore), true otherwise (a backup).
   */
  waitForUnavailable: z.boolean().optional(),
  /**
   * How many of the streams, from the first, should be direct: each gets a copy device able to move
   * the volume to its drive, where one is free and cabled to both; the others stay LAN-free.
   */
  direct: z.number().int().min(0).max(8).default(0),
});
export type ReserveRequest = z.input<typeof ReserveRequestSchema>;
export type ReserveRequestParsed = z.output<typeof ReserveRequestSchema>;

export const GrantSchema = z.object({ job: z.string(), streams: z.array(StreamSchema) });
export type Grant = z.infer<typeof GrantSchema>;

export const ReleaseRequestSchema = z.object({
  job: z.string().min(1),
  /** End of recorded data per cartridge after the job, so the pool knows the room left. */
  tapeUsage: z.record(z.string(), z.number().int().min(0)).default({}),
});
export type ReleaseRequest = z.input<typeof ReleaseRequestSchema>;

export const MarkRequestSchema = z.object({
  device: z.string().min(1),
  state: z.enum(['available', 'unavailable']),
  reason: z.string().max(500).optional(),
});
export type MarkRequest = z.infer<typeof MarkRequestSchema>;

/** A device marked unavailable, with the reason it was given. */
export const DownDeviceSchema = z.object({ name: z.string(), reason: z.string() });
export type DownDevice = z.infer<typeof DownDeviceSchema>;

/**
 * The details of the NoResources failure of a request that only devices marked unavailable stand
 * in the way of: the devices, and whether any one of them back would do (else all are needed).
 */
export const UnavailableBlockSchema = z.object({
  unavailable: z.array(DownDeviceSchema).min(1),
  anyOne: z.boolean(),
});
export type UnavailableBlock = z.infer<typeof UnavailableBlockSchema>;
