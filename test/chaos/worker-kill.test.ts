/**
 * Chaos: the worker process is killed (SIGKILL) in the middle of a copy and started again. The
 * backup must complete, resume the interrupted piece instead of starting it over, restore byte for
 * byte, and leave exactly one catalog row per piece and no device reserved.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { Catalog } from '../../src/catalog/store';
import { LabState } from '../../src/lab/state';
import { tablesQuery } from '../../src/messages';
import type { BackupReport } from '../../src/domain/jobs';
import {
  connectKura,
  makeLab,
  sha256,
  startWorkerProcess as startWorkerProcessOf,
  type TestLab,
} from '../support/harness';
import { poolWorkflowId, type Kura } from '../../src/client';
import type { Client } from '@temporalio/client';
import { decodePayload } from '../../src/codec/data-converter';

const MiB = 1024 * 1024;

let lab: TestLab;
let kura: Kura;
let client: Client;
let close: () => Promise<void>;
const procs: ChildProcess[] = [];

const startWorkerProcess = () => startWorkerProcessOf(lab, procs);

/**
 * The piece being copied, from the lab's own record of the last copy started (read locally, so it
 * costs no round trip through a busy worker), and the bytes the server holds from that copy's
 * heartbeat: what a retried attempt will be handed to resume from.
 */
async function copyProgress(
  state: LabState,
  workflowId: string,
): Promise<{ piece: number; bytes: number } | undefined> {
  const started = state.events({ event: 'copy-start' }).at(-1);
  if (!started) return undefined;
  const d = await client.workflow.getHandle(workflowId).describe();
  for (const a of d.raw.pendingActivities ?? []) {
    // A copy run (one activity per stream) heartbeats its chunk and that chunk's bytes; until its
    // first heartbeat of the chunk reaches the server, what it holds is the chunk before.
    if (a.activityType?.name !== 'copyRun' && a.activityType?.name !== 'copyPiece') continue;
    const input = a.heartbeatDetails?.payloads?.[0];
    const beat = input ? await decodePayload<{ bytes?: number; piece?: number }>(client, input) : {};
    const piece = Number(started.detail.piece);
    const bytes = beat.piece === undefined || beat.piece === piece ? (beat.bytes ?? 0) : 0;
    return { piece, bytes };
  }
  return undefined;
}

beforeAll(async () => {
  // One stream in three chunks: with no stream to fail over to, the chunk's own retry resumes it.
  lab = await makeLab({
    vms: 1,
    dataVolumeSize: 48 * MiB,
    pieceSize: '16MiB',
    copyHeartbeatTimeout: '2s',
    streams: 1,
    chunks: 3,
  });
  ({ kura, client, close } = await connectKura(lab));
});

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await close?.();
  lab?.cleanup();
});

describe('the worker killed during a copy', () => {
  it('completes the backup, resumes the interrupted piece, and restores byte-identical', async () => {
    const state = new LabState(lab.paths.labState);
    // Slow both backup servers to 2 MiB/s so each 16 MiB piece takes 8 s. The server learns of
    // progress only from heartbeats, which the SDK throttles to 0.8 × the 2 s heartbeat timeout,
    // so what it shows may be 1.6 s (3.2 MiB) behind the copy: the kill must land well before the
    // piece could have finished, even on a loaded machine.
    for (const server of ['bks-01', 'bks-02'])
      state.addFault({ device: server, kind: 'slow', after: { bytes: 0 }, rateBytesPerSec: 2 * MiB, once: false });
    const source = await sha256(lab.dataVolume('vm-001'));

    const first = await startWorkerProcess();
    const handle = await kura.startBackup('vm-001');

    // Wait until the second piece is under way, then kill the worker outright.
    const deadline = Date.now() + 60_000;
    let seen: { piece: number; bytes: number } | undefined;
    while (Date.now() < deadline) {
      seen = await copyProgress(state, handle.workflowId);
      if (seen && seen.piece === 1 && seen.bytes >= 2 * MiB) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(seen?.piece).toBe(1);
    const eventsBefore = state.events().length;
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));

    state.clearFaults();
    await startWorkerProcess();
    const report: BackupReport = await handle.result();

    // The retried attempt of piece 1 took over the bytes already on tape instead of copying them again.
    const restarts = state.events({ event: 'copy-start' }).filter((e) => e.seq > eventsBefore);
    const resumed = restarts.filter((e) => Number(e.detail.resumeBytes) > 0);
    expect(resumed.length).toBe(1);
    expect(Number(resumed[0]!.detail.resumeBytes)).toBeGreaterThanOrEqual(seen!.bytes);

    // Exactly one row per piece, the backup complete, nothing partial.
    const catalog = new Catalog(lab.paths.catalog);
    const pieces = catalog.piecesOf(report.backupId);
    expect(catalog.backup(report.backupId).status).toBe('complete');
    catalog.close();
    expect(pieces.map((p) => [p.copy, p.piece])).toEqual([
      [0, 0],
      [0, 1],
      [0, 2],
    ]);
    expect(pieces.reduce((n, p) => n + p.sizeBytes, 0)).toBe(48 * MiB);

    const tables = await client.workflow.getHandle(poolWorkflowId(lab.site)).query(tablesQuery);
    const held = [...tables.servers, ...tables.drives, ...tables.tapes, ...tables.switches].filter(
      (r) => r.holders.length > 0,
    );
    expect(held).toEqual([]);

    const dest = path.join(lab.dir, 'restores', 'vm-001.img');
    await (await kura.startRestore(report.backupId, dest)).result();
    expect(await sha256(dest)).toBe(source);
    state.close();
  });
});
