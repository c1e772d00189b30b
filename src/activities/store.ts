/**
 * Activities of the deduplicated store (seed 000; docs/adr/032), run on the `kura-control` queue:
 * a volume backed up into the first store and recorded in the catalog beside tape backups, a store
 * backup read back with fallback to the other store, verify, prune, garbage collection, and the
 * sync of the copy in another building. Each is idempotent and heartbeats its progress.
 */
import { statfsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { Context } from '@temporalio/activity';
import { z } from 'zod';
import type { Catalog } from '../catalog/store';
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import type { PieceRecord } from '../domain/catalog';
import { ChangedFrom, STORE_LIBRARY, StoreName } from '../domain/store';
import {
  ChecksumMismatchError,
  ErrorType,
  ImageInconsistentError,
  InvalidInputError,
  KuraError,
  NoResourcesError,
  NotFoundError,
} from '../domain/errors';
import { backupIdFor } from '../domain/catalog';
import {
  ImageConsistency,
  VmDefinitionSchema,
  definitionVolume,
  imageSnapshotName,
  type ImageConsistency as ImageConsistencyT,
  type VmDefinition,
} from '../domain/vm-image';
import { sha256Hex } from '../datamover/sha256';
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
import type { ArrayFunctions, HypervisorDriver, ImageRef, VolumeImages, VolumeRef } from '../drivers/types';
import { sha256File } from '../datamover/files';
import { newSha256 } from '../datamover/sha256';
import { ChunkStore, writeAtomic, type GcResult } from '../store/chunk-store';
import { indexDigest, ingestFile, type IngestResult } from '../store/ingest';
import { changedChunks } from '../store/changed';
import { readBackup } from '../store/read';
import { storeLag, storeRoots, type StoreLag } from '../store/lag';
import { ClassNameSchema, classVolumes, insideWindow, type ClassVolume } from '../domain/classes';
import { clientBusy } from '../lab/churn';
import { findSite } from '../config/targets';
import { drillHostDir } from '../drivers/lab/drill-host';
import { mapFailures } from './failures';

const BackupInput = z.object({
  site: z.string().min(1),
  target: z.string().min(1),
  array: z.string().min(1),
  volume: z.string().min(1),
  backupId: z.string().min(1),
  job: z.string().min(1),
  dataTime: z.string().min(1),
  /**
   * Read the image from this file instead of the volume: a snapshot of it that the array's engine
   * holds (a whole-VM image reads its two volumes from the snapshots of one instant).
   */
  readPath: z.string().min(1).optional(),
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
  /** The name the VM is recreated under (its own when omitted); only an image with a definition can rename it. */
  name: z.string().min(1).optional(),
  /**
   * `host` is a drill's host of its own (docs/adr/043): the images are read into it and the VM is
   * created there from a definition, never on an inventory host over production's volumes.
   */
  isolated: z.boolean().default(false),
});
const TakeImageInput = z.object({
  site: z.string().min(1),
  vm: z.string().min(1),
  dataTime: z.string().min(1),
  /** The longest the guest may stay frozen; it thaws by itself past it. */
  maxFreezeMs: z.number().int().min(1),
  /** How long the writes in flight get to drain before the freeze gives up. */
  drainTimeoutMs: z.number().int().min(1).default(5_000),
});
const ImagePartSchema = z.object({
  array: z.string().min(1),
  volume: z.string().min(1),
  /** The snapshot's file, or null when the volume itself is read while the guest is frozen. */
  readPath: z.string().min(1).nullable(),
});
const HeldImageInput = z.object({
  site: z.string().min(1),
  vm: z.string().min(1),
  consistency: z.enum(['snapshot', 'frozen']),
  snapshot: z.string().min(1),
  parts: z.object({ software: ImagePartSchema, data: ImagePartSchema }),
  /** When the guest was frozen (ISO): a frozen read's freeze is measured up to the check. */
  frozenAt: z.string().min(1).optional(),
});
const RecordImageInput = z.object({
  site: z.string().min(1),
  vm: z.string().min(1),
  dataTime: z.string().min(1),
  softwareBackupId: z.string().min(1),
  dataBackupId: z.string().min(1),
  consistency: z.enum(['snapshot', 'frozen']),
  frozenMs: z.number().int().min(0),
  definition: VmDefinitionSchema,
});
const DiscardImageInput = z.object({
  site: z.string().min(1),
  vm: z.string().min(1),
  dataTime: z.string().min(1),
  backupIds: z.array(z.string().min(1)),
});

/** A whole-VM image held at one instant: how, where each volume is read from, and the VM's definition. */
export interface HeldVmImage {
  site: string;
  vm: string;
  consistency: ImageConsistencyT;
  snapshot: string;
  parts: { software: z.infer<typeof ImagePartSchema>; data: z.infer<typeof ImagePartSchema> };
  definition: VmDefinition;
  frozenAt: string;
  /** When the guest was thawed (snapshot), or null while it stays frozen for the read. */
  thawedAt: string | null;
  frozenMs: number;
}

/** The array and volume of a definition's volume. */
function pick(v: { array: string; volume: string }): { array: string; volume: string } {
  return { array: v.array, volume: v.volume };
}

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
  /** The arrays' engines, for the snapshots of a whole-VM image; without them the guest stays frozen for the read. */
  arrays?: ArrayFunctions;
}) {
  const { loaded, paths, catalog, images, hypervisor, arrays } = deps;
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
  /**
   * A whole image's definition, read from the store with fallback to the copy and checked against
   * the digest the catalog recorded.
   */
  const readDefinition = async (
    backupId: string,
    sha256: string | null,
    fallbacks: StoreFallback[],
  ): Promise<VmDefinition> => {
    const file = path.join(paths.home, 'store', 'restored', `${encodeURIComponent(backupId)}.json`);
    await mkdir(path.dirname(file), { recursive: true });
    await rm(file, { force: true });
    const read = await readBackup({
      stores: [StoreName.Primary, StoreName.Copy].map((name) => ({ name, store: stores[name] })),
      backupId,
      destination: { path: file, offset: 0 },
    });
    fallbacks.push(...read.fallbacks);
    const bytes = await readFile(file);
    await rm(file, { force: true });
    if (sha256 !== null && sha256Hex(bytes) !== sha256)
      throw new ChecksumMismatchError(
        `the VM definition ${backupId} in the store hashes to ${sha256Hex(bytes)}, not to the ${sha256} the catalog recorded; it was not used`,
      );
    return parseWith(VmDefinitionSchema, JSON.parse(bytes.toString('utf8')) as unknown, `VM definition ${backupId}`);
  };
  /** Deletes a snapshot of each volume (idempotent); returns how many there were. */
  const dropSnapshots = async (refs: VolumeRef[], name: string): Promise<number> => {
    if (!arrays) return 0;
    let n = 0;
    for (const ref of refs) {
      const had = (await arrays.listSnapshots(ref.site, ref.array)).some(
        (x) => x.volume === ref.volume && x.name === name,
      );
      await arrays.deleteSnapshot(ref, name);
      if (had) n += 1;
    }
    return n;
  };

  return {
    /**
     * Backs one volume up into the first store and records it in the catalog as a complete backup
     * whose one piece lies in library `store`. A retry re-reads the volume but writes no chunk twice;
     * a retry after the index was written only completes the catalog row.
     */
    async storeBackupVolume(input: z.input<typeof BackupInput>): Promise<StoreBackupReport> {
      return mapFailures(async () => {
        const r = parseWith(BackupInput, input, 'store backup');
        const ref = { site: r.site, array: r.array, volume: r.volume };
        const { file, sizeBytes } = await images.imageFile(ref, ...(r.readPath === undefined ? [] : [r.readPath]));
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
        // The target's previous backup: what an incremental's changed chunks are counted against.
        const previous = catalog
          .listStoreBackups({ site: r.site, target: r.target })
          .find((b) => b.backupId !== r.backupId && b.dataTime < r.dataTime);
        const before = previous && (await stores.primary.readIndex(previous.backupId).catch(() => undefined));
        // A read from a snapshot is of an instant before a bitmap begun now: writes between the two
        // would be in neither, so such a backup compares digests and leaves the bitmaps as they are.
        const tracking = r.readPath === undefined ? images.changeTracking?.(ref) : undefined;
        let done: IngestResult & { changedFrom: ChangedFrom; changeNote: string };
        if (stores.primary.hasIndex(r.backupId)) {
          // A retry after the index was written: only the catalog row (and the bitmaps' rotation) is left.
          const index = await stores.primary.readIndex(r.backupId);
          done = {
            index,
            newChunks: 0,
            storedBytes: 0,
            readBytes: 0,
            readChunks: 0,
            changedFrom: index.changedFrom ?? (before ? ChangedFrom.Digests : ChangedFrom.Full),
            changeNote: 'the backup was written by an earlier attempt',
          };
        } else {
          // Begun before a byte is read: every write from here on is marked for the next backup.
          const start = tracking && (await tracking.beginTracking(ref, r.target, before?.changeTracking));
          // A bitmap says which chunks changed only against an index cut the same way.
          const comparable = before && before.sizeBytes === sizeBytes && before.chunkSize === cfg.chunkSize;
          const marked = comparable && start?.changed && changedChunks(start.changed, cfg.chunkSize, sizeBytes);
          const changedFrom = marked ? ChangedFrom.Bitmap : before ? ChangedFrom.Digests : ChangedFrom.Full;
          const changeNote = marked
            ? `${marked.size} chunk(s) marked by ${start.reason}`
            : before
              ? `every chunk read and compared by digest with ${before.backupId}${
                  start
                    ? `: ${start.reason}`
                    : r.readPath !== undefined
                      ? ' (read from the image snapshot, not the tracked volume)'
                      : ` (array ${r.array} keeps no dirty bitmap; only a qsd array does)`
                }`
              : 'no earlier backup of the target in the store: every chunk read';
          const ingested = await ingestFile({
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
              changedFrom,
              ...(start ? { changeTracking: start.generation } : {}),
            },
            ...(marked && before ? { previous: { index: before, changed: (c: number) => marked.has(c) } } : {}),
            onProgress: (p) => ctx.heartbeat({ bytes: p.bytes, total: p.total }),
          }).catch((err: unknown) => {
            throw storageFull(err, r.backupId, roots.primary);
          });
          done = { ...ingested, changedFrom, changeNote };
        }
        const { index } = done;
        // The index is durable: generations before the one this backup began are no longer needed.
        if (tracking && index.changeTracking) await tracking.endTracking(ref, r.target, index.changeTracking);
        if (index.sizeBytes !== sizeBytes)
          throw new ChecksumMismatchError(
            `${r.array}/${r.volume} is ${sizeBytes} bytes but ${index.sizeBytes} were backed up; it changed size during the backup — back it up again`,
          );
        const digest = indexDigest(index);
        const changedChunkCount = index.chunks.filter((d, i) => before?.chunks[i] !== d).length;
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
        // The backup's own checksum is the whole volume's where the ingest read all of it; a restore checks it.
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
            changedFrom: done.changedFrom,
            changeNote: done.changeNote,
            readChunks: done.readChunks,
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
          changedChunks: changedChunkCount,
          changedFrom: done.changedFrom,
          changeNote: done.changeNote,
          readChunks: done.readChunks,
          sha256: index.sha256,
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
        // Each chunk was checked against its digest; the digests themselves against the catalog's record.
        const recorded = catalog.piecesOf(r.backupId).find((p) => p.library === STORE_LIBRARY)?.sha256;
        if (recorded && indexDigest(out.index) !== recorded)
          throw new ChecksumMismatchError(
            `the ${out.indexFrom} store's index of ${r.backupId} is not the one the catalog recorded (${indexDigest(out.index)}, not ${recorded}); run \`kura store verify\` and restore from the other store or an earlier backup`,
            { backupId: r.backupId },
          );
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
      /** The whole volume's SHA-256 from the chunks in order; null when a chunk is bad. */
      sha256: string | null;
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
            sha256: null,
          };
        }
        // The whole volume's SHA-256 from the chunks in order: what an incremental's ingest could not compute.
        const whole = newSha256();
        for (let i = 0; i < index.chunks.length; i++) {
          const digest = DigestSchema.parse(index.chunks[i]);
          const raw = await store.get(digest).catch((err: unknown) => {
            if (!(err instanceof KuraError)) throw err;
            bad.push({ chunk: i, digest, reason: err.message });
            return undefined;
          });
          if (raw && bad.length === 0) whole.update(raw);
          ctx.heartbeat({ chunks: i + 1, total: index.chunks.length });
        }
        const sha256 = bad.length === 0 ? whole.digest('hex') : null;
        const known = catalog.storeBackup(r.backupId) ? catalog.backup(r.backupId).sha256 : null;
        if (sha256 && known && sha256 !== known)
          bad.push({
            chunk: -1,
            digest: '',
            reason: `the chunks hash, in order, to ${sha256}, not to the whole-volume SHA-256 ${known} the catalog recorded`,
          });
        else if (sha256 && !known && catalog.storeBackup(r.backupId)) catalog.recordBackupSha256(r.backupId, sha256);
        const good = bad.length === 0;
        if (r.store === StoreName.Primary && catalog.storeBackup(r.backupId))
          catalog.markStoreVerified(r.backupId, {
            good,
            at: new Date().toISOString(),
            ...(good
              ? {}
              : { error: `${bad.length} chunk(s) bad: ${bad.map((b) => `#${b.chunk} ${b.reason}`).join('; ')}` }),
          });
        return { backupId: r.backupId, good, chunks: index.chunks.length, bad, sha256: good ? sha256 : null };
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
            // A whole image is gone with either of its volumes; its definition goes with it.
            for (const img of catalog.forgetVmImagesOf(id))
              if (img.definitionBackupId !== null) await stores.primary.removeIndex(img.definitionBackupId);
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
      /** The name the VM runs under now. */
      name: string;
      /** Where the VM's definition came from: the image, or kura.yaml for an image taken without one. */
      definitionFrom: 'image' | 'kura.yaml';
      note: string | null;
      /** The VM's software and data volume as it was recreated (`<array>/<volume>`). */
      volumes: { software: string; data: string };
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
          const file = path.join(
            r.isolated ? path.join(drillHostDir(paths, r.host), 'images') : path.join(paths.home, 'store', 'restored'),
            r.vm,
            `${encodeURIComponent(b.backupId)}.img`,
          );
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
        const built = { software: refs.software!, data: refs.data! };
        const req = { request: r.request, rung: r.isolated ? 'drill' : 'store-restore', incident: r.request };
        const image = catalog.vmImages(r.site, r.vm, instant)[0];
        const name = r.name ?? r.vm;
        const target = { name, host: r.host, ...(r.isolated ? { isolated: true } : {}) };
        // The one report of both ways a VM comes back; they differ only in where its definition came from.
        const done = (
          definitionFrom: 'image' | 'kura.yaml',
          note: string | null,
          volumes: { software: string; data: string },
        ) => ({
          software: built.software.imageId,
          data: built.data.imageId,
          host: r.host,
          dataTime: instant,
          fallbacks,
          tookMs: Date.now() - t0,
          name,
          definitionFrom,
          note,
          volumes,
        });
        const fromDefinition = async (definition: VmDefinition) => {
          const made = await hypervisor.createFromDefinition!.call(hypervisor, definition, target, built, req);
          return { software: made.softwareVolume, data: made.dataVolume };
        };
        if (image?.definitionBackupId && hypervisor.createFromDefinition) {
          const definition = await readDefinition(image.definitionBackupId, image.definitionSha256, fallbacks);
          return done('image', null, await fromDefinition(definition));
        }
        // An image with a definition reaches here only on a hypervisor driver that cannot recreate from one.
        const why = image?.definitionBackupId
          ? `the hypervisor driver recreates VMs only from ${loaded.file}, not from the definition the image of ${instant} holds`
          : `the image of ${instant} holds no definition of ${r.vm} (taken before images kept one)`;
        if (r.isolated) {
          // A drill host is never an inventory host: the VM is created there from what kura.yaml describes now.
          if (!hypervisor.createFromDefinition || !hypervisor.describeDefinition)
            throw new InvalidInputError(
              `${why}, and the hypervisor driver cannot create a VM on drill host ${r.host} (it has no createFromDefinition); drill ${r.vm} with a driver that has`,
            );
          const definition = await hypervisor.describeDefinition.call(hypervisor, r.site, r.vm);
          return done(
            'kura.yaml',
            `${why}: created from ${r.vm}'s entry in ${loaded.file}`,
            await fromDefinition(definition),
          );
        }
        if (name !== r.vm)
          throw new InvalidInputError(
            `${why}, so ${r.vm} can only be recreated under its own name from ${loaded.file}; leave out the new name${image?.definitionBackupId ? '' : ', or restore a newer image'}`,
          );
        await hypervisor.rebuild(r.site, r.vm, r.host, built, req);
        const entry = findSite(loaded.config, r.site).vms.find((v) => v.name === r.vm);
        return done('kura.yaml', `${why}: recreated from ${r.vm}'s entry in ${loaded.file}`, {
          software: entry?.softwareVolume ?? '',
          data: entry?.dataVolume ?? '',
        });
      });
    },

    /**
     * Holds a VM's whole image at one instant (seed 000): the guest frozen (writes in flight drained,
     * a bounded freeze), the VM's definition read, a snapshot of both volumes taken by the arrays'
     * engines, and the guest thawed — the freeze lasts only as long as the snapshots. When an array
     * cannot hold a snapshot (no room in its free pool), the snapshots taken are deleted and the
     * guest stays frozen, within its bound, for the read. Any other failure thaws the guest and
     * deletes what was taken. A retry starts afresh: snapshots of an earlier attempt may be of
     * another instant than each other, so they are deleted first.
     */
    async takeVmImage(input: z.input<typeof TakeImageInput>): Promise<HeldVmImage> {
      return mapFailures(async () => {
        const r = parseWith(TakeImageInput, input, 'whole-VM image');
        const { freezeGuest, thawGuest, describeDefinition } = hypervisor;
        if (!freezeGuest || !thawGuest || !describeDefinition)
          throw new InvalidInputError(
            `the hypervisor driver of site ${r.site} cannot freeze a guest or describe a VM, so ${r.vm}'s two volumes cannot be taken at one instant; use the lab or add a guest agent to the driver`,
          );
        const definition = await describeDefinition.call(hypervisor, r.site, r.vm);
        const snapshot = imageSnapshotName(r.dataTime);
        const refs = {
          software: { site: r.site, ...pick(definitionVolume(definition, 'software')) },
          data: { site: r.site, ...pick(definitionVolume(definition, 'data')) },
        };
        await dropSnapshots([refs.software, refs.data], snapshot);
        const frozen = await freezeGuest.call(hypervisor, r.site, r.vm, {
          maxFreezeMs: r.maxFreezeMs,
          drainTimeoutMs: Math.min(r.drainTimeoutMs, r.maxFreezeMs),
        });
        const taken: VolumeRef[] = [];
        const readPaths: Partial<Record<'software' | 'data', string>> = {};
        let consistency: ImageConsistencyT = ImageConsistency.Snapshot;
        try {
          for (const part of ['software', 'data'] as const) {
            if (!arrays) {
              consistency = ImageConsistency.Frozen;
              break;
            }
            try {
              readPaths[part] = (await arrays.createSnapshot(refs[part], snapshot)).readPath;
              taken.push(refs[part]);
            } catch (err) {
              if (!(err instanceof NoResourcesError)) throw err;
              consistency = ImageConsistency.Frozen;
              break;
            }
          }
        } catch (err) {
          await dropSnapshots(taken, snapshot);
          await thawGuest.call(hypervisor, r.site, r.vm);
          throw err;
        }
        let thawedAt: string | null = null;
        if (consistency === ImageConsistency.Snapshot) {
          await thawGuest.call(hypervisor, r.site, r.vm);
          thawedAt = new Date().toISOString();
        } else {
          await dropSnapshots(taken, snapshot);
        }
        const part = (p: 'software' | 'data') => ({
          array: refs[p].array,
          volume: refs[p].volume,
          readPath: consistency === ImageConsistency.Snapshot ? (readPaths[p] ?? null) : null,
        });
        return {
          site: r.site,
          vm: r.vm,
          consistency,
          snapshot,
          parts: { software: part('software'), data: part('data') },
          definition,
          frozenAt: frozen.frozenAt,
          thawedAt,
          frozenMs: thawedAt === null ? 0 : Date.parse(thawedAt) - Date.parse(frozen.frozenAt),
        };
      });
    },

    /**
     * Checks, after both volumes were read, that the image still holds its instant: the snapshots are
     * still there, or the guest is still frozen (its bound not passed). ImageInconsistent otherwise.
     */
    async checkVmImageHeld(input: z.input<typeof HeldImageInput>): Promise<{ heldMs: number | null }> {
      return mapFailures(async () => {
        const r = parseWith(HeldImageInput, input, 'whole-VM image check');
        if (r.consistency === ImageConsistency.Frozen) {
          if (!(await hypervisor.guestFrozen?.call(hypervisor, r.site, r.vm)))
            throw new ImageInconsistentError(
              `the guest of ${r.vm} thawed (its freeze ran past its bound) before both volumes were read, so they may be of two instants; the image was not kept — give the array room for snapshots (freePool) or raise maxFreezeMs`,
              { vm: r.vm },
            );
          return { heldMs: r.frozenAt === undefined ? null : Math.max(0, Date.now() - Date.parse(r.frozenAt)) };
        }
        for (const part of ['software', 'data'] as const) {
          const p = r.parts[part];
          const snaps = (await arrays?.listSnapshots(r.site, p.array)) ?? [];
          if (!snaps.some((x) => x.volume === p.volume && x.name === r.snapshot))
            throw new ImageInconsistentError(
              `snapshot ${r.snapshot} of ${r.vm}'s ${part} volume ${p.array}/${p.volume} went before the image was read; the image was not kept — back the VM up again`,
              { vm: r.vm },
            );
        }
        return { heldMs: null };
      });
    },

    /**
     * Releases what holds a VM's image: the guest thawed and the snapshots of both volumes deleted.
     * Idempotent; the workflow runs it whatever happened, so nothing is left held.
     */
    async releaseVmImage(
      input: z.input<typeof HeldImageInput>,
    ): Promise<{ wasFrozen: boolean; snapshotsDeleted: number }> {
      return mapFailures(async () => {
        const r = parseWith(HeldImageInput, input, 'whole-VM image release');
        const wasFrozen = (await hypervisor.thawGuest?.call(hypervisor, r.site, r.vm))?.wasFrozen ?? false;
        const refs = (['software', 'data'] as const).map((p) => ({
          site: r.site,
          array: r.parts[p].array,
          volume: r.parts[p].volume,
        }));
        const snapshotsDeleted = await dropSnapshots(refs, r.snapshot);
        return { wasFrozen, snapshotsDeleted };
      });
    },

    /**
     * Keeps a whole-VM image: the VM's definition as a one-chunk backup in the first store (target
     * `<vm>/definition`, so verify, sync and garbage collection treat it as any backup), and the
     * catalog's row tying it to the two volume backups with the definition's digest. Idempotent.
     */
    async recordVmImage(
      input: z.input<typeof RecordImageInput>,
    ): Promise<{ definitionBackupId: string; definitionSha256: string }> {
      return mapFailures(async () => {
        const r = parseWith(RecordImageInput, input, 'whole-VM image record');
        const bytes = Buffer.from(JSON.stringify(r.definition));
        const digest = sha256Hex(bytes);
        const definitionBackupId = backupIdFor(`${r.vm}/definition`, r.dataTime);
        if (!stores.primary.hasIndex(definitionBackupId)) {
          await stores.primary.put(digest, bytes);
          await stores.primary.writeIndex({
            kind: 'kura-store-index',
            backupId: definitionBackupId,
            target: `${r.vm}/definition`,
            array: '',
            volume: '',
            chunkSize: Math.max(bytes.length, 1),
            sizeBytes: bytes.length,
            sha256: digest,
            dataTime: r.dataTime,
            chunks: [digest],
          });
        }
        catalog.recordVmImage({
          site: r.site,
          vm: r.vm,
          dataTime: r.dataTime,
          softwareBackupId: r.softwareBackupId,
          dataBackupId: r.dataBackupId,
          definitionBackupId,
          definitionSha256: digest,
          consistency: r.consistency,
          frozenMs: r.frozenMs,
          recordedAt: new Date().toISOString(),
        });
        return { definitionBackupId, definitionSha256: digest };
      });
    },

    /**
     * Undoes the volume backups of a whole image that could not be kept at one instant, so no half
     * of it is offered as a backup: the catalog forgets each, then its index goes (its chunks at the
     * next garbage collection). An image already recorded for that instant is left alone. Idempotent.
     */
    async discardVmImageBackups(input: z.input<typeof DiscardImageInput>): Promise<{ discarded: string[] }> {
      return mapFailures(async () => {
        const r = parseWith(DiscardImageInput, input, 'whole-VM image discard');
        if (catalog.vmImages(r.site, r.vm, r.dataTime).length > 0) return { discarded: [] };
        const discarded: string[] = [];
        for (const id of r.backupIds) {
          catalog.forgetStoreBackup(id);
          if (await stores.primary.removeIndex(id)) discarded.push(id);
        }
        return { discarded };
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
