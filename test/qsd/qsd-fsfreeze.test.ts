/**
 * The `fsfreeze` hook on a real ext4, loop-mounted from a host's attachment of a volume of a
 * qemu-storage-daemon array: a snapshot-backup freezes the file system around the snapshot, so a
 * write started in backup mode waits for the thaw, the image restores as a clean ext4 holding what
 * was written before, and the mount is writable again at once after the operation.
 */
import { mkdtempSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Kura } from '../../src/client';
import { FsfreezeHookSchema } from '../../src/domain/inventory';
import { FsfreezeHook } from '../../src/drivers/hooks';
import type { KuraWorkers } from '../../src/worker';
import { connectKura, startWorkers } from '../support/harness';
import { run } from '../support/qsd';
import { makeQsdLab, QSD_ARRAY, type QsdTestLab } from '../support/qsd-site';

const MiB = 1024 * 1024;

let lab: QsdTestLab;
let workers: KuraWorkers;
let kura: Kura;
let close: () => Promise<void>;
const top = mkdtempSync('/tmp/kura-freeze-');
const mnt = path.join(top, 'mnt');
const mounted: string[] = [];

beforeAll(async () => {
  lab = await makeQsdLab({
    vms: 1,
    dataVolumeSize: 16 * MiB,
    pieceSize: '4MiB',
    streams: 1,
    chunks: 2,
    edit: (cfg) => {
      (cfg.sites[0] as { hooks?: unknown[] }).hooks = [{ target: 'vm-001', kind: 'fsfreeze', path: mnt }];
    },
  });
  workers = await startWorkers(lab);
  ({ kura, close } = await connectKura(lab));
});

afterAll(async () => {
  // A frozen mount cannot be unmounted; thawing one that is not frozen only fails.
  await run('fsfreeze', ['-u', mnt]).catch(() => undefined);
  for (const m of mounted.splice(0).reverse()) await run('umount', [m]).catch(() => undefined);
  await close?.();
  await workers?.shutdown();
  await lab?.array().detachHost('vm-001-data');
  await lab?.cleanupQsd();
  await fs.rm(top, { recursive: true, force: true });
});

async function mount(file: string, dir: string, options: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  await run('mount', ['-o', options, file, dir]);
  mounted.push(dir);
}

interface Write {
  name: string;
  start: number;
  end: number;
}

/**
 * Starts a small synced write to the mount every 20 ms, without waiting for the ones before (a
 * write caught by the freeze must not hold back the next), until `stop()`; each with when it
 * began and ended.
 */
function keepWriting(): { stop(): Promise<Write[]> } {
  const pending: Promise<Write>[] = [];
  let n = 0;
  const write = async (name: string): Promise<Write> => {
    const start = Date.now();
    await run('dd', ['if=/dev/zero', `of=${path.join(mnt, name)}`, 'bs=4k', 'count=1', 'conv=fsync', 'status=none']);
    return { name, start, end: Date.now() };
  };
  const timer = setInterval(() => pending.push(write(`w-${n++}`)), 20);
  return {
    async stop() {
      clearInterval(timer);
      return Promise.all(pending);
    },
  };
}

describe('an fsfreeze hook on a qemu-storage-daemon volume', () => {
  it('freezes the file system around the snapshot: writes wait, the image is a clean ext4, the mount is thawed after', async () => {
    const hostFile = await lab.array().attachHost('vm-001-data');
    await run('mkfs.ext4', ['-q', '-F', hostFile]);
    await mount(hostFile, mnt, 'loop');
    await fs.writeFile(path.join(mnt, 'before.txt'), 'written before the freeze\n');
    await run('sync', ['-f', path.join(mnt, 'before.txt')]);

    const writer = keepWriting();
    const report = await (
      await kura.startBackup('vm-001', { method: 'snapshot' })
    )
      .result()
      .finally(() => new Promise((r) => setTimeout(r, 100)));
    const writes = await writer.stop();
    expect(report).toMatchObject({ array: QSD_ARRAY, volume: 'vm-001-data', kind: 'snapshot-backup' });
    expect(report.backupMode).toMatchObject({ hook: 'fsfreeze', rounds: 1 });
    const entered = Date.parse(report.backupMode!.enteredAt);
    const left = Date.parse(report.backupMode!.leftAt);
    const snapshotAt = Date.parse(report.source!.at!);

    // A write that began once the file system was frozen finished only after the snapshot was taken.
    const inBackupMode = writes.filter((w) => w.start >= entered && w.start < left);
    expect(inBackupMode.length, JSON.stringify({ entered, left, snapshotAt, writes })).toBeGreaterThan(0);
    for (const w of inBackupMode) expect(w.end).toBeGreaterThanOrEqual(snapshotAt);
    const blocked = inBackupMode[0]!;

    // The image restores as a clean ext4 with what was written before the freeze, and none of the writes that waited.
    const image = path.join(lab.dir, 'restores', 'frozen.img');
    await (await kura.startRestore(report.backupId, image)).result();
    const fsck = await run('fsck.ext4', ['-n', '-f', image]);
    expect(fsck.stdout).toMatch(/clean|files/);
    const imgMnt = path.join(top, 'image');
    await mount(image, imgMnt, 'loop,ro');
    await expect(fs.readFile(path.join(imgMnt, 'before.txt'), 'utf8')).resolves.toBe('written before the freeze\n');
    await expect(fs.stat(path.join(imgMnt, blocked.name))).rejects.toMatchObject({ code: 'ENOENT' });
    await run('umount', [mounted.pop() as string]);

    // After the operation the mount is not frozen: a write is done at once.
    const t0 = Date.now();
    await run(
      'dd',
      ['if=/dev/zero', `of=${path.join(mnt, 'after')}`, 'bs=4k', 'count=1', 'conv=fsync', 'status=none'],
      {
        timeout: 5_000,
      },
    );
    expect(Date.now() - t0).toBeLessThan(5_000);
    await expect(fs.stat(path.join(mnt, blocked.name))).resolves.toMatchObject({ size: 4096 });
  });

  it('thaws a file system that is not frozen without complaint, and refuses to freeze one frozen already', async () => {
    const hook = new FsfreezeHook(FsfreezeHookSchema.parse({ target: 'vm-001', kind: 'fsfreeze', path: mnt }));
    await expect(hook.endBackupMode()).resolves.toBeUndefined();
    await hook.beginBackupMode();
    try {
      await expect(hook.beginBackupMode()).rejects.toMatchObject({
        type: 'DeviceFault',
        message: expect.stringMatching(/begin-backup-mode hook of vm-001 \(fsfreeze -f .*\) failed: .*busy/),
      });
    } finally {
      await hook.endBackupMode();
    }
    await hook.endBackupMode();
    await run(
      'dd',
      ['if=/dev/zero', `of=${path.join(mnt, 'thawed')}`, 'bs=4k', 'count=1', 'conv=fsync', 'status=none'],
      {
        timeout: 5_000,
      },
    );
  });
});
