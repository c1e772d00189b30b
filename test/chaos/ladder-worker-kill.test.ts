/**
 * Chaos: the worker process is killed (SIGKILL) while the ladder builds the new data volume for
 * the data swap, and started again. The ladder must resume at the swap — the volume creation
 * continuing after the bytes already written — and never run the APL, MW or OS restarts again;
 * afterwards the data volume equals the image byte for byte.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import type { Client } from '@temporalio/client';
import { LabState } from '../../src/lab/state';
import { guardianQuery, ladderQuery } from '../../src/messages';
import type { LadderResult } from '../../src/domain/ladder';
import { Kura, guardianWorkflowId } from '../../src/client';
import { connectKura, sha256, startWorkerProcess as startWorkerProcessOf, type TestLab } from '../support/harness';
import { RUNG_ACTIONS, actionsOf, lastSeq, makeVmLab, startGuardian, until } from '../support/vm-lab';
import { decodePayload } from '../../src/codec/data-converter';

const MiB = 1024 * 1024;

let lab: TestLab & { vms: string[] };
let client: Client;
let close: () => Promise<void>;
const procs: ChildProcess[] = [];

const startWorkerProcess = () => startWorkerProcessOf(lab, procs);

/** Bytes the running volume creation has reported in its heartbeat, if it is running. */
async function creationProgress(ladderId: string): Promise<number | undefined> {
  const d = await client.workflow.getHandle(ladderId).describe();
  for (const a of d.raw.pendingActivities ?? []) {
    if (a.activityType?.name !== 'createDataVolume') continue;
    const p = a.heartbeatDetails?.payloads?.[0];
    return p ? ((await decodePayload<{ bytes?: number }>(client, p)).bytes ?? 0) : 0;
  }
  return undefined;
}

beforeAll(async () => {
  // 16 MiB built at 4 MiB/s: the volume creation takes about four seconds, time enough to kill.
  lab = await makeVmLab({
    vms: 1,
    dataVolumeSize: 16 * MiB,
    copyHeartbeatTimeout: '2s',
    lab: { volumeCopyRate: 4 * MiB },
  });
  ({ client, close } = await connectKura(lab));
});

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await close?.();
  lab?.cleanup();
});

describe('the worker killed during the data swap', () => {
  it('resumes the ladder at the swap and never runs the APL, MW or OS restarts again', async () => {
    const vm = lab.vms[0]!;
    const vms = new Kura(client, lab.loaded, lab.taskQueue).vms;
    const first = await startWorkerProcess();
    await startGuardian(client, lab, vm);
    const image = await vms.backupData(vm);

    const since = lastSeq(lab);
    const state = new LabState(lab.paths.labState);
    state.setVmFault(lab.site, vm, 'data');
    await vms.reportFailure(vm, 'data corrupted');
    const g = await until(
      () => client.workflow.getHandle(guardianWorkflowId(vm)).query(guardianQuery),
      (v) => v.currentLadder !== null,
    );
    const ladderId = g.currentLadder!;

    // Wait until the new volume is partly written, then kill the worker outright.
    const bytes = await until(
      () => creationProgress(ladderId),
      (b) => b !== undefined && b >= 2 * MiB,
    );
    expect(bytes).toBeGreaterThanOrEqual(2 * MiB);
    const view = await client.workflow.getHandle(ladderId).query(ladderQuery);
    expect(view.currentRung).toBe('data-swap');
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    expect(actionsOf(lab, vm, since)).toEqual(
      ['apl-restart', 'mw-restart', 'os-reboot'].flatMap((r) => RUNG_ACTIONS[r]!),
    );

    await startWorkerProcess();
    const result: LadderResult = await client.workflow.getHandle(ladderId).result();
    expect(result.outcome).toBe('recovered');
    expect(result.rung).toBe('data-swap');

    // Every rung's action exactly once, in order: the restarts below the swap were not run again.
    expect(actionsOf(lab, vm, since)).toEqual(
      ['apl-restart', 'mw-restart', 'os-reboot', 'data-swap'].flatMap((r) => RUNG_ACTIONS[r]!),
    );
    // The retried volume creation continued after the bytes its killed predecessor had written.
    const created = state.events({ device: vm, event: 'volume-create', since });
    expect(created).toHaveLength(1);
    expect(Number(created[0]!.detail.resumedFrom)).toBeGreaterThanOrEqual(2 * MiB);
    expect(await sha256(lab.dataVolume(vm))).toBe(image.sha256);
    state.close();
  });
});
