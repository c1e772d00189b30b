/**
 * Activities of the store's copies to tape (docs/adr/042), run on the `kura-control` queue: which
 * store backups a request names, each one's facts the copy reads it by (its target and volume, its
 * size, its index's digest, its whole-volume SHA-256), and which a class's tape policy says are due.
 * They only read the catalog and the stores, so a retry leaves the same result.
 */
import { z } from 'zod';
import type { Catalog } from '../catalog/store';
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import { BackupIdSchema, type BackupRecord } from '../domain/catalog';
import { ClassNameSchema, type ClassName } from '../domain/classes';
import { InvalidInputError, NotFoundError } from '../domain/errors';
import type { JobTuning, ResolvedTarget } from '../domain/jobs';
import { jobTuning } from '../config/tuning';
import { STORE_LIBRARY, StoreName } from '../domain/store';
import { TO_TAPE_EVERY_MS, type ToTapePolicy } from '../domain/store-tape';
import { parseWith } from '../domain/validate';
import { ChunkStore } from '../store/chunk-store';
import { indexDigest } from '../store/ingest';
import { storeRoots } from '../store/lag';
import { mapFailures } from './failures';

const PlanInput = z.object({
  /** The site; any when omitted (a backup id names its own). */
  site: z.string().min(1).optional(),
  /** A store backup's id, or a target: its newest store backup (a VM: its whole image) at or before `at`. */
  ref: z.string().min(1),
  /** ISO time; now when omitted. */
  at: z.string().datetime({ offset: true }).optional(),
});
const ResolveInput = z.object({ backupId: BackupIdSchema });
const DueInput = z.object({
  className: ClassNameSchema,
  at: z.string().datetime({ offset: true }),
  /** The store backups the class run just took. */
  backupIds: z.array(z.string().min(1)),
});

/** One store backup to copy to tape. */
export interface StoreCopyPart {
  backupId: string;
  target: string;
}

/** What a copy to tape reads a store backup by: the tape backup's target and volume, and the store's facts. */
export interface StoreCopySource {
  resolved: ResolvedTarget;
  /** The digest of the index the catalog recorded (the store piece's checksum). */
  indexDigest: string;
  /** The whole volume's SHA-256, when the store knew it (an incremental's is recorded by a verify). */
  sha256: string | null;
  /** The instant the store backup's data represents: the tape copy's too. */
  dataTime: string;
}

/** Creates the activities of the store's copies to tape. */
export function createStoreTapeActivities(deps: { loaded: LoadedConfig; paths: KuraPaths; catalog: Catalog }) {
  const { loaded, paths, catalog } = deps;
  const roots = storeRoots(paths.home, loaded.config.store);
  const stores = [
    { name: StoreName.Primary, store: new ChunkStore(roots.primary) },
    { name: StoreName.Copy, store: new ChunkStore(roots.copy) },
  ];

  /** A complete store backup by id; a typed error saying what is wrong with any other id. */
  const storeBackupOf = (backupId: string, what: string): BackupRecord => {
    const backup = catalog.backup(backupId);
    if (catalog.storeBackup(backupId) === undefined)
      throw new InvalidInputError(
        `${what} ${backupId} is a backup on tape, not in the deduplicated store; only a store backup is copied to tape — \`kura store list\` shows them`,
      );
    if (backup.status !== 'complete')
      throw new InvalidInputError(
        `${what} ${backupId} is ${backup.status}${backup.error ? ` (${backup.error})` : ''}; only a complete store backup is copied to tape`,
      );
    return backup;
  };

  return {
    /**
     * The store backups a to-tape request names: the one a backup id names, or a target's newest at
     * or before `at` — for a VM with whole images, its image of that instant: software and data
     * volumes and the definition, each its own tape backup (docs/adr/042).
     */
    async planStoreToTape(input: z.input<typeof PlanInput>): Promise<{ site: string; parts: StoreCopyPart[] }> {
      return mapFailures(async () => {
        const r = parseWith(PlanInput, input, 'store to-tape request');
        const at = r.at ?? new Date().toISOString();
        if (BackupIdSchema.safeParse(r.ref).success) {
          const b = storeBackupOf(r.ref, 'backup');
          if (r.site !== undefined && b.site !== r.site)
            throw new InvalidInputError(`backup ${r.ref} is of site ${b.site}, not ${r.site}; leave out --site`);
          return { site: b.site, parts: [{ backupId: b.backupId, target: b.target }] };
        }
        const sites = loaded.config.sites.filter((s) => r.site === undefined || s.name === r.site);
        if (sites.length === 0)
          throw new NotFoundError(
            `no site "${r.site}" in kura.yaml; name one of ${loaded.config.sites.map((s) => s.name).join(', ')}`,
          );
        for (const site of sites) {
          const image = catalog.vmImages(site.name, r.ref).find((i) => i.dataTime <= at);
          if (image) {
            const ids = [image.softwareBackupId, image.dataBackupId, image.definitionBackupId].filter(
              (id): id is string => id !== null,
            );
            return {
              site: site.name,
              parts: ids.map((id) => ({ backupId: id, target: storeBackupOf(id, 'image part').target })),
            };
          }
          const newest = catalog.listStoreBackups({ site: site.name, target: r.ref }).find((b) => b.dataTime <= at);
          if (newest) return { site: site.name, parts: [{ backupId: newest.backupId, target: newest.target }] };
        }
        throw new NotFoundError(
          `no store backup of "${r.ref}" at or before ${at}${r.site ? ` in site ${r.site}` : ''}; name a target with a store backup or a store backup's id (\`kura store list\` shows them)`,
          { ref: r.ref },
        );
      });
    },

    /**
     * What the copy to tape reads a store backup by. Checks, before any device is touched, that a
     * store holds the index the catalog recorded, so a request for a backup whose index is gone
     * changes nothing.
     */
    async resolveStoreCopy(input: z.input<typeof ResolveInput>): Promise<StoreCopySource> {
      return mapFailures(async () => {
        const r = parseWith(ResolveInput, input, 'store copy source');
        const b = storeBackupOf(r.backupId, 'backup');
        const recorded = catalog.piecesOf(b.backupId).find((p) => p.library === STORE_LIBRARY)?.sha256;
        if (recorded === undefined)
          throw new InvalidInputError(
            `store backup ${b.backupId} has no store piece in the catalog; it cannot be read`,
          );
        const problems: string[] = [];
        for (const s of stores) {
          const index = await s.store.readIndex(b.backupId).catch((err: unknown) => {
            problems.push(`${s.name}: ${(err as Error).message}`);
            return undefined;
          });
          if (!index) continue;
          if (indexDigest(index) !== recorded) {
            problems.push(`${s.name}: its index is not the one the catalog recorded`);
            continue;
          }
          return {
            resolved: { site: b.site, target: b.target, array: b.array, volume: b.volume, sizeBytes: index.sizeBytes },
            indexDigest: recorded,
            sha256: b.sha256,
            dataTime: b.dataTime,
          };
        }
        throw new NotFoundError(
          `no store holds the index of ${b.backupId} that the catalog recorded (${problems.join('; ')}); it cannot be copied to tape — \`kura store verify ${b.backupId}\` says what is wrong`,
          { backupId: b.backupId },
        );
      });
    },

    /**
     * A class's tape policy (kura.yaml `classes.<class>.toTape`) for the backups a class run just
     * took: the ones whose target has no tape copy of a store backup younger than the policy's
     * period, and how to copy them. Nothing when the class has no tape policy.
     */
    async storeToTapeDue(
      input: z.input<typeof DueInput>,
    ): Promise<{ policy: ToTapePolicy | null; due: StoreCopyPart[]; tuning: JobTuning }> {
      return mapFailures(async () => {
        const r = parseWith(DueInput, input, 'class to-tape check');
        const policy = loaded.config.classes[r.className as ClassName]?.toTape ?? null;
        const tuning = jobTuning(loaded.config);
        if (!policy) return { policy: null, due: [], tuning };
        const every = TO_TAPE_EVERY_MS[policy.every];
        const since = new Date(Date.parse(r.at) - every + 60_000).toISOString();
        const due: StoreCopyPart[] = [];
        for (const id of r.backupIds) {
          const b = catalog.backup(id);
          const copied = catalog
            .listBackups({ site: b.site, target: b.target, status: 'complete' })
            .some((t) => t.fromStore !== undefined && t.dataTime >= since);
          if (!copied) due.push({ backupId: id, target: b.target });
        }
        return { policy, due, tuning };
      });
    },
  };
}

export type StoreTapeActivities = ReturnType<typeof createStoreTapeActivities>;
