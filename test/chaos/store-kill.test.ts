/**
 * Chaos: the worker process is killed (SIGKILL) while it writes a backup into the deduplicated
 * store. No index may point at a missing chunk at that instant or after; the backup's retry on a
 * new worker completes it without writing a chunk twice, and it restores byte-identical.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import type { Kura } from '../../src/client';
import { ChunkStore } from '../../src/store/chunk-store';
import type { StoreBackupReport } from '../../src/domain/store';
import { connectKura, makeLab, sha256, startWorkerProcess, uniqueId, type TestLab } from '../support/harness';

const MiB = 1024 * 1024;
let lab: TestLab;
let kura: Kura;
let client: Client;
let close: () => Promise<void>;
const procs: ChildProcess[] = [];

beforeAll(async () => {
  // Small chunks, each written with two fsyncs: the backup lasts long enough to be killed inside.
  lab = await makeLab({ vms: 1, dataVolumeSize: 24 * MiB, edit: (cfg) => (cfg.store = { chunkSize: '16KiB' }) });
  ({ kura, client, close } = await connectKura(lab));
});

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await close?.();
  lab?.cleanup();
});

/** Every index of the store, with the chunks it names that the store lacks. */
async function dangling(store: ChunkStore): Promise<{ backupId: string; missing: number }[]> {
  const out = [];
  for (const id of await store.listIndexes()) {
    const index = await store.readIndex(id);
    out.push({ backupId: id, missing: index.chunks.filter((d) => !store.has(d)).length });
  }
  return out;
}

describe('the worker killed during a store write', () => {
  it('leaves no index pointing at a missing chunk, and the retried backup completes and restores', async () => {
    const v = lab.loaded.config.sites[0]!.vms[0]!;
    const [array, volume] = v.dataVolume.split('/') as [string, string];
    const store = new ChunkStore(path.join(lab.paths.home, 'store', 'primary'));
    const source = await sha256(lab.dataVolume(v.name));

    const first = await startWorkerProcess(lab, procs);
    const handle = await client.workflow.start('storeBackup', {
      taskQueue: lab.taskQueue,
      workflowId: `store/backup/${uniqueId()}`,
      args: [{ site: lab.site, target: v.name, array, volume, heartbeatMs: 2000 }],
    });
    // The writer's lease appears as the backup starts writing; let it write a while, then kill.
    const deadline = Date.now() + 60_000;
    while (
      !existsSync(path.join(store.root, '.writers')) ||
      readdirSync(path.join(store.root, '.writers')).length === 0
    ) {
      if (Date.now() > deadline) throw new Error('the store backup never started writing');
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 400));
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));

    // The kill landed inside the write: chunks on disk, no index yet — and none dangling.
    const written = (await store.usage()).chunks;
    expect(written).toBeGreaterThan(0);
    expect(written).toBeLessThan((24 * MiB) / (16 * 1024));
    expect(await store.listIndexes()).toEqual([]);
    expect(await dangling(store)).toEqual([]);

    await startWorkerProcess(lab, procs);
    const report = (await handle.result()) as StoreBackupReport;
    // The retry wrote only the chunks the killed attempt had not made durable.
    expect(report.newChunks).toBeLessThanOrEqual(report.chunks - written);
    expect(await dangling(store)).toEqual([{ backupId: report.backupId, missing: 0 }]);

    const dest = path.join(lab.dir, 'restores', 'killed.img');
    const restored = await (await kura.startRestore(report.backupId, dest)).result();
    expect(restored.sha256).toBe(source);
    expect(await sha256(dest)).toBe(source);
  });
});
