/**
 * The remote site's copy of one remote-copy group: received writes wait in an inbox (by seq, in
 * whatever order they arrived) and are applied to the remote volumes strictly in seq order, only
 * once the whole run from the last applied seq is there. The applied seq lives in SQLite beside
 * the inbox; volume data lives in the volume files. A batch is made atomic by redo: its range is
 * recorded as an intent first, its writes are made and fsynced, and one transaction then advances
 * the applied seq, clears the intent, drops the batch from the inbox and logs each seq once. A
 * crash in between leaves the intent: opening the replica writes the same batch again (the same
 * overwrites, in the same order, so the volumes end as if it had run once) and commits it.
 */
import type Database from 'better-sqlite3';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { openDatabase } from '../stack/sqlite';
import { AccessDeniedError, InvalidInputError, NotFoundError } from '../domain/errors';
import type { GroupWrite } from '../datapath/group-journal';

const MIGRATIONS = [
  `CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 1), applied INTEGER NOT NULL, appliedAt REAL NOT NULL,
     intentFrom INTEGER, intentTo INTEGER, role TEXT NOT NULL, failoverAt REAL);
   INSERT INTO state (id, applied, appliedAt, role) VALUES (1, 0, 0, 'secondary');
   CREATE TABLE inbox (seq INTEGER PRIMARY KEY, at REAL NOT NULL, volume TEXT NOT NULL, offset INTEGER NOT NULL,
     length INTEGER NOT NULL, data BLOB);
   CREATE TABLE applied_log (seq INTEGER NOT NULL, appliedAt REAL NOT NULL);
   CREATE TABLE changed (volume TEXT NOT NULL, block INTEGER NOT NULL, PRIMARY KEY (volume, block));`,
];

/** The apply pass running on each replica file in this process (by absolute path), which the next one waits for. */
const passes = new Map<string, Promise<void>>();

/** Blocks by which the remote copy tracks its own writes after a failover (what failback resyncs). */
export const RESYNC_BLOCK_BYTES = 64 * 1024;

/** The blocks a write of `length` bytes at `offset` touches. */
export function blocksOfWrite(offset: number, length: number): number[] {
  if (length <= 0) return [];
  const first = Math.floor(offset / RESYNC_BLOCK_BYTES);
  const last = Math.floor((offset + length - 1) / RESYNC_BLOCK_BYTES);
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}

export interface ReplicaState {
  applied: number;
  /** Reception time (at the main site) of the last applied write, ms since the epoch; 0 when none. */
  appliedAt: number;
  role: 'secondary' | 'primary';
  /** A batch recorded as begun and not yet committed. */
  intent: { from: number; to: number } | null;
  inbox: number;
}

export interface ApplyOptions {
  /** Writes per batch at most. */
  batch?: number;
  /** Pause between the writes of a batch (a lab knob). */
  pauseMs?: number;
  /** Called after each committed batch. */
  onBatch?: (applied: number) => void;
}

export class Replica {
  private readonly db: Database.Database;
  private readonly fds = new Map<string, number>();

  /**
   * @param files the group's volumes: name at the main site → the remote volume's file.
   * @param sizes the volumes' sizes in bytes, by the same names: a write past a volume's end is refused on receipt.
   */
  constructor(
    readonly group: string,
    readonly file: string,
    private readonly files: Record<string, string>,
    private readonly sizes?: Record<string, number>,
  ) {
    this.db = openDatabase(file, MIGRATIONS, { synchronous: 'FULL' });
  }

  state(): ReplicaState {
    const r = this.db
      .prepare('SELECT applied, appliedAt, intentFrom, intentTo, role FROM state WHERE id = 1')
      .get() as {
      applied: number;
      appliedAt: number;
      intentFrom: number | null;
      intentTo: number | null;
      role: 'secondary' | 'primary';
    };
    const inbox = this.db.prepare('SELECT COUNT(*) FROM inbox').pluck().get() as number;
    return {
      applied: r.applied,
      appliedAt: r.appliedAt,
      role: r.role,
      intent: r.intentFrom === null || r.intentTo === null ? null : { from: r.intentFrom, to: r.intentTo },
      inbox,
    };
  }

  /** Every seq ever committed, in commit order (the audit that nothing was applied twice or out of order). */
  appliedLog(): number[] {
    return this.db.prepare('SELECT seq FROM applied_log ORDER BY rowid').pluck().all() as number[];
  }

  /**
   * Takes received writes into the inbox. Duplicates (a resent batch) and writes already applied
   * are ignored, so receiving is idempotent. Returns the applied seq.
   */
  receive(writes: readonly GroupWrite[]): number {
    const insert = this.db.prepare(
      'INSERT OR IGNORE INTO inbox (seq, at, volume, offset, length, data) SELECT ?, ?, ?, ?, ?, ? WHERE ? > (SELECT applied FROM state WHERE id = 1)',
    );
    this.db.transaction(() => {
      for (const w of writes) {
        if (!(w.volume in this.files))
          throw new NotFoundError(
            `remote-copy group ${this.group} has no volume "${w.volume}" (its volumes: ${Object.keys(this.files).join(', ')})`,
            { group: this.group, volume: w.volume },
          );
        const size = this.sizes?.[w.volume];
        if (size !== undefined && w.offset + w.length > size)
          throw new InvalidInputError(
            `remote-copy group ${this.group}: write ${w.seq} of ${w.length} bytes at ${w.offset} runs past the end of ${w.volume} (${size} bytes)`,
          );
        if (w.data !== null && w.data.length !== w.length)
          throw new InvalidInputError(
            `remote-copy group ${this.group}: write ${w.seq} announces ${w.length} bytes but carries ${w.data.length}`,
          );
        insert.run(w.seq, w.at, w.volume, w.offset, w.length, w.data, w.seq);
      }
    })();
    return this.state().applied;
  }

  /**
   * Applies what can be applied: batches of the contiguous run after the applied seq, in seq order.
   * A batch begun before a crash is finished first. Returns the applied seq.
   */
  async apply(opts: ApplyOptions = {}): Promise<number> {
    // One pass at a time per replica file in this process: an applier the Temporal server lost track
    // of (its heartbeats failed while the server was down) goes on with its batch while the server's
    // retry of it starts another applier here; both would run the begun batch and commit it twice.
    const key = path.resolve(this.file);
    const run = (passes.get(key) ?? Promise.resolve()).then(() => this.applyPass(opts));
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    passes.set(key, tail);
    try {
      return await run;
    } finally {
      if (passes.get(key) === tail) passes.delete(key);
    }
  }

  private async applyPass(opts: ApplyOptions): Promise<number> {
    const batch = opts.batch ?? 64;
    const st = this.state();
    if (st.intent) await this.runBatch(st.intent.from, st.intent.to, opts);
    for (;;) {
      const applied = this.state().applied;
      const run = this.db
        .prepare('SELECT seq FROM inbox WHERE seq > ? ORDER BY seq LIMIT ?')
        .pluck()
        .all(applied, batch) as number[];
      let to = applied;
      for (const seq of run) {
        if (seq !== to + 1) break;
        to = seq;
      }
      if (to === applied) return applied;
      this.db.prepare('UPDATE state SET intentFrom = ?, intentTo = ? WHERE id = 1').run(applied + 1, to);
      await this.runBatch(applied + 1, to, opts);
    }
  }

  private async runBatch(from: number, to: number, opts: ApplyOptions): Promise<void> {
    const writes = this.db
      .prepare('SELECT seq, at, volume, offset, length, data FROM inbox WHERE seq BETWEEN ? AND ? ORDER BY seq')
      .all(from, to) as GroupWrite[];
    const touched = new Set<number>();
    for (const [i, w] of writes.entries()) {
      const fd = this.fd(w.volume);
      if (w.data) writeSync(fd, w.data, 0, w.data.length, w.offset);
      else writeZeroes(fd, w.offset, w.length);
      touched.add(fd);
      if (opts.pauseMs && i < writes.length - 1) await new Promise((r) => setTimeout(r, opts.pauseMs));
    }
    // The data first, then the seq that says it is there.
    for (const fd of touched) fsyncSync(fd);
    const last = writes[writes.length - 1];
    const now = Date.now();
    const log = this.db.prepare('INSERT INTO applied_log (seq, appliedAt) VALUES (?, ?)');
    this.db.transaction(() => {
      // Committed only from the seq before the batch: an applier of another process that committed
      // it meanwhile has logged it already.
      const moved = this.db
        .prepare(
          'UPDATE state SET applied = ?, appliedAt = ?, intentFrom = NULL, intentTo = NULL WHERE id = 1 AND applied = ?',
        )
        .run(to, last?.at ?? now, from - 1);
      if (moved.changes === 0) return;
      this.db.prepare('DELETE FROM inbox WHERE seq <= ?').run(to);
      for (const w of writes) log.run(w.seq, now);
    })();
    opts.onBatch?.(to);
  }

  /** Failover: the remote copy becomes the primary; its hosts' writes are tracked from here for failback. */
  promote(): void {
    this.db
      .prepare(`UPDATE state SET role = 'primary', failoverAt = COALESCE(failoverAt, ?) WHERE id = 1`)
      .run(Date.now());
  }

  /**
   * A host write at the remote site, to the promoted copy: refused while it is the secondary
   * (shipped writes are the only ones then), tracked by block while it is the primary. The block
   * is recorded before the write, so a crash between the two resyncs one block too many, never one too few.
   */
  trackHostWrite(volume: string, offset: number, length: number): void {
    if (this.state().role !== 'primary')
      throw new AccessDeniedError(
        `remote-copy group ${this.group} is not failed over: the remote copy of ${volume} is written only by shipping (\`kura remote failover ${this.group}\` makes it the primary)`,
        { group: this.group, volume },
      );
    const insert = this.db.prepare('INSERT OR IGNORE INTO changed (volume, block) VALUES (?, ?)');
    this.db.transaction(() => {
      for (const b of blocksOfWrite(offset, length)) insert.run(volume, b);
    })();
  }

  /** Blocks written at the remote site since the failover, by volume (main-site names). */
  changedBlocks(): Record<string, number[]> {
    const rows = this.db.prepare('SELECT volume, block FROM changed ORDER BY volume, block').all() as {
      volume: string;
      block: number;
    }[];
    const out: Record<string, number[]> = {};
    for (const r of rows) (out[r.volume] ??= []).push(r.block);
    return out;
  }

  /** Failback done: secondary again, in step with the main site at `baseSeq`. */
  demote(baseSeq: number): void {
    this.db.transaction(() => {
      this.db
        .prepare(
          `UPDATE state SET role = 'secondary', failoverAt = NULL, applied = ?, intentFrom = NULL, intentTo = NULL WHERE id = 1`,
        )
        .run(baseSeq);
      this.db.prepare('DELETE FROM inbox').run();
      this.db.prepare('DELETE FROM changed').run();
    })();
  }

  /** Set-up: the remote volumes were copied whole from the main site as of `baseSeq`. */
  initialise(baseSeq: number): void {
    this.db.prepare('UPDATE state SET applied = ?, appliedAt = ? WHERE id = 1').run(baseSeq, Date.now());
  }

  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
    this.db.close();
  }

  private fd(volume: string): number {
    let fd = this.fds.get(volume);
    if (fd === undefined) {
      const file = this.files[volume];
      if (file === undefined)
        throw new NotFoundError(`remote-copy group ${this.group} has no volume "${volume}"`, {
          group: this.group,
          volume,
        });
      fd = openSync(file, 'r+');
      this.fds.set(volume, fd);
    }
    return fd;
  }
}

const ZEROES = Buffer.alloc(1024 * 1024);

/** Writes `length` zero bytes at `offset`, a MiB at a time. */
function writeZeroes(fd: number, offset: number, length: number): void {
  for (let done = 0; done < length;) {
    const n = Math.min(ZEROES.length, length - done);
    writeSync(fd, ZEROES, 0, n, offset + done);
    done += n;
  }
}
