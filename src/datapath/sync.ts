/** Small concurrency helpers of the datapath: a FIFO mutex, a sleep, and the pacing of a copy. */

/** A FIFO lock for async code: holders run one at a time, in the order they asked. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();

  /** Waits for the lock; call the returned function to release it. */
  async lock(): Promise<() => void> {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const before = this.tail;
    this.tail = before.then(() => held);
    await before;
    return release;
  }

  /** Runs `fn` holding the lock. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const unlock = await this.lock();
    try {
      return await fn();
    } finally {
      unlock();
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Keeps a copy at or below `bytesPerSecond` (0: unpaced): waits until `bytes` copied since `t0`
 * (ms since the epoch) are due at that rate.
 */
export async function pace(bytesPerSecond: number, bytes: number, t0: number): Promise<void> {
  if (!bytesPerSecond) return;
  const due = t0 + (bytes / bytesPerSecond) * 1000;
  const wait = due - Date.now();
  if (wait > 0) await sleep(wait);
}
