/**
 * The durable record of an array's pairs, snapshots and host attachments, in a small JSON file
 * beside the images: the daemon keeps its jobs and bitmaps in memory only, so after the daemon is
 * killed this record is what the driver converges back to.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { parseWith } from '../../domain/validate';

const CopySchema = z.object({
  copiedBytes: z.number().int().nonnegative(),
  totalBytes: z.number().int().nonnegative(),
});

export const PairRecordSchema = z.object({
  replica: z.string(),
  /**
   * What the driver last asked of the daemon: `mirror` (a full copy, then every write to both),
   * `splitting` (the mirror is being stopped), `split`, `resyncing` (the changed blocks are copied
   * while new writes go to both).
   */
  phase: z.enum(['mirror', 'splitting', 'split', 'resyncing']),
  createdAt: z.string(),
  splitAt: z.string().optional(),
  /** The last copy that ended: the full copy, or a resync. */
  lastCopy: CopySchema.optional(),
  /** Why the pair had to copy everything again (the daemon restarted and took its jobs and bitmaps with it). */
  recovered: z.array(z.string()).default([]),
});
export type PairRecord = z.infer<typeof PairRecordSchema>;

/**
 * Whether the pair is copying in full again because the array lost its mirror (the daemon was
 * killed and restarted, or a resync could not catch up) rather than because it was never in sync:
 * a split asked of it then meets the array's fault, not a bad request, and a later attempt can
 * split it once the copy is back in sync.
 */
export function copyingAfterLoss(pair: PairRecord): boolean {
  return pair.phase === 'mirror' && pair.lastCopy === undefined && pair.recovered.length > 0;
}

export const SnapshotRecordSchema = z.object({
  volume: z.string(),
  name: z.string(),
  createdAt: z.string(),
  sizeBytes: z.number().int().nonnegative(),
});
export type SnapshotRecord = z.infer<typeof SnapshotRecordSchema>;

/**
 * A volume the array created for a restore, beside the inventory's: `restoring` while a restore
 * writes its image (its space taken from the free pool, not yet served), `ready` once the restored
 * image was verified and the array serves it over NBD like any other volume.
 */
export const RestoredVolumeSchema = z.object({
  sizeBytes: z.number().int().positive(),
  phase: z.enum(['restoring', 'ready']),
  /** The restore job that allocated it: only that job writes it, commits it or gives it back. */
  job: z.string(),
  createdAt: z.string(),
});
export type RestoredVolume = z.infer<typeof RestoredVolumeSchema>;

export const HostAttachmentSchema = z.object({ volume: z.string(), pid: z.number().int().positive() });
export type HostAttachment = z.infer<typeof HostAttachmentSchema>;

export const ArrayStateSchema = z.object({
  version: z.literal(1),
  /** By primary volume: one pair per volume. */
  pairs: z.record(z.string(), PairRecordSchema).default({}),
  /** By `volume@name`. */
  snapshots: z.record(z.string(), SnapshotRecordSchema).default({}),
  /** Snapshots dropped because the daemon restarted and lost their copy-before-write job. */
  lostSnapshots: z.array(z.object({ key: z.string(), at: z.string() })).default([]),
  /** Volumes created for restores, by name (never a name of the inventory). */
  restored: z.record(z.string(), RestoredVolumeSchema).default({}),
  /** Host-side FUSE files of volumes, by volume. */
  hosts: z.record(z.string(), HostAttachmentSchema).default({}),
});
export type ArrayState = z.infer<typeof ArrayStateSchema>;

export const snapshotKey = (volume: string, name: string) => `${volume}@${name}`;

/** The array's state; an empty one when the file does not exist yet. */
export async function readArrayState(file: string): Promise<ArrayState> {
  const text = await fs.readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (text === undefined) return ArrayStateSchema.parse({ version: 1 });
  return parseWith(ArrayStateSchema, JSON.parse(text), `qemu-storage-daemon array state ${file}`);
}

/** Replaces the state file atomically (write aside, fsync, rename), so a crash leaves the old or the new. */
export async function writeArrayState(file: string, state: ArrayState): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const fh = await fs.open(tmp, 'w');
  try {
    await fh.writeFile(`${JSON.stringify(state, null, 2)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.rename(tmp, file);
}
