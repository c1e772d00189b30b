/**
 * The whole-volume SHA-256 of a store backup, computed from the bytes in order as the ingest reads
 * them, on a second thread: the ingest's own thread hashes each chunk into its digest meanwhile, so
 * the second hash costs the second core, not the ingest's time (docs/adr/036).
 */
import { Worker } from 'node:worker_threads';
import { newSha256 } from '../datamover/sha256';

// Plain CommonJS evaluated in the worker: no TypeScript loader is needed there, under tsx or built.
const SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hash = createHash('sha256');
parentPort.on('message', (m) => {
  if (m.end) {
    parentPort.postMessage({ digest: hash.digest('hex') });
    return;
  }
  hash.update(new Uint8Array(m.buffer, m.offset, m.length));
  parentPort.postMessage({ done: true });
});
`;

/** Below this many bytes a thread costs more to start than the hash it saves. */
const THREAD_FROM = 32 * 1024 * 1024;
/** Blocks handed to the thread and not yet hashed, at most (memory stays bounded). */
const MAX_PENDING = 4;

/**
 * SHA-256 of a volume fed block by block in order; {@link block} gives a buffer the thread can read
 * without a copy, and {@link release} takes it back for the next block once the caller is done with it.
 */
export class VolumeHasher {
  private readonly worker: Worker | undefined;
  private readonly inline = newSha256();
  private pending = 0;
  /**
   * Blocks the thread was sent and has not yet answered for, oldest first; blocks the caller gave
   * back before the thread was done with them; shared memory ready for the next block. The thread
   * keeps every SharedArrayBuffer it was sent until its own garbage collection, which its small heap
   * hardly ever runs: a new buffer per block held the whole volume in memory until the end of the
   * ingest (1 GiB of 4 MiB chunks: 1.1 GiB resident), so its blocks are reused instead.
   */
  private readonly posted: ArrayBufferLike[] = [];
  private readonly given = new Set<ArrayBufferLike>();
  private readonly free: SharedArrayBuffer[] = [];
  private waiters: (() => void)[] = [];
  private failure: Error | undefined;
  private result: Promise<string> | undefined;
  private resolveDigest: ((d: string) => void) | undefined;

  constructor(sizeBytes: number) {
    if (sizeBytes < THREAD_FROM) return;
    this.worker = new Worker(SOURCE, { eval: true });
    this.worker.on('message', (m: { done?: true; digest?: string }) => {
      if (m.digest !== undefined) this.resolveDigest?.(m.digest);
      else {
        const hashed = this.posted.shift();
        if (hashed !== undefined && this.given.delete(hashed)) this.reuse(hashed);
        this.settle();
      }
    });
    this.worker.on('error', (err) => {
      this.failure = err;
      this.settle();
    });
  }

  /** A buffer to read the next block into: memory shared with the hashing thread when there is one, reused when it can be. */
  block(length: number): Buffer {
    if (!this.worker) return Buffer.allocUnsafeSlow(length);
    const i = this.free.findIndex((b) => b.byteLength === length);
    return Buffer.from(i < 0 ? new SharedArrayBuffer(length) : this.free.splice(i, 1)[0]!);
  }

  /** The caller is done with a block of {@link block}: it is reused once the thread has hashed it too. */
  release(block: Buffer): void {
    const sab = block.buffer;
    if (!this.worker || !(sab instanceof SharedArrayBuffer) || block.length !== sab.byteLength) return;
    if (this.posted.includes(sab)) this.given.add(sab);
    else this.reuse(sab);
  }

  private reuse(sab: ArrayBufferLike): void {
    if (sab instanceof SharedArrayBuffer && !this.free.includes(sab)) this.free.push(sab);
  }

  /** Adds the next block; waits while the thread is {@link MAX_PENDING} blocks behind. The block must not change afterwards. */
  async update(block: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    if (!this.worker) {
      this.inline.update(block);
      return;
    }
    // A block not on shared memory is copied by postMessage: slower, still right.
    this.pending += 1;
    this.posted.push(block.buffer);
    this.worker.postMessage({ buffer: block.buffer, offset: block.byteOffset, length: block.length });
    while (this.pending >= MAX_PENDING && !this.failure) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failure) throw this.failure;
  }

  /** The digest (hex) of every block given, in order; the thread ends. */
  async digest(): Promise<string> {
    if (!this.worker) return this.inline.digest('hex');
    this.result ??= new Promise<string>((resolve, reject) => {
      this.resolveDigest = resolve;
      if (this.failure) reject(this.failure);
      this.worker!.once('error', reject);
      this.worker!.postMessage({ end: true });
    });
    try {
      return await this.result;
    } finally {
      await this.close();
    }
  }

  /** Ends the thread (also when the ingest failed half-way). */
  async close(): Promise<void> {
    await this.worker?.terminate();
  }

  private settle(): void {
    this.pending = Math.max(0, this.pending - 1);
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }
}
