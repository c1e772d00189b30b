/**
 * Store incrementals of a volume on a qemu-storage-daemon array, through Kura's workers and a real
 * Temporal server: the array's dirty bitmap, read over NBD (`qemu:dirty-bitmap:…`), names the
 * chunks a host wrote since the previous backup, and only those are read; each backup restores
 * byte-identical. A daemon restart loses the bitmap: the next backup compares every chunk by digest
 * and says so, and the one after it reads from a bitmap again.
 */
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import type { Kura } from '../../src/client';
import { Catalog } from '../../src/catalog/store';
import type { StoreBackupReport } from '../../src/domain/store';
import { STORE_BITMAP } from '../../src/drivers/qsd/array';
import type { KuraWorkers } from '../../src/worker';
import { connectKura, sha256, startWorkers, uniqueId } from '../support/harness';
import { nbdWrite } from '../support/qsd';
import { makeQsdLab, QSD_ARRAY, type QsdTestLab } from '../support/qsd-site';

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 64 * KiB;
const CHUNKS = (4 * MiB) / CHUNK;

let lab: QsdTestLab;
let workers: KuraWorkers;
let kura: Kura;
let client: Client;
let close: () => Promise<void>;
const vm = 'vm-001';
const volume = `${vm}-data`;
let day = 0;

beforeAll(async () => {
  lab = await makeQsdLab({
    vms: 1,
    dataVolumeSize: 4 * MiB,
    edit: (cfg) => {
      cfg.store = { chunkSize: '64KiB' };
    },
  });
  workers = await startWorkers(lab);
  ({ kura, client, close } = await connectKura(lab));
});

afterAll(async () => {
  await close?.();
  await workers?.shutdown();
  await lab?.cleanupQsd();
});

async function backup(): Promise<StoreBackupReport> {
  day += 1;
  return client.workflow.execute('storeBackup', {
    taskQueue: lab.taskQueue,
    workflowId: `store/backup/${uniqueId()}`,
    args: [
      {
        site: lab.site,
        target: vm,
        array: QSD_ARRAY,
        volume,
        dataTime: `2026-11-${String(day).padStart(2, '0')}T02:00:00.000Z`,
      },
    ],
  });
}

/** The volume's image as the array holds it now (its daemon writes it through to the file). */
const image = () => sha256(lab.array().imagePath(volume));
const uri = () => lab.array().nbdUri(volume);

async function restoredSha(backupId: string): Promise<string> {
  const dest = path.join(lab.dir, 'restores', `${backupId.replace(/[^A-Za-z0-9]/g, '_')}.img`);
  const restored = await (await kura.startRestore(backupId, dest)).result();
  expect(await sha256(dest)).toBe(restored.sha256);
  return restored.sha256;
}

/** The store's bitmaps of the volume in the array's daemon now. */
async function storeBitmaps(): Promise<string[]> {
  return lab.array().session(async (s) => {
    const nodes = await s.qmp.execute<{ 'node-name': string; 'dirty-bitmaps'?: { name?: string }[] }[]>(
      'query-named-block-nodes',
      { flat: true },
    );
    return nodes
      .flatMap((n) => n['dirty-bitmaps'] ?? [])
      .map((b) => b.name ?? '')
      .filter((n) => n.startsWith(STORE_BITMAP));
  });
}

describe('store incrementals of a volume on a qemu-storage-daemon array', () => {
  it('reads only the chunks the dirty bitmap marks, and each backup restores byte-identical', async () => {
    await lab.qsd.describeVolume(lab.site, QSD_ARRAY, volume);
    await nbdWrite(uri(), 0x11, 0, 4 * MiB);
    const fullImage = await image();
    const full = await backup();
    expect(full).toMatchObject({ changedFrom: 'full', readChunks: CHUNKS, chunks: CHUNKS, sha256: fullImage });
    // One generation, begun before the full read a byte.
    expect(await storeBitmaps()).toHaveLength(1);

    // Known blocks: inside chunk 0, inside chunk 10, and across the border of chunks 20 and 21.
    await nbdWrite(uri(), 0x5a, 0, 4 * KiB);
    await nbdWrite(uri(), 0x5b, 10 * CHUNK + 512, 1 * KiB);
    await nbdWrite(uri(), 0x5c, 21 * CHUNK - 2 * KiB, 4 * KiB);
    const incImage = await image();
    const inc = await backup();
    expect(inc).toMatchObject({
      changedFrom: 'bitmap',
      readChunks: 4,
      readBytes: 4 * CHUNK,
      changedChunks: 4,
      newChunks: 4,
      chunks: CHUNKS,
      previousBackupId: full.backupId,
      sha256: null,
    });
    expect(inc.changeNote).toMatch(/4 chunk\(s\) marked by dirty bitmap kura-store-vm-001-/);
    // The generation the full began is dropped once the incremental's index is durable.
    expect(await storeBitmaps()).toHaveLength(1);

    // Nothing written since: nothing read.
    const idle = await backup();
    expect(idle).toMatchObject({ changedFrom: 'bitmap', readChunks: 0, newChunks: 0, changedChunks: 0 });

    // The full's whole-volume SHA-256 is in the catalog; the incremental's is recorded by a verify,
    // which hashes its chunks in order from the store, and every restore then checks it.
    const catalog = new Catalog(lab.paths.catalog);
    try {
      expect(catalog.backup(full.backupId).sha256).toBe(fullImage);
      expect(catalog.backup(inc.backupId).sha256).toBeNull();
      const verified = await client.workflow.execute('storeVerify', {
        taskQueue: lab.taskQueue,
        workflowId: `store/verify/${uniqueId()}`,
        args: [{ backupIds: [inc.backupId] }],
      });
      expect(verified).toMatchObject([{ backupId: inc.backupId, good: true, sha256: incImage }]);
      expect(catalog.backup(inc.backupId).sha256).toBe(incImage);
    } finally {
      catalog.close();
    }

    expect(await restoredSha(full.backupId)).toBe(fullImage);
    expect(await restoredSha(inc.backupId)).toBe(incImage);
    expect(await restoredSha(idle.backupId)).toBe(incImage);
  });

  it('compares every chunk by digest after a daemon restart lost the bitmap, and says so', async () => {
    await lab.array().stop();
    // Asking the array starts a fresh daemon, without the bitmaps of the old one.
    await lab.qsd.describeVolume(lab.site, QSD_ARRAY, volume);
    expect(await storeBitmaps()).toEqual([]);
    await nbdWrite(uri(), 0x6d, 33 * CHUNK, 8 * KiB);
    const afterRestart = await image();
    const compared = await backup();
    expect(compared).toMatchObject({
      changedFrom: 'digests',
      readChunks: CHUNKS,
      changedChunks: 1,
      newChunks: 1,
      sha256: afterRestart,
    });
    expect(compared.changeNote).toMatch(/is gone \(its daemon restarted since the previous backup\)/);
    expect(await restoredSha(compared.backupId)).toBe(afterRestart);

    // The restarted daemon tracks again from this backup on.
    await nbdWrite(uri(), 0x6e, 40 * CHUNK, 4 * KiB);
    const later = await image();
    const next = await backup();
    expect(next).toMatchObject({ changedFrom: 'bitmap', readChunks: 1, changedChunks: 1, newChunks: 1 });
    expect(await restoredSha(next.backupId)).toBe(later);
  });
});
