/**
 * The store's change tracking on a real qemu-storage-daemon: generations of dirty bitmaps, each
 * begun as the last is frozen, read over NBD. A backup that dies before its index is durable loses
 * no change: its retry reads every generation since the previous backup's.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { storeBitmapPrefix } from '../../src/drivers/qsd/array';
import { changedChunks } from '../../src/store/changed';
import { MiB, nbdWrite, qsdLab, type QsdLab } from '../support/qsd';

const ref = { site: 'main', array: 'qa', volume: 'vol-1' };
const CHUNK = 64 * 1024;
const chunksOf = (extents: { offset: number; length: number }[] | undefined) =>
  [...changedChunks(extents ?? [], CHUNK, 4 * MiB)].sort((a, b) => a - b);

describe('change tracking for the store on qemu-storage-daemon', () => {
  let lab: QsdLab;
  beforeEach(() => {
    lab = qsdLab({ size: 4 * MiB });
  });
  afterEach(async () => {
    await lab.cleanup();
  });

  it('reads, on the retry of a backup that died before its index, the writes from before and after the failed attempt', async () => {
    const uri = lab.driver.array('main', 'qa').nbdUri('vol-1');
    await lab.driver.describeVolume('main', 'qa', 'vol-1');
    const full = await lab.driver.beginTracking(ref, 'fs-01/data', undefined);
    expect(full.generation.startsWith(storeBitmapPrefix('fs-01/data'))).toBe(true);
    expect(full.changed).toBeUndefined();
    await lab.driver.endTracking(ref, 'fs-01/data', full.generation);

    await nbdWrite(uri, 0x11, 0, CHUNK);
    const attempt = await lab.driver.beginTracking(ref, 'fs-01/data', full.generation);
    expect(chunksOf(attempt.changed)).toEqual([0]);
    // The attempt dies here: its index is never written, so nothing is dropped.
    await nbdWrite(uri, 0x22, 16 * CHUNK, 4096);
    const retry = await lab.driver.beginTracking(ref, 'fs-01/data', full.generation);
    expect(chunksOf(retry.changed)).toEqual([0, 16]);
    await lab.driver.endTracking(ref, 'fs-01/data', retry.generation);

    // Once the retry's index is durable, the next backup reads only what came after it.
    await nbdWrite(uri, 0x33, 32 * CHUNK + 512, 512);
    const next = await lab.driver.beginTracking(ref, 'fs-01/data', retry.generation);
    expect(chunksOf(next.changed)).toEqual([32]);
    // And a generation dropped by then is reported gone, not read as empty.
    const stale = await lab.driver.beginTracking(ref, 'fs-01/data', full.generation);
    expect(stale.changed).toBeUndefined();
    expect(stale.reason).toMatch(/is gone/);
  });

  it('keeps each target its own bitmaps on a shared volume', async () => {
    const uri = lab.driver.array('main', 'qa').nbdUri('vol-1');
    await lab.driver.describeVolume('main', 'qa', 'vol-1');
    const a = await lab.driver.beginTracking(ref, 'a', undefined);
    await nbdWrite(uri, 0x44, 3 * CHUNK, 4096);
    const b = await lab.driver.beginTracking(ref, 'a-b', undefined);
    await nbdWrite(uri, 0x55, 5 * CHUNK, 4096);
    expect(chunksOf((await lab.driver.beginTracking(ref, 'a', a.generation)).changed)).toEqual([3, 5]);
    expect(chunksOf((await lab.driver.beginTracking(ref, 'a-b', b.generation)).changed)).toEqual([5]);
  });
});
