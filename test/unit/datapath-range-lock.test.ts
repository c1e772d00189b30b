/**
 * The datapath's range lock: writes of different blocks do not wait for each other, writes of one
 * block keep their order, and a whole-volume hold waits for, and holds back, every range.
 */
import { describe, expect, it } from 'vitest';
import { RangeLock } from '../../src/datapath/sync';

const tick = () => new Promise((r) => setImmediate(r));

describe('RangeLock', () => {
  it('lets holders of disjoint ranges in together and queues overlapping ones in arrival order', async () => {
    const lock = new RangeLock();
    const order: string[] = [];
    const a = await lock.lock(0, 3);
    const b = await lock.lock(4, 7);
    order.push('a', 'b');
    const c = lock.lock(3, 4).then((u) => (order.push('c'), u));
    const d = lock.lock(4, 4).then((u) => (order.push('d'), u));
    await tick();
    expect(order).toEqual(['a', 'b']);
    a();
    await tick();
    expect(order).toEqual(['a', 'b']);
    b();
    (await c)();
    (await d)();
    expect(order).toEqual(['a', 'b', 'c', 'd']);
  });

  it('holds the whole range for lockAll: it waits for earlier holders and later ones wait for it', async () => {
    const lock = new RangeLock();
    const order: string[] = [];
    const a = await lock.lock(10, 10);
    const all = lock.lockAll().then((u) => (order.push('all'), u));
    const later = lock.lock(99, 99).then((u) => (order.push('later'), u));
    await tick();
    expect(order).toEqual([]);
    a();
    const unlockAll = await all;
    await tick();
    expect(order).toEqual(['all']);
    unlockAll();
    (await later)();
    expect(order).toEqual(['all', 'later']);
  });

  it('is free over a range only while no holder or waiter overlaps it', async () => {
    const lock = new RangeLock();
    expect(lock.free(0, 100)).toBe(true);
    const a = await lock.lock(4, 7);
    const waiter = lock.lock(7, 9);
    expect([lock.free(0, 3), lock.free(3, 4), lock.free(8, 8), lock.free(10, 20)]).toEqual([true, false, false, true]);
    a();
    (await waiter)();
    expect(lock.free(0, 100)).toBe(true);
    const all = await lock.lockAll();
    expect(lock.free(1000, 1000)).toBe(false);
    all();
  });
});
