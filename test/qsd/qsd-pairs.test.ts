/** Pairs on a real qemu-storage-daemon: full copy, every write to both, split at an instant, resync of the changed blocks only. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import { MiB, nbdWrite, qsdLab, sha256, type QsdLab } from '../support/qsd';

const ref = { site: 'main', array: 'qa', volume: 'vol-1' };

describe('a pair on qemu-storage-daemon', () => {
  let lab: QsdLab;
  beforeEach(() => {
    lab = qsdLab({ size: 4 * MiB });
  });
  afterEach(async () => {
    await lab.cleanup();
  });

  it('copies the primary, keeps the split-time image in the replica, and resyncs only the changed blocks', async () => {
    const a = lab.driver.array('main', 'qa');
    const uri = a.nbdUri('vol-1');
    const primary = a.imagePath('vol-1');

    await lab.driver.describeVolume('main', 'qa', 'vol-1');
    await nbdWrite(uri, 0x11, 0, 1 * MiB);
    const created = await lab.driver.createPair(ref);
    expect(created.replica).toBe('replica-vol-1');
    const synced = await a.waitPair('vol-1', 'in-sync', 20_000);
    expect(synced.state).toBe('in-sync');
    expect(synced.copiedBytes).toBeGreaterThanOrEqual(4 * MiB);

    // In sync, a host write reaches both volumes before it is acknowledged.
    await nbdWrite(uri, 0x22, 2 * MiB, 256 * 1024);
    expect(await sha256(synced.readPath)).toBe(await sha256(primary));

    const split = await lab.driver.splitPair(ref);
    expect(split.state).toBe('split');
    expect(split.splitAt).toBeDefined();
    const atSplit = await sha256(primary);
    expect(await sha256(split.readPath)).toBe(atSplit);
    expect(await lab.driver.splitPair(ref)).toMatchObject({ state: 'split', splitAt: split.splitAt });

    await nbdWrite(uri, 0x33, 64 * 1024, 128 * 1024);
    await nbdWrite(uri, 0x44, 3 * MiB, 64 * 1024);
    expect(await sha256(primary)).not.toBe(atSplit);
    expect(await sha256(split.readPath)).toBe(atSplit);

    const resynced = await lab.driver.resyncPair(ref);
    expect(resynced.state).toBe('in-sync');
    expect(resynced.copiedBytes).toBeGreaterThanOrEqual(192 * 1024);
    expect(resynced.copiedBytes).toBeLessThan((4 * MiB) / 4);
    expect(await sha256(resynced.readPath)).toBe(await sha256(primary));

    // In sync again: writes go to both once more.
    await nbdWrite(uri, 0x55, 1 * MiB, 64 * 1024);
    expect(await sha256(resynced.readPath)).toBe(await sha256(primary));

    await lab.driver.deletePair(ref);
    await expect(fs.stat(resynced.readPath)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(lab.driver.listPairs('main', 'qa')).resolves.toEqual([]);
  });

  it('ends a resync equal to the primary while a host keeps writing through it', async () => {
    const a = lab.driver.array('main', 'qa');
    const uri = a.nbdUri('vol-1');
    await lab.driver.createPair(ref);
    await a.waitPair('vol-1', 'in-sync', 20_000);
    await lab.driver.splitPair(ref);
    await nbdWrite(uri, 0x21, 0, 512 * 1024);

    // One write after another at moving offsets, racing the resync's rounds and then the mirror.
    let writing = true;
    let writes = 0;
    const writer = (async () => {
      while (writing) {
        await nbdWrite(uri, 0x30 + (writes % 64), ((writes * 7) % 60) * 64 * 1024, 64 * 1024);
        writes += 1;
      }
    })();
    try {
      await new Promise((r) => setTimeout(r, 100));
      const resynced = await lab.driver.resyncPair(ref);
      expect(['in-sync', 'copying']).toContain(resynced.state);
      await a.waitPair('vol-1', 'in-sync', 20_000);
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      writing = false;
      await writer;
    }
    expect(writes).toBeGreaterThan(2);
    const pair = await lab.driver.pairStatus(ref);
    expect(pair.state).toBe('in-sync');
    expect(await sha256(pair.readPath)).toBe(await sha256(a.imagePath('vol-1')));
  });
});
