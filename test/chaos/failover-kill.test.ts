/**
 * Chaos: the worker process is killed (SIGKILL) while a backup runs on its second stream after a
 * failover, and started again. The backup must complete without copying a finished chunk again,
 * with exactly one catalog row per chunk in the right place, restore byte for byte, and leave no
 * device reserved and no zone on the fabric. Killed while the first stream copies with the second
 * standing by, the chunks move over, but no device is marked: each answers a probe.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { Catalog } from '../../src/catalog/store';
import { LabState } from '../../src/lab/state';
import { markDeviceSignal, planQuery, tablesQuery } from '../../src/messages';
import type { BackupReport } from '../../src/domain/jobs';
import {
  connectKura,
  eventually,
  makeLab,
  sha256,
  startWorkerProcess as startWorkerProcessOf,
  unavailableDevices,
  type TestLab,
} from '../support/harness';
import { poolWorkflowId, type Kura } from '../../src/client';
import type { Client } from '@temporalio/client';

const MiB = 1024 * 1024;

let lab: TestLab;
let kura: Kura;
let client: Client;
let close: () => Promise<void>;
const procs: ChildProcess[] = [];

const startWorkerProcess = () => startWorkerProcessOf(lab, procs);

beforeAll(async () => {
  lab = await makeLab({ vms: 1, dataVolumeSize: 40 * MiB, copyHeartbeatTimeout: '2s' });
  ({ kura, client, close } = await connectKura(lab));
});

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await close?.();
  lab?.cleanup();
});

describe('the worker killed during a failover', () => {
  it('completes on the second stream, copies no finished chunk again, and restores byte-identical', async () => {
    const state = new LabState(lab.paths.labState);
    // 8 MiB/s on both servers so the 40 MiB copy takes seconds; bks-01 fails at 20% (chunk 2).
    for (const server of ['bks-01', 'bks-02'])
      state.addFault({ device: server, kind: 'slow', after: { bytes: 0 }, rateBytesPerSec: 8 * MiB, once: false });
    state.addFault({ device: 'bks-01', kind: 'fail', after: { percent: 20 }, once: false });
    const source = await sha256(lab.dataVolume('vm-001'));

    const first = await startWorkerProcess();
    const handle = await kura.startBackup('vm-001');

    // Wait until chunk 5 is being written on stream 1 (after the failover at chunk 2): its step
    // runs and the drive has begun it. Then kill the worker.
    const deadline = Date.now() + 90_000;
    let running: string | undefined;
    let begun = false;
    while (Date.now() < deadline) {
      const plan = await handle.query(planQuery).catch(() => undefined);
      running = plan?.steps.find((s) => s.id.startsWith('copy:') && s.status === 'running')?.id;
      begun = state.events({ event: 'copy-start' }).some((e) => Number(e.detail.piece) === 5);
      if (running === 'copy:5' && begun) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(running).toBe('copy:5');
    expect(begun).toBe(true);
    const killedAt = state.events().at(-1)?.seq ?? 0;
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    await startWorkerProcess();
    const report: BackupReport = await handle.result();

    const { pieces, streams } = completeBackup(report.backupId);
    expect(pieces.map((p) => [p.piece, p.stream])).toEqual(
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((n) => [n, n < 2 ? 0 : 1]),
    );
    expect(pieces.reduce((n, p) => n + p.sizeBytes, 0)).toBe(40 * MiB);
    expect(streams.map((s) => s.outcome)).toEqual(['failed', 'complete']);

    // After the kill only chunk 5 and the chunks after it were copied, and chunk 5 was written
    // again at the very position its interrupted attempt used (so nothing on tape is doubled).
    const starts = state
      .events({ event: 'copy-start' })
      .filter((e) => e.seq > killedAt && e.detail.backupId === report.backupId);
    expect(starts.map((e) => Number(e.detail.piece))).toEqual([5, 6, 7, 8, 9]);
    const interrupted = state
      .events({ event: 'copy-start' })
      .filter((e) => e.seq <= killedAt && e.detail.backupId === report.backupId && Number(e.detail.piece) === 5);
    expect(interrupted.map((e) => e.detail.position)).toEqual([starts[0]!.detail.position]);
    expect(pieces[5]!.position).toBe(Number(starts[0]!.detail.position));
    // Every chunk before the kill was started exactly once on its final stream.
    const before = state
      .events({ event: 'copy-start' })
      .filter((e) => e.seq <= killedAt && e.detail.backupId === report.backupId && Number(e.detail.piece) < 5);
    const perPiece = new Map<number, number>();
    for (const e of before) perPiece.set(Number(e.detail.piece), (perPiece.get(Number(e.detail.piece)) ?? 0) + 1);
    // Chunk 2 started twice: on stream 0, where it failed, and on stream 1.
    expect([...perPiece.entries()].sort((a, b) => a[0] - b[0])).toEqual([
      [0, 1],
      [1, 1],
      [2, 2],
      [3, 1],
      [4, 1],
    ]);

    const tables = await client.workflow.getHandle(poolWorkflowId(lab.site)).query(tablesQuery);
    expect(
      [...tables.servers, ...tables.drives, ...tables.tapes, ...tables.switches].filter((r) => r.holders.length > 0),
    ).toEqual([]);
    expect(state.zones(lab.site)).toEqual([]);

    state.clearFaults();
    await client.workflow
      .getHandle(poolWorkflowId(lab.site))
      .signal(markDeviceSignal, { device: 'bks-01', state: 'available' });
    const dest = path.join(lab.dir, 'restores', 'vm-001.img');
    await (await kura.startRestore(report.backupId, dest)).result();
    expect(await sha256(dest)).toBe(source);
    state.close();
  });
});

describe('the worker killed while a stream copies with another standing by', () => {
  it('moves the chunks to the next stream and marks no device, since every device answers a probe', async () => {
    const state = new LabState(lab.paths.labState);
    const running = procs.find((p) => p.exitCode === null && p.signalCode === null) ?? (await startWorkerProcess());
    // Whatever an earlier case left marked is back in service, so a mark now is this job's.
    for (const d of unavailableDevices(await kura.pool.tables(lab.site)))
      await kura.pool.mark(lab.site, { device: d.name, state: 'available' });
    await eventually(async () => unavailableDevices(await kura.pool.tables(lab.site)).length === 0);
    // 2 MiB/s on both servers: each 4 MiB chunk takes 2 s, so the kill lands inside chunk 1.
    for (const server of ['bks-01', 'bks-02'])
      state.addFault({ device: server, kind: 'slow', after: { bytes: 0 }, rateBytesPerSec: 2 * MiB, once: false });
    const source = await sha256(lab.dataVolume('vm-001'));
    const since = state.events().at(-1)?.seq ?? 0;
    const handle = await kura.startBackup('vm-001');

    const deadline = Date.now() + 60_000;
    let begun = false;
    while (!begun && Date.now() < deadline) {
      begun = state.events({ event: 'copy-start' }).some((e) => e.seq > since && Number(e.detail.piece) === 1);
      if (!begun) await new Promise((r) => setTimeout(r, 50));
    }
    expect(begun).toBe(true);
    running.kill('SIGKILL');
    await new Promise((r) => running.once('exit', r));
    state.clearFaults();
    await startWorkerProcess();
    const report: BackupReport = await handle.result();

    const { pieces, streams } = completeBackup(report.backupId);
    expect(pieces.map((p) => [p.piece, p.stream])).toEqual(
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((n) => [n, n < 1 ? 0 : 1]),
    );
    expect(streams.map((s) => s.outcome)).toEqual(['failed', 'complete']);
    // No device of the lost copy is out of service.
    expect(unavailableDevices(await kura.pool.tables(lab.site))).toEqual([]);
    expect(streams[0]!.error).toMatch(
      /^DeviceFault: the copy stopped answering while its devices answer a probe \(bks-01, fcsw-01, lib-01, lib-01-drv-1, L1T\d+\): the worker running it was probably lost$/,
    );
    // The probe read the drive's cartridge, and every device answered.
    const probed = state.events({ event: 'probe-answered' }).filter((e) => e.seq > since);
    expect(probed.map((e) => e.device)).toContain('lib-01-drv-1');
    expect(state.events({ event: 'probe-failed' }).filter((e) => e.seq > since)).toEqual([]);

    const dest = path.join(lab.dir, 'restores', 'vm-001-lost-worker.img');
    await (await kura.startRestore(report.backupId, dest)).result();
    expect(await sha256(dest)).toBe(source);
    state.close();
  });
});

/** A backup the catalog holds complete: its pieces and its streams. */
function completeBackup(backupId: string) {
  const catalog = new Catalog(lab.paths.catalog);
  try {
    expect(catalog.backup(backupId).status).toBe('complete');
    return { pieces: catalog.piecesOf(backupId), streams: catalog.streamsOf(backupId) };
  } finally {
    catalog.close();
  }
}
