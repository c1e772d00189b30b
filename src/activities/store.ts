/**
 * Activities of the deduplicated store (seed 000; docs/adr/032), run on the `kura-control` queue:
 * a volume backed up into the first store and recorded in the catalog beside tape backups, a store
 * backup read back with fallback to the other store, verify, prune, garbage collection, and the
 * sync of the copy in another building. Each is idempotent and heartbeats its progress.
 */
import { statfsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { Context } from '@temporalio/activity';
import { z } from 'zod';
import type { Catalog } from '../catalog/store';
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import type { PieceRecord } from '../domain/catalog';
import { STORE_LIBRARY, StoreName } from '../domain/store';
import { ChecksumMismatchError, ErrorType, KuraError, NotFoundError } from '../domain/errors';
import {
  DigestSchema,
  RetentionSchema,
  StoreNameSchema,
  selectRetained,
  type StoreBackupReport,
  type StoreFallback,
  type StoreName as StoreNameT,
} from '../domain/store';
import { parseWith } from '../domain/validate';
import type { HypervisorDriver, ImageRef, VolumeImages } from '../drivers/types';
import { sha256File } from '../datamover/files';
import { ChunkStore, writeAtomic, type GcResult } from '../store/chunk-store';
import { indexDigest, ingestFile } from '../store/ingest';
import { readBackup } from '../store/read';
import { storeLag, storeRoots, type StoreLag } from '../store/lag';
import { ClassNameSchema, classVolumes, insideWindow, type ClassVolume } from '../domain/classes';
import { clientBusy } from '../lab/churn';
import { mapFailures } from './failures';

const BackupInput = z.object({
  site: z.string().min(1),
  target: z.string().min(1),
  array: z.string().min(1),
  volume: z.string().min(1),
  backupId: z.string().min(1),
  job: z.string().min(1),
  dataTime: z.string().min(1),
});
const ReadInput = z.object({
  backupId: z.string().min(1),
  /** The store to read first; the other is the fallback. */
  prefer: StoreNameSchema.default('primary'),
  destination: z.object({ path: z.string().min(1), offset: z.number().int().min(0) }),
});
const VerifyInput = z.object({ backupId: z.string().min(1), store: StoreNameSchema.default('primary') });
const PruneInput = z.object({
  site: z.string().min(1),
  target: z.string().min(1),
  retention: RetentionSchema,
  dryRun: z.boolean().default(false),
});
const GcInput = z.object({ store: StoreNameSchema.default('primary'), graceMs: z.number().int().min(0).optional() });
const SyncInput = z.object({ maxLagMs: z.number().int().min(0).optional() });
const ClassPlanInput = z.object({ className: ClassNameSchema, at: z.string().min(1) });
const VmRestoreInput = z.object({
  site: z.string().min(1),
  vm: z.string().min(1),
  host: z.string().min(1),
  /** The instant of the image (its backups' data time); the newest whole image when omitted. */
  dataTime: z.string().min(1).optional(),
  request: z.string().min(1),
});

/**
 * Whether a failed store write ran out of room: ENOSPC, or (Node's recursive mkdir reports the
 * ENOENT of the parent it could not create) an error from a file system with less than a chunk free
 * or no inode left.
 */
function outOfRoom(err: unknown, root: string, chunkSize: number): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC') return true;
  if (code !== 'ENOENT') return false;
  try {
    const fs = statfsSync(root);
    return fs.bavail * fs.bsize < chunkSize || fs.ffree === 0;
  } catch {
    return false;
  }
}

/** Creates the store activities over one configuration's two stores and its catalog. */
export function createStoreActivities(deps: {
  loaded: LoadedConfig;
  paths: KuraPaths;
  catalog: Catalog;
  images: VolumeImages;
  hypervisor: HypervisorDriver;
}) {
  const { loaded, paths, catalog, images, hypervisor } = deps;
  const cfg = loaded.config.store;
  const roots = storeRoots(paths.home, cfg);
  const stores: Record<StoreNameT, ChunkStore> = {
    primary: new ChunkStore(roots.primary),
    copy: new ChunkStore(roots.copy),
  };
  const other = (s: StoreNameT): StoreNameT => (s === StoreName.Primary ? StoreName.Copy : StoreName.Primary);
  /**
   * A write the store's file system had no room for: the backup's catalog row is marked failed (its
   * index was never written, so nothing claims it), and the failure is typed StorageFull, naming the store.
   */
  const storageFull = (err: unknown, backupId: string, root: string): unknown => {
    if (!outOfRoom(err, root, cfg.chunkSize)) return err;
    const message = `the store at ${root} is full (no space left on its file system) while backing up ${backupId}; free space there (prune and collect the store) or grow it, then run the backup again`;
    catalog.failBackup(backupId, `${ErrorType.StorageFull}: ${message}`, new Date().toISOString());
    return new KuraError(ErrorType.StorageFull, message, { cause: err, details: { store: root, backupId } });
  };

  const lag = (maxLagMs: number = cfg.maxLag): Promise<StoreLag> => storeLag(stores.primary, stores.copy, maxLagMs);

  return {
    /**
     * Backs one volume up into the first store and records it in the catalog as a complete backup
     * whose one piece lies in library `store`. A retry re-reads the volume but writes no chunk twice;
     * a retry after the index was written only completes the catalog row.
     */
    async storeBackupVolume(input: z.input<typeof BackupInput>): Promise<StoreBackupReport> {
      return mapFailures(async () => {
        const r = parseWith(BackupInput, input, 'store backup');
        const { file, sizeBytes } = await images.imageFile({ site: r.site, array: r.array, volume: r.volume });
        const startedAt = new Date().toISOString();
        catalog.beginBackup({
          backupId: r.backupId,
          job: r.job,
          site: r.site,
          target: r.target,
          array: r.array,
          volume: r.volume,
          startedAt,
          dataTime: r.dataTime,
          sizeBytes,
        });
        const ctx = Context.current();
        const done = stores.primary.hasIndex(r.backupId)
          ? {
              index: await stores.primary.readIndex(r.backupId),
              newChunks: 0,
              storedBytes: 0,
              readBytes: 0,
            }
          : await ingestFile({
              store: stores.primary,
              file,
              job: r.job,
              index: {
                backupId: r.backupId,
                target: r.target,
                array: r.array,
                volume: r.volume,
                chunkSize: cfg.chunkSize,
                dataTime: r.dataTime,
              },
              onProgress: (p) => ctx.heartbeat({ bytes: p.bytes, total: p.total }),
            }).catch((err: unknown) => {
              throw storageFull(err, r.backupId, roots.primary);
            });
        const { index } = done;
        if (index.sizeBytes !== sizeBytes)
          throw new ChecksumMismatchError(
            `${r.array}/${r.volume} is ${sizeBytes} bytes but ${index.sizeBytes} were backed up; it changed size during the backup — back it up again`,
          );
        const digest = indexDigest(index);
        // An incremental's changed chunks: digests compared with the target's last index.
        const previous = catalog
          .listStoreBackups({ site: r.site, target: r.target })
          .find((b) => b.backupId !== r.backupId && b.dataTime < r.dataTime);
        const before = previous && (await stores.primary.readIndex(previous.backupId).catch(() => undefined));
        const changedChunks = index.chunks.filter((d, i) => before?.chunks[i] !== d).length;
        const endedAt = new Date().toISOString();
        const piece: PieceRecord = {
          backupId: r.backupId,
          copy: 0,
          piece: 0,
          target: r.target,
          job: r.job,
          stream: 0,
          startedAt,
          endedAt,
          dataTime: r.dataTime,
          library: STORE_LIBRARY,
          tape: StoreName.Primary,
          position: 0,
          offset: 0,
          sizeBytes,
          // The piece's checksum is the index's: the restore checks each chunk against its digest.
          sha256: digest,
        };
        catalog.completeStoreBackup(
          r.backupId,
          { endedAt, sha256: index.sha256, pieces: [piece] },
          {
            store: StoreName.Primary,
            chunkSize: index.chunkSize,
            chunks: index.chunks.length,
            newChunks: done.newChunks,
            storedBytes: done.storedBytes,
            readBytes: done.readBytes,
          },
        );
        return {
          backupId: r.backupId,
          workflowId: r.job,
          sizeBytes,
          indexDigest: digest,
          chunks: index.chunks.length,
          newChunks: done.newChunks,
          storedBytes: done.storedBytes,
          readBytes: done.readBytes,
          previousBackupId: previous?.backupId ?? null,
          changedChunks,
        };
      });
    },

    /**
     * Writes a store backup into a restore file, chunk by chunk from the preferred store, each chunk
     * checked; a chunk missing or damaged there is taken from the other store and named in the result.
     */
    async readStoreBackup(
      input: z.input<typeof ReadInput>,
    ): Promise<{ sizeBytes: number; indexFrom: StoreNameT; fallbacks: StoreFallback[] }> {
      return mapFailures(async () => {
        const r = parseWith(ReadInput, input, 'store read');
        const ctx = Context.current();
        await mkdir(path.dirname(r.destination.path), { recursive: true });
        const out = await readBackup({
          stores: [r.prefer, other(r.prefer)].map((name) => ({ name, store: stores[name] })),
          backupId: r.backupId,
          destination: r.destination,
          onProgress: (p) => ctx.heartbeat({ bytes: p.bytes, total: p.total }),
        });
        return { sizeBytes: out.index.sizeBytes, indexFrom: out.indexFrom, fallbacks: out.fallbacks };
      });
    },

    /**
     * Re-hashes every chunk a backup's index names in one store and records the verdict in the
     * catalog: `bad`, naming the chunks, on any missing or damaged one.
     */
    async verifyStoreBackup(input: z.input<typeof VerifyInput>): Promise<{
      backupId: string;
      good: boolean;
      chunks: number;
      bad: { chunk: number; digest: string; reason: string }[];
    }> {
      return mapFailures(async () => {
        const r = parseWith(VerifyInput, input, 'store verify');
        const store = stores[r.store];
        const ctx = Context.current();
        const bad: { chunk: number; digest: string; reason: string }[] = [];
        let index;
        try {
          index = await store.readIndex(r.backupId);
        } catch (err) {
          if (!(err instanceof NotFoundError)) throw err;
          if (r.store === StoreName.Primary)
            catalog.markStoreVerified(r.backupId, { good: false, at: new Date().toISOString(), error: err.message });
          return {
            backupId: r.backupId,
            good: false,
            chunks: 0,
            bad: [{ chunk: -1, digest: '', reason: err.message }],
          };
        }
        for (let i = 0; i < index.chunks.length; i++) {
          const digest = DigestSchema.parse(index.chunks[i]);
          await store.get(digest).catch((err: unknown) => {
            if (!(err instanceof KuraError)) throw err;
            bad.push({ chunk: i, digest, reason: err.message });
          });
          ctx.heartbeat({ chunks: i + 1, total: index.chunks.length });
        }
        const good = bad.length === 0;
        if (r.store === StoreName.Primary && catalog.storeBackup(r.backupId))
          catalog.markStoreVerified(r.backupId, {
            good,
            at: new Date().toISOString(),
            ...(good
              ? {}
              : { error: `${bad.length} chunk(s) bad: ${bad.map((b) => `#${b.chunk} ${b.reason}`).join('; ')}` }),
          });
        return { backupId: r.backupId, good, chunks: index.chunks.length, bad };
      });
    },

    /**
     * Prunes one target's store backups by retention: the catalog forgets a backup before its index
     * is removed, so nothing offers a backup that cannot be read; its chunks go at the next
     * garbage collection. The copy loses the index at its next sync.
     */
    async pruneStore(input: z.input<typeof PruneInput>): Promise<{ kept: string[]; removed: string[] }> {
      return mapFailures(async () => {
        const r = parseWith(PruneInput, input, 'store prune');
        const backups = catalog.listStoreBackups({ site: r.site, target: r.target });
        const keep = selectRetained(backups, r.retention);
        const removed = backups.filter((b) => !keep.has(b.backupId)).map((b) => b.backupId);
        if (!r.dryRun)
          for (const id of removed) {
            catalog.forgetStoreBackup(id);
            await stores.primary.removeIndex(id);
          }
        return { kept: backups.filter((b) => keep.has(b.backupId)).map((b) => b.backupId), removed };
      });
    },

    /** Garbage collection of one store: mark, then sweep with the grace period (see ChunkStore.gc). */
    async gcStore(input: z.input<typeof GcInput>): Promise<GcResult & { store: StoreNameT }> {
      return mapFailures(async () => {
        const r = parseWith(GcInput, input, 'store garbage collection');
        const ctx = Context.current();
        const result = await stores[r.store].gc({
          graceMs: r.graceMs ?? cfg.gcGrace,
          onProgress: (indexes) => ctx.heartbeat({ indexes }),
        });
        return { ...result, store: r.store };
      });
    },

    /**
     * Syncs the copy in another building from the first store: for each backup it lacks, the chunks
     * it lacks are copied as they lie on disk and each is checked against its digest on arrival, then
     * the index is written; indexes pruned from the first store are removed from the copy. Resumable:
     * a retry copies only what is still missing.
     */
    async syncStore(input: z.input<typeof SyncInput>): Promise<{
      indexes: number;
      removedIndexes: number;
      chunks: number;
      bytes: number;
      lag: StoreLag;
    }> {
      return mapFailures(async () => {
        const r = parseWith(SyncInput, input, 'store sync');
        const ctx = Context.current();
        const from = stores.primary;
        const to = stores.copy;
        await to.beginWriter('sync');
        try {
          const have = new Set(await to.listIndexes());
          const wanted = await from.listIndexes();
          let indexes = 0;
          let chunks = 0;
          let bytes = 0;
          for (const id of wanted) {
            if (have.has(id)) continue;
            const index = await from.readIndex(id);
            for (const digest of index.chunks) {
              if (await to.touch(digest)) continue;
              const put = await to.putEncoded(digest, await from.getEncoded(digest));
              if (put.written) {
                chunks += 1;
                bytes += put.storedBytes;
              }
              ctx.heartbeat({ index: id, chunks, bytes });
            }
            await to.writeIndex(index);
            indexes += 1;
          }
          let removedIndexes = 0;
          const keep = new Set(wanted);
          for (const id of have) if (!keep.has(id) && (await to.removeIndex(id))) removedIndexes += 1;
          await writeAtomic(
            path.join(to.root, 'sync.json'),
            Buffer.from(JSON.stringify({ syncedAt: new Date().toISOString(), indexes: wanted.length })),
          );
          return { indexes, removedIndexes, chunks, bytes, lag: await lag(r.maxLagMs) };
        } finally {
          await to.endWriter('sync');
        }
      });
    },

    /**
     * The volumes a class's backup takes now, and those it skips with the reason: a client outside
     * its window, or busy at its medical device. NotFound when kura.yaml has no such class.
     */
    async planClassBackup(
      input: z.input<typeof ClassPlanInput>,
    ): Promise<{ take: ClassVolume[]; skipped: { target: string; reason: string }[] }> {
      return mapFailures(async () => {
        const r = parseWith(ClassPlanInput, input, 'class backup');
        const cls = loaded.config.classes[r.className];
        if (!cls)
          throw new NotFoundError(
            `${loaded.file} has no class "${r.className}" under \`classes\`; add it with its schedule and retention`,
          );
        const volumes = classVolumes(loaded.config, r.className);
        const client = loaded.config.classes.client;
        if (r.className !== 'client' || !client) return { take: volumes, skipped: [] };
        const take: ClassVolume[] = [];
        const skipped: { target: string; reason: string }[] = [];
        for (const v of volumes) {
          const busy = clientBusy(paths, v.site, v.target);
          if (!insideWindow(client.window, r.at, client.timezone))
            skipped.push({
              target: v.target,
              reason: `outside its window ${client.window.from}–${client.window.to} ${client.timezone} (now ${r.at})`,
            });
          else if (busy !== null) skipped.push({ target: v.target, reason: `busy: ${busy}` });
          else take.push(v);
        }
        return { take, skipped };
      });
    },

    /**
     * A VM's whole image back in one step (seed 000): its software and data volumes from the store
     * backups of one instant, read chunk by chunk with fallback to the other store and checked
     * against their digests, then the VM recreated from them on the chosen host and started. The
     * caller waits for it to report healthy. Idempotent: a retry reuses verified image files, and
     * the hypervisor carries out one request once.
     */
    async restoreVmImage(input: z.input<typeof VmRestoreInput>): Promise<{
      software: string;
      data: string;
      host: string;
      dataTime: string;
      fallbacks: StoreFallback[];
      tookMs: number;
    }> {
      return mapFailures(async () => {
        const r = parseWith(VmRestoreInput, input, 'VM image restore');
        const t0 = Date.now();
        const ofPart = (part: 'software' | 'data') =>
          catalog.listStoreBackups({ site: r.site, target: `${r.vm}/${part}` });
        const software = ofPart('software');
        const data = ofPart('data');
        // A whole image is both volumes of one instant.
        const instant = software
          .map((b) => b.dataTime)
          .find((t) => (r.dataTime === undefined || t === r.dataTime) && data.some((d) => d.dataTime === t));
        if (instant === undefined)
          throw new NotFoundError(
            `no whole image of ${r.vm}${r.dataTime ? ` taken at ${r.dataTime}` : ''} in the store (both its software and data volume of one instant); \`kura store list --target ${r.vm}/data\` shows what there is`,
            { vm: r.vm },
          );
        const ctx = Context.current();
        const fallbacks: StoreFallback[] = [];
        const refs: Partial<Record<'software' | 'data', ImageRef>> = {};
        for (const [part, list] of [
          ['software', software],
          ['data', data],
        ] as const) {
          const b = list.find((x) => x.dataTime === instant)!;
          const file = path.join(paths.home, 'store', 'restored', r.vm, `${encodeURIComponent(b.backupId)}.img`);
          await mkdir(path.dirname(file), { recursive: true });
          // A file left by an earlier attempt is read again: only a complete read proves it.
          await rm(file, { force: true });
          const read = await readBackup({
            stores: [StoreName.Primary, StoreName.Copy].map((name) => ({ name, store: stores[name] })),
            backupId: b.backupId,
            destination: { path: file, offset: 0 },
            onProgress: (p) => ctx.heartbeat({ part, bytes: p.bytes, total: p.total }),
          });
          fallbacks.push(...read.fallbacks);
          if (indexDigest(read.index) !== catalog.piecesOf(b.backupId)[0]?.sha256)
            throw new ChecksumMismatchError(
              `the ${part} image of ${r.vm} in the store is not the one the catalog recorded for ${b.backupId}; it was not used`,
            );
          const sha256 = await sha256File(file);
          refs[part] = { imageId: b.backupId, kind: part, file, sizeBytes: b.sizeBytes, sha256 };
        }
        await hypervisor.rebuild(
          r.site,
          r.vm,
          r.host,
          { software: refs.software!, data: refs.data! },
          { request: r.request, rung: 'store-restore', incident: r.request },
        );
        return {
          software: refs.software!.imageId,
          data: refs.data!.imageId,
          host: r.host,
          dataTime: instant,
          fallbacks,
          tookMs: Date.now() - t0,
        };
      });
    },

    /** Each store's size and the copy's lag against the policy. */
    async storeStatus(): Promise<{
      stores: { name: StoreNameT; root: string; chunks: number; bytes: number; indexes: number }[];
      lag: StoreLag;
    }> {
      return mapFailures(async () => ({
        stores: await Promise.all(
          (['primary', 'copy'] as const).map(async (name) => ({
            name,
            root: stores[name].root,
            ...(await stores[name].usage()),
            indexes: (await stores[name].listIndexes()).length,
          })),
        ),
        lag: await lag(),
      }));
    },
  };
}
