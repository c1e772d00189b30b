/**
 * Chaos: the Temporal server is SIGKILLed at a seeded random instant of a store garbage collection
 * and started again on the same SQLite file. The collection completes; what it removed is exactly
 * the chunks no index names; every backup it kept restores byte-identical; no writer lease is held.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Catalog } from '../../src/catalog/store';
import { ChunkStore } from '../../src/store/chunk-store';
import type { StoreBackupReport } from '../../src/domain/store';
import { makeLab, sha256, uniqueId, type TestLab } from '../support/harness';
import { acrossOutage, chaosSeed, startPrivateKura, type PrivateKura } from '../support/private-server';
import { heldRows, restoreAllEqual } from './checks';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 8 * MiB;

let lab: TestLab;
let pk: PrivateKura;

beforeAll(async () => {
  // Small chunks: the garbage of one pruned 8 MiB backup is 2,048 files, which the sweep takes a while over.
  lab = await makeLab({ vms: 1, dataVolumeSize: SIZE, edit: (cfg) => void (cfg.store = { chunkSize: '4KiB' }) });
  pk = await startPrivateKura(lab);
});

afterAll(async () => {
  await pk?.close();
  lab?.cleanup();
});

const run = <T>(workflow: string, input: unknown, id: string) =>
  pk.client.workflow.start(workflow, {
    taskQueue: lab.taskQueue,
    workflowId: `store/${id}/${uniqueId()}`,
    args: [input],
  }) as Promise<{ workflowId: string; result(): Promise<T> }>;

describe('the Temporal server killed during a store garbage collection', () => {
  it('completes the collection, removes only unnamed chunks, and every kept backup restores', async () => {
    const { random } = chaosSeed('store-gc');
    const vms = lab.loaded.config.sites[0]!.vms;
    const store = new ChunkStore(path.join(lab.paths.home, 'store', 'primary'));
    const backup = async (vm: (typeof vms)[number], dataTime: string) => {
      const [array, volume] = vm.dataVolume.split('/') as [string, string];
      const sum = await sha256(lab.dataVolume(vm.name));
      const h = await run<StoreBackupReport>(
        'storeBackup',
        { site: lab.site, target: vm.name, array, volume, dataTime },
        'backup',
      );
      return { report: await h.result(), sha256: sum };
    };
    let t = Date.now();
    const first = await backup(vms[0]!, '2026-11-27T02:00:00.000Z');
    writeFileSync(lab.dataVolume(vms[0]!.name), randomBytes(SIZE));
    const second = await backup(vms[0]!, '2026-11-28T02:00:00.000Z');
    console.log(`store-gc: two backups in ${Date.now() - t} ms`);
    const pruned = await (
      await run<Record<string, { removed: string[] }>>(
        'storePrune',
        { site: lab.site, targets: [vms[0]!.name], retention: { keepLast: 1 } },
        'prune',
      )
    ).result();
    expect(pruned[vms[0]!.name]?.removed).toEqual([first.report.backupId]);
    const before = (await store.usage()).chunks;

    t = Date.now();
    const gc = await run<{ removed: number; marked: number }>('storeGc', { graceMs: 0 }, 'gc');
    // The instant: a seeded moment after the collection's activity has started.
    for (;;) {
      const d = await pk.client.workflow.getHandle(gc.workflowId).describe();
      if ((d.raw.pendingActivities ?? []).some((a) => a.activityType?.name === 'gcStore')) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const atMs = Math.floor(random() * 150);
    await new Promise((r) => setTimeout(r, atMs));
    const pending = await pk.client.workflow.getHandle(gc.workflowId).describe();
    expect((pending.raw.pendingActivities ?? []).map((a) => a.activityType?.name)).toEqual(['gcStore']);
    const removedAtKill = before - (await store.usage()).chunks;
    await pk.server.kill();
    console.log(
      `store-gc: server killed ${atMs} ms into the collection, ${removedAtKill} of the garbage chunks removed`,
    );
    await new Promise((r) => setTimeout(r, 1000));
    await pk.server.restart();
    const result = await acrossOutage(() => gc.result());
    console.log(`store-gc: collection done ${Date.now() - t} ms after its start`);

    // What is left is exactly what the kept indexes name: nothing named is missing, no garbage stays.
    const named = new Set<string>();
    for (const id of await store.listIndexes()) for (const d of (await store.readIndex(id)).chunks) named.add(d);
    expect((await store.usage()).chunks).toBe(named.size);
    expect([...named].filter((d) => !store.has(d))).toEqual([]);
    expect(result.marked).toBe(named.size);
    expect(before - named.size).toBeGreaterThan(0);

    const catalog = new Catalog(lab.paths.catalog);
    const rows = catalog.listBackups({ site: lab.site });
    catalog.close();
    expect(rows.map((r) => [r.backupId, r.status])).toEqual([[second.report.backupId, 'complete']]);
    await restoreAllEqual(
      pk.kura,
      [{ backupId: second.report.backupId, sha256: second.sha256 }],
      path.join(lab.dir, 'restores'),
    );
    const writers = path.join(store.root, '.writers');
    expect(existsSync(writers) ? readdirSync(writers) : []).toEqual([]);
    expect(await heldRows(pk.kura, lab.site)).toEqual([]);
  });
});
