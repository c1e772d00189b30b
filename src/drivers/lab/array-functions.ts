/**
 * The lab arrays' function software (seed 003, Figs. 5a and 5b) over plain files: a pair's replica
 * is a file allocated from the array's free pool and filled by a background copy in real bytes; a
 * split freezes it; a resync copies only the chunks whose digest changed; a snapshot is a file
 * holding the volume's image of its instant. Every pair's progress lives in the lab state, so a
 * crashed worker's successor carries on where the copy stood.
 *
 * Two honest simplifications, both invisible from outside the array:
 * - The lab has no write interception, so "every host write reaches both volumes" of an in-sync
 *   pair is kept by a catch-up pass at the split instant: every chunk whose digest differs from
 *   the replica's is copied before the split returns. The replica then holds the split-time image,
 *   which is all a split promises.
 * - The background copy is advanced whenever the pair is looked at (status, split, list), by as
 *   many bytes as the array's `copyRate` allows since the copy began. Nothing runs between looks,
 *   so no thread is lost with a crashed worker; the outcome is the same as a copy that never stopped.
 *
 * A snapshot is `cp --reflink=auto` of the volume: a copy-on-write clone where the file system
 * offers one (XFS, Btrfs), else a full copy taken at the instant. Real copy-before-write over plain
 * files would need the host's writes, which the lab does not see (the qsd engine does it for real).
 */
import { execFile } from 'node:child_process';
import { chmod, mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { LoadedConfig } from '../../config/load';
import type { KuraPaths } from '../../config/paths';
import { DeviceFaultError, InvalidInputError, NoResourcesError, NotFoundError } from '../../domain/errors';
import type { StorageArray } from '../../domain/inventory';
import { newSha256 } from '../../datamover/sha256';
import { sizeOf } from '../../lab/files';
import type { LabPair, LabSnapshot, LabState } from '../../lab/state';
import type { ArrayFunctions, PairInfo, SnapshotInfo, VolumeRef } from '../types';
import { findSite, labVolumeFile } from './storage';

const run = promisify(execFile);

/** The unit of the background copy, of the digests and of a resync. */
export const PAIR_CHUNK_BYTES = 1024 * 1024;

/** `<lab>/<site>/arrays/<array>/replicas/<volume>.replica` */
export function labReplicaPath(paths: KuraPaths, site: string, array: string, volume: string): string {
  return path.join(paths.lab, site, 'arrays', array, 'replicas', `${volume}.replica`);
}

/** `<lab>/<site>/arrays/<array>/snapshots/<volume>@<name>.snap` */
export function labSnapshotPath(paths: KuraPaths, site: string, array: string, volume: string, name: string): string {
  return path.join(paths.lab, site, 'arrays', array, 'snapshots', `${volume}@${name}.snap`);
}

const SNAPSHOT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** ArrayFunctions over the lab's volume files and lab state. */
export class LabArrayFunctions implements ArrayFunctions {
  /** One advance of a pair at a time in this process; other processes only ever repeat a chunk. */
  private readonly busy = new Map<string, Promise<unknown>>();

  constructor(
    private readonly loaded: LoadedConfig,
    private readonly paths: KuraPaths,
    private readonly state: LabState,
  ) {}

  async createPair(ref: VolumeRef): Promise<PairInfo> {
    return this.serial(ref, async () => {
      const { sizeBytes } = await labVolumeFile(this.loaded, this.paths, ref.site, ref.array, ref.volume);
      const existing = this.state.pair(ref.site, ref.array, ref.volume);
      if (existing) return this.info(await this.advance(existing));
      this.reserveFromPool(ref, sizeBytes, `a replica of ${ref.array}/${ref.volume}`);
      const replica = labReplicaPath(this.paths, ref.site, ref.array, ref.volume);
      await mkdir(path.dirname(replica), { recursive: true });
      const fh = await open(replica, 'w', 0o644);
      try {
        await fh.truncate(sizeBytes);
      } finally {
        await fh.close();
      }
      const chunks = Math.ceil(sizeBytes / PAIR_CHUNK_BYTES);
      const pair: LabPair = {
        site: ref.site,
        array: ref.array,
        volume: ref.volume,
        replica: path.basename(replica),
        state: 'copying',
        sizeBytes,
        copiedBytes: 0,
        totalBytes: sizeBytes,
        phaseStartedAt: new Date().toISOString(),
        splitAt: null,
        todo: Array.from({ length: chunks }, (_, i) => i),
        digests: Array.from({ length: chunks }, () => ''),
      };
      this.state.putPair(pair);
      this.state.recordEvent(ref.array, 'pair-created', { ...ref, sizeBytes });
      return this.info(await this.advance(pair));
    });
  }

  async pairStatus(ref: VolumeRef): Promise<PairInfo> {
    return this.serial(ref, async () => this.info(await this.advance(this.requirePair(ref))));
  }

  async splitPair(ref: VolumeRef): Promise<PairInfo> {
    return this.serial(ref, async () => {
      const pair = await this.advance(this.requirePair(ref));
      if (pair.state === 'split') return this.info(pair);
      if (pair.state !== 'in-sync') {
        throw new InvalidInputError(
          `the pair of ${ref.array}/${ref.volume} is ${pair.state} (${pair.copiedBytes} of ${pair.totalBytes} bytes); only an in-sync pair can be split — wait until it is in sync`,
          [],
        );
      }
      // The catch-up pass that stands in for mirrored writes: the replica equals the primary now.
      const changed = await this.changedChunks(pair);
      const caught = await this.copyChunks(pair, changed);
      const file = this.replicaFile(pair);
      await chmod(file, 0o444);
      const split: LabPair = { ...caught, state: 'split', splitAt: new Date().toISOString() };
      this.state.putPair(split);
      this.state.recordEvent(ref.array, 'pair-split', { ...ref, caughtUpChunks: changed.length });
      return this.info(split);
    });
  }

  async resyncPair(ref: VolumeRef): Promise<PairInfo> {
    return this.serial(ref, async () => {
      const pair = await this.advance(this.requirePair(ref));
      if (pair.state !== 'split') return this.info(pair);
      await chmod(this.replicaFile(pair), 0o644);
      const todo = await this.changedChunks(pair);
      const resync: LabPair = {
        ...pair,
        state: todo.length === 0 ? 'in-sync' : 'resyncing',
        splitAt: null,
        copiedBytes: 0,
        totalBytes: todo.reduce((n, c) => n + this.chunkLength(pair, c), 0),
        phaseStartedAt: new Date().toISOString(),
        todo,
      };
      this.state.putPair(resync);
      this.state.recordEvent(ref.array, 'pair-resync', { ...ref, changedChunks: todo.length });
      return this.info(await this.advance(resync));
    });
  }

  async deletePair(ref: VolumeRef): Promise<void> {
    return this.serial(ref, async () => {
      findSite(this.loaded, ref.site);
      await rm(labReplicaPath(this.paths, ref.site, ref.array, ref.volume), { force: true });
      if (this.state.deletePair(ref.site, ref.array, ref.volume))
        this.state.recordEvent(ref.array, 'pair-deleted', { ...ref });
    });
  }

  async createSnapshot(ref: VolumeRef, name: string): Promise<SnapshotInfo> {
    if (!SNAPSHOT_NAME.test(name))
      throw new InvalidInputError(
        `snapshot name "${name}" must start with a letter or digit and hold only letters, digits, ".", "_" or "-"`,
      );
    return this.serial(ref, async () => {
      const { file: primary, sizeBytes } = await labVolumeFile(
        this.loaded,
        this.paths,
        ref.site,
        ref.array,
        ref.volume,
      );
      const existing = this.state.snapshot(ref.site, ref.array, ref.volume, name);
      if (existing && (await sizeOf(existing.file)) === existing.sizeBytes) return this.snapshotInfo(existing);
      if (!existing) this.reserveFromPool(ref, sizeBytes, `snapshot ${name} of ${ref.array}/${ref.volume}`);
      const file = labSnapshotPath(this.paths, ref.site, ref.array, ref.volume, name);
      await mkdir(path.dirname(file), { recursive: true });
      const partial = `${file}.partial`;
      const createdAt = new Date().toISOString();
      try {
        await run('cp', ['--reflink=auto', '--', primary, partial]);
      } catch (err) {
        await rm(partial, { force: true });
        throw new DeviceFaultError(
          ref.array,
          `array ${ref.array} could not take snapshot ${name}: ${String(err)}`,
          err,
        );
      }
      await chmod(partial, 0o444);
      await rename(partial, file);
      const snap: LabSnapshot = { ...ref, name, createdAt, sizeBytes, file };
      this.state.putSnapshot(snap);
      this.state.recordEvent(ref.array, 'snapshot-created', { ...ref, name });
      return this.snapshotInfo(snap);
    });
  }

  async deleteSnapshot(ref: VolumeRef, name: string): Promise<void> {
    return this.serial(ref, async () => {
      findSite(this.loaded, ref.site);
      const snap = this.state.snapshot(ref.site, ref.array, ref.volume, name);
      await rm(snap?.file ?? labSnapshotPath(this.paths, ref.site, ref.array, ref.volume, name), { force: true });
      if (this.state.deleteSnapshot(ref.site, ref.array, ref.volume, name))
        this.state.recordEvent(ref.array, 'snapshot-deleted', { ...ref, name });
    });
  }

  async listPairs(site: string, array: string): Promise<PairInfo[]> {
    this.findArray(site, array);
    const out: PairInfo[] = [];
    for (const p of this.state.pairs(site, array)) out.push(await this.pairStatus(p));
    return out;
  }

  async listSnapshots(site: string, array: string): Promise<SnapshotInfo[]> {
    this.findArray(site, array);
    return this.state.snapshots(site, array).map((s) => this.snapshotInfo(s));
  }

  private findArray(site: string, array: string): StorageArray {
    const a = findSite(this.loaded, site).arrays.find((x) => x.name === array);
    if (!a) throw new NotFoundError(`no array ${array} in site ${site}`, { site, array });
    return a;
  }

  private requirePair(ref: VolumeRef): LabPair {
    const pair = this.state.pair(ref.site, ref.array, ref.volume);
    if (!pair) {
      this.findArray(ref.site, ref.array);
      throw new NotFoundError(
        `volume ${ref.array}/${ref.volume} of site ${ref.site} has no pair; pair it first (a replica-refresh creates one)`,
        { ...ref },
      );
    }
    return pair;
  }

  /** Refuses (NoResources) when the free pool has no room or no free replica left for `bytes` more. */
  private reserveFromPool(ref: VolumeRef, bytes: number, what: string): void {
    const pool = this.findArray(ref.site, ref.array).freePool;
    if (!pool)
      throw new NoResourcesError(
        `array ${ref.array} has no free pool, so it cannot hold ${what}; give it freePool (size, replicas) in ${this.loaded.file}`,
        { ...ref },
      );
    const pairs = this.state.pairs(ref.site, ref.array);
    const snaps = this.state.snapshots(ref.site, ref.array);
    const used = pairs.reduce((n, p) => n + p.sizeBytes, 0) + snaps.reduce((n, s) => n + s.sizeBytes, 0);
    const count = pairs.length + snaps.length;
    if (count + 1 > pool.replicas || used + bytes > pool.size)
      throw new NoResourcesError(
        `the free pool of array ${ref.array} cannot hold ${what} (${bytes} bytes): ${count} of ${pool.replicas} replicas and ${used} of ${pool.size} bytes are in use; delete a pair or snapshot, or enlarge freePool`,
        { ...ref, used, size: pool.size, count, replicas: pool.replicas },
      );
  }

  /**
   * Moves the background copy on by what the array's copy rate allows since the copy began, chunk
   * by chunk, recording progress after each so a crash repeats at most one chunk.
   */
  private async advance(pair: LabPair): Promise<LabPair> {
    if (pair.state !== 'copying' && pair.state !== 'resyncing') return pair;
    const rate = this.findArray(pair.site, pair.array).freePool?.copyRate ?? 0;
    const elapsed = Math.max(0, Date.now() - Date.parse(pair.phaseStartedAt));
    const allowed = rate > 0 ? Math.min(pair.totalBytes, Math.floor((rate * elapsed) / 1000)) : pair.totalBytes;
    let cur = pair;
    const src = await this.openPrimary(pair, 'r');
    const dst = await open(this.replicaFile(pair), 'r+');
    try {
      while (cur.todo.length > 0) {
        const chunk = cur.todo[0] as number;
        const length = this.chunkLength(cur, chunk);
        if (cur.copiedBytes + length > allowed) break;
        const digest = await copyChunk(src, dst, chunk * PAIR_CHUNK_BYTES, length);
        await dst.datasync();
        const digests = [...cur.digests];
        digests[chunk] = digest;
        cur = { ...cur, todo: cur.todo.slice(1), copiedBytes: cur.copiedBytes + length, digests };
        if (cur.todo.length === 0) cur = { ...cur, state: 'in-sync' };
        this.state.putPair(cur);
      }
    } finally {
      await src.close();
      await dst.close();
    }
    if (cur.state === 'in-sync')
      this.state.recordEvent(pair.array, 'pair-in-sync', { site: pair.site, volume: pair.volume });
    return cur;
  }

  /** The chunks whose primary bytes differ from what the replica holds (by digest). */
  private async changedChunks(pair: LabPair): Promise<number[]> {
    const src = await this.openPrimary(pair, 'r');
    try {
      const out: number[] = [];
      const buf = Buffer.alloc(PAIR_CHUNK_BYTES);
      for (let c = 0; c * PAIR_CHUNK_BYTES < pair.sizeBytes; c++) {
        const length = this.chunkLength(pair, c);
        const { bytesRead } = await src.read(buf, 0, length, c * PAIR_CHUNK_BYTES);
        const digest = newSha256().update(buf.subarray(0, bytesRead)).digest('hex');
        if (digest !== pair.digests[c]) out.push(c);
      }
      return out;
    } finally {
      await src.close();
    }
  }

  /** Copies the given chunks at once (the split's catch-up) and returns the pair with their digests. */
  private async copyChunks(pair: LabPair, chunks: number[]): Promise<LabPair> {
    if (chunks.length === 0) return pair;
    const src = await this.openPrimary(pair, 'r');
    const dst = await open(this.replicaFile(pair), 'r+');
    try {
      const digests = [...pair.digests];
      for (const c of chunks) digests[c] = await copyChunk(src, dst, c * PAIR_CHUNK_BYTES, this.chunkLength(pair, c));
      await dst.datasync();
      return { ...pair, digests };
    } finally {
      await src.close();
      await dst.close();
    }
  }

  private async openPrimary(pair: LabPair, flags: string): Promise<FileHandle> {
    const { file } = await labVolumeFile(this.loaded, this.paths, pair.site, pair.array, pair.volume);
    return open(file, flags);
  }

  private chunkLength(pair: LabPair, chunk: number): number {
    return Math.min(PAIR_CHUNK_BYTES, pair.sizeBytes - chunk * PAIR_CHUNK_BYTES);
  }

  private replicaFile(pair: LabPair): string {
    return labReplicaPath(this.paths, pair.site, pair.array, pair.volume);
  }

  private info(p: LabPair): PairInfo {
    const out: PairInfo = {
      site: p.site,
      array: p.array,
      volume: p.volume,
      replica: p.replica,
      state: p.state,
      copiedBytes: p.copiedBytes,
      totalBytes: p.totalBytes,
      readPath: this.replicaFile(p),
    };
    if (p.splitAt !== null) out.splitAt = p.splitAt;
    return out;
  }

  private snapshotInfo(s: LabSnapshot): SnapshotInfo {
    return {
      site: s.site,
      array: s.array,
      volume: s.volume,
      name: s.name,
      createdAt: s.createdAt,
      sizeBytes: s.sizeBytes,
      readPath: s.file,
    };
  }

  /** Runs calls on one volume one after another within this process. */
  private async serial<T>(ref: VolumeRef, work: () => Promise<T>): Promise<T> {
    const key = `${ref.site}/${ref.array}/${ref.volume}`;
    const prev = this.busy.get(key) ?? Promise.resolve();
    const next = prev.then(work, work);
    const settled = next.catch(() => undefined);
    this.busy.set(key, settled);
    try {
      return await next;
    } finally {
      if (this.busy.get(key) === settled) this.busy.delete(key);
    }
  }
}

/** Copies one chunk and returns the SHA-256 of its bytes. */
async function copyChunk(src: FileHandle, dst: FileHandle, offset: number, length: number): Promise<string> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await src.read(buf, 0, length, offset);
  if (bytesRead !== length) throw new DeviceFaultError('array', `short read at ${offset}: ${bytesRead} of ${length}`);
  await dst.write(buf, 0, length, offset);
  return newSha256().update(buf).digest('hex');
}
