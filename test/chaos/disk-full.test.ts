/**
 * Chaos: the store's file system fills up during a backup (a small ext4 on a loop device, as root).
 * The job fails with StorageFull naming the store, the catalog claims no backup that is not complete
 * (the row is failed, no index exists), no writer lease is left, and once there is room the same
 * backup runs again and restores byte-identical.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { Catalog } from '../../src/catalog/store';
import { ChunkStore } from '../../src/store/chunk-store';
import { ErrorType } from '../../src/domain/errors';
import type { StoreBackupReport } from '../../src/domain/store';
import type { Kura } from '../../src/client';
import type { Client } from '@temporalio/client';
import type { KuraWorkers } from '../../src/worker';
import { SmallFileSystem } from '../support/small-fs';
import { connectKura, failureOf, makeLab, sha256, startWorkers, uniqueId, type TestLab } from '../support/harness';

const MiB = 1024 * 1024;

let lab: TestLab;
let workers: KuraWorkers;
let kura: Kura;
let client: Client;
let close: () => Promise<void>;
let mountPoint: string;
let small: SmallFileSystem | undefined;

beforeAll(async () => {
  lab = await makeLab({ vms: 1, dataVolumeSize: 8 * MiB, edit: (cfg) => void (cfg.store = { chunkSize: '64KiB' }) });
  // A 4 MiB ext4 (about 2.5 MiB usable) mounted where the first store lives: an 8 MiB volume of
  // random bytes does not fit.
  mountPoint = path.join(lab.paths.home, 'store', 'primary');
  mkdirSync(mountPoint, { recursive: true });
  small = SmallFileSystem.mount(path.join(lab.dir, 'small-fs.img'), mountPoint);
  workers = await startWorkers(lab);
  ({ kura, client, close } = await connectKura(lab));
});

afterAll(async () => {
  await close?.();
  await workers?.shutdown();
  small?.unmount();
  lab?.cleanup();
});

describe('the store’s file system full during a backup', () => {
  it('fails the backup with StorageFull, claims nothing, and leaves no lease', async () => {
    const v = lab.loaded.config.sites[0]!.vms[0]!;
    const [array, volume] = v.dataVolume.split('/') as [string, string];
    const run = (dataTime: string) =>
      client.workflow.execute('storeBackup', {
        taskQueue: lab.taskQueue,
        workflowId: `store/backup/${uniqueId()}`,
        args: [{ site: lab.site, target: v.name, array, volume, dataTime }],
      }) as Promise<StoreBackupReport>;

    const err = await run('2026-11-29T02:00:00.000Z').then(
      (r) => new Error(`the backup completed on a full file system: ${JSON.stringify(r)}`),
      (e: unknown) => e,
    );
    const f = failureOf(err);
    expect(f.type).toBe(ErrorType.StorageFull);
    expect(f.message).toContain(`the store at ${mountPoint} is full`);
    expect(f.message).toMatch(/free space there .* or grow it/);

    const store = new ChunkStore(mountPoint);
    expect(await store.listIndexes()).toEqual([]);
    const writers = path.join(mountPoint, '.writers');
    expect(existsSync(writers) ? readdirSync(writers) : []).toEqual([]);
    const catalog = new Catalog(lab.paths.catalog);
    const rows = catalog.listBackups({ site: lab.site });
    catalog.close();
    expect(rows.map((r) => [r.status, r.error?.split(':')[0]])).toEqual([['failed', ErrorType.StorageFull]]);

    // With room again (the store moved off the small file system), the backup runs and restores.
    small!.unmount();
    const source = await sha256(lab.dataVolume(v.name));
    const report = await run('2026-11-29T03:00:00.000Z');
    const dest = path.join(lab.dir, 'restores', 'after-full.img');
    await (await kura.startRestore(report.backupId, dest)).result();
    expect(await sha256(dest)).toBe(source);
  });
});
