/**
 * The deduplicated store of seed 000: the shapes of its indexes, its configuration in kura.yaml and
 * the requests of its workflows. A backup in the store is an index of SHA-256 chunk digests; the
 * chunks themselves are shared by every backup of every target (docs/adr/032).
 */
import { z } from 'zod';
import { DurationSchema, SizeSchema } from './units';

/** The library name under which the catalog records a backup kept in the store (beside `disk` and tape libraries). */
export const STORE_LIBRARY = 'store';

/** The two stores of seed 000: the first, and its copy in another building. */
export const StoreName = { Primary: 'primary', Copy: 'copy' } as const;
export type StoreName = (typeof StoreName)[keyof typeof StoreName];
export const StoreNameSchema = z.enum(['primary', 'copy']);

export const DigestSchema = z.string().regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 digest of 64 hex digits');

/** How a store backup found the chunks that changed since the target's previous one. */
export const ChangedFrom = { Bitmap: 'bitmap', Digests: 'digests', Full: 'full' } as const;
export type ChangedFrom = (typeof ChangedFrom)[keyof typeof ChangedFrom];
export const ChangedFromSchema = z.enum(['bitmap', 'digests', 'full']);

/**
 * One backup in the store: the volume's chunks in order, by digest. The last chunk may be short;
 * `sizeBytes` says where the volume ends. Written after every chunk it names is durable.
 */
export const StoreIndexSchema = z.object({
  kind: z.literal('kura-store-index'),
  backupId: z.string().min(1),
  target: z.string().min(1),
  /** The volume file the backup was read from, as the catalog names it (array/volume). */
  array: z.string(),
  volume: z.string(),
  chunkSize: z.number().int().positive(),
  sizeBytes: z.number().int().min(0),
  /**
   * SHA-256 of the whole volume: computed by an ingest that read every byte in order; null from an
   * incremental that read only the changed chunks (its checksum is `indexDigest`, and a verify
   * records the whole-volume one in the catalog; docs/adr/036).
   */
  sha256: DigestSchema.nullable(),
  /** The point in time the data represents (ISO). */
  dataTime: z.string(),
  chunks: z.array(DigestSchema),
  /**
   * The array's change-tracking generation (a dirty bitmap in its daemon) begun before this backup
   * read a byte: the next backup reads only what it marks. Absent where the array keeps none.
   */
  changeTracking: z.string().min(1).optional(),
  /** How this backup found its changed chunks (absent in indexes written before it was recorded). */
  changedFrom: ChangedFromSchema.optional(),
});
export type StoreIndex = z.infer<typeof StoreIndexSchema>;

/** kura.yaml `store`: where the two stores live, how volumes are cut, and the copy's sync policy. */
export const StoreConfigSchema = z.object({
  /** The first store's directory; relative to Kura's home. */
  primary: z.string().min(1).default('store/primary'),
  /** The second store, the copy in another building; relative to Kura's home. */
  copy: z.string().min(1).default('store/copy'),
  /** Fixed chunk size (block images, as Proxmox Backup Server cuts them). */
  chunkSize: SizeSchema.refine((n) => n >= 4096 && n <= 64 * 1024 * 1024, 'must be between 4KiB and 64MiB').default(
    4 * 1024 * 1024,
  ),
  /** A chunk not referenced by any index is deleted only once it is older than this (garbage collection). */
  gcGrace: DurationSchema.default(24 * 3_600_000 + 5 * 60_000),
  /** The copy is synced this often (its own Temporal Schedule). */
  syncEvery: DurationSchema.default(3_600_000),
  /** The copy's lag past which `kura store status` and the sync raise an alert. */
  maxLag: DurationSchema.default(6 * 3_600_000),
});
export type StoreConfig = z.infer<typeof StoreConfigSchema>;

/** Retention of a target's store backups: a backup is kept when any rule keeps it. */
export const RetentionSchema = z
  .object({
    keepLast: z.number().int().min(0).default(0),
    keepDaily: z.number().int().min(0).default(0),
    keepWeekly: z.number().int().min(0).default(0),
    keepMonthly: z.number().int().min(0).default(0),
  })
  .refine(
    (r) => r.keepLast + r.keepDaily + r.keepWeekly + r.keepMonthly > 0,
    'keeps nothing: set at least one of keepLast, keepDaily, keepWeekly, keepMonthly',
  );
export type Retention = z.infer<typeof RetentionSchema>;

/** A backup of one volume into the store (workflow `storeBackup`). */
export const StoreBackupRequestSchema = z.object({
  site: z.string().min(1),
  /** What the catalog names: a VM, a server, a client, or array/volume. */
  target: z.string().min(1),
  array: z.string().min(1),
  volume: z.string().min(1),
  /** Data time of the backup (ISO); the workflow's start time when omitted. */
  dataTime: z.string().optional(),
  /** A worker lost mid-backup is noticed after this long without a heartbeat, and the backup retried. */
  heartbeatMs: z.number().int().min(1000).default(60_000),
});
export type StoreBackupRequest = z.infer<typeof StoreBackupRequestSchema>;

/** What a store backup did: how much it read, and how much the store grew by. */
export const StoreBackupReportSchema = z.object({
  backupId: z.string(),
  workflowId: z.string(),
  sizeBytes: z.number().int().min(0),
  /** SHA-256 over the backup's chunk digests (`indexDigest`): what the catalog's piece records. */
  indexDigest: DigestSchema,
  chunks: z.number().int().min(0),
  /** Chunks the store did not hold yet, and the bytes they took on disk (after compression). */
  newChunks: z.number().int().min(0),
  storedBytes: z.number().int().min(0),
  /** Bytes read from the volume (less than sizeBytes when a dirty bitmap said what changed). */
  readBytes: z.number().int().min(0),
  /** The target's previous backup in the store, and how many chunks differ from its index (all, without one). */
  previousBackupId: z.string().nullable(),
  changedChunks: z.number().int().min(0),
  /**
   * How the changed chunks were found: `bitmap` — the array's dirty bitmap named them and only they
   * were read; `digests` — every chunk was read and compared by digest; `full` — no earlier backup.
   */
  changedFrom: ChangedFromSchema,
  /** Why, in words: which bitmap, or why there was none (a daemon restart loses it). */
  changeNote: z.string(),
  /** Chunks read from the volume and hashed (0 when a retry found the backup already written). */
  readChunks: z.number().int().min(0),
  /** SHA-256 of the whole volume where the backup read all of it; null for a bitmap incremental. */
  sha256: DigestSchema.nullable(),
});
export type StoreBackupReport = z.infer<typeof StoreBackupReportSchema>;

/** A chunk a restore could not take from the store it chose, and where it took it from instead. */
export const StoreFallbackSchema = z.object({
  chunk: z.number().int().min(0),
  digest: DigestSchema,
  from: StoreNameSchema,
  reason: z.string(),
});
export type StoreFallback = z.infer<typeof StoreFallbackSchema>;

/** The catalog's row of a backup kept in the store, beside its backup record. */
export const StoreBackupRecordSchema = z.object({
  backupId: z.string(),
  store: StoreNameSchema,
  chunkSize: z.number().int().positive(),
  chunks: z.number().int().min(0),
  newChunks: z.number().int().min(0),
  storedBytes: z.number().int().min(0),
  readBytes: z.number().int().min(0),
  verifyStatus: z.enum(['unverified', 'good', 'bad']),
  verifiedAt: z.string().nullable(),
  verifyError: z.string().nullable(),
  /** How the backup found its changed chunks, why in words, and the chunks it read (null: recorded before they were kept). */
  changedFrom: ChangedFromSchema.nullable(),
  changeNote: z.string().nullable(),
  readChunks: z.number().int().min(0).nullable(),
});
export type StoreBackupRecord = z.infer<typeof StoreBackupRecordSchema>;

/**
 * Which backups a retention keeps, newest first in `backups`: the newest `keepLast`, and the newest
 * of each of the newest `keepDaily` days, `keepWeekly` ISO weeks and `keepMonthly` months (UTC), as
 * Proxmox Backup Server's prune does. Pure, so a workflow can show it before anything is removed.
 */
export function selectRetained(backups: { backupId: string; dataTime: string }[], r: Retention): Set<string> {
  const sorted = [...backups].sort((a, b) => (a.dataTime < b.dataTime ? 1 : a.dataTime > b.dataTime ? -1 : 0));
  const keep = new Set<string>();
  sorted.slice(0, r.keepLast).forEach((b) => keep.add(b.backupId));
  const byPeriod = (n: number, period: (d: Date) => string) => {
    const seen = new Set<string>();
    for (const b of sorted) {
      if (seen.size >= n) break;
      const p = period(new Date(b.dataTime));
      if (seen.has(p)) continue;
      seen.add(p);
      keep.add(b.backupId);
    }
  };
  byPeriod(r.keepDaily, (d) => d.toISOString().slice(0, 10));
  byPeriod(r.keepWeekly, isoWeek);
  byPeriod(r.keepMonthly, (d) => d.toISOString().slice(0, 7));
  return keep;
}

/** `2026-W48`: the ISO 8601 week of a UTC date. */
function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day);
  const yearStart = Date.UTC(t.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((t.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${t.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}
