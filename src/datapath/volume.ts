/**
 * One protected volume inside the datapath: passthrough to main storage, or seed 002's backup mode
 * — main storage frozen at the switch, host writes journaled (in the file before the ack, durable
 * on FLUSH or FUA or before the ack, as kura.yaml's `datapath.journalSync` says) and applied
 * to a snapshot map by block, the base copy to backup storage, catch-up rounds, and the quiesced
 * switch back. Every host request goes through here; none is refused for being in a phase. The
 * parts live beside it: the storage files (block-store), the snapshot map, the phases and the
 * convergence rule (backup-phase), the files on disk (volume-state) and the base copy.
 */
import { mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import * as path from 'node:path';
import type { DatapathConfig, FinishResult, RoundResult, VolumeStatus } from '../domain/datapath';
import { BackupPhases, VolumeBusyError } from './backup-phase';
import { copyBase } from './base-copy';
import { BlockStore } from './block-store';
import { Journal, JournalKind } from './journal';
import { BLOCK_BYTES, SnapshotMap, blocksOf } from './snapshot-map';
import { Mutex, RangeLock, pace, sleep } from './sync';
import { VolumeStateStore, type BackupState, type LastBackup } from './volume-state';

// Exported from here as before the split: the NBD server advertises the snapshot's block size.
export { BLOCK_BYTES, VolumeBusyError };

/** Blocks written to main storage per hold of the write lock during catch-up. */
const REFLECT_BATCH = 64;

export interface VolumeOptions {
  /** The export name, array/volume. */
  name: string;
  /** Main storage: the volume file. */
  mainFile: string;
  /** Where this volume's journal and state file live. */
  stateDir: string;
  settings: DatapathConfig;
  /**
   * Called with every host write, in the order the volume applies them, before main storage or the
   * backup journal sees it (`data` null: a range written with zeroes): a remote-copy group's
   * journal (docs/adr/028). It may refuse the write
   * by throwing (a group failed over to its remote site); the host then gets an error.
   */
  onWrite?: (offset: number, length: number, data: Buffer | null) => void;
}

export class Volume {
  readonly name: string;
  readonly sizeBytes: number;
  private image: BlockStore | null = null;
  private journal: Journal | null = null;
  private readonly snapshot: SnapshotMap;
  private readonly phases: BackupPhases;
  /**
   * Orders host writes with each other by block (only writes sharing a block wait for one another,
   * so independent ones are journaled together and share an fdatasync) and with the switch and the
   * reflection of the snapshot, which take the whole volume.
   */
  private readonly writeLock = new RangeLock();
  private readonly controlLock = new Mutex();
  private baseCopy: Promise<void> | null = null;
  private baseCopyStop: AbortController | null = null;
  private baseCopyError: string | null = null;
  private gateWaiters: (() => void)[] = [];
  private inflight = 0;
  private idleWaiters: (() => void)[] = [];
  private replayed = 0;
  private lastQuiesceMs: number | null = null;
  /** The last backup switched back to passthrough, kept on disk so a retried finish after a restart knows it happened. */
  private lastFinished: LastBackup | null = null;
  private served = 0;
  private failed = 0;

  private constructor(
    private readonly opts: VolumeOptions,
    private readonly main: BlockStore,
    private readonly files: VolumeStateStore,
  ) {
    this.name = opts.name;
    this.sizeBytes = main.sizeBytes;
    this.snapshot = new SnapshotMap(main.sizeBytes);
    this.phases = new BackupPhases(opts.name, main.sizeBytes, opts.settings);
  }

  /**
   * Opens main storage and, when the service stopped in backup mode, replays the journal into the
   * snapshot: every write acknowledged before the stop is served again, and reaches main storage.
   */
  static async open(opts: VolumeOptions): Promise<Volume> {
    const files = new VolumeStateStore(opts.name, opts.mainFile, opts.stateDir);
    files.ensureDir();
    const v = new Volume(opts, await BlockStore.open(opts.mainFile), files);
    v.lastFinished = await files.loadLast();
    const saved = await files.loadState();
    if (!saved) {
      // A journal without backup state is left from a switch back that had already reflected everything.
      await files.removeJournal();
      return v;
    }
    v.phases.resume(saved);
    v.image = await BlockStore.open(saved.image);
    const { journal, entries } = await Journal.open(files.journalFile, opts.settings.journalSync);
    v.journal = journal;
    for (const e of entries) await v.snapshot.apply(e, v.readBase);
    v.replayed = entries.length;
    return v;
  }

  // ---- host I/O ---------------------------------------------------------------------------------

  /** S401–S406: snapshot first; else wait for an unreflected write; else main storage (backup storage once copied). */
  async read(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    await this.readInto(out, offset);
    return out;
  }

  /** As `read`, into the caller's buffer (the NBD server reads into its reply, after the header). */
  async readInto(out: Buffer, offset: number): Promise<void> {
    return this.admitted(async () => {
      if (!this.phases.state) return this.main.readInto(out, offset);
      (await this.snapshot.read(offset, out.length, this.readBase)).copy(out);
    });
  }

  /**
   * A small passthrough read done before this returns (true), on the event loop with no promise in
   * between; false, with nothing read, when it must go through `readInto` (backup mode, a held
   * gate, or a read too large to block the loop for).
   */
  readNow(out: Buffer, offset: number): boolean {
    if (this.phases.quiescing || !BlockStore.immediate(out.length)) return false;
    if (!this.phases.state) return this.main.readNow(out, offset);
    // Backup mode: from the snapshot and what lies beneath it, unless a write of its blocks is still being applied.
    return this.snapshot.readNow(out, offset, this.readBaseNow);
  }

  /**
   * A passthrough write of up to 256 KiB without FUA done before this returns (true): nothing can run between
   * its start and its end, so when no earlier write of its blocks is still in progress it is in
   * order without a hold of the range lock. False, with nothing written, when it must go through
   * `write` (backup mode, a held gate, FUA, an overlapping write in progress, or a large write).
   */
  writeNow(offset: number, data: readonly Buffer[], length: number, fua: boolean): boolean {
    if (fua || this.phases.quiescing || length === 0 || !BlockStore.immediateWrite(length)) return false;
    const journal = this.phases.state ? this.journal : null;
    // Backup mode on the spot only when its record needs no fdatasync before the ack (docs/adr/046)
    // and the convergence path adds nothing to the write (a throttle's delay, a write to main storage).
    if (this.phases.state && (!journal || !journal.canAppendNow(length) || this.phases.path !== 'normal')) return false;
    if (!this.writeLock.free(Math.floor(offset / BLOCK_BYTES), Math.floor((offset + length - 1) / BLOCK_BYTES)))
      return false;
    const whole = data.length === 1 ? data[0]! : null;
    if (!journal) {
      this.opts.onWrite?.(offset, length, whole ?? Buffer.concat(data, length));
      return this.main.writeNow(offset, data);
    }
    // S301–S305 with nothing in between: the record in the file, the snapshot's blocks, the flag.
    const bytes = whole ?? Buffer.concat(data, length);
    this.opts.onWrite?.(offset, length, bytes);
    const entry = journal.appendNow(JournalKind.Write, offset, length, bytes, Date.now());
    this.snapshot.applyNow(entry, this.readBaseNow);
    journal.markReflectedNow(entry);
    this.phases.wrote(length);
    return true;
  }

  /**
   * Whether a write done now may keep a reference to its data once done: with a remote copy's hook
   * (which may queue it), and in backup mode, where the journal entry is made from it and what the
   * journal and the snapshot keep of a record is theirs to change. When not, a passthrough write
   * done on the spot (`writeNow`) leaves its buffer free for the caller to reuse.
   */
  get keepsWrittenData(): boolean {
    return Boolean(this.phases.state) || this.opts.onWrite !== undefined;
  }

  /**
   * A host write: straight to main storage in passthrough; S301–S305 in backup mode. The data may
   * come in pieces (as the socket delivered it); the volume keeps none of them after it resolves.
   */
  async write(offset: number, data: Buffer | readonly Buffer[], fua: boolean): Promise<void> {
    const length = Buffer.isBuffer(data) ? data.length : data.reduce((n, b) => n + b.length, 0);
    return this.admitted(() => this.modify(JournalKind.Write, offset, length, data, fua));
  }

  async writeZeroes(offset: number, length: number, fua: boolean): Promise<void> {
    return this.admitted(() => this.modify(JournalKind.Zeroes, offset, length, null, fua));
  }

  /**
   * Makes acknowledged writes durable: main storage in passthrough, the journal in backup mode
   * (where main storage is frozen, or catch-up syncs what it writes; nothing to do when every
   * record was made durable before its ack).
   */
  async flush(): Promise<void> {
    return this.admitted(async () => {
      if (!this.phases.state || !this.journal) await this.main.sync();
      else await this.journal.sync();
    });
  }

  /** Counts a request's outcome for the status (the NBD server reports every reply). */
  countRequest(ok: boolean): void {
    if (ok) this.served++;
    else this.failed++;
  }

  private async modify(
    kind: JournalKind,
    offset: number,
    length: number,
    pieces: Buffer | readonly Buffer[] | null,
    fua: boolean,
  ): Promise<void> {
    const first = Math.floor(offset / BLOCK_BYTES);
    const unlock = await this.writeLock.lock(
      first,
      length > 0 ? Math.floor((offset + length - 1) / BLOCK_BYTES) : first,
    );
    try {
      // A zeroing goes as its length: a WRITE_ZEROES may span the whole volume.
      if (this.opts.onWrite)
        this.opts.onWrite(
          offset,
          length,
          pieces === null ? null : Buffer.isBuffer(pieces) ? pieces : Buffer.concat(pieces, length),
        );
      if (!this.phases.state || !this.journal) {
        if (pieces) await this.main.write(offset, pieces);
        else await this.main.writeZeroes(offset, length);
        if (fua) await this.main.sync();
        return;
      }
      const data = pieces === null || Buffer.isBuffer(pieces) ? pieces : Buffer.concat(pieces, length);
      const route = this.phases.path;
      if (route !== 'normal') await sleep(this.opts.settings.throttleDelay);
      const blocks = blocksOf(offset, length);
      const applied = this.snapshot.hold(blocks);
      try {
        const entry = await this.journal.append(kind, offset, length, data, Date.now());
        // FUA: this write is durable before its ack, whatever the journal's mode.
        if (fua) await this.journal.sync();
        await this.snapshot.apply(entry, this.readBase);
        if (route === 'active' && this.phases.inCatchUp) await this.reflect(blocks);
        await this.journal.markReflected(entry);
      } finally {
        applied();
      }
      this.phases.wrote(length);
    } finally {
      unlock();
    }
  }

  // ---- control ----------------------------------------------------------------------------------

  /**
   * S101–S104: initialises the journal and the snapshot, then switches: from here on main storage
   * is frozen. Writes are held for the instant of the switch, so every write acknowledged before it
   * is on main storage (made durable here) and every later one is journaled. Idempotent per backup id.
   */
  async enterBackup(backupId: string, image: string): Promise<VolumeStatus> {
    return this.controlLock.run(async () => {
      if (this.phases.admitEnter(backupId)) return this.status();
      const unlock = await this.writeLock.lockAll();
      try {
        await this.main.sync();
        mkdirSync(path.dirname(image), { recursive: true });
        await this.files.removeJournal();
        const { journal } = await Journal.open(this.files.journalFile, this.opts.settings.journalSync);
        const img = await BlockStore.create(image, this.sizeBytes);
        this.snapshot.clear();
        this.replayed = 0;
        this.baseCopyError = null;
        // The state file is the switch: written last, after the journal and the image exist.
        await this.phases.enter(backupId, image, (state) => this.files.saveState(state));
        this.journal = journal;
        this.image = img;
      } finally {
        unlock();
      }
      return this.status();
    });
  }

  /** S201–S202: starts (or resumes, after a restart) the copy of frozen main storage to backup storage. */
  startBaseCopy(backupId: string): VolumeStatus {
    this.phases.require(backupId);
    // Not while switching back: an abort in the base copy must not see a copy start again under it.
    if (this.phases.phase === 'base-copy' && !this.baseCopy) {
      const stop = new AbortController();
      this.baseCopyStop = stop;
      this.baseCopyError = null;
      this.baseCopy = this.runBaseCopy(stop.signal)
        .catch((err: unknown) => {
          this.baseCopyError = err instanceof Error ? err.message : String(err);
        })
        .finally(() => {
          this.baseCopy = null;
        });
    }
    return this.status();
  }

  private async runBaseCopy(signal: AbortSignal): Promise<void> {
    const state = this.phases.state;
    if (!state || !this.image) return;
    const { bytes } = await copyBase({
      source: this.main.file,
      destination: state.image,
      from: state.baseCopiedBytes,
      signal,
      bytesPerSecond: this.opts.settings.copyRate,
      onProgress: async (copied) => {
        state.baseCopiedBytes = copied;
        await this.files.saveState(state);
      },
    });
    if (bytes >= this.sizeBytes && this.phases.state === state)
      await this.phases.baseCopied(state, (next) => this.files.saveState(next));
  }

  /** Stops a running base copy and waits until it has. */
  private async stopBaseCopy(): Promise<void> {
    this.baseCopyStop?.abort();
    await this.baseCopy;
  }

  /**
   * S501–S505, one round: copies the snapshot as of time T (the blocks not yet on main storage)
   * and writes it to main storage; whatever was written after T is left for the next round.
   */
  async catchUpRound(backupId: string): Promise<RoundResult> {
    return this.controlLock.run(async () => {
      const state = this.phases.requireCatchUp(backupId);
      const copiedAt = new Date().toISOString();
      const t0 = Date.now();
      const copy = this.snapshot.unreflected(this.journal?.lastSeq ?? 0);
      let written = 0;
      for (let i = 0; i < copy.length; i += REFLECT_BATCH) {
        const unlock = await this.writeLock.lockAll();
        try {
          written += await this.reflect(copy.slice(i, i + REFLECT_BATCH));
        } finally {
          unlock();
        }
        await pace(this.opts.settings.copyRate, written, t0);
      }
      await this.main.sync();
      this.phases.roundDone(state, this.snapshot.unreflectedBytes);
      await this.files.saveState(state);
      return {
        round: state.rounds,
        copiedAt,
        blocksWritten: Math.ceil(written / BLOCK_BYTES),
        bytesWritten: written,
        durationMs: Date.now() - t0,
        status: this.status(),
      };
    });
  }

  /**
   * S601–S604: when the drain estimate is below `maxEtaMs`, stops taking host commands, waits for
   * those in progress, reflects everything, checks nothing is left, and switches back to
   * passthrough. Held commands are served right after; none fails. The window is measured.
   */
  async finish(backupId: string, maxEtaMs: number): Promise<FinishResult> {
    return this.controlLock.run(async () => {
      const state = this.phases.requireFinishable(backupId);
      const etaMs = this.status().etaMs;
      if (etaMs === null || etaMs >= maxEtaMs)
        return { switched: false, etaMs, quiesceMs: null, drainedBytes: 0, status: this.status() };
      const { quiesceMs, drainedBytes } = await this.quiesceAndSwitch(state, false);
      return { switched: true, etaMs, quiesceMs, drainedBytes, status: this.status() };
    });
  }

  /** Leaves backup mode at once: everything the host wrote goes to main storage, the partial image is removed. */
  async abort(backupId: string): Promise<VolumeStatus> {
    return this.controlLock.run(async () => {
      if (!this.phases.state) return this.status();
      const state = this.phases.require(backupId);
      await this.stopBaseCopy();
      await this.quiesceAndSwitch(state, true);
      return this.status();
    });
  }

  private async quiesceAndSwitch(
    state: BackupState,
    discardImage: boolean,
  ): Promise<{ quiesceMs: number; drainedBytes: number }> {
    // S602: hold new host commands; the ones already taken finish first.
    this.phases.beginQuiesce();
    const t0 = performance.now();
    let result: { quiesceMs: number; drainedBytes: number };
    try {
      while (this.inflight > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
      // A base copy asked for between an abort's stop and the hold would rewrite the state file after it is gone.
      await this.stopBaseCopy();
      // S603: reflect everything; the gate is closed, so nothing can be added meanwhile.
      let drained = 0;
      const unlock = await this.writeLock.lockAll();
      try {
        for (let due = this.snapshot.unreflected(); due.length > 0; due = this.snapshot.unreflected())
          drained += await this.reflect(due);
        await this.main.sync();
        // S604: back to passthrough. The state file goes first: once it is gone, main storage is the truth.
        await this.files.removeState();
        await this.journal?.remove();
        await this.image?.close();
        if (discardImage) await rm(state.image, { force: true });
        this.journal = null;
        this.image = null;
        this.phases.left();
        this.snapshot.clear();
      } finally {
        unlock();
      }
      this.lastQuiesceMs = performance.now() - t0;
      if (!discardImage) this.lastFinished = { backupId: state.backupId, quiesceMs: this.lastQuiesceMs };
      result = { quiesceMs: this.lastQuiesceMs, drainedBytes: drained };
    } finally {
      this.phases.endQuiesce();
      for (const w of this.gateWaiters.splice(0)) w();
    }
    // Recorded durably before the answer, for a retried finish, but after the host's I/O goes on.
    if (!discardImage && this.lastFinished) await this.files.saveLast(this.lastFinished);
    return result;
  }

  /** Bytes in this backup's journal (0 in passthrough, where there is none). */
  get journalBytes(): number {
    return this.journal?.bytes ?? 0;
  }

  /** Where the volume is, with the ETA of S701–S702. */
  status(): VolumeStatus {
    const unreflected = this.snapshot.unreflectedBytes;
    const p = this.phases.status(unreflected);
    return {
      export: this.name,
      sizeBytes: this.sizeBytes,
      mode: p.mode,
      phase: p.phase,
      backupId: p.backupId,
      image: p.image,
      switchedAt: p.switchedAt,
      baseCopiedBytes: p.baseCopiedBytes,
      baseCopyRunning: this.baseCopy !== null,
      snapshotBytes: this.snapshot.heldBytes,
      unreflectedBytes: unreflected,
      writeRate: p.writeRate,
      reflectRate: p.reflectRate,
      etaMs: p.etaMs,
      rounds: p.rounds,
      path: p.path,
      journalEntries: this.journal?.entries ?? 0,
      replayedEntries: this.replayed,
      lastQuiesceMs: this.lastQuiesceMs,
      lastFinished: this.lastFinished,
      requests: { served: this.served, failed: this.failed },
      baseCopyError: this.baseCopyError,
    };
  }

  /** Stops background work and closes the files; a volume in backup mode resumes from its journal on the next open. */
  async close(): Promise<void> {
    await this.stopBaseCopy();
    await this.journal?.close();
    await this.image?.close().catch(() => undefined);
    await this.main.close().catch(() => undefined);
  }

  // ---- helpers ----------------------------------------------------------------------------------

  /** What lies under the snapshot: main storage until the base copy is done (frozen), backup storage after (S406). */
  private readonly readBase = (offset: number, length: number): Promise<Buffer> => {
    const store = this.phases.inCatchUp && this.image ? this.image : this.main;
    return store.read(offset, length);
  };

  /** As `readBase`, into `out`, before it returns. */
  private readonly readBaseNow = (out: Buffer, offset: number): void => {
    const store = this.phases.inCatchUp && this.image ? this.image : this.main;
    // Callers read at most a block's edges or a small read's runs, well within a read on the spot.
    if (!store.readNow(out, offset)) throw new Error(`a read of ${out.length} bytes is too large to do on the spot`);
  };

  /** Writes these snapshot blocks (ascending) to main storage where it lacks them. The caller holds the write lock. */
  private async reflect(blocks: number[]): Promise<number> {
    const bytes = await this.snapshot.reflect(blocks, (offset, data) => this.main.write(offset, data));
    if (bytes > 0) this.phases.reflected(bytes);
    return bytes;
  }

  /** Runs one host request once the gate is open; a quiesce waits for every admitted one. */
  private async admitted<T>(fn: () => Promise<T>): Promise<T> {
    while (this.phases.quiescing) await new Promise<void>((r) => this.gateWaiters.push(r));
    this.inflight++;
    try {
      return await fn();
    } finally {
      this.inflight--;
      if (this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }
}
