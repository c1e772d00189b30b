/**
 * The deduplicated chunk store on one directory (docs/adr/032): chunks named by the SHA-256 of their
 * bytes under `.chunks/ab/cd/<digest>` (Proxmox Backup Server's layout, split twice so no directory
 * grows past 65,536 entries), one index per backup under `indexes/`, and the leases of running
 * writers under `.writers/`. Every file appears by rename after an fsync, and an index is written
 * only after every chunk it names is durable, so a crash at any instant leaves no index pointing
 * at a missing chunk — at worst an orphan chunk that garbage collection removes.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import * as path from 'node:path';
import { sha256Hex } from '../datamover/sha256';
import { ChecksumMismatchError, NotFoundError } from '../domain/errors';
import { parseWith } from '../domain/validate';
import { StoreIndexSchema, type StoreIndex } from '../domain/store';
import { decodeChunk, encodeChunk, encodeChunkAsync } from './chunk-codec';

/** What writing a chunk did: nothing (the store held it: its time is refreshed) or a new file of `storedBytes`. */
export interface PutResult {
  written: boolean;
  storedBytes: number;
}

/** What garbage collection found and removed. */
export interface GcResult {
  /** Chunks referenced by some index (marked). */
  marked: number;
  /** Chunks and leftover temporary files removed, and their bytes. */
  removed: number;
  removedBytes: number;
  /** Unreferenced chunks kept because they are younger than the grace period (a running backup may need them). */
  pending: number;
  /** The instant older than which an unreferenced chunk was removed (ISO). */
  cutoff: string;
}

/** The directories with entries not yet durable, by store root (see ChunkStore.flushDirs). */
const UNSYNCED_DIRS = new Map<string, Map<string, number>>();

export class ChunkStore {
  constructor(readonly root: string) {}

  /** `.chunks/ab/cd/<digest>` below the store's root. */
  chunkPath(digest: string): string {
    return path.join(this.root, '.chunks', digest.slice(0, 2), digest.slice(2, 4), digest);
  }

  has(digest: string): boolean {
    return existsSync(this.chunkPath(digest));
  }

  /**
   * Writes a chunk unless the store holds it already: then only its time is refreshed, which is
   * what keeps it from a garbage collection running meanwhile (see gc). Never writes a chunk twice.
   * With `batch`, the chunk is compressed off the main thread and its file's data made durable, but
   * its directory entry only at the next {@link flushDirs} — which {@link writeIndex} runs first.
   */
  async put(digest: string, raw: Buffer, opts: { batch?: boolean } = {}): Promise<PutResult> {
    // The same chunk being written by another backup of this process: wait for it, write nothing.
    const pending = this.writing.get(digest);
    if (pending) {
      await pending;
      return { written: false, storedBytes: 0 };
    }
    // Registered before the first await, so a second put of the same chunk always finds it.
    const write = (async (): Promise<PutResult> => {
      if (await this.touch(digest)) return { written: false, storedBytes: 0 };
      if (!opts.batch) {
        const encoded = encodeChunk(raw);
        await writeAtomic(this.chunkPath(digest), encoded);
        return { written: true, storedBytes: encoded.length };
      }
      const encoded = await encodeChunkAsync(raw);
      await this.writeBatched(this.chunkPath(digest), encoded);
      return { written: true, storedBytes: encoded.length };
    })();
    this.writing.set(digest, write);
    try {
      return await write;
    } finally {
      this.writing.delete(digest);
    }
  }

  /** Chunks being written now by this process, so two backups sharing a new chunk write it once. */
  private readonly writing = new Map<string, Promise<PutResult>>();

  /**
   * Directories that gained an entry (a chunk, a subdirectory) not yet made durable, each with a
   * counter bumped before and after every rename into it: {@link flushDirs} forgets a directory
   * only when no rename touched it while its fsync ran, so no entry is ever taken as durable early.
   */
  private get unsyncedDirs(): Map<string, number> {
    // Per store directory, not per object: another ChunkStore of this process over the same root
    // (a drill's, a report's) that writes an index must sync what this one renamed, too.
    const root = path.resolve(this.root);
    let dirs = UNSYNCED_DIRS.get(root);
    if (!dirs) UNSYNCED_DIRS.set(root, (dirs = new Map()));
    return dirs;
  }

  private markUnsynced(dir: string): void {
    this.unsyncedDirs.set(dir, (this.unsyncedDirs.get(dir) ?? 0) + 1);
  }

  /**
   * A chunk file written whole — temporary file, data fsync, rename — whose directory entry is made
   * durable later, once for many chunks, by {@link flushDirs}.
   */
  private async writeBatched(file: string, data: Buffer): Promise<void> {
    const dir = path.dirname(file);
    const made = await mkdir(dir, { recursive: true });
    // New directories are entries of their parents, durable only with them.
    for (let d = dir; made !== undefined; d = path.dirname(d)) {
      this.markUnsynced(path.dirname(d));
      if (d === made || d === path.dirname(d)) break;
    }
    const tmp = path.join(dir, `.tmp-${path.basename(file)}-${randomBytes(4).toString('hex')}`);
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    this.markUnsynced(dir);
    await rename(tmp, file);
    this.markUnsynced(dir);
  }

  /**
   * Makes every directory entry a batched {@link put} created durable (one fsync per directory, a
   * few at a time); returns how many directories were synced.
   */
  async flushDirs(): Promise<number> {
    const pending = [...this.unsyncedDirs.entries()];
    let next = 0;
    const lane = async () => {
      while (next < pending.length) {
        const [dir, seen] = pending[next++]!;
        await syncDir(dir);
        if (this.unsyncedDirs.get(dir) === seen) this.unsyncedDirs.delete(dir);
      }
    };
    await Promise.all(Array.from({ length: Math.min(8, pending.length) }, lane));
    return pending.length;
  }

  /** Writes a chunk exactly as another store holds it on disk (sync), after checking it decodes to its digest. */
  async putEncoded(digest: string, encoded: Buffer): Promise<PutResult> {
    const raw = decodeChunk(encoded, digest);
    if (sha256Hex(raw) !== digest)
      throw new ChecksumMismatchError(
        `chunk ${digest} received hashes to ${sha256Hex(raw)}; it was damaged on the way`,
        {
          digest,
        },
      );
    if (await this.touch(digest)) return { written: false, storedBytes: 0 };
    await writeAtomic(this.chunkPath(digest), encoded);
    return { written: true, storedBytes: encoded.length };
  }

  /** Refreshes a chunk's time (marks it in use); false when the store does not hold it. */
  async touch(digest: string): Promise<boolean> {
    const now = new Date();
    try {
      await utimes(this.chunkPath(digest), now, now);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  /** A chunk's bytes as they lie on disk; NotFoundError when the store lacks it. */
  async getEncoded(digest: string): Promise<Buffer> {
    try {
      return await readFile(this.chunkPath(digest));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new NotFoundError(`chunk ${digest} is missing from the store at ${this.root}`, { digest });
      throw err;
    }
  }

  /**
   * A chunk's bytes, checked against its digest: ChecksumMismatchError when the file does not decode
   * or hash to its name, NotFoundError when it is missing.
   */
  async get(digest: string): Promise<Buffer> {
    const raw = decodeChunk(await this.getEncoded(digest), this.chunkPath(digest));
    const actual = sha256Hex(raw);
    if (actual !== digest)
      throw new ChecksumMismatchError(
        `chunk ${this.chunkPath(digest)} hashes to ${actual}, not to its name; the store's copy is damaged`,
        { digest },
      );
    return raw;
  }

  private indexPath(backupId: string): string {
    return path.join(this.root, 'indexes', `${encodeURIComponent(backupId)}.json`);
  }

  /** Writes a backup's index, atomically: only after every chunk it names is in the store. */
  async writeIndex(index: StoreIndex): Promise<void> {
    const checked = parseWith(StoreIndexSchema, index, 'store index');
    // Every chunk renamed into place so far, by this backup or another of this process, becomes
    // durable before an index can name it.
    await this.flushDirs();
    const missing = checked.chunks.filter((d) => !this.has(d));
    if (missing.length > 0)
      throw new NotFoundError(
        `index of ${checked.backupId} names ${missing.length} chunk(s) the store at ${this.root} lacks (first ${missing[0]}); it was not written`,
        { backupId: checked.backupId },
      );
    await writeAtomic(this.indexPath(checked.backupId), Buffer.from(JSON.stringify(checked)));
  }

  hasIndex(backupId: string): boolean {
    return existsSync(this.indexPath(backupId));
  }

  /** A backup's index; NotFoundError naming the store when it holds none. */
  async readIndex(backupId: string): Promise<StoreIndex> {
    let text: string;
    try {
      text = await readFile(this.indexPath(backupId), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new NotFoundError(`the store at ${this.root} holds no index of ${backupId}`, { backupId });
      throw err;
    }
    return parseWith(StoreIndexSchema, JSON.parse(text) as unknown, `index of ${backupId} in ${this.root}`);
  }

  /** The backups this store holds an index of. */
  async listIndexes(): Promise<string[]> {
    const names = await readdir(path.join(this.root, 'indexes')).catch(() => [] as string[]);
    return names
      .filter((n) => n.endsWith('.json') && !n.startsWith('.'))
      .map((n) => decodeURIComponent(n.slice(0, -5)))
      .sort();
  }

  /** Removes a backup's index (prune); its chunks go at the next garbage collection. */
  async removeIndex(backupId: string): Promise<boolean> {
    const file = this.indexPath(backupId);
    if (!existsSync(file)) return false;
    await rm(file, { force: true });
    return true;
  }

  /**
   * Registers a running writer (a backup or a sync) from `since` on: garbage collection never
   * removes a chunk touched after the oldest writer started, even one its index does not name yet.
   */
  async beginWriter(job: string, since: Date = new Date()): Promise<void> {
    const file = path.join(this.root, '.writers', encodeURIComponent(job));
    if (existsSync(file)) return;
    await writeAtomic(file, Buffer.from(since.toISOString()));
  }

  async endWriter(job: string): Promise<void> {
    await rm(path.join(this.root, '.writers', encodeURIComponent(job)), { force: true });
  }

  /** The start of every running writer, by job. */
  async writers(): Promise<Record<string, string>> {
    const dir = path.join(this.root, '.writers');
    const out: Record<string, string> = {};
    for (const n of await readdir(dir).catch(() => [] as string[])) {
      if (n.startsWith('.')) continue;
      out[decodeURIComponent(n)] = (await readFile(path.join(dir, n), 'utf8').catch(() => '')).trim();
    }
    return out;
  }

  /**
   * Garbage collection in two phases, as Proxmox Backup Server does it. Mark: refresh the time of
   * every chunk some index names. Sweep: remove every chunk (and leftover temporary file) whose time
   * is older than the cutoff — the start of this collection or of the oldest running writer,
   * whichever is earlier, less the grace period. A running backup touches each chunk it reuses and
   * writes new ones fresh, so nothing it needs is older than the cutoff.
   */
  async gc(opts: {
    graceMs: number;
    onProgress?: (done: number) => void;
    afterMark?: () => Promise<void>;
  }): Promise<GcResult> {
    const started = Date.now();
    const writerStarts = Object.values(await this.writers())
      .map((t) => Date.parse(t))
      .filter((t) => Number.isFinite(t));
    const cutoffMs = Math.min(started, ...writerStarts) - opts.graceMs;
    const marked = new Set<string>();
    let done = 0;
    for (const id of await this.listIndexes()) {
      const index = await this.readIndex(id).catch(() => undefined);
      if (!index) continue;
      for (const d of index.chunks) {
        if (marked.has(d)) continue;
        marked.add(d);
        await this.touch(d);
      }
      opts.onProgress?.(++done);
    }
    await opts.afterMark?.();
    let removed = 0;
    let removedBytes = 0;
    let pending = 0;
    for (const file of await this.chunkFiles()) {
      const st = await stat(file).catch(() => undefined);
      if (!st) continue;
      const name = path.basename(file);
      if (marked.has(name)) continue;
      if (st.mtimeMs >= cutoffMs) {
        pending += 1;
        continue;
      }
      // Moved aside first, then looked at again: a backup that reused the chunk between the stat and
      // the move has refreshed its time, and gets it back; one that comes after the move finds no
      // chunk and writes it anew.
      const aside = path.join(path.dirname(file), `.gc-${name}`);
      if (
        !(await rename(file, aside).then(
          () => true,
          () => false,
        ))
      )
        continue;
      const again = await stat(aside);
      if (again.mtimeMs >= cutoffMs) {
        if (!existsSync(file)) await rename(aside, file);
        else await rm(aside, { force: true });
        pending += 1;
        continue;
      }
      await rm(aside, { force: true });
      removed += 1;
      removedBytes += st.size;
    }
    return { marked: marked.size, removed, removedBytes, pending, cutoff: new Date(cutoffMs).toISOString() };
  }

  /** Every chunk this store holds, by digest. */
  async chunkDigests(): Promise<string[]> {
    return (await this.chunkFiles()).map((f) => path.basename(f)).filter((n) => /^[0-9a-f]{64}$/.test(n));
  }

  /** The files below `.chunks/`: chunks and any temporary file a crash left. */
  private async chunkFiles(): Promise<string[]> {
    const top = path.join(this.root, '.chunks');
    const out: string[] = [];
    for (const a of await readdir(top).catch(() => [] as string[]))
      for (const b of await readdir(path.join(top, a)).catch(() => [] as string[]))
        for (const c of await readdir(path.join(top, a, b)).catch(() => [] as string[]))
          out.push(path.join(top, a, b, c));
    return out;
  }

  /** Bytes the chunks take on disk, and their number (temporary files a crash left are not chunks). */
  async usage(): Promise<{ chunks: number; bytes: number }> {
    let bytes = 0;
    let chunks = 0;
    for (const f of await this.chunkFiles()) {
      if (!/^[0-9a-f]{64}$/.test(path.basename(f))) continue;
      const st = await stat(f).catch(() => undefined);
      if (!st) continue;
      chunks += 1;
      bytes += st.size;
    }
    return { chunks, bytes };
  }
}

/**
 * Writes a file so that it either appears whole or not at all: a temporary file beside it, fsync,
 * rename, fsync of the directory. A temporary file a crash leaves behind starts with `.tmp-`.
 */
export async function writeAtomic(file: string, data: Buffer): Promise<void> {
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true });
  const tmp = path.join(dir, `.tmp-${path.basename(file)}-${randomBytes(4).toString('hex')}`);
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    // A write the file system had no room for leaves nothing behind to hold the space.
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  } finally {
    await fh.close().catch(() => undefined);
  }
  await rename(tmp, file);
  await syncDir(dir);
}

/** fsync of a directory, which makes the entries renamed into it durable (where the file system allows it). */
async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync().catch(() => undefined);
  } finally {
    await d.close();
  }
}
