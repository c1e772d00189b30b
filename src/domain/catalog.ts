/**
 * Catalog rows: what was backed up, and where each piece of it lies (seed 004, storage catalog
 * 460, Fig. 9) with its checksum and piece index. A backup split across tapes has several rows.
 */
import { z } from 'zod';
import { StreamSchema } from './pool';

export const BackupStatus = { Running: 'running', Complete: 'complete', Failed: 'failed' } as const;
export type BackupStatus = (typeof BackupStatus)[keyof typeof BackupStatus];

/**
 * The application's time in backup mode around a split or snapshot, as its hook measured it; for
 * PostgreSQL also what pg_backup_stop returned, which a restored copy needs beside its data
 * directory to start. Kept with the image in the catalog and on its cartridges (ADR 023).
 */
export const BackupModeSchema = z.object({
  /** The hook's kind: `script` or `postgres`. */
  hook: z.string().min(1),
  enteredAt: z.string(),
  leftAt: z.string(),
  /** Seconds from entering backup mode to leaving it: the split's span, not the copy's. */
  seconds: z.number().min(0),
  /** How many times backup mode was entered: more than one when a session was lost and the image taken again. */
  rounds: z.number().int().min(1),
  /** The backup_label file pg_backup_stop returned, to be written into a restored data directory. */
  label: z.string().optional(),
  /** The tablespace_map file pg_backup_stop returned (empty when the cluster has no tablespaces). */
  tablespaceMap: z.string().optional(),
  /** The WAL location pg_backup_start returned: recovery of a restored copy starts there. */
  startLsn: z.string().optional(),
  /** The WAL location pg_backup_stop returned: a restored copy needs the WAL up to it. */
  stopLsn: z.string().optional(),
});
export type BackupModeRecord = z.infer<typeof BackupModeSchema>;

export const BackupRecordSchema = z.object({
  backupId: z.string(),
  job: z.string(),
  site: z.string(),
  /** What the user named: a VM, or array/volume. */
  target: z.string(),
  array: z.string(),
  volume: z.string(),
  status: z.enum(['running', 'complete', 'failed']),
  /** ISO times: the job's start and end, and the point in time the data represents. */
  startedAt: z.string(),
  endedAt: z.string().nullable(),
  dataTime: z.string(),
  sizeBytes: z.number().int().min(0),
  /** SHA-256 of the whole image, hex. */
  sha256: z.string().nullable(),
  pieces: z.number().int().min(0),
  error: z.string().nullable(),
  /**
   * The application's backup mode around the image (absent: no hook, or a backup recorded before
   * it was kept here). Written onto the cartridges with the rest of the record.
   */
  backupMode: BackupModeSchema.optional(),
  /**
   * For a tape copy of a backup in the deduplicated store (docs/adr/042): the store backup it was
   * read from, and that backup's whole-volume SHA-256 when the store knew it. Written onto the
   * cartridges with the rest of the record, so a rebuilt catalog keeps the link.
   */
  fromStore: z.object({ backupId: z.string().min(1), sha256: z.string().nullable() }).optional(),
});
export type BackupRecord = z.infer<typeof BackupRecordSchema>;

export const PieceRecordSchema = z.object({
  backupId: z.string(),
  /** Which copy of the backup (one per successful stream); 0 for a single-stream backup. */
  copy: z.number().int().min(0),
  piece: z.number().int().min(0),
  target: z.string(),
  job: z.string(),
  stream: z.number().int().min(0),
  startedAt: z.string(),
  endedAt: z.string(),
  dataTime: z.string(),
  library: z.string(),
  tape: z.string(),
  /** Byte offset of the piece's header on the cartridge. */
  position: z.number().int().min(0),
  /** Byte offset of the piece within the backed-up volume. */
  offset: z.number().int().min(0),
  sizeBytes: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});
export type PieceRecord = z.infer<typeof PieceRecordSchema>;

/**
 * What the header block in front of every piece on tape says, so a cartridge describes itself:
 * the piece's catalog row without where it lies (the position is where the header is).
 */
export const PieceHeaderSchema = PieceRecordSchema.pick({
  backupId: true,
  target: true,
  job: true,
  copy: true,
  piece: true,
  offset: true,
  sizeBytes: true,
  dataTime: true,
});
export type PieceHeader = z.infer<typeof PieceHeaderSchema>;

/**
 * One reserved stream of a backup and what became of it: `complete` (a whole copy, or in failover
 * mode the chunks it carried, reached tape), `failed` (with the reason), `standby` (never needed).
 */
export const StreamRecordSchema = z.object({
  backupId: z.string(),
  // The stream's path as the pool granted it.
  ...StreamSchema.omit({ copyDevice: true }).shape,
  outcome: z.enum(['complete', 'failed', 'standby']),
  /** Chunks of the image this stream holds on its cartridge. */
  pieces: z.number().int().min(0),
  error: z.string().nullable(),
});
export type StreamRecord = z.infer<typeof StreamRecordSchema>;

/**
 * What is written onto a cartridge after a job's data (seed 004 step 1170): the backup's record,
 * its pieces on this cartridge and its streams, so the catalog can be rebuilt from cartridges alone.
 */
export const TapeCatalogEntrySchema = z.object({
  backup: BackupRecordSchema,
  pieces: z.array(PieceRecordSchema),
  streams: z.array(StreamRecordSchema),
});
export type TapeCatalogEntry = z.infer<typeof TapeCatalogEntrySchema>;

/** A new backup as it is first recorded: everything but its outcome. */
export const NewBackupSchema = BackupRecordSchema.omit({
  status: true,
  endedAt: true,
  sha256: true,
  pieces: true,
  error: true,
  backupMode: true,
});
export type NewBackup = z.infer<typeof NewBackupSchema>;

/**
 * The library name under which pieces kept on disk backup storage are catalogued (an online
 * backup's image; seed 004 allows a disk destination): their "tape" is the image's path below
 * Kura's home and their position a byte offset in it.
 */
export const DISK_LIBRARY = 'disk';

/** Size in bytes of the header block recorded on tape in front of every piece. */
export const PIECE_HEADER_BYTES = 512;

/** A backup id names the target and the instant: `<target>@<YYYYMMDDTHHMMSSZ>`. */
export const BackupIdSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._/-]*@\d{8}T\d{6}(\d{3})?Z$/,
    'must look like vm-001@20261122T020000Z (see `kura catalog list`)',
  );

/** Builds a backup id from a target and an ISO time; a `host:/path` target is named `host/path`. */
export function backupIdFor(target: string, isoTime: string): string {
  return `${target.replace(/^([^:/]+):\//, '$1/')}@${compactTime(isoTime)}`;
}

/** `2026-11-22T02:00:00.000Z` → `20261122T020000Z` (milliseconds kept when not zero). */
export function compactTime(isoTime: string): string {
  const d = new Date(isoTime);
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  const ms = d.getUTCMilliseconds();
  return (
    `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}T` +
    `${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}${ms ? pad(ms, 3) : ''}Z`
  );
}
