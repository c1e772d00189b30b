/**
 * Copy-before-write snapshots on a real qemu-storage-daemon: the snapshot's file keeps the image of
 * its instant while a host keeps writing an ext4 mounted from the volume, and deleting it leaves
 * no fleecing image, node or mount behind.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { MiB, mountsBelow, nodeNames, qsdLab, run, sha256, type QsdLab } from '../support/qsd';

const ref = { site: 'main', array: 'qa', volume: 'vol-1' };

describe('a snapshot on qemu-storage-daemon', () => {
  let lab: QsdLab;
  const mounted: string[] = [];
  beforeEach(() => {
    lab = qsdLab({ size: 8 * MiB });
  });
  afterEach(async () => {
    for (const m of mounted.splice(0).reverse()) await run('umount', [m]).catch(() => undefined);
    await lab.cleanup();
  });

  async function mount(file: string, dir: string, options: string): Promise<void> {
    await fs.mkdir(dir, { recursive: true });
    await run('mount', ['-o', options, file, dir]);
    mounted.push(dir);
  }

  it("holds the file system's image of its instant while the host keeps writing, and leaves nothing when deleted", async () => {
    const a = lab.driver.array('main', 'qa');
    const primary = a.imagePath('vol-1');
    const hostFile = await a.attachHost('vol-1');
    await run('mkfs.ext4', ['-q', '-F', hostFile]);
    const mnt = path.join(lab.home, 'mnt');
    await mount(hostFile, mnt, 'loop');
    await fs.writeFile(path.join(mnt, 'before.txt'), 'written before the snapshot\n');

    // The file system is frozen around the snapshot, as a database is put in backup mode.
    await run('fsfreeze', ['-f', mnt]);
    let snap;
    let atSnapshot;
    try {
      atSnapshot = await sha256(primary);
      snap = await lab.driver.createSnapshot(ref, 'nightly');
    } finally {
      await run('fsfreeze', ['-u', mnt]);
    }
    expect(snap).toMatchObject({ ...ref, name: 'nightly', sizeBytes: 8 * MiB });
    expect(await sha256(snap.readPath)).toBe(atSnapshot);
    await expect(lab.driver.createSnapshot(ref, 'nightly')).resolves.toEqual(snap);

    await fs.writeFile(path.join(mnt, 'after.bin'), Buffer.alloc(1 * MiB, 0x5a));
    await fs.rm(path.join(mnt, 'before.txt'));
    await run('sync', ['-f', path.join(mnt, 'after.bin')]);
    expect(await sha256(primary)).not.toBe(atSnapshot);
    expect(await sha256(snap.readPath)).toBe(atSnapshot);

    // The snapshot is a file system of its own instant: before.txt, and no after.bin.
    const snapMnt = path.join(lab.home, 'snap');
    await mount(snap.readPath, snapMnt, 'loop,ro,noload');
    await expect(fs.readFile(path.join(snapMnt, 'before.txt'), 'utf8')).resolves.toBe('written before the snapshot\n');
    await expect(fs.stat(path.join(snapMnt, 'after.bin'))).rejects.toMatchObject({ code: 'ENOENT' });
    await run('umount', [mounted.pop() as string]);

    await expect(lab.driver.listSnapshots('main', 'qa')).resolves.toEqual([snap]);
    await lab.driver.deleteSnapshot(ref, 'nightly');
    await lab.driver.deleteSnapshot(ref, 'nightly');
    await expect(lab.driver.listSnapshots('main', 'qa')).resolves.toEqual([]);
    await expect(fs.readdir(a.paths.snapshotsDir)).resolves.toEqual([]);
    expect((await nodeNames(lab)).filter((n) => !n.startsWith('#')).sort()).toEqual(['v.vol-1', 'v.vol-2']);
    expect(await mountsBelow(a.paths.snapshotsDir)).toEqual([]);

    await run('umount', [mounted.pop() as string]);
    await a.detachHost('vol-1');
    expect(await mountsBelow(a.paths.dir)).toEqual([]);
  });
});
