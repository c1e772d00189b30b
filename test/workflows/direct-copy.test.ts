/**
 * Serverless direct copy (seed 003 Fig. 9, seed 004 copy devices; docs/adr/029) against a real
 * Temporal server and real lab files: a direct stream's chunks are written by its copy device's own
 * worker, in the piece format a restore reads back byte-identical; a copy device that fails hands
 * its chunk and the rest to a LAN-free path, and is marked unavailable in the pool.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, inject } from 'vitest';
import { readFileSync, rmSync } from 'node:fs';
import { Worker } from '@temporalio/worker';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import type { temporal } from '@temporalio/proto';
import { kuraDataConverter } from '../../src/codec/data-converter';
import * as path from 'node:path';
import { Catalog } from '../../src/catalog/store';
import { LabState } from '../../src/lab/state';
import { progressQuery } from '../../src/messages';
import type { BackupReport, Progress } from '../../src/domain/jobs';
import { copyDeviceTaskQueue } from '../../src/api/task-queues';
import { chunkSizeFor } from '../../src/workflows/plan';
import {
  connectKura,
  makeLab,
  repairLab,
  sha256,
  startWorkers,
  unavailableDevices,
  type TestLab,
} from '../support/harness';
import type { KuraWorkers } from '../../src/worker';
import type { Kura } from '../../src/client';

const MiB = 1024 * 1024;
const VOLUME = 4 * MiB;
const CHUNK = chunkSizeFor(VOLUME, 10);

let lab: TestLab;
let workers: KuraWorkers;
let kura: Kura;
let close: () => Promise<void>;
let state: LabState;
let seq = 0;

beforeAll(async () => {
  lab = await makeLab({ vms: 3, dataVolumeSize: VOLUME, copyHeartbeatTimeout: '1500ms' });
  workers = await startWorkers(lab);
  ({ kura, close } = await connectKura(lab));
  state = new LabState(lab.paths.labState);
});

afterAll(async () => {
  state?.clearFaults();
  await close?.();
  await workers?.shutdown();
  state?.close();
  lab?.cleanup();
});

afterEach(() => repairLab(kura, lab.site, state));

function at(): string {
  return new Date(Date.UTC(2026, 10, 29, 3, 0, 0, ++seq)).toISOString();
}

/** Which mover wrote each chunk of a backup onto tape: a copy device's name, or `server`. */
function movers(backupId: string): Record<number, string[]> {
  const out: Record<number, string[]> = {};
  for (const e of state.events({ event: 'copy-start' })) {
    if (e.detail.backupId !== backupId) continue;
    const piece = e.detail.piece as number;
    (out[piece] ??= []).push(typeof e.detail.copyDevice === 'string' ? e.detail.copyDevice : 'server');
  }
  return out;
}

/** The activities the backup scheduled, as `type@queue`, in order. */
async function scheduled(workflowId: string): Promise<string[]> {
  const history = await kura.client.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? []).flatMap((e) => {
    const a = e.activityTaskScheduledEventAttributes;
    return a?.activityType?.name?.match(/^(copyRun|directCopyRun)$/)
      ? [`${a.activityType.name}@${a.taskQueue?.name}`]
      : [];
  });
}

function replay(history: temporal.api.history.v1.IHistory, workflowId: string): Promise<void> {
  return Worker.runReplayHistory(
    { workflowBundle: { codePath: inject('workflowBundlePath') }, dataConverter: kuraDataConverter(lab.loaded) },
    history,
    workflowId,
  );
}

async function restoreAndCompare(report: BackupReport, vm: string): Promise<void> {
  const dest = path.join(lab.dir, 'restores', `${report.backupId.replace(/[@/]/g, '_')}.img`);
  await (await kura.startRestore(report.backupId, dest)).result();
  expect(await sha256(dest)).toBe(await sha256(lab.dataVolume(vm)));
  rmSync(dest);
}

describe('direct streams', () => {
  it("moves every chunk by the copy device's own worker, and the restore reads it back byte-identical", async () => {
    const handle = await kura.startBackup('vm-001', { requestedAt: at(), streamKind: 'direct' });
    const report: BackupReport = await handle.result();

    const written = movers(report.backupId);
    expect(Object.keys(written)).toHaveLength(10);
    expect(Object.values(written).flat()).toEqual(Array.from({ length: 10 }, () => 'cpd-01'));
    expect(await scheduled(handle.workflowId)).toEqual([
      `directCopyRun@${copyDeviceTaskQueue('cpd-01', lab.taskQueue)}`,
    ]);
    const progress: Progress = await handle.query(progressQuery);
    expect(progress.streams?.map((s) => [s.kind, s.path])).toEqual([
      ['direct', 'cpd-01 → fcsw-01 → lib-01/lib-01-drv-1'],
      ['direct', 'cpd-02 → fcsw-02 → lib-02/lib-02-drv-1'],
    ]);
    // The same catalog rows as a LAN-free backup: every chunk on the first stream's cartridge, in order.
    const c = new Catalog(lab.paths.catalog);
    const pieces = c.piecesOf(report.backupId);
    c.close();
    expect(pieces.map((p) => [p.piece, p.stream, p.offset])).toEqual(
      Array.from({ length: 10 }, (_, i) => [i, 0, i * CHUNK]),
    );
    await restoreAndCompare(report, 'vm-001');
    // Nothing stays reserved: the copy devices are free again.
    const tables = await kura.pool.tables(lab.site);
    expect(tables.copyDevices.map((d) => [d.name, d.state])).toEqual([
      ['cpd-01', 'available'],
      ['cpd-02', 'available'],
    ]);
  });

  it('in parallel mode each copy device writes a whole copy, and the backup restores byte-identical', async () => {
    const handle = await kura.startBackup('vm-003', { requestedAt: at(), streamKind: 'direct', mode: 'parallel' });
    const report: BackupReport = await handle.result();
    expect(await scheduled(handle.workflowId)).toEqual(
      expect.arrayContaining([
        `directCopyRun@${copyDeviceTaskQueue('cpd-01', lab.taskQueue)}`,
        `directCopyRun@${copyDeviceTaskQueue('cpd-02', lab.taskQueue)}`,
      ]),
    );
    const byCopy: Record<string, string[]> = {};
    for (const e of state.events({ event: 'copy-start' })) {
      if (e.detail.backupId === report.backupId)
        (byCopy[e.detail.tape as string] ??= []).push(e.detail.copyDevice as string);
    }
    const tapes = Object.keys(byCopy).sort();
    expect(tapes.map((t) => [...new Set(byCopy[t])])).toEqual([['cpd-01'], ['cpd-02']]);
    expect(tapes.map((t) => byCopy[t]!.length)).toEqual([10, 10]);
    await restoreAndCompare(report, 'vm-003');
  });

  it('a backup that does not ask for direct streams moves its chunks through the backup server', async () => {
    const handle = await kura.startBackup('vm-002', { requestedAt: at() });
    const report: BackupReport = await handle.result();
    expect(Object.values(movers(report.backupId)).flat()).toEqual(Array.from({ length: 10 }, () => 'server'));
    expect(await scheduled(handle.workflowId)).toEqual([
      `copyRun@${lab.taskQueue.replace(/control$/, 'server-bks-01')}`,
    ]);
  });

  it('a copy device that fails moves its chunk and the rest to the LAN-free path, and is marked unavailable', async () => {
    state.addFault({ device: 'cpd-01', kind: 'fail', after: { percent: 50 }, once: false });
    const handle = await kura.startBackup('vm-003', { requestedAt: at(), streamKind: 'direct' });
    const report: BackupReport = await handle.result();
    const moved = Math.floor(VOLUME / 2 / CHUNK);

    // Chunks before the fault by the copy device; the chunk it failed in, and every later one, by bks-01.
    const written = movers(report.backupId);
    expect(Array.from({ length: 10 }, (_, i) => written[i]?.at(-1))).toEqual(
      Array.from({ length: 10 }, (_, i) => (i < moved ? 'cpd-01' : 'server')),
    );
    expect(written[moved]).toEqual(['cpd-01', 'server']);
    expect(await scheduled(handle.workflowId)).toEqual([
      `directCopyRun@${copyDeviceTaskQueue('cpd-01', lab.taskQueue)}`,
      `copyRun@${lab.taskQueue.replace(/control$/, 'server-bks-01')}`,
    ]);
    const progress: Progress = await handle.query(progressQuery);
    expect(progress.streams?.[0]).toMatchObject({ kind: 'lan-free', path: 'bks-01 → fcsw-01 → lib-01/lib-01-drv-1' });

    const c = new Catalog(lab.paths.catalog);
    const streams = c.streamsOf(report.backupId);
    const pieces = c.piecesOf(report.backupId);
    c.close();
    expect(streams.map((s) => [s.stream, s.outcome, s.pieces])).toEqual([
      [0, 'complete', 10],
      [1, 'standby', 0],
    ]);
    expect(pieces.map((p) => p.piece)).toEqual(Array.from({ length: 10 }, (_, i) => i));
    const down = unavailableDevices(await kura.pool.tables(lab.site));
    expect(down.map((d) => d.name)).toEqual(['cpd-01']);
    expect(down[0]!.reason).toMatch(/^lab fault on cpd-01: injected failure/);
    expect(down[0]!.reason).toContain(handle.workflowId);
    await restoreAndCompare(report, 'vm-003');
    // The workflow code is deterministic across the change of kind: its own history replays.
    const history = await kura.client.workflow.getHandle(handle.workflowId).fetchHistory();
    await expect(replay(history, handle.workflowId)).resolves.toBeUndefined();
  });

  it('a drive that fails under a direct stream fails that stream, and the next one takes the rest LAN-free', async () => {
    state.addFault({ device: 'lib-01-drv-1', kind: 'fail', after: { percent: 30 }, once: false });
    const handle = await kura.startBackup('vm-002', { requestedAt: at(), streamKind: 'direct' });
    const report: BackupReport = await handle.result();
    const moved = Math.floor((VOLUME * 0.3) / CHUNK);

    const written = movers(report.backupId);
    expect(Array.from({ length: 10 }, (_, i) => written[i]?.at(-1))).toEqual(
      Array.from({ length: 10 }, (_, i) => (i < moved ? 'cpd-01' : 'server')),
    );
    expect(await scheduled(handle.workflowId)).toEqual([
      `directCopyRun@${copyDeviceTaskQueue('cpd-01', lab.taskQueue)}`,
      `copyRun@${lab.taskQueue.replace(/control$/, 'server-bks-02')}`,
    ]);
    const c = new Catalog(lab.paths.catalog);
    const streams = c.streamsOf(report.backupId);
    c.close();
    expect(streams.map((s) => [s.stream, s.outcome, s.pieces])).toEqual([
      [0, 'failed', moved],
      [1, 'complete', 10 - moved],
    ]);
    expect(streams[0]!.error).toMatch(/^DeviceFault: lab fault on lib-01-drv-1: injected failure/);
    // The drive is out of service; the copy devices are not: neither was at fault.
    expect(unavailableDevices(await kura.pool.tables(lab.site)).map((d) => d.name)).toEqual(['lib-01-drv-1']);
    const progress: Progress = await handle.query(progressQuery);
    expect(progress.streams?.map((s) => s.kind)).toEqual(['direct', 'lan-free']);
    await repairLab(kura, lab.site, state);
    await restoreAndCompare(report, 'vm-002');
  });
});

/**
 * Recorded from the copy-device-fault test above on a lab without payload encryption, with
 * `historyToJSON` of its fetched history: later changes to the stream code must replay it.
 */
describe('a copy device that stops answering', () => {
  it('fails its stream, is found by a probe and marked, and the next stream takes the rest LAN-free', async () => {
    state.addFault({ device: 'cpd-01', kind: 'hang', after: { percent: 50 }, once: false });
    const handle = await kura.startBackup('vm-001', { requestedAt: at(), streamKind: 'direct' });
    const report: BackupReport = await handle.result();
    const moved = Math.floor(VOLUME / 2 / CHUNK);

    const c = new Catalog(lab.paths.catalog);
    const streams = c.streamsOf(report.backupId);
    c.close();
    expect(streams.map((s) => [s.stream, s.outcome, s.pieces])).toEqual([
      [0, 'failed', moved],
      [1, 'complete', 10 - moved],
    ]);
    expect(streams[0]!.error).toMatch(/stopped answering/);
    const down = unavailableDevices(await kura.pool.tables(lab.site));
    expect(down.map((d) => d.name)).toEqual(['cpd-01']);
    expect(down[0]!.reason).toMatch(/^stopped answering: /);
    // Marked because it did not answer a probe of its own within the limit.
    expect(down[0]!.reason).toMatch(/^stopped answering: did not answer a probe within 1.5 s \(job /);
    // The run took the probe's patched path, and its own history replays on it.
    const own = await kura.client.workflow.getHandle(handle.workflowId).fetchHistory();
    const patches = (own.events ?? []).flatMap((e) =>
      e.markerRecordedEventAttributes?.markerName === 'core_patch'
        ? Object.values(e.markerRecordedEventAttributes.details ?? {}).flatMap((d) =>
            (d.payloads ?? []).map((p) => Buffer.from(p.data ?? []).toString()),
          )
        : [],
    );
    expect(patches.some((p) => p.includes('probe-decides-lost-copy'))).toBe(true);
    await expect(replay(own, handle.workflowId)).resolves.toBeUndefined();
    expect(await scheduled(handle.workflowId)).toEqual([
      `directCopyRun@${copyDeviceTaskQueue('cpd-01', lab.taskQueue)}`,
      `copyRun@${lab.taskQueue.replace(/control$/, 'server-bks-02')}`,
    ]);
    await repairLab(kura, lab.site, state);
    await restoreAndCompare(report, 'vm-001');
  });
});

describe('a direct backup recorded before later changes', () => {
  it('replays as it was scheduled: a direct run, then the LAN-free run its copy device failed over to', async () => {
    const json: unknown = JSON.parse(
      readFileSync(path.join(__dirname, 'histories', 'san-operation-direct-failover.json'), 'utf8'),
    );
    const history = historyFromJSON(json);
    const runs = (history.events ?? []).flatMap((e) => {
      const name = e.activityTaskScheduledEventAttributes?.activityType?.name;
      return name === 'copyRun' || name === 'directCopyRun' ? [name] : [];
    });
    expect(runs).toEqual(['directCopyRun', 'copyRun']);
    await expect(replay(history, 'replay-direct-failover')).resolves.toBeUndefined();
  });
});
