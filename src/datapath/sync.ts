/** Small concurrency helpers of the datapath: a FIFO mutex, a range lock, a sleep, and the pacing of a copy. */

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

interface RangeHold {
  first: number;
  last: number;
  released: Promise<void>;
}

/**
 * A FIFO lock over ranges of blocks: a holder waits only for the earlier holders and waiters whose
 * range overlaps its own, so host writes to different blocks run side by side while two writes of
 * one block keep the order they arrived in. `lockAll` overlaps every range (a switch, a reflect).
 */
export class RangeLock {
  private readonly holds = new Set<RangeHold>();

  /** Waits for every earlier overlapping hold on blocks `first`..`last` (inclusive); call the returned function to release. */
  async lock(first: number, last: number): Promise<() => void> {
    const before: Promise<void>[] = [];
    for (const h of this.holds) if (h.first <= last && first <= h.last) before.push(h.released);
    let release!: () => void;
    const hold: RangeHold = { first, last, released: new Promise<void>((r) => (release = r)) };
    this.holds.add(hold);
    if (before.length === 1) await before[0];
    else if (before.length > 1) await Promise.all(before);
    return () => {
      this.holds.delete(hold);
      release();
    };
  }

  /**
   * Whether no hold (nor waiter) overlaps blocks `first`..`last`: then work that starts and ends
   * before the caller returns to the event loop is ordered after all of them without taking a hold.
   */
  free(first: number, last: number): boolean {
    for (const h of this.holds) if (h.first <= last && first <= h.last) return false;
    return true;
  }

  /** Waits for every earlier hold, whatever its range. */
  lockAll(): Promise<() => void> {
    return this.lock(0, Number.MAX_SAFE_INTEGER);
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
