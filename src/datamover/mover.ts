/**
 * The data mover: the one routine that moves bytes in Kura — read, SHA-256, write, progress,
 * resume at an offset, abort — as a pipeline of small buffers (ADR 007) whose SHA-256 runs on a worker thread (ADR 017). Pure Node: it knows
 * nothing of Temporal, drivers or devices; callers hand it the two ends and, optionally, a gate
 * that may throttle, stall or fail the transfer.
 */
import { ErrorType, InvalidInputError, KuraError } from '../domain/errors';
import { allocBlock, inlineHasher, releaseBlock, workerHasher, type BlockHasher } from './hash-worker';

/**
 * Size of each read and write. Measured on a 2-vCPU VM over 1 GiB: 512 KiB blocks hash about 1.5×
 * faster than 8 MiB ones, which fall out of the CPU's cache between the read and the hash.
 */
export const IO_BLOCK_BYTES = 512 * 1024;
/** Buffers in the ring: blocks read ahead, being hashed, and written concurrently behind (8 measured best). */
const PIPELINE_BLOCKS = 8;
/** Written bytes after which a background flush of the sink is started (one at a time). */
const FLUSH_EVERY_BYTES = 64 * 1024 * 1024;
/**
 * Ranges from this size on are hashed on the worker thread (ADR 017); below it a message to the
 * worker and back costs more than the hash itself.
 */
const WORKER_HASH_MIN_BYTES = 1024 * 1024;
/** Progress is reported at least this often unless the caller asks otherwise. */
export const DEFAULT_PROGRESS_BYTES = 8 * 1024 * 1024;

/** Where the bytes come from: positions are relative to the start of the range moved. */
export interface ByteSource {
  /** Fills `buf` completely with the bytes at `at`, or rejects (a short source is an error). */
  read(buf: Buffer, at: number): Promise<void>;
}

/** Where the bytes go: positional writes, so concurrent writes still land in exact order. */
export interface ByteSink {
  write(buf: Buffer, at: number): Promise<void>;
  /** Makes the bytes written so far durable (fdatasync); without it nothing is flushed. */
  flush?(): Promise<void>;
  /** Reads back bytes already at the sink: how a resumed move rebuilds the checksum of what it skips. */
  read?(buf: Buffer, at: number): Promise<void>;
}

/**
 * Decides, block by block, how a transfer may proceed: the lab's fault injection is one (see
 * src/lab/fault-gate.ts). Positions are relative to the start of the range.
 */
export interface TransferGate {
  /** Whether the gate will act at `at`; the mover then first completes and reports every queued write. */
  due(at: number): boolean;
  /** Acts at `at` (may throw, or wait); returns how many bytes the next block may take. */
  before(at: number): Promise<number>;
  /** How many bytes a block from `at` may take, without acting; used to plan the read-ahead. */
  peekLimit(at: number): number;
  /** Accounts a finished block (may wait, e.g. to hold a rate). */
  after(bytes: number): Promise<void>;
}

/** Progress of a move: bytes of the range written (resumed ones included) and the range's length. */
export type MoveProgressFn = (p: { bytes: number; total: number }) => void;

export interface MoveRequest {
  source: ByteSource;
  /** Where the bytes go; without a sink the range is only read and hashed (e.g. a file's checksum). */
  sink?: ByteSink;
  /** Bytes in the range. */
  length: number;
  /**
   * Bytes at the start of the range already at the sink (a resumed move): they are not read from
   * the source nor written again. When hashing, they are read back from the sink, so the digest
   * covers what is really there.
   */
  from?: number;
  /** Whether to compute the range's SHA-256 (default true). */
  hash?: boolean;
  /**
   * Sees every block of the range in order, as the hash does (e.g. a digest that spans several
   * ranges). The block's buffer is reused afterwards: use it before returning, never keep it.
   */
  observe?: (block: Buffer) => void;
  /**
   * Progress is reported at least every this many bytes (default 8 MiB), so it sets the heartbeat
   * rate of an activity; blocks are never larger than it.
   */
  progressBytes?: number;
  /** Called over the written prefix only, so a resume point taken from it never skips a byte not written. */
  onProgress?: MoveProgressFn;
  /**
   * Awaited at every progress point and at the end, once the bytes before it are written and
   * flushed: for a caller that records its own resume point and must never record a byte a crash
   * could lose. The pipeline drains at each point.
   */
  onDurable?: (bytes: number) => Promise<void>;
  /** Bytes per second this call may move; unlimited when omitted or 0. */
  rateBytesPerSec?: number;
  gate?: TransferGate;
  /** Stops the move at the next block: the signal's reason is thrown (see `abortError`). */
  signal?: AbortSignal;
  /** The error to throw for an abort (default: the reason when it is an Error, else a Cancelled KuraError). */
  abortError?: (reason: unknown) => Error;
  /** At most this many bytes per read and write (default 512 KiB). */
  blockBytes?: number;
}

export interface MoveResult {
  /** The range's length: the bytes that are now at the sink. */
  bytes: number;
  /** Bytes this call read from the source (the rest was resumed). */
  moved: number;
  /** Bytes at the start of the range that were already at the sink. */
  resumedBytes: number;
  /** SHA-256 (hex) of the whole range, or null when hashing was turned off. */
  sha256: string | null;
}

/**
 * Moves `length` bytes from the source to the sink, resuming after `from`, and returns the
 * range's SHA-256. Errors of either end surface as they were thrown (their type decides retries);
 * nothing is left in flight on the ends when it returns or throws.
 */
export async function moveBytes(req: MoveRequest & { hash: false }): Promise<MoveResult & { sha256: null }>;
export async function moveBytes(req: MoveRequest & { hash?: true }): Promise<MoveResult & { sha256: string }>;
export async function moveBytes(req: MoveRequest): Promise<MoveResult>;
export async function moveBytes(req: MoveRequest): Promise<MoveResult> {
  const from = req.from ?? 0;
  const progressBytes = req.progressBytes ?? DEFAULT_PROGRESS_BYTES;
  requireInt(req.length, 'length', 0);
  requireInt(from, 'from', 0);
  requireInt(progressBytes, 'progressBytes', 1);
  requireInt(req.blockBytes ?? IO_BLOCK_BYTES, 'blockBytes', 1);
  if (from > req.length)
    throw new InvalidInputError(`cannot resume after ${from} bytes of a ${req.length}-byte range; resume inside it`);
  if (req.rateBytesPerSec !== undefined && !(req.rateBytesPerSec >= 0))
    throw new InvalidInputError(`rateBytesPerSec must be 0 (unlimited) or more, not ${req.rateBytesPerSec}`);
  const hash = req.hash === false ? undefined : req.length >= WORKER_HASH_MIN_BYTES ? workerHasher() : inlineHasher();
  const blockBytes = Math.max(1, Math.min(req.blockBytes ?? IO_BLOCK_BYTES, progressBytes, req.length));
  const abort = () => abortError(req);

  try {
    if (from > 0 && (hash !== undefined || req.observe !== undefined)) {
      const readBack = req.sink?.read?.bind(req.sink);
      if (readBack === undefined)
        throw new InvalidInputError('a resumed move rebuilds its checksum from the sink, and this sink cannot be read');
      await pump({
        source: { read: readBack },
        length: from,
        from: 0,
        blockBytes,
        progressBytes: Number.POSITIVE_INFINITY,
        hash,
        observe: req.observe,
        signal: req.signal,
        abort,
      });
    }
    if (from > 0) req.onProgress?.({ bytes: from, total: req.length });
    await pump({
      source: req.source,
      sink: req.sink,
      length: req.length,
      from,
      blockBytes,
      progressBytes,
      hash,
      observe: req.observe,
      onProgress: req.onProgress,
      onDurable: req.onDurable,
      rateBytesPerSec: req.rateBytesPerSec || undefined,
      gate: req.gate,
      signal: req.signal,
      abort,
    });
    return {
      bytes: req.length,
      moved: req.length - from,
      resumedBytes: from,
      sha256: hash === undefined ? null : await hash.digest(),
    };
  } catch (err) {
    hash?.discard();
    throw err;
  }
}

/** Waits `ms`, or less when the signal aborts (the caller checks the signal afterwards). */
export function abortableSleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener('abort', done, { once: true });
  });
}

function abortError(req: MoveRequest): Error {
  const reason: unknown = req.signal?.reason;
  if (req.abortError) return req.abortError(reason);
  // The caller's reason (e.g. Temporal's cancellation) is re-thrown as is, so it keeps its meaning.
  return reason instanceof Error
    ? reason
    : new KuraError(
        ErrorType.Cancelled,
        `the transfer was aborted${reason === undefined ? '' : `: ${String(reason)}`}`,
      );
}

interface PumpArgs {
  source: ByteSource;
  sink?: ByteSink | undefined;
  length: number;
  /** Bytes already done (resumed). */
  from: number;
  blockBytes: number;
  progressBytes: number;
  hash: BlockHasher | undefined;
  observe?: ((block: Buffer) => void) | undefined;
  onProgress?: MoveProgressFn | undefined;
  onDurable?: ((bytes: number) => Promise<void>) | undefined;
  rateBytesPerSec?: number | undefined;
  gate?: TransferGate | undefined;
  signal: AbortSignal | undefined;
  abort: () => Error;
}

/**
 * Moves the bytes through a ring of small buffers so that reading, hashing and writing overlap:
 * reads run ahead into free buffers, each block in order is queued for its write and handed to
 * the hashing worker, and a buffer is refilled only once its write and its hash are both done.
 * This thread only schedules, so on two cores the hash has one to itself while the kernel's
 * copies run on the other. Hashing is the one step that cannot be split, so the ring is sized to
 * keep it busy: several blocks are read ahead and written behind, which hides the round trips to
 * the I/O threads, and blocks stay small enough to still be in the CPU's cache when they are
 * hashed and written.
 */
async function pump(a: PumpArgs): Promise<void> {
  const sink = a.sink;
  const gate = a.gate;
  const slots = Array.from({ length: PIPELINE_BLOCKS }, () => ({
    buf: allocBlock(a.blockBytes, a.hash?.shared ?? false),
    free: Promise.resolve(),
  }));
  let nextSlot = 0;
  const reads: { at: number; len: number; slot: (typeof slots)[number]; p: Promise<void> }[] = [];
  let planned = a.from;
  let done = a.from;
  let written = a.from;
  let reported = a.from;
  let durable = a.from;
  let failure: { err: unknown } | undefined;
  const t0 = Date.now();
  // Set from the write and flush callbacks; read through a function so no stale narrowing hides it.
  const rethrow = () => {
    if (failure !== undefined) throw failure.err;
  };
  // Writes run concurrently (positional, so order on the medium is exact); `written` only moves
  // over the completed prefix, so progress and resume points never count a byte not yet written.
  const inflight: { end: number; len: number; cut: boolean; done: boolean; p: Promise<void> }[] = [];
  // Writes are queued only by the loop that awaits this, so none is added meanwhile. A failed write
  // stays in the queue (the prefix never moves past it) with its promise settled: waiting on the
  // promises, not on the queue to empty, is what lets the failure surface instead of spinning.
  const allWritten = async () => {
    await Promise.all(inflight.map((w) => w.p));
  };
  const advance = () => {
    while (inflight.length > 0 && (inflight[0] as (typeof inflight)[number]).done) {
      const w = inflight.shift() as (typeof inflight)[number];
      written = w.end;
      unflushed += w.len;
      if (unflushed >= FLUSH_EVERY_BYTES && flushing === undefined) startFlush();
      // A block cut short by the gate ends at its point of action or is a throttled step: report it.
      if (written - reported >= a.progressBytes || written === a.length || w.cut) report();
    }
  };
  // Flushing as the copy goes, rather than only at the end, lets the disk write back while later
  // blocks are still being read and hashed (the final fsync then has little left to do), and
  // keeps the bytes reported as progress close to the bytes that would survive a crash.
  let flushing: Promise<void> | undefined;
  let unflushed = 0;
  const flush = sink?.flush?.bind(sink);

  // The hash runs on its own thread: a block is handed over here and its buffer freed once hashed.
  // A failure of the hash surfaces like a failed write.
  const hashBlock = (block: Buffer): Promise<void> => {
    const hashed = a.hash?.update(block);
    return hashed === undefined
      ? Promise.resolve()
      : hashed.catch((err: unknown) => {
          failure ??= { err };
        });
  };
  const report = () => {
    reported = written;
    a.onProgress?.({ bytes: written, total: a.length });
  };
  const planReads = () => {
    while (reads.length < PIPELINE_BLOCKS - 1 && planned < a.length) {
      const at = planned;
      const len = Math.min(a.blockBytes, a.length - at, gate ? gate.peekLimit(at) : Number.POSITIVE_INFINITY);
      const slot = slots[nextSlot] as (typeof slots)[number];
      nextSlot = (nextSlot + 1) % slots.length;
      const p = slot.free.then(() => a.source.read(slot.buf.subarray(0, len), at));
      // Awaited in order below or in finally; this only keeps Node from calling it unhandled meanwhile.
      p.catch(() => undefined);
      reads.push({ at, len, slot, p });
      planned += len;
    }
  };
  const dropReads = async () => {
    for (const r of reads.splice(0)) await r.p.catch(() => undefined);
  };
  const startFlush = () => {
    if (flush === undefined) return;
    unflushed = 0;
    flushing = flush().then(
      () => {
        flushing = undefined;
      },
      (err: unknown) => {
        failure ??= { err };
        flushing = undefined;
      },
    );
  };
  // The caller's resume point advances only over bytes that are written and flushed.
  const makeDurable = async () => {
    await allWritten();
    rethrow();
    if (flushing !== undefined) await flushing;
    rethrow();
    unflushed = 0;
    await flush?.();
    durable = written;
    await a.onDurable?.(durable);
  };

  try {
    while (done < a.length) {
      rethrow();
      if (a.onDurable !== undefined && done - durable >= a.progressBytes) await makeDurable();
      // Everything queued is written and reported before the gate stops or stalls the transfer,
      // so a retry resumes from the last byte really on the medium.
      if (gate?.due(done)) {
        await allWritten();
        rethrow();
        if (written > reported) report();
      }
      const limit = gate ? await gate.before(done) : Number.POSITIVE_INFINITY;
      if (a.signal?.aborted) throw a.abort();
      planReads();
      const r = reads.shift();
      if (r === undefined || r.at !== done) throw new Error(`internal: read-ahead out of order at ${done}`);
      await r.p;
      const len = Math.min(r.len, a.length - done, limit);
      if (len < r.len) {
        // The read-ahead was planned before the gate narrowed and no longer fits: take what is
        // needed from this block and read the rest again.
        await dropReads();
        planned = done + len;
      }
      const at = done;
      const end = done + len;
      const cut = len === limit;
      const block = r.slot.buf.subarray(0, len);
      if (sink !== undefined) {
        // The write is queued first so the I/O thread copies the block while this thread hashes it.
        const write = failure === undefined ? sink.write(block, at) : Promise.resolve();
        const hashed = hashBlock(block);
        a.observe?.(block);
        // The buffer is refilled only once both its write and its hash are done with it.
        r.slot.free = Promise.all([write.catch(() => undefined), hashed]).then(() => undefined);
        const entry = { end, len, cut, done: false, p: Promise.resolve() };
        entry.p = write.then(
          () => {
            entry.done = true;
            advance();
          },
          (err: unknown) => {
            failure ??= { err };
          },
        );
        inflight.push(entry);
      } else {
        r.slot.free = hashBlock(block);
        a.observe?.(block);
        written = end;
        if (written - reported >= a.progressBytes || written === a.length || cut) report();
      }
      done = end;
      planReads();
      if (gate) await gate.after(len);
      if (a.rateBytesPerSec !== undefined) {
        const wait = t0 + ((done - a.from) / a.rateBytesPerSec) * 1000 - Date.now();
        if (wait > 0) await abortableSleep(wait, a.signal);
        if (a.signal?.aborted) throw a.abort();
      }
    }
    await allWritten();
    rethrow();
    if (a.onDurable !== undefined && durable < a.length) await makeDurable();
  } finally {
    // Never leave a read, write or flush in flight on a buffer or file handle the caller is about to drop.
    await dropReads();
    await allWritten();
    if (flushing !== undefined) await flushing;
    // Once the hash is done with them too, the buffers go back for the next move (hash-worker.ts).
    await Promise.all(slots.map((s) => s.free));
    for (const s of slots) releaseBlock(s.buf);
  }
  rethrow();
}

function requireInt(n: number, what: string, min: number): void {
  if (!Number.isSafeInteger(n) || n < min)
    throw new InvalidInputError(`${what} must be a whole number of at least ${min}, not ${n}`);
}
