/**
 * The engine of seed 003's six steps on the lab, against a real Temporal server: a split-backup
 * and a snapshot-backup restore byte-identical; the re-plans of step 5 (a pair not in sync falls
 * back to a snapshot; an application not in backup mode in time stops before any split, changing
 * nothing); and the typed refusal of a split of a volume that has no pair.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { WorkflowFailedError } from '@temporalio/client';
import { Catalog } from '../../src/catalog/store';
import { LabArrayFunctions } from '../../src/drivers/lab/array-functions';
import { LabState } from '../../src/lab/state';
import { planQuery, tablesQuery } from '../../src/messages';
import type { BackupReport, ReplicaReport } from '../../src/domain/jobs';
import {
  connectKura,
  eventually,
  failureOf,
  makeLab,
  sha256,
  startWorkers,
  treeFingerprint,
  type TestLab,
} from '../support/harness';
import type { KuraWorkers } from '../../src/worker';
import { poolWorkflowId, type Kura } from '../../src/client';

let lab: TestLab;
let workers: KuraWorkers;
let kura: Kura;
let client: Client;
let close: () => Promise<void>;
let state: LabState;
let arrays: LabArrayFunctions;

/** Where the touch hook of vm-002 leaves its marks (absolute: the hook runs in the worker's directory). */
const marks = mkdtempSync(path.join(os.tmpdir(), 'kura-hook-'));

const ref = (vm: string) => ({ site: lab.site, array: 'array-01', volume: `${vm}-data` });

beforeAll(async () => {
  lab = await makeLab({
    vms: 4,
    dataVolumeSize: 4 * 1024 * 1024,
    pieceSize: '1MiB',
    streams: 1,
    chunks: 4,
    edit: (cfg) => {
      const site = cfg.sites[0]!;
      // 1 MiB/s: a 4 MiB pair takes four seconds to copy, long enough to be caught copying.
      site.arrays[0]!.freePool = { size: '64MiB', replicas: 8, copyRate: '1MiB' };
      site.hosts![0]!.mounts = [{ path: '/srv/app', volume: 'array-01/vm-001-data' }];
      site.hooks = [
        {
          target: 'vm-002',
          kind: 'script',
          begin: ['touch', path.join(marks, 'begin')],
          end: ['touch', path.join(marks, 'end')],
          timeout: '10s',
        },
        { target: 'vm-003', kind: 'script', begin: ['sleep', '5'], end: ['true'], timeout: '500ms' },
      ];
    },
  });
  workers = await startWorkers(lab);
  ({ kura, client, close } = await connectKura(lab));
  state = new LabState(lab.paths.labState);
  arrays = new LabArrayFunctions(lab.loaded, lab.paths, state);
});

afterAll(async () => {
  state?.close();
  await close?.();
  await workers?.shutdown();
  lab?.cleanup();
  rmSync(marks, { recursive: true, force: true });
});

async function restoreOf(report: BackupReport, name: string): Promise<string> {
  const dest = path.join(lab.dir, 'restores', name);
  await (await kura.startRestore(report.backupId, dest)).result();
  return sha256(dest);
}

async function poolHolders(): Promise<string[]> {
  const t = await client.workflow.getHandle(poolWorkflowId(lab.site)).query(tablesQuery);
  return [...t.servers, ...t.drives, ...t.tapes, ...t.switches, ...t.libraries].flatMap((r) =>
    r.holders.map((h) => `${r.name}:${h.job}`),
  );
}

async function writeVolume(vm: string, offset: number, text: string): Promise<void> {
  const { open } = await import('node:fs/promises');
  const fh = await open(lab.dataVolume(vm), 'r+');
  try {
    await fh.write(Buffer.from(text), 0, text.length, offset);
  } finally {
    await fh.close();
  }
}

describe('split-backup (Fig. 5a)', () => {
  it('refreshes a replica, then backs up the replica of the split instant and restores it byte-identical', async () => {
    const refresh: ReplicaReport = await (await kura.startReplicaRefresh('vm-001')).result();
    expect(refresh.kind).toBe('replica-refresh');
    expect(refresh.copiedBytes).toBe(4 * 1024 * 1024);
    expect((await arrays.pairStatus(ref('vm-001'))).state).toBe('split');
    expect(await sha256(refresh.readPath)).toBe(await sha256(lab.dataVolume('vm-001')));

    // The volume moves on after the refresh: the split-backup resynchronises, then splits anew.
    await writeVolume('vm-001', 1024 * 1024 + 17, 'written after the refresh');
    const atSplit = await sha256(lab.dataVolume('vm-001'));
    const handle = await kura.startBackup('vm-001', { method: 'split' });
    expect(handle.workflowId).toMatch(/^op\/split-backup\/vm-001\//);
    const report = await handle.result();

    expect(report.kind).toBe('split-backup');
    expect(report.source?.from).toBe('replica');
    expect(report.sha256).toBe(atSplit);
    expect(await restoreOf(report, 'vm-001-split.img')).toBe(atSplit);
    const plan = await handle.query(planQuery);
    expect(plan.steps.map((s) => s.id).slice(0, 4)).toEqual(['pair-sync', 'backup-mode', 'split', 'end-backup-mode']);
    expect(plan.steps.at(-1)?.id).toBe('resync');
    expect(plan.steps.every((s) => s.status === 'done')).toBe(true);
    expect(plan.changes).toEqual([]);
    // Afterwards the pair is resynchronised: only the changed chunks, back in sync.
    await eventually(async () => (await arrays.pairStatus(ref('vm-001'))).state === 'in-sync', 15_000);
    expect(await poolHolders()).toEqual([]);
  });
});

describe('snapshot-backup (Fig. 5b)', () => {
  it("backs up a snapshot in the application's backup mode, restores it byte-identical and deletes the snapshot", async () => {
    const before = await sha256(lab.dataVolume('vm-002'));
    const handle = await kura.startBackup('vm-002', { method: 'snapshot' });
    const report = await handle.result();
    expect(report.kind).toBe('snapshot-backup');
    expect(report.source?.from).toBe('snapshot');
    expect(report.sha256).toBe(before);
    expect(await restoreOf(report, 'vm-002-snap.img')).toBe(before);
    // The script hook ran its argument arrays: in backup mode, and out of it again.
    expect(existsSync(path.join(marks, 'begin'))).toBe(true);
    expect(existsSync(path.join(marks, 'end'))).toBe(true);
    expect(await arrays.listSnapshots(lab.site, 'array-01')).toEqual([]);
    const plan = await handle.query(planQuery);
    expect(plan.steps.map((s) => s.id).slice(0, 3)).toEqual(['backup-mode', 'snapshot', 'end-backup-mode']);
    expect(plan.steps.at(-1)?.id).toBe('delete-snapshot');
    expect(plan.steps.every((s) => s.status === 'done')).toBe(true);
  });
});

describe('step 5 re-plans', () => {
  it('a pair not in sync within its wait: the split-backup becomes a snapshot-backup, restorable byte-identical', async () => {
    const pair = await arrays.createPair(ref('vm-004'));
    expect(pair.state).toBe('copying');
    const before = await sha256(lab.dataVolume('vm-004'));
    const handle = await kura.startBackup('vm-004', { method: 'split', pairWaitMs: 100 });
    const report = await handle.result();

    expect(report.kind).toBe('snapshot-backup');
    expect(report.source?.from).toBe('snapshot');
    expect(report.changes).toHaveLength(1);
    expect(report.changes?.[0]).toMatchObject({ step: 'pair-sync', what: 'split-backup became snapshot-backup' });
    expect(report.changes?.[0]?.why).toMatch(/pair of array-01\/vm-004-data was not in sync within 100 ms \(copying/);
    expect(await restoreOf(report, 'vm-004-fallback.img')).toBe(before);
    const plan = await handle.query(planQuery);
    expect(plan.kind).toBe('snapshot-backup');
    expect(plan.steps[0]).toMatchObject({ id: 'pair-sync', status: 'skipped' });
    expect(plan.steps.some((s) => s.id === 'split')).toBe(false);
    expect(plan.changes?.[0]?.what).toBe('split-backup became snapshot-backup');
    expect(await arrays.listSnapshots(lab.site, 'array-01')).toEqual([]);
    await arrays.deletePair(ref('vm-004'));
  });

  it('the application not in backup mode within its timeout: stopped before the split, nothing changed', async () => {
    await arrays.createPair(ref('vm-003'));
    await eventually(async () => (await arrays.pairStatus(ref('vm-003'))).state === 'in-sync', 15_000);
    const tapes = treeFingerprint(path.join(lab.paths.lab, lab.site, 'libraries'));
    const handle = await kura.startBackup('vm-003', { method: 'split' });
    const err = await handle.result().catch((e: unknown) => e);

    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(failureOf(err).type).toBe('HookTimeout');
    expect(failureOf(err).message).toMatch(
      /the application of vm-003 did not enter backup mode within 500 ms .*stopped before any split or snapshot and changed nothing/,
    );
    // No pair split, no snapshot left, no cartridge touched, nothing held.
    const pair = await arrays.pairStatus(ref('vm-003'));
    expect(pair.state).toBe('in-sync');
    expect(pair.splitAt).toBeUndefined();
    expect(await arrays.listSnapshots(lab.site, 'array-01')).toEqual([]);
    expect(treeFingerprint(path.join(lab.paths.lab, lab.site, 'libraries'))).toBe(tapes);
    expect(await poolHolders()).toEqual([]);
    const plan = await handle.query(planQuery);
    const status = Object.fromEntries(plan.steps.map((s) => [s.id, s.status]));
    expect(status).toMatchObject({
      'pair-sync': 'done',
      'backup-mode': 'failed',
      split: 'skipped',
      reserve: 'skipped',
    });
    expect(plan.changes?.[0]).toMatchObject({
      step: 'backup-mode',
      what: expect.stringMatching(/stopped before the split/),
    });
  });

  it('the same for a snapshot-backup: no snapshot is taken', async () => {
    const err = await (await kura.startBackup('vm-003', { method: 'snapshot' })).result().catch((e: unknown) => e);
    expect(failureOf(err).type).toBe('HookTimeout');
    expect(await arrays.listSnapshots(lab.site, 'array-01')).toEqual([]);
    expect(state.events({ event: 'snapshot-created' }).filter((e) => e.detail.volume === 'vm-003-data')).toEqual([]);
  });
});

describe('step 2 maps a file to its volume', () => {
  it("backs up host:/path as the volume the host's mount puts it on, restorable byte-identical", async () => {
    const before = await sha256(lab.dataVolume('vm-001'));
    const handle = await kura.startBackup('host-01:/srv/app/data');
    const report = await handle.result();
    expect(report).toMatchObject({ target: 'host-01:/srv/app/data', array: 'array-01', volume: 'vm-001-data' });
    expect(report.backupId).toMatch(/^host-01\/srv\/app\/data@\d{8}T\d{6}/);
    expect(await restoreOf(report, 'host-path.img')).toBe(before);
  });
});

describe('refusals change nothing', () => {
  it('refuses a split of a volume that has no pair with InvalidInput, before touching any device', async () => {
    const before = treeFingerprint(lab.paths.lab);
    const handle = await kura.startBackup('vm-002', { method: 'split' });
    const err = await handle.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(failureOf(err).type).toBe('InvalidInput');
    expect(failureOf(err).message).toMatch(
      /volume array-01\/vm-002-data \(vm-002\) has no pair, so there is nothing to split/,
    );
    expect(treeFingerprint(lab.paths.lab)).toBe(before);
    expect(await arrays.listPairs(lab.site, 'array-01')).not.toContainEqual(
      expect.objectContaining({ volume: 'vm-002-data' }),
    );
    const catalog = new Catalog(lab.paths.catalog);
    try {
      expect(catalog.listBackups({ target: 'vm-002' }).filter((b) => b.job === handle.workflowId)).toEqual([]);
    } finally {
      catalog.close();
    }
  });
});
