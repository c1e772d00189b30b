/**
 * The copy to tape with one activity per stream (docs/adr/020-fleet-cost.md): a run signals each
 * chunk as it lands, fails over from the chunk it was writing, is retried by the workflow on the
 * last stream left from the chunk that did not land, and the backup still restores byte for byte.
 * Runs recorded before the change (one activity per chunk and a read-back of its own) replay as
 * they were, and so does a run of the new kind.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { inject } from 'vitest';
import { Worker } from '@temporalio/worker';
import type { Client } from '@temporalio/client';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import type { temporal } from '@temporalio/proto';
import { Catalog } from '../../src/catalog/store';
import { kuraDataConverter } from '../../src/codec/data-converter';
import { LabState } from '../../src/lab/state';
import { markDeviceSignal } from '../../src/messages';
import type { BackupReport } from '../../src/domain/jobs';
import { chunkSizeFor } from '../../src/workflows/plan';
import { connectKura, makeLab, sha256, startWorkers, unavailableDevices, type TestLab } from '../support/harness';
import type { KuraWorkers } from '../../src/worker';
import { poolWorkflowId, type Kura } from '../../src/client';

const MiB = 1024 * 1024;
const VOLUME = 4 * MiB;
const CHUNK = chunkSizeFor(VOLUME, 10);

let lab: TestLab;
let workers: KuraWorkers;
let kura: Kura;
let client: Client;
let close: () => Promise<void>;

beforeAll(async () => {
  // The preset's copy: two streams in failover mode, ten chunks.
  lab = await makeLab({ vms: 1, dataVolumeSize: VOLUME, copyHeartbeatTimeout: '2s' });
  workers = await startWorkers(lab);
  ({ kura, client, close } = await connectKura(lab));
});

afterAll(async () => {
  await close?.();
  await workers?.shutdown();
  lab?.cleanup();
});

function replay(history: temporal.api.history.v1.IHistory, workflowId: string): Promise<void> {
  return Worker.runReplayHistory(
    { workflowBundle: { codePath: inject('workflowBundlePath') }, dataConverter: kuraDataConverter(lab.loaded) },
    history,
    workflowId,
  );
}

function scheduled(history: temporal.api.history.v1.IHistory): string[] {
  return (history.events ?? []).flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
}

describe('runs recorded with one copy activity per chunk', () => {
  it.each(['failover', 'parallel'])('a %s backup replays as it was scheduled', async (mode) => {
    const json: unknown = JSON.parse(
      readFileSync(path.join(__dirname, 'histories', `san-operation-${mode}-per-chunk.json`), 'utf8'),
    );
    const history = historyFromJSON(json);
    const copies = mode === 'parallel' ? 4 : 2;
    expect(scheduled(history)).toEqual([
      'resolveTarget',
      'reserveStreams',
      ...Array.from({ length: copies }, () => 'copyPiece'),
      ...Array.from({ length: copies / 2 }, () => 'verifyImage'),
    ]);
    const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
    expect(started?.workflowType?.name).toBe('sanOperation');
    await expect(replay(history, `replay-per-chunk-${mode}`)).resolves.toBeUndefined();
  });
});

describe('one copy activity per stream', () => {
  it('fails over from the chunk a run was writing, retries the last stream from the chunk that did not land, and restores byte-identical', async () => {
    const state = new LabState(lab.paths.labState);
    // Stream 0 fails at chunk 2 and its chunks move to stream 1; stream 1, the last one left, fails
    // once at chunk 6 and is tried again there.
    state.addFault({ device: 'bks-01', kind: 'fail', after: { bytes: 2 * CHUNK + 1000 }, once: false });
    state.addFault({ device: 'bks-02', kind: 'fail', after: { bytes: 6 * CHUNK + 1000 }, once: true });
    const source = await sha256(lab.dataVolume('vm-001'));
    const handle = await kura.startBackup('vm-001');
    const report: BackupReport = await handle.result();

    const catalog = new Catalog(lab.paths.catalog);
    const pieces = catalog.piecesOf(report.backupId);
    const streams = catalog.streamsOf(report.backupId);
    expect(catalog.backup(report.backupId).status).toBe('complete');
    catalog.close();
    expect(pieces.map((p) => [p.piece, p.stream])).toEqual(
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((n) => [n, n < 2 ? 0 : 1]),
    );
    expect(pieces.reduce((n, p) => n + p.sizeBytes, 0)).toBe(VOLUME);
    expect(streams.map((s) => [s.outcome, s.pieces])).toEqual([
      ['failed', 2],
      ['complete', 8],
    ]);
    // Only the device that failed the stream is out of service; the retried one is not.
    expect(unavailableDevices(await kura.pool.tables(lab.site)).map((d) => d.name)).toEqual(['bks-01']);

    // Chunk 2 was begun on both streams, chunk 6 twice on stream 1 at the same position; every other once.
    const starts = state.events({ event: 'copy-start' }).filter((e) => e.detail.backupId === report.backupId);
    const count = (n: number) => starts.filter((e) => Number(e.detail.piece) === n).length;
    expect([0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map(count)).toEqual([1, 1, 2, 1, 1, 1, 2, 1, 1, 1]);
    const sixes = starts.filter((e) => Number(e.detail.piece) === 6).map((e) => Number(e.detail.position));
    expect(sixes).toEqual([pieces[6]!.position, pieces[6]!.position]);

    // One run on stream 0 (its server then marked unavailable), two on stream 1; a copy cut over
    // two streams is read back on its own. Every chunk a run wrote before its last was signalled as it landed.
    // The resolve and the reservation granted at once are local activities (docs/adr/045); the
    // release is an activity, whose scheduling ends the task of the unloads (docs/adr/053).
    const history = await client.workflow.getHandle(handle.workflowId).fetchHistory();
    expect(scheduled(history)).toEqual([
      'copyRun',
      'markDevice',
      'copyRun',
      'copyRun',
      'verifyImage',
      'releaseStreams',
    ]);
    const signals = (history.events ?? []).flatMap((e) => e.workflowExecutionSignaledEventAttributes?.signalName ?? []);
    expect(signals).toEqual(Array.from({ length: 9 }, () => 'chunk-landed'));
    await expect(replay(history, handle.workflowId)).resolves.toBeUndefined();

    state.clearFaults();
    await client.workflow.getHandle(poolWorkflowId(lab.site)).signal(markDeviceSignal, {
      device: 'bks-01',
      state: 'available',
    });
    const dest = path.join(lab.dir, 'restores', 'vm-001.img');
    await (await kura.startRestore(report.backupId, dest)).result();
    expect(await sha256(dest)).toBe(source);
    state.close();
  });
});
