/**
 * The deduplicated store through its workflows on the real dev server: a volume backed up into the
 * store is recorded in the catalog beside tape backups and restored by the ordinary restore
 * workflow byte for byte; a second backup adds only the changed chunks; verify marks a damaged
 * backup bad; the copy in another building syncs only what it lacks, and a restore whose chunk is
 * damaged in the first store takes it from the copy and says so; prune and garbage collection.
 */
import { writeFileSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { Catalog } from '../../src/catalog/store';
import { ChunkStore } from '../../src/store/chunk-store';
import { storeLag } from '../../src/store/lag';
import type { Kura } from '../../src/client';
import type { KuraWorkers } from '../../src/worker';
import type { StoreBackupReport } from '../../src/domain/store';
import { failureOf, runKura, sha256, uniqueId, type TestLab } from '../support/harness';
import { closeWorkflowLab, openWorkflowLab, writeRandom } from '../support/workflow-lab';

const KiB = 1024;
const MiB = 1024 * KiB;
let lab: TestLab;
let kura: Kura;
let client: Client;
let workers: KuraWorkers;
let close: () => Promise<void>;
let vm: string;
let array: string;
let volume: string;

beforeAll(async () => {
  ({ lab, workers, kura, client, close } = await openWorkflowLab({
    vms: 1,
    dataVolumeSize: 2 * MiB,
    edit: (cfg) => {
      cfg.store = { chunkSize: '64KiB' };
    },
  }));
  const v = lab.loaded.config.sites[0]!.vms[0]!;
  vm = v.name;
  [array, volume] = v.dataVolume.split('/') as [string, string];
});

afterAll(() => closeWorkflowLab({ lab, workers, close }));

const run = <T>(workflow: string, input: unknown, id: string): Promise<T> =>
  client.workflow.execute(workflow, {
    taskQueue: lab.taskQueue,
    workflowId: `store/${id}/${uniqueId()}`,
    args: [input],
  });

async function backup(dataTime: string): Promise<StoreBackupReport> {
  return run<StoreBackupReport>('storeBackup', { site: lab.site, target: vm, array, volume, dataTime }, 'backup');
}

/** Overwrites `count` chunks of 64 KiB of the volume with new bytes, spread over it. */
function churn(count: number): void {
  for (let i = 0; i < count; i++) writeRandom(lab.dataVolume(vm), ((i * 7) % 32) * 64 * KiB, 64 * KiB);
}

const store = () => new ChunkStore(path.join(lab.paths.home, 'store', 'primary'));
const copy = () => new ChunkStore(path.join(lab.paths.home, 'store', 'copy'));

describe('the deduplicated store', () => {
  const rounds: { report: StoreBackupReport; sha256: string }[] = [];

  it('backs a volume up into the store, then only the changed chunks, and restores each byte-identical', async () => {
    rounds.push({ sha256: await sha256(lab.dataVolume(vm)), report: await backup('2026-11-27T02:00:00.000Z') });
    churn(4);
    rounds.push({ sha256: await sha256(lab.dataVolume(vm)), report: await backup('2026-11-28T02:00:00.000Z') });
    const [first, second] = rounds.map((r) => r.report) as [StoreBackupReport, StoreBackupReport];
    expect(first).toMatchObject({
      chunks: 32,
      newChunks: 32,
      sizeBytes: 2 * MiB,
      changedChunks: 32,
      previousBackupId: null,
    });
    expect(second).toMatchObject({ chunks: 32, newChunks: 4, changedChunks: 4, previousBackupId: first.backupId });
    // A lab array keeps no dirty bitmap: every chunk is read, so the whole volume's SHA-256 comes with it.
    expect(first).toMatchObject({ changedFrom: 'full', readChunks: 32, sha256: rounds[0]!.sha256 });
    expect(second).toMatchObject({ changedFrom: 'digests', readChunks: 32, sha256: rounds[1]!.sha256 });
    expect(second.changeNote).toMatch(/keeps no dirty bitmap/);
    expect((await store().usage()).chunks).toBe(36);

    const catalog = new Catalog(lab.paths.catalog);
    try {
      expect(catalog.piecesOf(second.backupId)).toMatchObject([
        { library: 'store', tape: 'primary', sizeBytes: 2 * MiB },
      ]);
      expect(catalog.backup(second.backupId).sha256).toBe(rounds[1]!.sha256);
      expect(catalog.storeBackup(second.backupId)).toMatchObject({
        chunks: 32,
        newChunks: 4,
        verifyStatus: 'unverified',
        changedFrom: 'digests',
        changeNote: second.changeNote,
        readChunks: 32,
      });
      expect(catalog.storeBackup(first.backupId)).toMatchObject({ changedFrom: 'full', readChunks: 32 });
    } finally {
      catalog.close();
    }
    // The command line shows it from the catalog.
    const show = await runKura(lab, ['store', 'show', second.backupId]);
    expect(show.code).toBe(0);
    expect(show.stdout).toContain(`changed chunks from: digests (32 read) — ${second.changeNote}`);
    for (const [i, r] of rounds.entries()) {
      const dest = path.join(lab.dir, 'restores', `round-${i}.img`);
      const restored = await (await kura.startRestore(r.report.backupId, dest)).result();
      expect(restored.sha256).toBe(r.sha256);
      expect(await sha256(dest)).toBe(r.sha256);
      expect(restored.storeFallbacks).toBeUndefined();
    }
  });

  it('syncs the copy with only the chunks it lacks, verified, and reports its lag', async () => {
    const before = await client.workflow.execute('storeSync', {
      taskQueue: lab.taskQueue,
      workflowId: `store/sync/${uniqueId()}`,
      args: [{}],
    });
    expect(before).toMatchObject({ indexes: 2, chunks: 36, lag: { lagMs: 0, behind: [], alert: false } });
    churn(2);
    const third = await backup('2026-11-29T02:00:00.000Z');
    // Until the next sync the copy lags by the new backup's age: past a policy of 1 s, an alert.
    expect(await storeLag(store(), copy(), 1000)).toMatchObject({ behind: [third.backupId], alert: true });
    const again = await run<{ chunks: number; indexes: number; lag: { behind: string[] } }>('storeSync', {}, 'sync');
    expect(again).toMatchObject({ indexes: 1, chunks: 2, lag: { behind: [] } });
    expect((await copy().usage()).chunks).toBe((await store().usage()).chunks);
  });

  it('takes a chunk damaged in the first store from the copy, restores byte-identical, and says so', async () => {
    const r = rounds[1]!;
    const index = await store().readIndex(r.report.backupId);
    // Chunk 7 changed in round 1: no other backup names it.
    const victim = index.chunks[7]!;
    const file = store().chunkPath(victim);
    const bytes = readFileSync(file);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0x55;
    writeFileSync(file, bytes);

    const dest = path.join(lab.dir, 'restores', 'fallback.img');
    const restored = await (await kura.startRestore(r.report.backupId, dest)).result();
    expect(await sha256(dest)).toBe(r.sha256);
    expect(restored.storeFallbacks).toEqual([
      {
        chunk: 7,
        digest: victim,
        from: 'copy',
        reason: expect.stringMatching(/^primary: chunk .* hashes to [0-9a-f]{64}, not to its name/),
      },
    ]);
  });

  it('restores from the copy when asked, byte-identical, naming the copy and needing nothing from the damaged first store', async () => {
    // The first store still holds the damaged chunk 7 of round 1: read from the copy, no chunk falls back.
    const r = rounds[1]!;
    const dest = path.join(lab.dir, 'restores', 'from-copy.img');
    const restored = await (await kura.startRestore(r.report.backupId, dest, { fromStore: 'copy' })).result();
    expect(await sha256(dest)).toBe(r.sha256);
    expect(restored.sha256).toBe(r.sha256);
    expect(restored.store).toBe('copy');
    expect(restored.storeFallbacks).toBeUndefined();
    const fromPrimary = await (
      await kura.startRestore(r.report.backupId, path.join(lab.dir, 'restores', 'from-primary.img'))
    ).result();
    expect(fromPrimary.store).toBe('primary');
    expect(fromPrimary.storeFallbacks).toHaveLength(1);
  });

  it('verify re-hashes every chunk and marks the damaged backup bad, naming the chunk', async () => {
    const r = rounds[1]!;
    const err = await run(
      'storeVerify',
      { backupIds: [rounds[0]!.report.backupId, r.report.backupId] },
      'verify',
    ).catch((e: unknown) => e);
    const f = failureOf(err);
    expect(f.type).toBe('ChecksumMismatch');
    expect(f.message).toMatch(
      new RegExp(`1 of 2 backup\\(s\\) in the primary store are bad: ${r.report.backupId.replace(/[.]/g, '\\.')} \\(`),
    );
    const catalog = new Catalog(lab.paths.catalog);
    try {
      expect(catalog.storeBackup(r.report.backupId)).toMatchObject({
        verifyStatus: 'bad',
        verifyError: expect.stringMatching(/#7 /),
      });
      expect(catalog.storeBackup(rounds[0]!.report.backupId)).toMatchObject({ verifyStatus: 'good' });
    } finally {
      catalog.close();
    }
  });

  it('prunes by retention, then garbage collection frees the chunks only the pruned backups held', async () => {
    const pruned = await run<Record<string, { kept: string[]; removed: string[] }>>(
      'storePrune',
      { site: lab.site, targets: [vm], retention: { keepLast: 1 } },
      'prune',
    );
    expect(pruned[vm]?.removed).toEqual([rounds[1]!.report.backupId, rounds[0]!.report.backupId]);
    const gc = await run<{ removed: number; marked: number }>('storeGc', { graceMs: 0 }, 'gc');
    expect(gc.marked).toBe(32);
    expect((await store().usage()).chunks).toBe(32);
    const err = await (
      await kura.startRestore(rounds[0]!.report.backupId, path.join(lab.dir, 'restores', 'gone.img'))
    )
      .result()
      .catch((e: unknown) => e);
    expect(failureOf(err)).toMatchObject({
      type: 'NotFound',
      message: expect.stringMatching(/no backup ".*" in the catalog/),
    });
  });
});
