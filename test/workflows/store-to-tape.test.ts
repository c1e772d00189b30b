/**
 * Store backups copied to tape through the streams (docs/adr/042), against a real Temporal server
 * and real lab files: the tape copy holds the store backup's bytes, not the volume's later ones;
 * one stream's drive fails mid-copy and the other stream takes the rest; the store's chunks lost,
 * the tape copy restores byte-identical; the catalog links the copy to its store backup and a
 * rebuild from the cartridges keeps the link; a bad id is refused, typed, and changes nothing; a
 * class's tape policy copies what is due and no more. Nothing stays mounted, zoned or reserved.
 */
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { Catalog } from '../../src/catalog/store';
import { KuraStore } from '../../src/api/store';
import { LabState } from '../../src/lab/state';
import { labCartridgePath } from '../../src/lab/files';
import type { Kura } from '../../src/client';
import type { KuraWorkers } from '../../src/worker';
import type { RestoreReport } from '../../src/domain/jobs';
import type { StoreBackupReport } from '../../src/domain/store';
import type { CatalogRebuildReport } from '../../src/domain/catalog-rebuild';
import type { StoreToTapeReport } from '../../src/workflows/store-to-tape';
import type { ClassBackupReport } from '../../src/workflows/store';
import { failureOf, repairLab, sha256, unavailableDevices, uniqueId, type TestLab } from '../support/harness';
import { closeWorkflowLab, openWorkflowLab, writeRandom } from '../support/workflow-lab';

const KiB = 1024;
const MiB = 1024 * KiB;
const VOLUME = 4 * MiB;

let lab: TestLab;
let kura: Kura;
let client: Client;
let workers: KuraWorkers;
let close: () => Promise<void>;
let state: LabState;
let store: KuraStore;
let seq = 0;

beforeAll(async () => {
  ({ lab, workers, kura, client, close } = await openWorkflowLab({
    vms: 2,
    dataVolumeSize: VOLUME,
    copyHeartbeatTimeout: '1500ms',
    edit: (cfg) => {
      cfg.store = { chunkSize: '256KiB' };
      cfg.classes = {
        server: {
          method: 'incremental',
          schedule: '02:00',
          retention: { keepLast: 10 },
          targets: [{ name: 'fs-02', volume: 'array-01/vm-002-data' }],
          toTape: { every: 'weekly', streams: 2 },
        },
      };
    },
  }));
  state = new LabState(lab.paths.labState);
  store = new KuraStore(client, lab.loaded, lab.taskQueue);
});

afterAll(() => closeWorkflowLab({ lab, workers, close, state }));

/** A distinct instant per request, so no two jobs share a workflow or backup id. */
function at(): string {
  return new Date(Date.UTC(2026, 10, 29, 3, 0, 0, ++seq * 1000)).toISOString();
}

async function storeBackup(target: string, volumeRef: string, dataTime: string): Promise<StoreBackupReport> {
  const [array, volume] = volumeRef.split('/') as [string, string];
  return client.workflow.execute('storeBackup', {
    taskQueue: lab.taskQueue,
    workflowId: `store/backup/${uniqueId()}`,
    args: [{ site: lab.site, target, array, volume, dataTime }],
  });
}

/** Nothing reserved, no zone on the fabric, every drive empty. */
async function expectClean(): Promise<void> {
  const tables = await kura.pool.tables(lab.site);
  const held = [...tables.servers, ...tables.libraries, ...tables.drives, ...tables.tapes, ...tables.switches].flatMap(
    (r) => r.holders.map((h) => `${r.name}:${h.job}`),
  );
  expect(held).toEqual([]);
  expect(state.zones(lab.site)).toEqual([]);
  expect(tables.drives.map((d) => state.driveContents(lab.site, d.name))).toEqual(tables.drives.map(() => null));
}

function withCatalog<T>(read: (c: Catalog) => T): T {
  const c = new Catalog(lab.paths.catalog);
  try {
    return read(c);
  } finally {
    c.close();
  }
}

/** Removes every chunk file of a store: the store backup can no longer be read from it. */
function loseChunks(which: 'primary' | 'copy'): number {
  const root = path.join(lab.paths.home, 'store', which, '.chunks');
  let n = 0;
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else {
        rmSync(p);
        n += 1;
      }
    }
  };
  // The copy in another building holds chunks only once it was synced.
  if (existsSync(root)) walk(root);
  return n;
}

describe('store backups copied to tape', () => {
  let tapeCopy: StoreToTapeReport['copies'][number];
  let storeId: string;
  let atBackup: string;

  it('copies the store backup, not the volume as it is now, over two streams when one drive fails mid-copy', async () => {
    const vm = lab.loaded.config.sites[0]!.vms[0]!;
    atBackup = await sha256(lab.dataVolume(vm.name));
    const b = await storeBackup(vm.name, vm.dataVolume, at());
    storeId = b.backupId;
    // The volume moves on after the backup: the tape copy must still hold the backup's bytes.
    writeRandom(lab.dataVolume(vm.name), MiB, MiB);
    expect(await sha256(lab.dataVolume(vm.name))).not.toBe(atBackup);

    state.addFault({ once: false, device: 'lib-01-drv-1', kind: 'fail', after: { percent: 50 } });
    const report = await (await store.toTape(storeId, { requestedAt: at(), streams: 2 })).result();
    expect(report.copies).toHaveLength(1);
    tapeCopy = report.copies[0]!;
    expect(tapeCopy.storeBackupId).toBe(storeId);
    expect(tapeCopy.sha256).toBe(atBackup);
    expect(tapeCopy.sizeBytes).toBe(VOLUME);

    const { backup, pieces, streams } = withCatalog((c) => ({
      backup: c.backup(tapeCopy.backupId),
      pieces: c.piecesOf(tapeCopy.backupId),
      streams: c.streamsOf(tapeCopy.backupId),
    }));
    expect(backup).toMatchObject({
      status: 'complete',
      target: vm.name,
      sha256: atBackup,
      fromStore: { backupId: storeId, sha256: atBackup },
    });
    // The tape copy's data is of the store backup's instant.
    expect(backup.dataTime).toBe(withCatalog((c) => c.backup(storeId).dataTime));
    expect(pieces.map((p) => p.library).every((l) => l === 'lib-01' || l === 'lib-02')).toBe(true);
    expect(pieces.reduce((n, p) => n + p.sizeBytes, 0)).toBe(VOLUME);
    // Chunks before the fault stayed on stream 0; the faulty chunk and the rest went to stream 1.
    expect(streams.map((s) => s.outcome)).toEqual(['failed', 'complete']);
    expect(streams[0]!.error).toMatch(/^DeviceFault: lab fault on lib-01-drv-1/);
    expect(new Set(pieces.map((p) => p.stream))).toEqual(new Set([0, 1]));
    expect(unavailableDevices(await kura.pool.tables(lab.site)).map((d) => d.name)).toEqual(['lib-01-drv-1']);
    await repairLab(kura, lab.site, state);
    await expectClean();
  });

  it('restores the tape copy byte-identical to the volume at backup time once the store has lost its chunks', async () => {
    expect(loseChunks('primary')).toBeGreaterThan(0);
    loseChunks('copy');
    const dest = path.join(lab.dir, 'restores', 'from-tape-copy.img');
    const restored: RestoreReport = await (await kura.startRestore(tapeCopy.backupId, dest)).result();
    expect(await sha256(dest)).toBe(atBackup);
    expect(restored.sha256).toBe(atBackup);
    rmSync(dest);
    await expectClean();
  });

  it('keeps the link in the catalog rebuilt from the cartridges', async () => {
    const report: CatalogRebuildReport = await (
      await kura.startCatalogRebuild({ site: lab.site, requestedAt: at() })
    ).result();
    expect(report.unread).toEqual([]);
    const entries = report.entries.filter((e) => e.backup.backupId === tapeCopy.backupId);
    // One entry per cartridge that holds pieces of the copy: both streams' cartridges.
    expect(entries).toHaveLength(2);
    for (const e of entries) expect(e.backup.fromStore).toEqual({ backupId: storeId, sha256: atBackup });
    const pieces = entries.flatMap((e) => e.pieces);
    expect(pieces.map((p) => p.piece).sort((a, b) => a - b)).toEqual(
      withCatalog((c) => c.piecesOf(tapeCopy.backupId)).map((p) => p.piece),
    );
    // Nothing the rebuild reports differs about the tape copy.
    expect(report.differences.filter((d) => d.includes(tapeCopy.backupId))).toEqual([]);
    await expectClean();
  });

  it('refuses an unknown id and a backup that is not in the store, typed, changing nothing', async () => {
    const count = () => withCatalog((c) => c.listBackups().length);
    const cartridges = () =>
      ['L1T001', 'L1T002', 'L2T001', 'L2T002'].map((t) => {
        const lib = t.startsWith('L1') ? 'lib-01' : 'lib-02';
        try {
          return statSync(labCartridgePath(lab.paths, lab.site, lib, t)).size;
        } catch {
          return -1;
        }
      });
    const before = { n: count(), sizes: cartridges() };

    const unknown = await (
      await store.toTape('vm-001@20991231T000000Z', { requestedAt: at() })
    )
      .result()
      .catch((e: unknown) => e);
    expect(failureOf(unknown).type).toBe('NotFound');
    expect(failureOf(unknown).message).toMatch(
      /no backup "vm-001@20991231T000000Z" in the catalog; `kura catalog list`/,
    );

    const onTape = await (
      await store.toTape(tapeCopy.backupId, { requestedAt: at() })
    )
      .result()
      .catch((e: unknown) => e);
    expect(failureOf(onTape).type).toBe('InvalidInput');
    expect(failureOf(onTape).message).toMatch(
      new RegExp(`backup ${tapeCopy.backupId} is a backup on tape, not in the deduplicated store; .*kura store list`),
    );

    // A store backup whose index is gone is refused before any device is touched.
    rmSync(path.join(lab.paths.home, 'store', 'primary', 'indexes'), { recursive: true, force: true });
    rmSync(path.join(lab.paths.home, 'store', 'copy', 'indexes'), { recursive: true, force: true });
    const gone = await (await store.toTape(storeId, { requestedAt: at() })).result().catch((e: unknown) => e);
    expect(failureOf(gone).type).toBe('NotFound');
    expect(failureOf(gone).message).toMatch(new RegExp(`no store holds the index of ${storeId}`));

    expect({ n: count(), sizes: cartridges() }).toEqual(before);
    await expectClean();
  });
});

describe("a class's tape policy", () => {
  it('copies the backups of a class run to tape, and a run within the period copies nothing more', async () => {
    const vm2 = lab.loaded.config.sites[0]!.vms[1]!;
    const atBackup = await sha256(lab.dataVolume(vm2.name));
    const first: ClassBackupReport = await client.workflow.execute('classBackup', {
      taskQueue: lab.taskQueue,
      workflowId: `store/class/${uniqueId()}`,
      args: [{ className: 'server', dataTime: at() }],
    });
    expect(first.backups.map((b) => b.target)).toEqual(['fs-02']);
    expect(first.toTape?.error).toBeNull();
    expect(first.toTape?.copies.map((c) => [c.storeBackupId, c.target, c.sha256])).toEqual([
      [first.backups[0]!.backupId, 'fs-02', atBackup],
    ]);
    const link = withCatalog((c) => c.tapeCopiesOf(first.backups[0]!.backupId));
    expect(link.map((b) => b.backupId)).toEqual([first.toTape!.copies[0]!.backupId]);

    const second: ClassBackupReport = await client.workflow.execute('classBackup', {
      taskQueue: lab.taskQueue,
      workflowId: `store/class/${uniqueId()}`,
      args: [{ className: 'server', dataTime: at() }],
    });
    expect(second.backups).toHaveLength(1);
    expect(second.toTape).toBeUndefined();
    await expectClean();
  });
});
