/**
 * qemu-storage-daemon killed (SIGKILL) in the middle of a pair's full copy: the next call starts it
 * again and converges on the durable state — the pair copies anew and ends in sync, the snapshot
 * whose copy-before-write job died is dropped with its fleecing image, and no mount, node or file
 * is left behind.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import { waitGone } from '../../src/drivers/qsd/supervisor';
import { readArrayState } from '../../src/drivers/qsd/state';
import { MiB, mountsBelow, nbdWrite, nodeNames, qsdLab, sha256, type QsdLab } from '../support/qsd';

const vol1 = { site: 'main', array: 'qa', volume: 'vol-1' };
const vol2 = { site: 'main', array: 'qa', volume: 'vol-2' };

describe('a qemu-storage-daemon killed during a pair copy', () => {
  let lab: QsdLab;
  beforeEach(() => {
    // 4 MiB at 2 MiB/s: the full copy takes about two seconds, time enough to kill the daemon.
    lab = qsdLab({ size: 4 * MiB, copyRate: 2 * MiB });
  });
  afterEach(async () => {
    await lab.cleanup();
  });

  it('is restarted by the next call, which recreates the pair, drops the orphaned snapshot and leaves nothing behind', async () => {
    const a = lab.driver.array('main', 'qa');
    await lab.driver.describeVolume('main', 'qa', 'vol-1');
    await nbdWrite(a.nbdUri('vol-1'), 0x6b, 0, 3 * MiB);
    const hostFile = await a.attachHost('vol-2');
    const snap = await lab.driver.createSnapshot(vol2, 's1');

    await lab.driver.createPair(vol1);
    let status = await lab.driver.pairStatus(vol1);
    for (let i = 0; i < 100 && status.copiedBytes === 0; i++) status = await lab.driver.pairStatus(vol1);
    expect(status.state).toBe('copying');
    expect(status.copiedBytes).toBeGreaterThan(0);
    expect(status.copiedBytes).toBeLessThan(4 * MiB);

    const killed = await a.supervisor.pid();
    expect(killed).toBeDefined();
    process.kill(killed as number, 'SIGKILL');
    expect(await waitGone(killed as number, 5_000)).toBe(true);

    // The retried activity's call: the daemon comes back and the pair copies again from the start.
    const again = await lab.driver.createPair(vol1);
    expect(again.state).toBe('copying');
    const restarted = await a.supervisor.pid();
    expect(restarted).toBeDefined();
    expect(restarted).not.toBe(killed);
    const state = await readArrayState(a.paths.stateFile);
    expect(state.pairs['vol-1']?.recovered).toHaveLength(1);
    expect(state.pairs['vol-1']?.recovered[0]).toMatch(/mirror job was gone; the full copy restarted/);
    expect(state.lostSnapshots.map((l) => l.key)).toEqual(['vol-2@s1']);
    expect(state.hosts).toEqual({});

    await expect(lab.driver.listSnapshots('main', 'qa')).resolves.toEqual([]);
    await expect(fs.readdir(a.paths.snapshotsDir)).resolves.toEqual([]);
    await expect(fs.stat(snap.readPath)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(fs.stat(hostFile)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await mountsBelow(a.paths.dir)).toEqual([]);

    const synced = await a.waitPair('vol-1', 'in-sync', 20_000);
    expect(synced.state).toBe('in-sync');
    expect(await sha256(synced.readPath)).toBe(await sha256(a.imagePath('vol-1')));
    expect((await nodeNames(lab)).filter((n) => !n.startsWith('#')).sort()).toEqual(['r.vol-1', 'v.vol-1', 'v.vol-2']);
    await expect(fs.readdir(a.paths.poolDir)).resolves.toEqual(['replica-vol-1.img']);

    // A snapshot asked for again is taken anew.
    const retaken = await lab.driver.createSnapshot(vol2, 's1');
    expect(await sha256(retaken.readPath)).toBe(await sha256(a.imagePath('vol-2')));
  });

  it('is started again by the supervisor when it was stopped, with its pairs as they were', async () => {
    const a = lab.driver.array('main', 'qa');
    await lab.driver.createPair(vol1);
    await a.waitPair('vol-1', 'in-sync', 20_000);
    const split = await lab.driver.splitPair(vol1);
    await a.stop();
    expect(await a.supervisor.pid()).toBeUndefined();

    const after = await lab.driver.pairStatus(vol1);
    expect(after).toMatchObject({ state: 'split', splitAt: split.splitAt, readPath: split.readPath });
    // The split bitmap lived in the stopped daemon: the resync must copy the whole volume.
    const resync = await lab.driver.resyncPair(vol1);
    expect(resync.state).toBe('copying');
    const synced = await a.waitPair('vol-1', 'in-sync', 20_000);
    expect(synced.copiedBytes).toBeGreaterThanOrEqual(4 * MiB);
    expect((await readArrayState(a.paths.stateFile)).pairs['vol-1']?.recovered[0]).toMatch(/split bitmap was lost/);
  });

  it('finishes a split that a worker left half done, and recopies a resync it left half done', async () => {
    const a = lab.driver.array('main', 'qa');
    await lab.driver.describeVolume('main', 'qa', 'vol-1');
    await nbdWrite(a.nbdUri('vol-1'), 0x3c, MiB, MiB);
    await lab.driver.createPair(vol1);
    await a.waitPair('vol-1', 'in-sync', 20_000);

    // The worker dies after the split's bitmap and cancel, before it recorded the split.
    await a.session(async (s) => {
      await s.qmp.execute('block-dirty-bitmap-add', { node: 'v.vol-1', name: 'kura-split', granularity: 65536 });
      s.state.pairs['vol-1']!.phase = 'splitting';
      await s.save();
      await s.qmp.execute('block-job-cancel', { device: 'pair.vol-1' });
    });
    const split = await lab.driver.pairStatus(vol1);
    expect(split.state).toBe('split');
    expect(await sha256(split.readPath)).toBe(await sha256(a.imagePath('vol-1')));
    expect(await nodeNames(lab)).not.toContain('r.vol-1');

    // The worker dies in the middle of a resync: the next call cannot know which blocks were copied.
    await a.session(async (s) => {
      s.state.pairs['vol-1']!.phase = 'resyncing';
      await s.save();
    });
    const again = await lab.driver.pairStatus(vol1);
    expect(again.state).toBe('copying');
    expect((await readArrayState(a.paths.stateFile)).pairs['vol-1']?.recovered.at(-1)).toMatch(
      /a resync was interrupted; the full copy restarted/,
    );
    const synced = await a.waitPair('vol-1', 'in-sync', 20_000);
    expect(await sha256(synced.readPath)).toBe(await sha256(a.imagePath('vol-1')));
  });
});
