/**
 * One array's function software on its qemu-storage-daemon: volumes as block nodes on raw image
 * files, exported over NBD; pairs as write-blocking mirror jobs, split with a dirty bitmap and
 * resynchronised from it; snapshots as copy-before-write backup jobs into qcow2 fleecing images.
 * Every call runs in one QMP session that first converges the daemon on the durable state.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import {
  DestinationExistsError,
  DeviceFaultError,
  InvalidInputError,
  NoResourcesError,
  NotFoundError,
} from '../../domain/errors';
import type { StorageArray } from '../../domain/inventory';
import type { PairInfo, SnapshotInfo, TrackingStart } from '../types';
import { mountsUnder, unmountIfMounted } from './mounts';
import { QmpClient, QmpCommandError, type QmpEvent } from './qmp';
import {
  ArrayStateSchema,
  copyingAfterLoss,
  readArrayState,
  snapshotKey,
  writeArrayState,
  type ArrayState,
  type PairRecord,
  type SnapshotRecord,
} from './state';
import { QSD_BINARY, QsdSupervisor, livePid, sleep, waitGone, type QsdArrayPaths } from './supervisor';

const run = promisify(execFile);

/** Granularity of the split bitmap: the unit a resync copies. */
export const SPLIT_GRANULARITY = 64 * 1024;
/** The bitmap that tracks a split pair's primary. */
export const SPLIT_BITMAP = 'kura-split';
/** The store's change-tracking bitmaps: `kura-store-<target>-<generation>` (see beginTracking). */
export const STORE_BITMAP = 'kura-store-';
/** Granularity of the store's bitmaps: far below a chunk, so a small write marks one chunk. */
const STORE_GRANULARITY = 64 * 1024;

/**
 * The name prefix of a store target's bitmaps: the target as it is where it is plain, a hash of it
 * where it holds anything but letters, digits, `_`, `-` and `/` (which becomes `.`).
 */
export function storeBitmapPrefix(target: string): string {
  const plain = /^[A-Za-z0-9_/-]{1,64}$/.test(target)
    ? target.replaceAll('/', '.')
    : `_${createHash('sha256').update(target).digest('hex').slice(0, 24)}`;
  return `${STORE_BITMAP}${plain}-`;
}

/** The generation (creation time, ms) of a store bitmap of `prefix`, or undefined when it is not one. */
function parseGeneration(name: string, prefix: string): number | undefined {
  if (!name.startsWith(prefix)) return undefined;
  const rest = name.slice(prefix.length);
  return /^[0-9a-z]{1,12}$/.test(rest) ? parseInt(rest, 36) : undefined;
}

/** Resync rounds before giving up on catching a primary that never stops changing (then a full copy). */
const RESYNC_ROUNDS = 8;
const JOB_TIMEOUT_MS = 30_000;

/**
 * A QEMU id (node, job, export): a letter first, then letters, digits, `.`, `_`, `-`, at most 31
 * characters. Volume names may be longer or start with a digit, so a long one is hashed.
 */
export function qemuId(prefix: string, ...parts: string[]): string {
  const plain = `${prefix}.${parts.join('.')}`;
  if (plain.length <= 31) return plain;
  return `${prefix}.${createHash('sha256')
    .update(parts.join('\0'))
    .digest('hex')
    .slice(0, 31 - prefix.length - 1)}`;
}

/** The QEMU names of one volume's nodes, jobs and exports. */
export const ids = {
  primary: (v: string) => qemuId('v', v),
  nbdExport: (v: string) => qemuId('n', v),
  replica: (v: string) => qemuId('r', v),
  pairJob: (v: string) => qemuId('pair', v),
  bitmapExport: (v: string) => qemuId('bm', v),
  snapshotNode: (v: string, name: string) => qemuId('s', v, name),
  snapshotJob: (v: string, name: string) => qemuId('snap', v, name),
  snapshotExport: (v: string, name: string) => qemuId('sf', v, name),
  resyncBitmap: (round: number) => `kura-resync-${round}`,
};

interface JobInfo {
  id: string;
  type: string;
  status: string;
  'current-progress': number;
  'total-progress': number;
  error?: string;
}

interface NodeInfo {
  'node-name': string;
  drv: string;
  'dirty-bitmaps'?: { name?: string; count: number; recording?: boolean }[];
}

/** One QMP session with the array's state loaded; `save` writes the state durably. */
interface Session {
  qmp: QmpClient;
  state: ArrayState;
  save(): Promise<void>;
}

/** The function software of one array on its own qemu-storage-daemon. */
export class QsdArray {
  readonly supervisor: QsdSupervisor;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly site: string,
    readonly array: StorageArray,
    readonly paths: QsdArrayPaths,
  ) {
    this.supervisor = new QsdSupervisor(`${site}/${array.name}`, paths);
  }

  get device(): string {
    return this.supervisor.device;
  }

  /** Where a host reaches the volume over NBD; served while the daemon runs (any call starts it). */
  nbdUri(volume: string): string {
    this.volume(volume);
    return `nbd+unix:///${volume}?socket=${this.paths.nbdSocket}`;
  }

  /** The volume's image file (the primary's bytes). */
  imagePath(volume: string): string {
    return path.join(this.paths.volumesDir, `${volume}.img`);
  }

  replicaPath(replica: string): string {
    return path.join(this.paths.poolDir, `${replica}.img`);
  }

  fleecingPath(volume: string, name: string): string {
    return path.join(this.paths.snapshotsDir, `${volume}@${name}.qcow2`);
  }

  snapshotReadPath(volume: string, name: string): string {
    return path.join(this.paths.snapshotsDir, `${volume}@${name}.img`);
  }

  hostPath(volume: string): string {
    return path.join(this.paths.hostsDir, `${volume}.img`);
  }

  /** The volume of the inventory whose host attachment is `file` (a loop device's back-file), or undefined. */
  volumeOfHostFile(file: string): string | undefined {
    const abs = path.resolve(file);
    return this.array.volumes.find((v) => this.hostPath(v.id) === abs)?.id;
  }

  /** The volume of this array (of the inventory, or restored onto it), or NotFoundError naming what the array has. */
  volume(volume: string): { id: string; size: number } {
    const v = this.array.volumes.find((x) => x.id === volume) ?? this.restoredVolume(volume);
    if (!v) {
      throw new NotFoundError(
        `no volume ${this.device}/${volume}; array ${this.array.name} has ${this.array.volumes.map((x) => x.id).join(', ') || 'no volumes'} (kura.yaml)`,
        { site: this.site, array: this.array.name, volume },
      );
    }
    return v;
  }

  /**
   * The file the copy to tape reads the volume's image from: the volume's own image, or `readPath`
   * when the array's state holds it now as the replica of the volume's split pair or as a snapshot
   * of the volume. Any other path is refused, so the copy device reads nothing else of this array.
   */
  async imageFile(volume: string, readPath?: string): Promise<{ file: string; sizeBytes: number }> {
    const v = this.volume(volume);
    if (readPath === undefined) {
      // Asking the array converges it, which creates the image of a volume new to the inventory.
      await this.session(async () => undefined);
      return { file: this.imagePath(volume), sizeBytes: v.size };
    }
    const file = path.resolve(readPath);
    return this.session(async (s) => {
      const pair = s.state.pairs[volume];
      const replica = pair?.phase === 'split' ? this.replicaPath(pair.replica) : undefined;
      const snapshots = Object.values(s.state.snapshots)
        .filter((x) => x.volume === volume)
        .map((x) => this.snapshotReadPath(volume, x.name));
      if (file !== replica && !snapshots.includes(file)) {
        const known = [...(replica ? [replica] : []), ...snapshots];
        throw new InvalidInputError(
          `${file} is not an image of ${this.device}/${volume}: the copy reads only the volume's split replica or its snapshots (${known.join(', ') || 'it has none now'}); plan the copy again`,
        );
      }
      return { file, sizeBytes: v.size };
    });
  }

  // ---------------------------------------------------------------- volumes created by restores

  /**
   * Allocates a new volume for a restore: its space from the free pool and the file its image is
   * restored into, not served until {@link commitVolume}. The same job asking again gets the same
   * volume; a name the array already has is refused, so a restore never writes over a volume.
   */
  async allocateVolume(volume: string, sizeBytes: number, job: string): Promise<{ file: string }> {
    checkVolumeName(volume);
    return this.session(async (s) => {
      const known = s.state.restored[volume];
      const file = this.imagePath(volume);
      const exists = await fs.stat(file).then(
        () => true,
        () => false,
      );
      if (
        this.array.volumes.some((v) => v.id === volume) ||
        (known && (known.phase === 'ready' || known.job !== job)) ||
        (!known && exists)
      )
        throw new DestinationExistsError(
          `${this.device} has a volume ${volume} already${known && known.phase === 'restoring' ? ' (another restore is writing it)' : ''}; Kura never restores over a volume — name a new one`,
          { site: this.site, array: this.array.name, volume },
        );
      if (!known) {
        this.reserve(s.state, sizeBytes, `restored volume ${volume}`);
        s.state.restored[volume] = { sizeBytes, phase: 'restoring', job, createdAt: new Date().toISOString() };
        await s.save();
      }
      return { file };
    });
  }

  /**
   * Serves a restored volume once its image is verified and in place: a block node and an NBD
   * export like the inventory's volumes, so a host can attach it. Idempotent.
   */
  async commitVolume(volume: string, job: string): Promise<{ sizeBytes: number; nbdUri: string }> {
    return this.session(async (s) => {
      const r = s.state.restored[volume];
      if (!r || r.job !== job)
        throw new NotFoundError(
          `${this.device} allocated no volume ${volume} for ${job}; restore into it again from the start`,
          { site: this.site, array: this.array.name, volume },
        );
      const file = this.imagePath(volume);
      const size = await fs.stat(file).then(
        (st) => st.size,
        () => undefined,
      );
      if (size !== r.sizeBytes)
        throw new NotFoundError(
          `the restored image of ${this.device}/${volume} (${file}) ${size === undefined ? 'is missing' : `holds ${size} bytes`}, not the ${r.sizeBytes} restored; restore into a new volume again`,
          { file },
        );
      if (r.phase !== 'ready') {
        r.phase = 'ready';
        await s.save();
      }
      await this.serveVolume(s.qmp, volume);
      return { sizeBytes: r.sizeBytes, nbdUri: `nbd+unix:///${volume}?socket=${this.paths.nbdSocket}` };
    });
  }

  /**
   * Gives a volume allocated by a restore that failed back to the free pool, with its file; a
   * volume whose restore finished (or another job's) is left alone.
   */
  async releaseVolume(volume: string, job: string): Promise<void> {
    await this.session(async (s) => {
      const r = s.state.restored[volume];
      if (!r || r.job !== job || r.phase !== 'restoring') return;
      await fs.rm(this.imagePath(volume), { force: true });
      delete s.state.restored[volume];
      await s.save();
    });
  }

  /**
   * Deletes a volume a restore created: its host's attachment, export, node and image; its space
   * goes back to the free pool. The inventory's volumes are kura.yaml's and are refused.
   */
  async deleteVolume(volume: string): Promise<void> {
    if (this.array.volumes.some((v) => v.id === volume))
      throw new InvalidInputError(
        `${this.device}/${volume} is a volume of the inventory, not one a restore created; remove it from kura.yaml instead`,
      );
    await this.session(async (s) => {
      if (!s.state.restored[volume]) return;
      if (s.state.pairs[volume] || Object.values(s.state.snapshots).some((x) => x.volume === volume))
        throw new InvalidInputError(`${this.device}/${volume} has a pair or a snapshot; delete them before the volume`);
      await this.detachHostFiles(volume);
      delete s.state.hosts[volume];
      await this.deleteExport(s.qmp, ids.nbdExport(volume));
      await this.deleteNode(s.qmp, ids.primary(volume));
      await fs.rm(this.imagePath(volume), { force: true });
      delete s.state.restored[volume];
      await s.save();
    });
  }

  /** A restored volume the array serves, from the durable state (read at once: callers check names before a session). */
  private restoredVolume(volume: string): { id: string; size: number } | undefined {
    try {
      const state = ArrayStateSchema.safeParse(JSON.parse(readFileSync(this.paths.stateFile, 'utf8')));
      const r = state.data?.restored[volume];
      return r?.phase === 'ready' ? { id: volume, size: r.sizeBytes } : undefined;
    } catch {
      return undefined;
    }
  }

  /** Every volume the array serves: the inventory's, and the restored ones that are ready. */
  private servedVolumes(state: ArrayState): { id: string; size: number; restored: boolean }[] {
    return [
      ...this.array.volumes.map((v) => ({ id: v.id, size: v.size, restored: false })),
      ...Object.entries(state.restored)
        .filter(([, r]) => r.phase === 'ready')
        .map(([id, r]) => ({ id, size: r.sizeBytes, restored: true })),
    ];
  }

  /**
   * A volume's block node on its image and its writable NBD export; what is there already is kept.
   * `present` are the daemon's nodes and exports when the caller has just asked for them.
   */
  private async serveVolume(
    qmp: QmpClient,
    volume: string,
    present?: { nodes: Set<string>; exports: Set<string> },
  ): Promise<void> {
    const nodes = present?.nodes ?? new Set((await this.nodes(qmp)).map((n) => n['node-name']));
    if (!nodes.has(ids.primary(volume)))
      await qmp.execute('blockdev-add', {
        driver: 'file',
        'node-name': ids.primary(volume),
        filename: this.imagePath(volume),
      });
    const exports =
      present?.exports ?? new Set((await qmp.execute<{ id: string }[]>('query-block-exports')).map((e) => e.id));
    if (!exports.has(ids.nbdExport(volume)))
      await qmp.execute('block-export-add', {
        type: 'nbd',
        id: ids.nbdExport(volume),
        'node-name': ids.primary(volume),
        name: volume,
        writable: true,
      });
  }

  // ---------------------------------------------------------------- pairs

  async createPair(volume: string): Promise<PairInfo> {
    const v = this.volume(volume);
    return this.session(async (s) => {
      if (!s.state.pairs[volume]) {
        this.refuseWhileSnapshots(s.state, volume, 'pair');
        this.reserve(s.state, v.size, `a replica for ${volume}`);
        const replica = `replica-${volume}`;
        await createSparse(this.replicaPath(replica), v.size);
        s.state.pairs[volume] = { replica, phase: 'mirror', createdAt: new Date().toISOString(), recovered: [] };
        await s.save();
        await this.startMirror(s, volume, 'full');
      }
      return this.pairInfo(s, volume);
    });
  }

  async pairStatus(volume: string): Promise<PairInfo> {
    this.volume(volume);
    return this.session((s) => this.pairInfo(s, volume));
  }

  /**
   * Splits an in-sync pair: a bitmap starts tracking the primary, then the mirror is stopped the
   * way a ready mirror completes (every write acknowledged so far is on both), so the replica holds
   * the image of that instant and is no longer written.
   */
  async splitPair(volume: string): Promise<PairInfo> {
    this.volume(volume);
    return this.session(async (s) => {
      const pair = this.pairOf(s.state, volume);
      if (pair.phase === 'split') return this.pairInfo(s, volume);
      const job = (await this.jobs(s.qmp)).find((j) => j.id === ids.pairJob(volume));
      if (pair.phase !== 'mirror' || job?.status !== 'ready') {
        const info = await this.pairInfo(s, volume);
        // Retryable: the pair was in sync until the array lost its mirror, and will be again.
        if (copyingAfterLoss(pair))
          throw new DeviceFaultError(
            this.device,
            `the pair of ${this.device}/${volume} lost its mirror (${pair.recovered.at(-1) ?? 'the daemon restarted'}) and is copying again (${info.copiedBytes} of ${info.totalBytes} bytes copied); it can be split once it is back in sync`,
          );
        throw new InvalidInputError(
          `the pair of ${this.device}/${volume} is ${info.state} (${info.copiedBytes} of ${info.totalBytes} bytes copied); split it once it is in sync (wait for the pair's state in-sync)`,
        );
      }
      await this.removeBitmap(s.qmp, volume, SPLIT_BITMAP);
      await s.qmp.execute('block-dirty-bitmap-add', {
        node: ids.primary(volume),
        name: SPLIT_BITMAP,
        granularity: SPLIT_GRANULARITY,
      });
      pair.phase = 'splitting';
      await s.save();
      await s.qmp.execute('block-job-cancel', { device: job.id });
      const ended = await this.waitConcluded(s.qmp, job.id);
      if (ended?.error) {
        throw new DeviceFaultError(
          this.device,
          `${this.device}: the mirror of ${volume} failed while splitting: ${ended.error}`,
        );
      }
      await this.finishSplit(s, volume, pair);
      return this.pairInfo(s, volume);
    });
  }

  /**
   * Brings a split replica up to date: new writes go to both from now on (a mirror that copies
   * nothing of its own), and the blocks the split bitmap marks are copied from the primary to the
   * replica in rounds until a round sees no write. Runs to the end within the call.
   */
  async resyncPair(volume: string): Promise<PairInfo> {
    this.volume(volume);
    return this.session(async (s) => {
      const pair = this.pairOf(s.state, volume);
      if (pair.phase !== 'split') return this.pairInfo(s, volume);
      this.refuseWhileSnapshots(s.state, volume, 'resync');
      // Absent, not empty: a bitmap that counts nothing means no host wrote since the split.
      if ((await this.bitmapCount(s.qmp, volume, SPLIT_BITMAP)) === undefined) {
        pair.recovered.push(
          `${new Date().toISOString()}: the split bitmap was lost with a daemon restart; the resync copies the whole volume`,
        );
        pair.phase = 'mirror';
        pair.lastCopy = undefined;
        await s.save();
        await this.startMirror(s, volume, 'full');
        return this.pairInfo(s, volume);
      }
      pair.phase = 'resyncing';
      await s.save();
      await this.startMirror(s, volume, 'none');
      const mirror = await this.waitStatus(s.qmp, ids.pairJob(volume), 'ready');
      if (mirror?.status !== 'ready')
        throw new DeviceFaultError(this.device, `${this.device}: the resync mirror of ${volume} did not get ready`);
      const copied = await this.copyMarkedBlocks(s.qmp, volume, this.replicaPath(pair.replica));
      if (copied === undefined) {
        pair.recovered.push(
          `${new Date().toISOString()}: writes outpaced ${RESYNC_ROUNDS} resync rounds; copying the whole volume`,
        );
        await this.stopJob(s.qmp, ids.pairJob(volume));
        pair.phase = 'mirror';
        pair.lastCopy = undefined;
        await s.save();
        await this.startMirror(s, volume, 'full');
        return this.pairInfo(s, volume);
      }
      pair.phase = 'mirror';
      pair.splitAt = undefined;
      pair.lastCopy = { copiedBytes: copied, totalBytes: copied };
      await s.save();
      return this.pairInfo(s, volume);
    });
  }

  async deletePair(volume: string): Promise<void> {
    this.volume(volume);
    await this.session(async (s) => {
      const pair = s.state.pairs[volume];
      if (!pair) return;
      await this.stopJob(s.qmp, ids.pairJob(volume));
      await this.deleteNode(s.qmp, ids.replica(volume));
      await this.removeBitmap(s.qmp, volume, SPLIT_BITMAP);
      await fs.rm(this.replicaPath(pair.replica), { force: true });
      delete s.state.pairs[volume];
      await s.save();
    });
  }

  async listPairs(): Promise<PairInfo[]> {
    return this.session(async (s) => {
      const out: PairInfo[] = [];
      for (const volume of Object.keys(s.state.pairs).sort()) out.push(await this.pairInfo(s, volume));
      return out;
    });
  }

  /**
   * Waits until the pair reaches `state` (pair event wait), in short sessions so other callers
   * get the daemon in between; returns the pair as it then stands, or as it stands at the deadline.
   */
  async waitPair(volume: string, state: PairInfo['state'], timeoutMs: number): Promise<PairInfo> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const info = await this.session(async (s) => {
        const now = await this.pairInfo(s, volume);
        if (now.state === state) return now;
        // A job's change of state arrives as an event: wait for one briefly instead of polling blind.
        await s.qmp
          .waitForEvent((e) => e.event.startsWith('BLOCK_JOB_') || e.event === 'JOB_STATUS_CHANGE', 200, 'a job event')
          .catch(() => undefined);
        return this.pairInfo(s, volume);
      });
      if (info.state === state || Date.now() >= deadline) return info;
    }
  }

  // ---------------------------------------------------------------- snapshots

  /**
   * Takes a copy-before-write snapshot: a qcow2 fleecing image backed by the primary, and a backup
   * job without a copy of its own that saves each block's old contents there before a write
   * changes it; a read-only FUSE export of the fleecing node is the split-time image.
   */
  async createSnapshot(volume: string, name: string): Promise<SnapshotInfo> {
    const v = this.volume(volume);
    checkSnapshotName(name);
    return this.session(async (s) => {
      const key = snapshotKey(volume, name);
      if (!s.state.snapshots[key]) {
        const other = Object.values(s.state.snapshots).find((x) => x.volume === volume);
        if (other)
          throw new InvalidInputError(
            `${this.device}/${volume} already has snapshot ${other.name}; an array volume holds one copy-before-write snapshot at a time — delete ${other.name} first`,
          );
        const pair = s.state.pairs[volume] ? await this.pairInfo(s, volume) : undefined;
        if (pair && pair.state !== 'split')
          throw new InvalidInputError(
            `${this.device}/${volume} is paired (${pair.state}); a volume whose mirror runs cannot take a copy-before-write snapshot — split the pair (its replica is the split-time image) or delete it first`,
          );
        this.reserve(s.state, v.size, `a snapshot of ${volume}`);
        s.state.snapshots[key] = { volume, name, createdAt: new Date().toISOString(), sizeBytes: v.size };
        await s.save();
        await this.startSnapshot(s.qmp, volume, name, v.size);
      }
      return this.snapshotInfo(s.state.snapshots[key] as SnapshotRecord);
    });
  }

  async deleteSnapshot(volume: string, name: string): Promise<void> {
    this.volume(volume);
    await this.session(async (s) => {
      const key = snapshotKey(volume, name);
      if (!s.state.snapshots[key]) return;
      await this.dropSnapshot(s.qmp, volume, name);
      delete s.state.snapshots[key];
      await s.save();
    });
  }

  async listSnapshots(): Promise<SnapshotInfo[]> {
    return this.session(async (s) =>
      Object.values(s.state.snapshots)
        .sort((a, b) => snapshotKey(a.volume, a.name).localeCompare(snapshotKey(b.volume, b.name)))
        .map((r) => this.snapshotInfo(r)),
    );
  }

  // ---------------------------------------------------------------- change tracking for the store

  /**
   * Begins a new generation of the store's dirty bitmap of `key` on the volume, in one transaction
   * with freezing (disabling) the current one, so every write lands in exactly one generation; and
   * reads through a short-lived NBD export what every generation from `since` on marks. The bitmaps
   * live in the daemon's memory: after a restart `since` is gone, and `changed` is undefined.
   */
  async beginTracking(volume: string, key: string, since: string | undefined): Promise<TrackingStart> {
    this.volume(volume);
    return this.session(async (s) => {
      const node = ids.primary(volume);
      const prefix = storeBitmapPrefix(key);
      const have = await this.trackingBitmaps(s.qmp, volume, prefix);
      const gen = Math.max(Date.now(), (have.at(-1)?.gen ?? 0) + 1);
      const generation = `${prefix}${gen.toString(36)}`;
      await s.qmp.execute('transaction', {
        actions: [
          { type: 'block-dirty-bitmap-add', data: { node, name: generation, granularity: STORE_GRANULARITY } },
          ...have
            .filter((b) => b.recording)
            .map((b) => ({ type: 'block-dirty-bitmap-disable', data: { node, name: b.name } })),
        ],
      });
      if (since === undefined)
        return { generation, reason: `no earlier backup began a dirty bitmap of ${this.device}/${volume}` };
      const base = have.find((b) => b.name === since);
      const sinceGen = parseGeneration(since, prefix);
      if (!base || sinceGen === undefined)
        return {
          generation,
          reason: `the dirty bitmap ${since} of ${this.device}/${volume} is gone (its daemon restarted since the previous backup)`,
        };
      // Every generation from the base on, frozen now: together they mark every write since it began.
      const read = have.filter((b) => b.gen >= sinceGen);
      const changed: { offset: number; length: number }[] = [];
      for (const b of read) changed.push(...(await this.dirtyExtents(s.qmp, volume, b.name)));
      return {
        generation,
        changed,
        reason: `dirty bitmap${read.length > 1 ? 's' : ''} ${read.map((b) => b.name).join(', ')} of ${this.device}/${volume}`,
      };
    });
  }

  /**
   * Drops the generations of `key` older than `keep`: called once the backup that began `keep` has
   * its index durable, so a crash before then leaves every change marked. Idempotent.
   */
  async endTracking(volume: string, key: string, keep: string): Promise<void> {
    this.volume(volume);
    const prefix = storeBitmapPrefix(key);
    const keepGen = parseGeneration(keep, prefix);
    if (keepGen === undefined)
      throw new InvalidInputError(`${keep} is not a store bitmap of ${key} (${prefix}<generation>)`);
    await this.session(async (s) => {
      for (const b of await this.trackingBitmaps(s.qmp, volume, prefix))
        if (b.gen < keepGen) await this.removeBitmap(s.qmp, volume, b.name);
    });
  }

  /** The store's bitmaps of one key on the volume, oldest generation first. */
  private async trackingBitmaps(
    qmp: QmpClient,
    volume: string,
    prefix: string,
  ): Promise<{ name: string; gen: number; recording: boolean }[]> {
    const node = (await this.nodes(qmp)).find((n) => n['node-name'] === ids.primary(volume));
    const out: { name: string; gen: number; recording: boolean }[] = [];
    for (const b of node?.['dirty-bitmaps'] ?? []) {
      const gen = b.name === undefined ? undefined : parseGeneration(b.name, prefix);
      if (gen !== undefined) out.push({ name: b.name!, gen, recording: b.recording !== false });
    }
    return out.sort((a, b) => a.gen - b.gen);
  }

  // ---------------------------------------------------------------- hosts

  /**
   * A host's view of the volume as a writable file (a loop device can mount the file system on
   * it): a host-side qemu-storage-daemon that reaches the volume over NBD, as a host does over the
   * SAN, and exports it through FUSE. The array's own daemon cannot: a writable FUSE export takes
   * the permission to resize the node, which the mirror of a pair refuses to share.
   */
  async attachHost(volume: string): Promise<string> {
    this.volume(volume);
    return this.session(async (s) => {
      const file = this.hostPath(volume);
      const pidFile = `${file}.pid`;
      const known = s.state.hosts[volume];
      if (known && (await livePid(pidFile, file)) === known.pid) return file;
      await this.detachHostFiles(volume);
      await fs.mkdir(this.paths.hostsDir, { recursive: true });
      await fs.writeFile(file, '');
      const args = [
        '--blockdev',
        `driver=nbd,node-name=h,server.type=unix,server.path=${this.paths.nbdSocket},export=${volume}`,
        '--export',
        `type=fuse,id=f,node-name=h,mountpoint=${file},writable=on`,
        '--pidfile',
        pidFile,
        '--daemonize',
      ];
      const { code, stderr } = await runDaemon(args);
      const pid = await livePid(pidFile, file);
      if (code !== 0 || pid === undefined)
        throw new DeviceFaultError(
          this.device,
          `${this.device}: the host attachment of ${volume} did not start: ${stderr.trim()}`,
        );
      s.state.hosts[volume] = { volume, pid };
      await s.save();
      return file;
    });
  }

  /** Takes the host's file of the volume away; nothing to do when there is none. */
  async detachHost(volume: string): Promise<void> {
    this.volume(volume);
    await this.session(async (s) => {
      await this.detachHostFiles(volume);
      delete s.state.hosts[volume];
      await s.save();
    });
  }

  private async detachHostFiles(volume: string): Promise<void> {
    const file = this.hostPath(volume);
    const pid = await livePid(`${file}.pid`, file);
    if (pid !== undefined) {
      process.kill(pid, 'SIGTERM');
      if (!(await waitGone(pid, 5_000))) process.kill(pid, 'SIGKILL');
      await waitGone(pid, 5_000);
    }
    await unmountIfMounted(file);
    await fs.rm(file, { force: true });
    await fs.rm(`${file}.pid`, { force: true });
  }

  /** Stops the daemon (and the hosts' attachments, which cannot outlive it). */
  async stop(): Promise<void> {
    await this.exclusive(async () => {
      const state = await readArrayState(this.paths.stateFile);
      for (const volume of Object.keys(state.hosts)) await this.detachHostFiles(volume);
      state.hosts = {};
      await writeArrayState(this.paths.stateFile, state);
      await this.supervisor.stop();
      for (const m of await mountsUnder(this.paths.dir)) await unmountIfMounted(m);
    });
  }

  // ---------------------------------------------------------------- sessions and convergence

  /** Runs `fn` alone (per process) in a QMP session on a running, converged daemon. */
  session<T>(fn: (s: Session) => Promise<T>): Promise<T> {
    return this.exclusive(async () => {
      const { started } = await this.supervisor.ensureRunning();
      const qmp = await QmpClient.connect(this.paths.socket, this.device);
      try {
        const state = await readArrayState(this.paths.stateFile);
        const s: Session = { qmp, state, save: () => writeArrayState(this.paths.stateFile, state) };
        await this.converge(s, started);
        return await fn(s);
      } finally {
        await qmp.close();
      }
    });
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /**
   * Brings the daemon in line with the durable state: every volume a node with its NBD export,
   * every recorded pair and snapshot the job it needs; a job, node, file or mount that no record
   * owns is removed. After a restart, a pair whose mirror vanished copies in full again and a
   * snapshot whose copy-before-write job vanished is dropped (the split-time image went with it).
   */
  private async converge(s: Session, started: boolean): Promise<void> {
    const { qmp, state } = s;
    let changed = false;
    await fs.mkdir(this.paths.volumesDir, { recursive: true });
    await fs.mkdir(this.paths.poolDir, { recursive: true });
    await fs.mkdir(this.paths.snapshotsDir, { recursive: true });
    await fs.mkdir(this.paths.hostsDir, { recursive: true });

    const present = new Set((await this.nodes(qmp)).map((n) => n['node-name']));
    // A daemon without volume nodes is a fresh one, whichever process started it.
    if (started || !this.array.volumes.some((v) => present.has(ids.primary(v.id)))) {
      // FUSE mounts of the previous daemon answer ENOTCONN until taken down; host attachments
      // lost their NBD server with it.
      for (const volume of Object.keys(state.hosts)) await this.detachHostFiles(volume);
      if (Object.keys(state.hosts).length > 0) changed = true;
      state.hosts = {};
      for (const m of await mountsUnder(this.paths.dir)) await unmountIfMounted(m);
    }

    await qmp
      .execute('nbd-server-start', { addr: { type: 'unix', data: { path: this.paths.nbdSocket } } })
      .catch((err: unknown) => {
        if (!(err instanceof QmpCommandError && /already running/i.test(err.desc))) throw err;
      });
    const served = {
      nodes: new Set((await this.nodes(qmp)).map((n) => n['node-name'])),
      exports: new Set((await qmp.execute<{ id: string }[]>('query-block-exports')).map((e) => e.id)),
    };
    for (const v of this.servedVolumes(state)) {
      const file = this.imagePath(v.id);
      // A restored volume's image is its only copy: never recreate it empty.
      if (v.restored) {
        if (!(await fs.stat(file).catch(() => undefined))) continue;
      } else {
        await ensureImage(file, v.size, `${this.device}/${v.id}`);
      }
      await this.serveVolume(qmp, v.id, served);
    }

    const jobs = new Map((await this.jobs(qmp)).map((j) => [j.id, j]));
    for (const [volume, pair] of Object.entries(state.pairs)) {
      const job = jobs.get(ids.pairJob(volume));
      if (pair.phase === 'mirror') {
        if (job && job.status !== 'concluded') continue;
        // The mirror failed or the daemon restarted: copy in full again.
        if (job) await this.stopJob(qmp, job.id);
        pair.recovered.push(
          `${new Date().toISOString()}: the mirror job was gone${job?.error ? ` (${job.error})` : ''}; the full copy restarted`,
        );
        pair.lastCopy = undefined;
        changed = true;
        await this.startMirror(s, volume, 'full');
      } else if (pair.phase === 'splitting') {
        // The split bitmap lives in the daemon's memory: still there, the daemon that began the
        // split runs and the split can be finished; gone, the daemon died half-way and the
        // replica may hold a torn image, so it is copied again.
        const sameDaemon = (await this.bitmapCount(qmp, volume, SPLIT_BITMAP)) !== undefined;
        if (sameDaemon && job && job.status !== 'concluded') {
          await qmp.execute('block-job-cancel', { device: job.id }).catch(() => undefined);
        }
        const ended = sameDaemon && job ? await this.waitConcluded(qmp, job.id) : undefined;
        if (sameDaemon && ended?.error === undefined) {
          await this.finishSplit(s, volume, pair);
        } else {
          if (job) await this.stopJob(qmp, job.id);
          pair.phase = 'mirror';
          pair.lastCopy = undefined;
          pair.recovered.push(`${new Date().toISOString()}: the split did not finish; the full copy restarted`);
          await this.startMirror(s, volume, 'full');
        }
        changed = true;
      } else if (pair.phase === 'split') {
        if (job) await this.stopJob(qmp, job.id);
        await this.deleteNode(qmp, ids.replica(volume));
      } else if (pair.phase === 'resyncing') {
        // A resync runs within one call; finding one here means it was interrupted.
        if (job) await this.stopJob(qmp, job.id);
        pair.phase = 'mirror';
        pair.lastCopy = undefined;
        pair.recovered.push(`${new Date().toISOString()}: a resync was interrupted; the full copy restarted`);
        await this.startMirror(s, volume, 'full');
        changed = true;
      }
    }

    for (const [key, snap] of Object.entries(state.snapshots)) {
      const job = jobs.get(ids.snapshotJob(snap.volume, snap.name));
      if (job && job.status !== 'concluded') continue;
      await this.dropSnapshot(qmp, snap.volume, snap.name);
      delete state.snapshots[key];
      state.lostSnapshots.push({ key, at: new Date().toISOString() });
      changed = true;
    }

    await this.removeOrphans(qmp, state);
    if (changed) await s.save();
  }

  /** Jobs, nodes, pool files, fleecing images and mounts that no record owns. */
  private async removeOrphans(qmp: QmpClient, state: ArrayState): Promise<void> {
    const ownedJobs = new Set<string>();
    const ownedNodes = new Set(this.servedVolumes(state).map((v) => ids.primary(v.id)));
    const ownedFiles = new Set<string>();
    for (const [volume, pair] of Object.entries(state.pairs)) {
      ownedJobs.add(ids.pairJob(volume));
      ownedNodes.add(ids.replica(volume));
      ownedFiles.add(this.replicaPath(pair.replica));
    }
    for (const snap of Object.values(state.snapshots)) {
      ownedJobs.add(ids.snapshotJob(snap.volume, snap.name));
      ownedNodes.add(ids.snapshotNode(snap.volume, snap.name));
      ownedFiles.add(this.fleecingPath(snap.volume, snap.name));
      ownedFiles.add(this.snapshotReadPath(snap.volume, snap.name));
    }
    for (const job of await this.jobs(qmp)) if (!ownedJobs.has(job.id)) await this.stopJob(qmp, job.id);
    // Only a split pair's primary keeps a bitmap between calls (resync rounds end within theirs).
    for (const n of await this.nodes(qmp)) {
      const volume = this.servedVolumes(state).find((v) => ids.primary(v.id) === n['node-name'])?.id;
      if (volume === undefined) continue;
      const keep = state.pairs[volume]?.phase === 'split' ? SPLIT_BITMAP : undefined;
      // The store's change tracking keeps its bitmaps between calls too (beginTracking, endTracking).
      for (const b of n['dirty-bitmaps'] ?? [])
        if (b.name?.startsWith('kura-') && !b.name.startsWith(STORE_BITMAP) && b.name !== keep)
          await this.removeBitmap(qmp, volume, b.name);
    }
    const exports = await qmp.execute<{ id: string; 'node-name': string }[]>('query-block-exports');
    for (const e of exports) {
      if (e.id.startsWith('bm.') || (e.id.startsWith('sf.') && !this.ownsSnapshotExport(state, e.id)))
        await this.deleteExport(qmp, e.id);
    }
    for (const n of await this.nodes(qmp)) {
      const name = n['node-name'];
      if (name.startsWith('#') || ownedNodes.has(name)) continue;
      await this.deleteNode(qmp, name);
    }
    for (const dir of [this.paths.poolDir, this.paths.snapshotsDir]) {
      for (const entry of await fs.readdir(dir)) {
        const file = path.join(dir, entry);
        if (ownedFiles.has(file)) continue;
        await unmountIfMounted(file);
        await fs.rm(file, { force: true });
      }
    }
    for (const m of await mountsUnder(this.paths.snapshotsDir)) if (!ownedFiles.has(m)) await unmountIfMounted(m);
  }

  private ownsSnapshotExport(state: ArrayState, id: string): boolean {
    return Object.values(state.snapshots).some((x) => ids.snapshotExport(x.volume, x.name) === id);
  }

  // ---------------------------------------------------------------- building blocks

  private async pairInfo(s: Session, volume: string): Promise<PairInfo> {
    const pair = this.pairOf(s.state, volume);
    const base = {
      site: this.site,
      array: this.array.name,
      volume,
      replica: pair.replica,
      readPath: this.replicaPath(pair.replica),
    };
    if (pair.phase === 'split')
      return {
        ...base,
        state: 'split',
        splitAt: pair.splitAt,
        ...(pair.lastCopy ?? { copiedBytes: 0, totalBytes: 0 }),
      };
    const job = (await this.jobs(s.qmp)).find((j) => j.id === ids.pairJob(volume));
    const progress = { copiedBytes: job?.['current-progress'] ?? 0, totalBytes: job?.['total-progress'] ?? 0 };
    if (pair.phase === 'resyncing') return { ...base, state: 'resyncing', ...progress };
    if (job?.status === 'ready') return { ...base, state: 'in-sync', ...(pair.lastCopy ?? progress) };
    return { ...base, state: 'copying', ...progress };
  }

  private pairOf(state: ArrayState, volume: string): PairRecord {
    const pair = state.pairs[volume];
    if (!pair)
      throw new NotFoundError(`${this.device}/${volume} has no pair; create one first (createPair)`, {
        site: this.site,
        array: this.array.name,
        volume,
      });
    return pair;
  }

  private snapshotInfo(r: SnapshotRecord): SnapshotInfo {
    return {
      site: this.site,
      array: this.array.name,
      volume: r.volume,
      name: r.name,
      createdAt: r.createdAt,
      sizeBytes: r.sizeBytes,
      readPath: this.snapshotReadPath(r.volume, r.name),
    };
  }

  private refuseWhileSnapshots(state: ArrayState, volume: string, what: 'pair' | 'resync'): void {
    const snap = Object.values(state.snapshots).find((x) => x.volume === volume);
    if (snap)
      throw new InvalidInputError(
        `${this.device}/${volume} has snapshot ${snap.name}, whose copy-before-write job holds the volume; delete the snapshot before you ${what === 'pair' ? 'pair the volume' : 'resynchronise its pair'}`,
      );
  }

  /** The array's free pool (kura.yaml `freePool`, which a qsd array must have); none: room for nothing. */
  get freePool(): { size: number; replicas: number; copyRate: number } {
    return this.array.freePool ?? { size: 0, replicas: 0, copyRate: 0 };
  }

  /** Cap on a full copy in bytes/s; 0 for none. */
  get copyRate(): number {
    return this.freePool.copyRate;
  }

  /**
   * NoResourcesError unless one more replica or snapshot of `bytes` fits the free pool beside the
   * ones it holds: within its size and its count of replicas, as on every engine.
   */
  private reserve(state: ArrayState, bytes: number, what: string): void {
    const pool = this.freePool;
    const size = (volume: string) =>
      this.array.volumes.find((v) => v.id === volume)?.size ?? state.restored[volume]?.sizeBytes ?? 0;
    const used =
      Object.keys(state.pairs).reduce((n, v) => n + size(v), 0) +
      Object.values(state.restored).reduce((n, r) => n + r.sizeBytes, 0) +
      Object.values(state.snapshots).reduce((n, x) => n + x.sizeBytes, 0);
    const count = Object.keys(state.pairs).length + Object.keys(state.snapshots).length;
    if (used + bytes > pool.size)
      throw new NoResourcesError(
        `the free pool of ${this.device} (${pool.size} bytes) has ${pool.size - used} bytes left, too few for ${what} (${bytes} bytes); delete a pair or snapshot, or raise the array's freePool.size in kura.yaml`,
        { site: this.site, array: this.array.name },
      );
    if (count + 1 > pool.replicas)
      throw new NoResourcesError(
        `the free pool of ${this.device} holds ${count} of its ${pool.replicas} replicas and snapshots, so it has none left for ${what}; delete a pair or snapshot, or raise the array's freePool.replicas in kura.yaml`,
        { site: this.site, array: this.array.name },
      );
  }

  private async startMirror(s: Session, volume: string, sync: 'full' | 'none'): Promise<void> {
    const pair = this.pairOf(s.state, volume);
    const replica = this.replicaPath(pair.replica);
    await createSparse(replica, this.volume(volume).size);
    const nodes = new Set((await this.nodes(s.qmp)).map((n) => n['node-name']));
    if (!nodes.has(ids.replica(volume)))
      await s.qmp.execute('blockdev-add', {
        driver: 'file',
        'node-name': ids.replica(volume),
        filename: replica,
        // The resync writes the marked blocks into this file beside the mirror.
        locking: 'off',
      });
    await s.qmp.execute('blockdev-mirror', {
      'job-id': ids.pairJob(volume),
      device: ids.primary(volume),
      target: ids.replica(volume),
      sync,
      // A capped copy also moves in small buffers: the cap is only enforced between them.
      ...(this.copyRate > 0 ? { speed: this.copyRate, 'buf-size': 256 * 1024, granularity: SPLIT_GRANULARITY } : {}),
      // Once ready, a write is acknowledged only when it is on both volumes.
      'copy-mode': 'write-blocking',
      // A concluded job stays visible, with its error, until converge or a split dismisses it.
      'auto-dismiss': false,
    });
  }

  private async finishSplit(s: Session, volume: string, pair: PairRecord): Promise<void> {
    const job = (await this.jobs(s.qmp)).find((j) => j.id === ids.pairJob(volume));
    if (job) await s.qmp.execute('job-dismiss', { id: job.id }).catch(() => undefined);
    await this.deleteNode(s.qmp, ids.replica(volume));
    pair.phase = 'split';
    pair.splitAt = new Date().toISOString();
    await s.save();
  }

  /**
   * Copies the blocks the split bitmap marks from the primary's file to the replica's, in rounds:
   * each round freezes the bitmap and starts a fresh one in one transaction, copies what the frozen
   * one marks, and the next round copies again what was written meanwhile (a write racing a copy
   * may have been overtaken by the copy's older bytes). A round that sees no write ends it: from
   * then on the mirror writes both. Returns the bytes copied, or undefined when writes never stopped.
   */
  private async copyMarkedBlocks(qmp: QmpClient, volume: string, replicaFile: string): Promise<number | undefined> {
    const node = ids.primary(volume);
    let marked = SPLIT_BITMAP;
    let copied = 0;
    const src = await fs.open(this.imagePath(volume), 'r');
    const dst = await fs.open(replicaFile, 'r+');
    try {
      for (let round = 1; round <= RESYNC_ROUNDS; round++) {
        const fresh = ids.resyncBitmap(round);
        await this.removeBitmap(qmp, volume, fresh);
        await qmp.execute('transaction', {
          actions: [
            { type: 'block-dirty-bitmap-add', data: { node, name: fresh, granularity: SPLIT_GRANULARITY } },
            { type: 'block-dirty-bitmap-disable', data: { node, name: marked } },
          ],
        });
        for (const extent of await this.dirtyExtents(qmp, volume, marked)) {
          copied += await copyRange(src, dst, extent.offset, extent.length);
        }
        await dst.datasync();
        await this.removeBitmap(qmp, volume, marked);
        marked = fresh;
        if ((await this.bitmapCount(qmp, volume, fresh)) === 0) {
          await this.removeBitmap(qmp, volume, fresh);
          return copied;
        }
      }
      await this.removeBitmap(qmp, volume, marked);
      return undefined;
    } finally {
      await src.close();
      await dst.close();
    }
  }

  /** The extents a bitmap marks, read through a short-lived NBD export (`nbdinfo --map`). */
  private async dirtyExtents(
    qmp: QmpClient,
    volume: string,
    bitmap: string,
  ): Promise<{ offset: number; length: number }[]> {
    const exportId = ids.bitmapExport(volume);
    await qmp.execute('block-export-add', {
      type: 'nbd',
      id: exportId,
      'node-name': ids.primary(volume),
      name: exportId,
      writable: false,
      bitmaps: [bitmap],
    });
    try {
      const { stdout } = await run('nbdinfo', [
        `--map=qemu:dirty-bitmap:${bitmap}`,
        '--json',
        `nbd+unix:///${exportId}?socket=${this.paths.nbdSocket}`,
      ]);
      const extents = JSON.parse(stdout) as { offset: number; length: number; type: number }[];
      return extents.filter((e) => (e.type & 1) === 1);
    } finally {
      await this.deleteExport(qmp, exportId);
    }
  }

  private async startSnapshot(qmp: QmpClient, volume: string, name: string, size: number): Promise<void> {
    const fleecing = this.fleecingPath(volume, name);
    const readPath = this.snapshotReadPath(volume, name);
    await fs.rm(fleecing, { force: true });
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', fleecing, String(size)]);
    await qmp.execute('blockdev-add', {
      driver: 'qcow2',
      'node-name': ids.snapshotNode(volume, name),
      file: { driver: 'file', filename: fleecing },
      // Blocks not yet saved read through to the primary, which has not changed them since.
      backing: ids.primary(volume),
    });
    await qmp.execute('blockdev-backup', {
      'job-id': ids.snapshotJob(volume, name),
      device: ids.primary(volume),
      target: ids.snapshotNode(volume, name),
      sync: 'none',
      'auto-dismiss': false,
    });
    await fs.writeFile(readPath, '');
    await qmp.execute('block-export-add', {
      type: 'fuse',
      id: ids.snapshotExport(volume, name),
      'node-name': ids.snapshotNode(volume, name),
      mountpoint: readPath,
      writable: false,
    });
  }

  private async dropSnapshot(qmp: QmpClient, volume: string, name: string): Promise<void> {
    await this.deleteExport(qmp, ids.snapshotExport(volume, name));
    await this.stopJob(qmp, ids.snapshotJob(volume, name));
    await this.deleteNode(qmp, ids.snapshotNode(volume, name));
    const readPath = this.snapshotReadPath(volume, name);
    await unmountIfMounted(readPath);
    await fs.rm(readPath, { force: true });
    await fs.rm(this.fleecingPath(volume, name), { force: true });
  }

  private jobs(qmp: QmpClient): Promise<JobInfo[]> {
    return qmp.execute<JobInfo[]>('query-jobs');
  }

  private nodes(qmp: QmpClient): Promise<NodeInfo[]> {
    return qmp.execute<NodeInfo[]>('query-named-block-nodes', { flat: true });
  }

  /** How many bytes the bitmap marks, or undefined when the primary has no such bitmap. */
  private async bitmapCount(qmp: QmpClient, volume: string, bitmap: string): Promise<number | undefined> {
    const node = (await this.nodes(qmp)).find((n) => n['node-name'] === ids.primary(volume));
    return node?.['dirty-bitmaps']?.find((b) => b.name === bitmap)?.count;
  }

  private async removeBitmap(qmp: QmpClient, volume: string, bitmap: string): Promise<void> {
    if ((await this.bitmapCount(qmp, volume, bitmap)) === undefined) return;
    await qmp.execute('block-dirty-bitmap-remove', { node: ids.primary(volume), name: bitmap });
  }

  /** Waits until the job has concluded (or is gone); the job as it concluded, or undefined when gone. */
  private async waitConcluded(qmp: QmpClient, id: string): Promise<JobInfo | undefined> {
    const job = await this.waitStatus(qmp, id, 'concluded');
    if (job && job.status !== 'concluded')
      throw new DeviceFaultError(
        this.device,
        `${this.device}: job ${id} did not end within ${JOB_TIMEOUT_MS} ms (status ${job.status})`,
      );
    return job;
  }

  /** Waits for a job's status, on its events; the job when it got there (or at the timeout), undefined when it is gone. */
  private async waitStatus(qmp: QmpClient, id: string, status: string): Promise<JobInfo | undefined> {
    const deadline = Date.now() + JOB_TIMEOUT_MS;
    for (;;) {
      const job = (await this.jobs(qmp)).find((j) => j.id === id);
      if (!job || job.status === status || (status === 'ready' && job.status === 'concluded')) return job;
      if (Date.now() >= deadline) return job;
      const isOurs = (e: QmpEvent) =>
        (e.event === 'JOB_STATUS_CHANGE' && e.data.id === id) ||
        (e.event.startsWith('BLOCK_JOB_') && e.data.device === id);
      await qmp
        .waitForEvent(isOurs, Math.min(1_000, deadline - Date.now()), `a change of job ${id}`)
        .catch(() => undefined);
    }
  }

  /** Cancels the job (abandoning what it was doing), waits until it concluded and dismisses it. */
  private async stopJob(qmp: QmpClient, id: string): Promise<void> {
    const job = (await this.jobs(qmp)).find((j) => j.id === id);
    if (!job) return;
    if (job.status !== 'concluded') {
      await qmp.execute('block-job-cancel', { device: id, force: true }).catch(() => undefined);
      await this.waitConcluded(qmp, id);
    }
    await qmp.execute('job-dismiss', { id }).catch(() => undefined);
  }

  private async deleteNode(qmp: QmpClient, name: string): Promise<void> {
    const exists = (await this.nodes(qmp)).some((n) => n['node-name'] === name);
    if (exists) await qmp.execute('blockdev-del', { 'node-name': name });
  }

  /** Deletes an export and waits until it is gone (the daemon removes it once its clients left). */
  private async deleteExport(qmp: QmpClient, id: string): Promise<void> {
    const list = () => qmp.execute<{ id: string }[]>('query-block-exports');
    if (!(await list()).some((e) => e.id === id)) return;
    await qmp.execute('block-export-del', { id }).catch(() => undefined);
    const deadline = Date.now() + JOB_TIMEOUT_MS;
    while ((await list()).some((e) => e.id === id)) {
      if (Date.now() >= deadline) {
        await qmp.execute('block-export-del', { id, mode: 'hard' }).catch(() => undefined);
        break;
      }
      await sleep(20);
    }
  }
}

/** A restored volume's name becomes a file, an export and QEMU names: the inventory's name rules. */
function checkVolumeName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name))
    throw new InvalidInputError(
      `volume name "${name}" must start with a letter or digit and hold only letters, digits, ".", "_" or "-" (at most 63)`,
    );
}

/** Snapshot names become file and QEMU names: the inventory's name rules. */
function checkSnapshotName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name))
    throw new InvalidInputError(
      `snapshot name "${name}" must start with a letter or digit and hold only letters, digits, ".", "_" or "-" (at most 63)`,
    );
}

/** Creates a sparse file of `size` bytes unless it exists already with that size. */
async function createSparse(file: string, size: number): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const fh = await fs.open(file, 'a');
  try {
    if ((await fh.stat()).size !== size) await fh.truncate(size);
  } finally {
    await fh.close();
  }
}

/** A volume's image: created sparse when missing; NotFoundError when it exists with another size. */
async function ensureImage(file: string, size: number, what: string): Promise<void> {
  const st = await fs.stat(file).catch(() => undefined);
  if (!st) return createSparse(file, size);
  if (st.size !== size)
    throw new NotFoundError(
      `the image of volume ${what} (${file}) holds ${st.size} bytes but the inventory says ${size}; move the file aside (or correct the size in kura.yaml) and run again`,
      { file },
    );
}

/** Copies one extent between open files; returns the bytes copied. */
async function copyRange(src: FileHandle, dst: FileHandle, offset: number, length: number): Promise<number> {
  const buf = Buffer.alloc(Math.min(length, 1024 * 1024));
  let done = 0;
  while (done < length) {
    const want = Math.min(buf.length, length - done);
    const { bytesRead } = await src.read(buf, 0, want, offset + done);
    if (bytesRead === 0) break;
    await dst.write(buf, 0, bytesRead, offset + done);
    done += bytesRead;
  }
  return done;
}

/** Runs a qemu-storage-daemon that daemonizes; resolves when the foreground part exits. */
function runDaemon(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(QSD_BINARY, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (stderr += d));
    child.on('error', (err) => resolve({ code: 127, stderr: err.message }));
    child.on('close', (code) => resolve({ code: code ?? 1, stderr }));
  });
}
