/**
 * One protected volume inside the datapath: passthrough to main storage, or seed 002's backup mode
 * — main storage frozen at the switch, host writes journaled (durable before the ack) and applied
 * to a snapshot map by block, the base copy to backup storage, catch-up rounds, and the quiesced
 * switch back. Every host request goes through here; none is refused for being in a phase.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { open, readFile, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import {
  DatapathPhase,
  type DatapathConfig,
  type FinishResult,
  type RoundResult,
  type VolumeStatus,
} from '../domain/datapath';
import { KuraError, ErrorType, InvalidInputError } from '../domain/errors';
import { Journal, JournalKind, type JournalEntry } from './journal';
import { ConvergencePolicy, RateWindow, canFinish, estimateDrainMs } from './rate';
import { Mutex, sleep } from './sync';

/** The snapshot's block: the unit of the map, of read-modify-write, and of reflection. */
export const BLOCK_BYTES = 4096;

/** Base copy chunk; progress is made durable every PROGRESS_EVERY bytes. */
const COPY_CHUNK = 1024 * 1024;
const PROGRESS_EVERY = 8 * 1024 * 1024;
/** Blocks written to main storage per hold of the write lock during catch-up. */
const REFLECT_BATCH = 64;

/** A block of the snapshot (112): its latest data, the journal seq that wrote it, and the seq main storage holds. */
interface SnapBlock {
  data: Buffer;
  seq: number;
  mainSeq: number;
}

const StateFileSchema = z.object({
  version: z.literal(1),
  mode: z.literal('backup'),
  phase: z.enum([DatapathPhase.BaseCopy, DatapathPhase.CatchUp]),
  backupId: z.string(),
  image: z.string(),
  switchedAt: z.string(),
  baseCopiedBytes: z.number().int(),
  rounds: z.number().int(),
});
type StateFile = z.infer<typeof StateFileSchema>;

const LastFileSchema = z.object({ backupId: z.string(), quiesceMs: z.number() });

/** The volume is in backup mode for another backup: a second one must wait. */
export class VolumeBusyError extends KuraError {
  override name = 'VolumeBusyError';
  constructor(message: string) {
    super(ErrorType.AlreadyRunning, message);
  }
}

export interface VolumeOptions {
  /** The export name, array/volume. */
  name: string;
  /** Main storage: the volume file. */
  mainFile: string;
  /** Where this volume's journal and state file live. */
  stateDir: string;
  settings: DatapathConfig;
}

export class Volume {
  readonly name: string;
  sizeBytes = 0;
  private main!: FileHandle;
  private image: FileHandle | null = null;
  private journal: Journal | null = null;
  private state: StateFile | null = null;
  /** S602 to S604: host commands are held at the gate while this is set. */
  private quiescing = false;
  private readonly snapshot = new Map<number, SnapBlock>();
  private readonly dirty = new Set<number>();
  /** Blocks with a journaled write not yet applied to the snapshot (S404 waits on these). */
  private readonly pending = new Map<number, Promise<void>>();
  private readonly writeLock = new Mutex();
  private readonly controlLock = new Mutex();
  /** The state file is rewritten by the base copy and by control calls; one writer at a time. */
  private readonly stateLock = new Mutex();
  private writeRate: RateWindow;
  private reflectRate: RateWindow;
  private policy: ConvergencePolicy;
  private baseCopy: Promise<void> | null = null;
  private baseCopyStop = false;
  private baseCopyError: string | null = null;
  private gateWaiters: (() => void)[] = [];
  private inflight = 0;
  private idleWaiters: (() => void)[] = [];
  private replayed = 0;
  private lastQuiesceMs: number | null = null;
  /** The last backup switched back to passthrough, kept on disk so a retried finish after a restart knows it happened. */
  private lastFinished: { backupId: string; quiesceMs: number } | null = null;
  private served = 0;
  private failed = 0;

  private constructor(private readonly opts: VolumeOptions) {
    this.name = opts.name;
    this.writeRate = new RateWindow(opts.settings.rateWindow);
    this.reflectRate = new RateWindow(opts.settings.rateWindow);
    this.policy = new ConvergencePolicy(opts.settings.throttleAfterRounds, opts.settings.activeAfterRounds);
  }

  private get stateFile(): string {
    return path.join(this.opts.stateDir, `${path.basename(this.opts.mainFile)}.state.json`);
  }

  private get lastFile(): string {
    return path.join(this.opts.stateDir, `${path.basename(this.opts.mainFile)}.last.json`);
  }

  private get journalFile(): string {
    return path.join(this.opts.stateDir, `${path.basename(this.opts.mainFile)}.journal`);
  }

  /**
   * Opens main storage and, when the service stopped in backup mode, replays the journal into the
   * snapshot: every write acknowledged before the stop is served again, and reaches main storage.
   */
  static async open(opts: VolumeOptions): Promise<Volume> {
    const v = new Volume(opts);
    mkdirSync(opts.stateDir, { recursive: true });
    v.main = await open(opts.mainFile, 'r+');
    v.sizeBytes = (await v.main.stat()).size;
    if (existsSync(v.lastFile)) {
      const last = LastFileSchema.safeParse(JSON.parse(await readFile(v.lastFile, 'utf8')));
      if (last.success) v.lastFinished = last.data;
    }
    const saved = existsSync(v.stateFile)
      ? StateFileSchema.safeParse(JSON.parse(await readFile(v.stateFile, 'utf8')))
      : null;
    if (saved && !saved.success)
      throw new InvalidInputError(
        `${v.stateFile} is not a datapath state file (${saved.error.issues[0]?.message}); move it away only if no backup of ${opts.name} was running`,
      );
    if (!saved) {
      // A journal without backup state is left from a switch back that had already reflected everything.
      await rm(v.journalFile, { force: true });
      return v;
    }
    v.state = saved.data;
    v.image = await open(saved.data.image, 'r+');
    const { journal, entries } = await Journal.open(v.journalFile);
    v.journal = journal;
    for (const e of entries) await v.applyToSnapshot(e);
    v.replayed = entries.length;
    return v;
  }

  // ---- host I/O ---------------------------------------------------------------------------------

  /** S401–S406: snapshot first; else wait for an unreflected write; else main storage (backup storage once copied). */
  async read(offset: number, length: number): Promise<Buffer> {
    return this.admitted(async () => {
      if (!this.state) return this.readFile(this.main, offset, length);
      const out = Buffer.alloc(length);
      const first = Math.floor(offset / BLOCK_BYTES);
      const last = Math.floor((offset + length - 1) / BLOCK_BYTES);
      let runStart = -1;
      const flushRun = async (endBlock: number) => {
        if (runStart < 0) return;
        const from = Math.max(runStart * BLOCK_BYTES, offset);
        const to = Math.min(endBlock * BLOCK_BYTES, offset + length);
        const data = await this.readFallback(from, to - from);
        data.copy(out, from - offset);
        runStart = -1;
      };
      for (let b = first; b <= last; b++) {
        const wait = this.pending.get(b);
        if (wait) await wait;
        const blk = this.snapshot.get(b);
        if (!blk) {
          if (runStart < 0) runStart = b;
          continue;
        }
        await flushRun(b);
        const from = Math.max(b * BLOCK_BYTES, offset);
        const to = Math.min((b + 1) * BLOCK_BYTES, offset + length);
        blk.data.copy(out, from - offset, from - b * BLOCK_BYTES, to - b * BLOCK_BYTES);
      }
      await flushRun(last + 1);
      return out;
    });
  }

  /** A host write: straight to main storage in passthrough; S301–S305 in backup mode. */
  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    return this.admitted(() => this.modify(JournalKind.Write, offset, data.length, data, fua));
  }

  async writeZeroes(offset: number, length: number, fua: boolean): Promise<void> {
    return this.admitted(() => this.modify(JournalKind.Zeroes, offset, length, null, fua));
  }

  /** Makes acknowledged writes durable: main storage in passthrough; in backup mode the journal already is. */
  async flush(): Promise<void> {
    return this.admitted(async () => {
      if (!this.state) await this.main.datasync();
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
    data: Buffer | null,
    fua: boolean,
  ): Promise<void> {
    const unlock = await this.writeLock.lock();
    try {
      if (!this.state || !this.journal) {
        await this.writeMain(offset, length, data);
        if (fua) await this.main.datasync();
        return;
      }
      const route = this.policy.path;
      if (route !== 'normal') await sleep(this.opts.settings.throttleDelay);
      const blocks = this.blocksOf(offset, length);
      let release!: () => void;
      const applied = new Promise<void>((r) => (release = r));
      for (const b of blocks) this.pending.set(b, applied);
      try {
        const entry = await this.journal.append(kind, offset, length, data, Date.now());
        await this.applyToSnapshot(entry);
        if (route === 'active' && this.state.phase === 'catch-up') await this.reflect(blocks);
        await this.journal.markReflected(entry);
      } finally {
        for (const b of blocks) if (this.pending.get(b) === applied) this.pending.delete(b);
        release();
      }
      this.writeRate.record(length);
    } finally {
      unlock();
    }
  }

  /** S303–S304: applies a journal entry to the snapshot map, block by block (read-modify-write at the edges). */
  private async applyToSnapshot(e: JournalEntry): Promise<void> {
    for (const b of this.blocksOf(e.offset, e.length)) {
      const start = b * BLOCK_BYTES;
      const len = Math.min(BLOCK_BYTES, this.sizeBytes - start);
      const from = Math.max(start, e.offset);
      const to = Math.min(start + len, e.offset + e.length);
      const prev = this.snapshot.get(b);
      // Blocks are replaced, never changed in place: a read holding the old one stays consistent.
      const whole = from === start && to === start + len;
      const data = whole ? Buffer.alloc(len) : Buffer.from(prev ? prev.data : await this.readFallback(start, len));
      if (e.kind === JournalKind.Write && e.data) e.data.copy(data, from - start, from - e.offset, to - e.offset);
      else data.fill(0, from - start, to - start);
      this.snapshot.set(b, { data, seq: e.seq, mainSeq: prev?.mainSeq ?? 0 });
      this.dirty.add(b);
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
      if (this.state) {
        if (this.state.backupId === backupId) return this.status();
        throw new VolumeBusyError(
          `${this.name} is in backup mode for ${this.state.backupId}; wait for it to finish or abort it (kura backup --online shows it)`,
        );
      }
      const unlock = await this.writeLock.lock();
      try {
        await this.main.datasync();
        mkdirSync(path.dirname(image), { recursive: true });
        await rm(this.journalFile, { force: true });
        const { journal } = await Journal.open(this.journalFile);
        const img = await open(image, 'w+');
        await img.truncate(this.sizeBytes);
        this.snapshot.clear();
        this.dirty.clear();
        this.writeRate = new RateWindow(this.opts.settings.rateWindow);
        this.reflectRate = new RateWindow(this.opts.settings.rateWindow);
        this.policy = new ConvergencePolicy(
          this.opts.settings.throttleAfterRounds,
          this.opts.settings.activeAfterRounds,
        );
        this.replayed = 0;
        this.baseCopyError = null;
        const state: StateFile = {
          version: 1,
          mode: 'backup',
          phase: 'base-copy',
          backupId,
          image,
          switchedAt: new Date().toISOString(),
          baseCopiedBytes: 0,
          rounds: 0,
        };
        // The state file is the switch: written last, after the journal and the image exist.
        await this.saveState(state);
        this.journal = journal;
        this.image = img;
        this.state = state;
      } finally {
        unlock();
      }
      return this.status();
    });
  }

  /** S201–S202: starts (or resumes, after a restart) the copy of frozen main storage to backup storage. */
  startBaseCopy(backupId: string): VolumeStatus {
    this.requireBackup(backupId);
    if (this.state?.phase === 'base-copy' && !this.baseCopy) {
      this.baseCopyStop = false;
      this.baseCopyError = null;
      this.baseCopy = this.runBaseCopy()
        .catch((err: unknown) => {
          this.baseCopyError = err instanceof Error ? err.message : String(err);
        })
        .finally(() => {
          this.baseCopy = null;
        });
    }
    return this.status();
  }

  private async runBaseCopy(): Promise<void> {
    const state = this.state;
    const image = this.image;
    if (!state || !image) return;
    const buf = Buffer.alloc(COPY_CHUNK);
    const t0 = Date.now();
    const startAt = state.baseCopiedBytes;
    let offset = startAt;
    let sinceSync = 0;
    while (offset < this.sizeBytes && !this.baseCopyStop) {
      const n = Math.min(COPY_CHUNK, this.sizeBytes - offset);
      const { bytesRead } = await this.main.read(buf, 0, n, offset);
      await image.write(buf, 0, bytesRead, offset);
      offset += bytesRead;
      sinceSync += bytesRead;
      if (sinceSync >= PROGRESS_EVERY || offset >= this.sizeBytes) {
        // Progress is recorded only once the bytes behind it are durable, so a resume never skips any.
        await image.datasync();
        state.baseCopiedBytes = offset;
        await this.saveState(state);
        sinceSync = 0;
      }
      await this.paceCopy(offset - startAt, t0);
    }
    if (offset >= this.sizeBytes && this.state === state) {
      // Durable first: nobody sees the catch-up phase before a restart would also come back in it.
      await this.saveState({ ...state, phase: 'catch-up' });
      state.phase = 'catch-up';
    }
  }

  /**
   * S501–S505, one round: copies the snapshot as of time T (the blocks not yet on main storage)
   * and writes it to main storage; whatever was written after T is left for the next round.
   */
  async catchUpRound(backupId: string): Promise<RoundResult> {
    return this.controlLock.run(async () => {
      const state = this.requireBackup(backupId);
      if (state.phase !== 'catch-up')
        throw new InvalidInputError(
          `${this.name} has not finished its base copy (${this.status().baseCopiedBytes} of ${this.sizeBytes} bytes); catch-up starts after it`,
        );
      const copiedAt = new Date().toISOString();
      const t0 = Date.now();
      const T = this.journal?.lastSeq ?? 0;
      const copy = [...this.dirty].filter((b) => (this.snapshot.get(b)?.seq ?? 0) <= T).sort((a, b) => a - b);
      let written = 0;
      for (let i = 0; i < copy.length; i += REFLECT_BATCH) {
        const unlock = await this.writeLock.lock();
        try {
          written += await this.reflect(copy.slice(i, i + REFLECT_BATCH));
        } finally {
          unlock();
        }
        await this.paceCopy(written, t0);
      }
      await this.main.datasync();
      state.rounds++;
      const unreflected = this.unreflectedBytes;
      const { ioTimeout, safetyFactor } = this.opts.settings;
      this.policy.afterRound(
        unreflected,
        canFinish(estimateDrainMs(unreflected, this.reflectRate.rate()), ioTimeout, safetyFactor),
      );
      await this.saveState(state);
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
      const state = this.requireBackup(backupId);
      if (state.phase !== 'catch-up')
        throw new InvalidInputError(`${this.name} has not finished its base copy; it cannot switch back yet`);
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
      if (!this.state) return this.status();
      const state = this.requireBackup(backupId);
      this.baseCopyStop = true;
      await this.baseCopy;
      await this.quiesceAndSwitch(state, true);
      return this.status();
    });
  }

  private async quiesceAndSwitch(
    state: StateFile,
    discardImage: boolean,
  ): Promise<{ quiesceMs: number; drainedBytes: number }> {
    // S602: hold new host commands; the ones already taken finish first.
    this.quiescing = true;
    const t0 = performance.now();
    try {
      while (this.inflight > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
      // S603: reflect everything; the gate is closed, so nothing can be added meanwhile.
      let drained = 0;
      const unlock = await this.writeLock.lock();
      try {
        while (this.dirty.size > 0) drained += await this.reflect([...this.dirty].sort((a, b) => a - b));
        await this.main.datasync();
        // S604: back to passthrough. The state file goes first: once it is gone, main storage is the truth.
        await this.stateLock.run(() => rm(this.stateFile, { force: true }));
        await this.journal?.remove();
        await this.image?.close();
        if (discardImage) await rm(state.image, { force: true });
        this.journal = null;
        this.image = null;
        this.state = null;
        this.snapshot.clear();
        this.dirty.clear();
      } finally {
        unlock();
      }
      this.lastQuiesceMs = performance.now() - t0;
      if (!discardImage) {
        this.lastFinished = { backupId: state.backupId, quiesceMs: this.lastQuiesceMs };
        await writeFile(this.lastFile, JSON.stringify(this.lastFinished));
      }
      return { quiesceMs: this.lastQuiesceMs, drainedBytes: drained };
    } finally {
      this.quiescing = false;
      for (const w of this.gateWaiters.splice(0)) w();
    }
  }

  /** Where the volume is, with the ETA of S701–S702. */
  status(): VolumeStatus {
    const s = this.state;
    const unreflected = this.unreflectedBytes;
    const reflectRate = this.reflectRate.rate();
    return {
      export: this.name,
      sizeBytes: this.sizeBytes,
      mode: s ? 'backup' : 'passthrough',
      phase: this.quiescing ? 'quiescing' : s ? s.phase : 'passthrough',
      backupId: s?.backupId ?? null,
      image: s?.image ?? null,
      switchedAt: s?.switchedAt ?? null,
      baseCopiedBytes: s ? s.baseCopiedBytes : 0,
      baseCopyRunning: this.baseCopy !== null,
      snapshotBytes: this.snapshot.size * BLOCK_BYTES,
      unreflectedBytes: unreflected,
      writeRate: this.writeRate.rate() ?? 0,
      reflectRate: reflectRate ?? 0,
      etaMs: s?.phase === 'catch-up' ? estimateDrainMs(unreflected, reflectRate) : null,
      rounds: s?.rounds ?? 0,
      path: this.policy.path,
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
    this.baseCopyStop = true;
    await this.baseCopy;
    await this.journal?.close();
    await this.image?.close().catch(() => undefined);
    await this.main.close().catch(() => undefined);
  }

  // ---- helpers ----------------------------------------------------------------------------------

  /** S702: bytes of the snapshot not yet on main storage (the last block may be short). */
  private get unreflectedBytes(): number {
    return Math.min(this.dirty.size * BLOCK_BYTES, this.sizeBytes);
  }

  private requireBackup(backupId: string): StateFile {
    if (!this.state) throw new InvalidInputError(`${this.name} is not in backup mode; start with enter-backup`);
    if (this.state.backupId !== backupId)
      throw new VolumeBusyError(`${this.name} is in backup mode for ${this.state.backupId}, not ${backupId}`);
    return this.state;
  }

  /**
   * Writes the current data of these snapshot blocks (ascending) to main storage, skipping those it
   * already holds; contiguous ones go in one write. The caller holds the write lock.
   */
  private async reflect(blocks: number[]): Promise<number> {
    const due = blocks.flatMap((b) => {
      const blk = this.snapshot.get(b);
      return blk && blk.mainSeq < blk.seq ? [{ b, blk }] : [];
    });
    let bytes = 0;
    for (let k = 0; k < due.length;) {
      let m = k;
      while (m + 1 < due.length && due[m + 1]!.b === due[m]!.b + 1) m++;
      const run = due.slice(k, m + 1);
      const data = Buffer.concat(run.map((x) => x.blk.data));
      await this.main.write(data, 0, data.length, run[0]!.b * BLOCK_BYTES);
      for (const x of run) {
        x.blk.mainSeq = x.blk.seq;
        this.dirty.delete(x.b);
      }
      bytes += data.length;
      k = m + 1;
    }
    if (bytes > 0) this.reflectRate.record(bytes);
    return bytes;
  }

  private blocksOf(offset: number, length: number): number[] {
    if (length === 0) return [];
    const first = Math.floor(offset / BLOCK_BYTES);
    const last = Math.floor((offset + length - 1) / BLOCK_BYTES);
    const out: number[] = [];
    for (let b = first; b <= last; b++) out.push(b);
    return out;
  }

  /** What lies under the snapshot: main storage until the base copy is done (frozen), backup storage after (S406). */
  private readFallback(offset: number, length: number): Promise<Buffer> {
    const fromImage = this.state?.phase === 'catch-up' && this.image;
    return this.readFile(fromImage ? this.image! : this.main, offset, length);
  }

  private async readFile(fh: FileHandle, offset: number, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await fh.read(out, done, length - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return out;
  }

  private async writeMain(offset: number, length: number, data: Buffer | null): Promise<void> {
    if (data) {
      await this.main.write(data, 0, length, offset);
      return;
    }
    const zeroes = Buffer.alloc(Math.min(length, COPY_CHUNK));
    for (let done = 0; done < length; done += zeroes.length) {
      const n = Math.min(zeroes.length, length - done);
      await this.main.write(zeroes, 0, n, offset + done);
    }
  }

  /** Keeps a copy at or below `copyRate` bytes/s when one is configured. */
  private async paceCopy(bytes: number, t0: number): Promise<void> {
    const rate = this.opts.settings.copyRate;
    if (!rate) return;
    const due = t0 + (bytes / rate) * 1000;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
  }

  private async saveState(state: StateFile): Promise<void> {
    const text = JSON.stringify(state);
    await this.stateLock.run(async () => {
      const tmp = `${this.stateFile}.tmp`;
      await writeFile(tmp, text);
      const fh = await open(tmp, 'r+');
      await fh.sync();
      await fh.close();
      await rename(tmp, this.stateFile);
      const dir = await open(this.opts.stateDir, 'r');
      await dir.sync().catch(() => undefined);
      await dir.close();
    });
  }

  /** Runs one host request once the gate is open; a quiesce waits for every admitted one. */
  private async admitted<T>(fn: () => Promise<T>): Promise<T> {
    while (this.quiescing) await new Promise<void>((r) => this.gateWaiters.push(r));
    this.inflight++;
    try {
      return await fn();
    } finally {
      this.inflight--;
      if (this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }
}
