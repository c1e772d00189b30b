/**
 * The data mover's running SHA-256 on a thread of its own (ADR 017): Node's hash is synchronous,
 * so on the main thread it stalls the scheduling of reads and writes; on a worker it runs beside
 * them, over the mover's shared buffers, without copying a byte.
 */
import type { Hash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { newSha256 } from './sha256';

/** A running SHA-256 fed block by block, in order. */
export interface BlockHasher {
  /**
   * Hashes `block` after the blocks before it. Returns undefined when the block is already hashed,
   * else a promise that settles once it is: the block's buffer must not change before then.
   */
  update(block: Buffer): Promise<void> | undefined;
  /** The digest (hex) of every block, once all are hashed; the hasher is finished afterwards. */
  digest(): Promise<string>;
  /** Gives up the hash (a failed or aborted move); its pending blocks are no longer awaited. */
  discard(): void;
  /** Whether blocks must be in memory the hashing thread shares (see `allocBlock`). */
  readonly shared: boolean;
}

/** A hasher on this thread: for small ranges, where a message to the worker costs more than the hash. */
export function inlineHasher(): BlockHasher {
  const hash: Hash = newSha256();
  return {
    shared: false,
    update: (block) => {
      hash.update(block);
      return undefined;
    },
    digest: () => Promise.resolve(hash.digest('hex')),
    discard: () => undefined,
  };
}

/**
 * Shared memory handed to the hashing thread, kept for reuse by size (a power of two): the thread
 * holds every SharedArrayBuffer it was sent until its own garbage collection, and its heap is so
 * small that the collection hardly ever comes, so a fresh buffer per move stayed resident for good
 * (the worker's RSS rose by about 400 MiB a minute in the soak, docs/soak.md). Reused buffers keep
 * what the thread can hold to the most the moves ever used at once.
 */
const sharedPool = new Map<number, SharedArrayBuffer[]>();
/** The shared buffers made so far, reused or not (tests check that moves reuse them). */
let sharedMade = 0;

/** The smallest pool size that holds `bytes`: a power of two, at least 64 KiB. */
function sizeClass(bytes: number): number {
  let size = 64 * 1024;
  while (size < bytes) size *= 2;
  return size;
}

/**
 * A buffer the hashing thread can read in place: memory shared with the worker when `shared`,
 * taken from the pool of such memory; give it back with {@link releaseBlock} once no read, write or
 * hash uses it any more.
 */
export function allocBlock(bytes: number, shared: boolean): Buffer {
  if (!shared) return Buffer.allocUnsafe(bytes);
  const size = sizeClass(bytes);
  let sab = sharedPool.get(size)?.pop();
  if (sab === undefined) {
    sab = new SharedArrayBuffer(size);
    sharedMade += 1;
  }
  return Buffer.from(sab, 0, bytes);
}

/** Gives a block of {@link allocBlock} back for reuse (a block not in shared memory is left to the collector). */
export function releaseBlock(block: Buffer): void {
  const sab = block.buffer;
  if (!(sab instanceof SharedArrayBuffer) || sab.byteLength !== sizeClass(sab.byteLength)) return;
  const free = sharedPool.get(sab.byteLength) ?? [];
  if (free.includes(sab)) return;
  free.push(sab);
  sharedPool.set(sab.byteLength, free);
}

/** How many shared blocks have been made and how many wait in the pool for reuse. */
export function sharedBlockStats(): { made: number; pooled: number } {
  let pooled = 0;
  for (const free of sharedPool.values()) pooled += free.length;
  return { made: sharedMade, pooled };
}

// Plain JavaScript evaluated by the worker, so it runs the same under tsx, vitest and the build.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (m) => {
  try {
    if (m.op === 'update') {
      let h = hashes.get(m.id);
      if (h === undefined) hashes.set(m.id, (h = createHash('sha256')));
      h.update(new Uint8Array(m.buffer, m.offset, m.length));
      parentPort.postMessage({ id: m.id });
    } else if (m.op === 'digest') {
      const h = hashes.get(m.id) ?? createHash('sha256');
      hashes.delete(m.id);
      parentPort.postMessage({ id: m.id, hex: h.digest('hex') });
    } else {
      hashes.delete(m.id);
    }
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: String((err && err.message) || err) });
  }
});
`;

interface Pending {
  resolve: (hex: string | undefined) => void;
  reject: (err: Error) => void;
}

/** The one hashing worker of the process, shared by every move in flight (each its own hash). */
class HashWorker {
  private readonly worker: Worker;
  private readonly sessions = new Map<number, Pending[]>();
  private nextId = 1;
  private dead: Error | undefined;

  constructor(private readonly onDeath: () => void) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true });
    // Kept alive only while a move waits on it, so an idle worker never holds the process open.
    this.worker.unref();
    this.worker.on('message', (m: { id: number; hex?: string; error?: string }) => {
      const pending = this.sessions.get(m.id)?.shift();
      if (pending === undefined) return; // a discarded session's late answer
      if (m.error !== undefined) pending.reject(new Error(`SHA-256 worker: ${m.error}`));
      else pending.resolve(m.hex);
      if (m.hex !== undefined) this.end(m.id);
    });
    const die = (err: Error) => {
      if (this.dead !== undefined) return;
      this.dead = err;
      this.onDeath();
      for (const queue of this.sessions.values()) for (const p of queue) p.reject(err);
      this.sessions.clear();
    };
    this.worker.on('error', die);
    this.worker.on('exit', (code) => die(new Error(`SHA-256 worker exited with code ${code}`)));
  }

  open(): BlockHasher {
    if (this.dead !== undefined) throw this.dead;
    const id = this.nextId++;
    if (this.sessions.size === 0) this.worker.ref();
    this.sessions.set(id, []);
    const ask = (msg: object): Promise<string | undefined> => {
      const queue = this.sessions.get(id);
      if (queue === undefined) return Promise.reject(this.dead ?? new Error('internal: SHA-256 used after digest'));
      return new Promise((resolve, reject) => {
        queue.push({ resolve, reject });
        this.worker.postMessage({ id, ...msg });
      });
    };
    return {
      shared: true,
      update: (block) => {
        if (!(block.buffer instanceof SharedArrayBuffer))
          throw new Error('internal: a block hashed on the worker must be in shared memory (allocBlock)');
        return ask({ op: 'update', buffer: block.buffer, offset: block.byteOffset, length: block.length }).then(
          () => undefined,
        );
      },
      digest: async () => (await ask({ op: 'digest' })) as string,
      discard: () => {
        const queue = this.sessions.get(id);
        if (queue === undefined) return;
        this.end(id);
        for (const p of queue) p.reject(new Error('the SHA-256 was discarded'));
        if (this.dead === undefined) this.worker.postMessage({ id, op: 'drop' });
      },
    };
  }

  private end(id: number): void {
    this.sessions.delete(id);
    if (this.sessions.size === 0 && this.dead === undefined) this.worker.unref();
  }
}

let shared: HashWorker | undefined;

/** A SHA-256 computed on the process's hashing worker (started on first use, restarted if it dies). */
export function workerHasher(): BlockHasher {
  const w = (shared ??= new HashWorker(() => {
    if (shared === w) shared = undefined;
  }));
  return w.open();
}
