/**
 * Whole-VM images (seed 000; docs/adr/037) on the real dev server: while the guest keeps writing a
 * paired counter to both its volumes, the vm class's backup takes them at one instant — the guest
 * frozen around a snapshot of both, or frozen for the read when the array has no room for snapshots —
 * and leaves neither freeze nor snapshot behind; a freeze that runs past its bound keeps no half
 * image. The image holds the VM's definition: the VM comes back healthy from it after kura.yaml
 * lost it, under a new name, and an image without one falls back to kura.yaml and says so.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { kuraDataConverter } from '../../src/codec/data-converter';
import { parse as parseYaml } from 'yaml';
import { Catalog } from '../../src/catalog/store';
import { backupIdFor } from '../../src/domain/catalog';
import { LabArrayFunctions } from '../../src/drivers/lab/array-functions';
import { labVolumePath } from '../../src/lab/files';
import { LabGuest, readPairedCounter } from '../../src/lab/guest';
import { LabState } from '../../src/lab/state';
import { ChunkStore } from '../../src/store/chunk-store';
import { readBackup } from '../../src/store/read';
import type { KuraWorkers } from '../../src/worker';
import type { ClassBackupReport, VmImageRestoreReport } from '../../src/workflows/store';
import { inject } from 'vitest';
import { cliJson, failureOf, runKura, sha256, startWorkers, uniqueId, type TestLab } from '../support/harness';
import { closeWorkflowLab, openWorkflowLab, writeLabConfig } from '../support/workflow-lab';

const MiB = 1024 * 1024;
let lab: TestLab;
let client: Client;
let workers: KuraWorkers;
let close: () => Promise<void>;
let state: LabState;

beforeAll(async () => {
  ({ lab, workers, client, close } = await openWorkflowLab({
    vms: 2,
    dataVolumeSize: 2 * MiB,
    softwareVolumeSize: 1 * MiB,
    edit: (cfg) => {
      cfg.store = { chunkSize: '64KiB' };
      cfg.lab = { osReboot: '200ms' };
      cfg.classes = { vm: { method: 'image', schedule: '01:00', retention: { keepLast: 10 } } };
    },
  }));
  state = new LabState(lab.paths.labState);
  mkdirSync(path.join(lab.dir, 'check'), { recursive: true });
});

afterAll(() => closeWorkflowLab({ lab, workers, close, state }));

const store = () => new ChunkStore(path.join(lab.paths.home, 'store', 'primary'));
const volumeFile = (ref: string) => {
  const [array = '', volume = ''] = ref.split('/');
  return labVolumePath(lab.paths, lab.site, array, volume);
};
const vmOf = (name: string) => lab.loaded.config.sites[0]!.vms.find((v) => v.name === name)!;

function classBackup(dataTime: string, extra: Record<string, unknown> = {}): Promise<ClassBackupReport> {
  return client.workflow.execute('classBackup', {
    taskQueue: lab.taskQueue,
    workflowId: `store/class/vm/${uniqueId()}`,
    args: [{ className: 'vm', dataTime, ...extra }],
  });
}

/** A guest that writes the paired counter to both volumes, again and again, until stopped. */
function startWriter(vm: string): { stop(): Promise<number>; writes(): number } {
  const v = vmOf(vm);
  const guest = new LabGuest(state, lab.paths, lab.site, vm, { software: v.softwareVolume, data: v.dataVolume });
  let n = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      await guest.writePairedCounter(++n);
      await new Promise((r) => setImmediate(r));
    }
  })();
  return {
    writes: () => n,
    stop: async () => {
      running = false;
      await loop;
      return n;
    },
  };
}

/** The paired counter of each volume of a store backup of one instant, read back from the store. */
async function countersInImage(vm: string, dataTime: string): Promise<{ software: number; data: number }> {
  const out: Record<string, number> = {};
  for (const part of ['software', 'data'] as const) {
    const file = path.join(lab.dir, 'check', `${vm}-${part}-${uniqueId()}.img`);
    await readBackup({
      stores: [{ name: 'primary', store: store() }],
      backupId: backupIdFor(`${vm}/${part}`, dataTime),
      destination: { path: file, offset: 0 },
    });
    out[part] = readPairedCounter(file);
  }
  return { software: out.software!, data: out.data! };
}

const imageSnapshots = () => state.snapshots(lab.site).filter((s) => s.name.startsWith('kura-image-'));

describe('whole-VM images at one instant', () => {
  const T1 = '2026-11-10T02:00:00.000Z';

  it('takes both volumes at one instant while the guest writes both, then thaws it and deletes the snapshots', async () => {
    const since = state.events().at(-1)?.seq ?? 0;
    const writer = startWriter('vm-001');
    while (writer.writes() < 20) await new Promise((r) => setTimeout(r, 5));
    const before = writer.writes();
    const report = await classBackup(T1).finally(() => writer.stop());
    const during = writer.writes() - before;
    const last = await writer.stop();

    expect(report.backups.map((b) => b.target)).toEqual([
      'vm-001/data',
      'vm-001/software',
      'vm-002/data',
      'vm-002/software',
    ]);
    const counters = await countersInImage('vm-001', T1);
    console.log(
      `paired counter in the image: software ${counters.software}, data ${counters.data}; the guest wrote ${during} pairs during the backup, ${last} in all`,
    );
    // The guest kept writing through the backup, and the image holds one instant of it.
    expect(during).toBeGreaterThan(0);
    expect(counters.software).toBeGreaterThan(0);
    expect(counters.data).toBe(counters.software);
    expect(last).toBeGreaterThan(counters.software);

    // Nothing is left held: the guest is thawed, the snapshots are gone from the array and its disk.
    expect(state.guestState(lab.site, 'vm-001')).toEqual({ frozenUntil: null, inflight: 0 });
    expect(imageSnapshots()).toEqual([]);
    const events = state.events({ since });
    const of = (device: string) => events.filter((e) => e.device === device).map((e) => e.event);
    expect(of('vm-001')).toEqual(['guest-frozen', 'guest-thawed', 'guest-thawed']);
    const snapEvents = of('array-01').filter((e) => e.startsWith('snapshot-'));
    expect(snapEvents.filter((e) => e === 'snapshot-created')).toHaveLength(4);
    expect(snapEvents.filter((e) => e === 'snapshot-deleted')).toHaveLength(4);

    const catalog = new Catalog(lab.paths.catalog);
    try {
      const [image] = catalog.vmImages(lab.site, 'vm-001', T1);
      expect(image).toMatchObject({
        softwareBackupId: backupIdFor('vm-001/software', T1),
        dataBackupId: backupIdFor('vm-001/data', T1),
        definitionBackupId: backupIdFor('vm-001/definition', T1),
        consistency: 'snapshot',
      });
      console.log(`vm-001's guest was frozen ${image!.frozenMs} ms for the snapshots of its two volumes (1 + 2 MiB)`);
      expect(image!.frozenMs).toBeLessThan(10_000);
      // The definition is in the store, and hashes to what the catalog recorded.
      const index = await store().readIndex(image!.definitionBackupId!);
      const def = JSON.parse((await store().get(index.chunks[0]!)).toString('utf8')) as Record<string, unknown>;
      expect(index.sha256).toBe(image!.definitionSha256);
      expect(def).toMatchObject({
        kind: 'kura-vm-definition',
        name: 'vm-001',
        host: vmOf('vm-001').host,
        volumes: [
          { role: 'software', array: 'array-01', volume: 'vm-001-sw', sizeBytes: 1 * MiB },
          { role: 'data', array: 'array-01', volume: 'vm-001-data', sizeBytes: 2 * MiB },
        ],
      });
    } finally {
      catalog.close();
    }
  });

  it('freezes the guest for the whole read when the array has no room for snapshots, still at one instant', async () => {
    const T2 = '2026-11-11T02:00:00.000Z';
    const arrays = new LabArrayFunctions(lab.loaded, lab.paths, state);
    const filler = { site: lab.site, array: 'array-01', volume: 'vm-002-data' };
    // The free pool holds four snapshots: fill it.
    for (let i = 1; i <= 4; i++) await arrays.createSnapshot(filler, `filler-${i}`);
    try {
      const writer = startWriter('vm-001');
      while (writer.writes() < 20) await new Promise((r) => setTimeout(r, 5));
      await classBackup(T2, { maxFreezeMs: 60_000 }).finally(() => writer.stop());
      const last = await writer.stop();
      const counters = await countersInImage('vm-001', T2);
      expect(counters.data).toBe(counters.software);
      expect(last).toBeGreaterThan(counters.software);
      expect(state.guestState(lab.site, 'vm-001').frozenUntil).toBeNull();
      expect(imageSnapshots()).toEqual([]);
      const catalog = new Catalog(lab.paths.catalog);
      try {
        expect(catalog.vmImages(lab.site, 'vm-001', T2)).toMatchObject([{ consistency: 'frozen' }]);
      } finally {
        catalog.close();
      }

      // A freeze that runs past its bound before both volumes are read keeps nothing of the image.
      const T3 = '2026-11-12T02:00:00.000Z';
      const err = await classBackup(T3, { maxFreezeMs: 1 }).catch((e: unknown) => e);
      expect(failureOf(err)).toMatchObject({ type: 'DeviceFault' });
      expect(failureOf(err).message).toMatch(/vm-001: the guest of vm-001 thawed \(its freeze ran past its bound\)/);
      expect(state.guestState(lab.site, 'vm-001').frozenUntil).toBeNull();
      expect(imageSnapshots()).toEqual([]);
      const after = new Catalog(lab.paths.catalog);
      try {
        expect(after.vmImages(lab.site, 'vm-001', T3)).toEqual([]);
        expect(after.listStoreBackups({ site: lab.site }).filter((b) => b.dataTime === T3)).toEqual([]);
      } finally {
        after.close();
      }
      for (const part of ['software', 'data'])
        expect(store().hasIndex(backupIdFor(`vm-001/${part}`, T3)), part).toBe(false);
    } finally {
      for (let i = 1; i <= 4; i++) await arrays.deleteSnapshot(filler, `filler-${i}`);
    }
  });

  it('an image taken before images kept a definition is recreated from kura.yaml, and says so', async () => {
    const T0 = '2026-11-09T02:00:00.000Z';
    const v = vmOf('vm-002');
    for (const [part, ref] of [
      ['software', v.softwareVolume],
      ['data', v.dataVolume],
    ] as const) {
      const [array, volume] = ref.split('/') as [string, string];
      await client.workflow.execute('storeBackup', {
        taskQueue: lab.taskQueue,
        workflowId: `store/backup/${uniqueId()}`,
        args: [{ site: lab.site, target: `vm-002/${part}`, array, volume, dataTime: T0 }],
      });
    }
    const report = await client.workflow.execute<(i: unknown) => Promise<VmImageRestoreReport>>('vmImageRestore', {
      taskQueue: lab.taskQueue,
      workflowId: `store/vm-restore/vm-002/${uniqueId()}`,
      args: [{ site: lab.site, vm: 'vm-002', host: 'host-01', dataTime: T0, healthEveryMs: 50 }],
    });
    expect(report).toMatchObject({ vm: 'vm-002', name: 'vm-002', healthy: true, definitionFrom: 'kura.yaml' });
    expect(report.note).toMatch(/holds no definition of vm-002 \(taken before images kept one\): recreated from/);
    // Without a definition the VM cannot take a new name.
    const err = await client.workflow
      .execute('vmImageRestore', {
        taskQueue: lab.taskQueue,
        workflowId: `store/vm-restore/vm-002/${uniqueId()}`,
        args: [{ site: lab.site, vm: 'vm-002', host: 'host-01', dataTime: T0, name: 'vm-002-b' }],
      })
      .catch((e: unknown) => e);
    expect(failureOf(err)).toMatchObject({ type: 'InvalidInput' });
    expect(failureOf(err).message).toMatch(/holds no definition of vm-002 .*can only be recreated under its own name/);
  });

  it('recreates the VM from its image after kura.yaml lost it, under a new name on the chosen host, healthy', async () => {
    // kura.yaml without vm-001, and the workers restarted on it.
    const doc = parseYaml(readFileSync(lab.configFile, 'utf8')) as { sites: { vms: { name: string }[] }[] };
    doc.sites[0]!.vms = doc.sites[0]!.vms.filter((v) => v.name !== 'vm-001');
    const loaded = writeLabConfig(lab, 'kura-without-vm-001.yaml', doc);
    expect(loaded.config.sites[0]!.vms.map((v) => v.name)).toEqual(['vm-002']);
    await workers.shutdown();
    workers = await startWorkers(lab, loaded);

    const report = await client.workflow.execute<(i: unknown) => Promise<VmImageRestoreReport>>('vmImageRestore', {
      taskQueue: lab.taskQueue,
      workflowId: `store/vm-restore/vm-001/${uniqueId()}`,
      args: [{ site: lab.site, vm: 'vm-001', host: 'host-02', name: 'vm-101', dataTime: T1, healthEveryMs: 50 }],
    });
    expect(report).toMatchObject({
      vm: 'vm-001',
      name: 'vm-101',
      host: 'host-02',
      healthy: true,
      definitionFrom: 'image',
      note: null,
      fallbacks: [],
    });
    // Its volumes are new ones of its own, holding the image's bytes: one instant of the counter.
    const sw = volumeFile('array-01/vm-101-sw');
    const data = volumeFile('array-01/vm-101-data');
    expect(existsSync(sw) && existsSync(data)).toBe(true);
    const image = await countersInImage('vm-001', T1);
    expect(readPairedCounter(sw)).toBe(image.software);
    expect(readPairedCounter(data)).toBe(image.data);
    for (const [part, f] of [
      ['software', sw],
      ['data', data],
    ] as const) {
      const restored = path.join(lab.dir, 'check', `vm-001-${part}-whole.img`);
      await readBackup({
        stores: [{ name: 'primary', store: store() }],
        backupId: backupIdFor(`vm-001/${part}`, T1),
        destination: { path: restored, offset: 0 },
      });
      expect(await sha256(f), part).toBe(await sha256(restored));
    }
    const events = state.events({ device: 'vm-101', event: 'vm-create' });
    expect(events).toMatchObject([{ detail: { host: 'host-02', from: 'vm-001' } }]);

    // The same from the command line, as a person asks for it.
    const cli = await runKura(lab, [
      '--json',
      'store',
      'restore-vm',
      'vm-001',
      '--host',
      'host-01',
      '--as',
      'vm-102',
      '--at',
      T1,
    ]);
    expect(cliJson(cli)).toMatchObject({
      name: 'vm-102',
      host: 'host-01',
      dataTime: T1,
      healthy: true,
      definitionFrom: 'image',
    });
    expect(readPairedCounter(volumeFile('array-01/vm-102-data'))).toBe(image.data);
  });
});

describe('runs recorded before whole-VM images were consistent', () => {
  const replay = async (file: string, workflowId: string) => {
    const history = historyFromJSON(JSON.parse(readFileSync(path.join(__dirname, 'histories', file), 'utf8')));
    const scheduled = (history.events ?? []).flatMap(
      (e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? [],
    );
    await Worker.runReplayHistory(
      { workflowBundle: { codePath: inject('workflowBundlePath') }, dataConverter: kuraDataConverter(lab.loaded) },
      history,
      workflowId,
    );
    return scheduled;
  };

  it('a vm class backup replays as it ran: the plan, then each volume read as it was', async () => {
    expect(await replay('class-backup-vm-before-image.json', 'replay-class-backup-vm')).toEqual([
      'planClassBackup',
      'storeBackupVolume',
      'storeBackupVolume',
    ]);
  });

  it('a VM image restore replays as it ran: the restore from kura.yaml, then the wait until healthy', async () => {
    expect(await replay('vm-image-restore-before-definition.json', 'replay-vm-image-restore')).toEqual([
      'restoreVmImage',
      'awaitHealthy',
    ]);
  });
});
