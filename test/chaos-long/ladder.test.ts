/**
 * Chaos: the Temporal server is SIGKILLed at a seeded random instant while the recovery ladder swaps
 * the data volume, and started again on the same SQLite file. The ladder recovers the VM at the swap;
 * its record shows every rung attempted once, the lab saw every rung's actions once, in order; the
 * data volume equals the image byte for byte and the pool holds nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LabState } from '../../src/lab/state';
import { guardianQuery, ladderQuery } from '../../src/messages';
import type { LadderResult } from '../../src/domain/ladder';
import { guardianWorkflowId } from '../../src/client';
import { sha256, type TestLab } from '../support/harness';
import { RUNG_ACTIONS, actionsOf, lastSeq, makeVmLab, startGuardian, until } from '../support/vm-lab';
import { acrossOutage, chaosSeed, killAndRestart, startPrivateKura, type PrivateKura } from '../support/private-server';
import { heldRows, labHolds } from './checks';

const MiB = 1024 * 1024;

let lab: TestLab & { vms: string[] };
let pk: PrivateKura;

beforeAll(async () => {
  // 8 MiB built at 4 MiB/s: the data swap's volume creation takes about two seconds.
  lab = await makeVmLab({
    vms: 1,
    dataVolumeSize: 8 * MiB,
    copyHeartbeatTimeout: '2s',
    lab: { volumeCopyRate: 4 * MiB },
  });
  pk = await startPrivateKura(lab);
});

afterAll(async () => {
  await pk?.close();
  lab?.cleanup();
});

describe('the Temporal server killed during a ladder’s data swap', () => {
  it('recovers at the swap, runs no rung twice, and leaves the volume equal to the image', async () => {
    const { random } = chaosSeed('ladder');
    const vm = lab.vms[0]!;
    const { client, kura } = pk;
    await startGuardian(client, lab, vm);
    const image = await kura.vms.backupData(vm);

    const since = lastSeq(lab);
    const state = new LabState(lab.paths.labState);
    state.setVmFault(lab.site, vm, 'data');
    state.close();
    const started = Date.now();
    await kura.vms.reportFailure(vm, 'data corrupted');
    const g = await until(
      () => client.workflow.getHandle(guardianWorkflowId(vm)).query(guardianQuery),
      (v) => v.currentLadder !== null,
    );
    const ladder = client.workflow.getHandle(g.currentLadder!);
    const view = await until(
      () => ladder.query(ladderQuery),
      (v) => v.currentRung === 'data-swap',
    );
    expect(view.currentRung).toBe('data-swap');
    // The instant: a seeded moment in the swap's first 1.5 s (the volume creation takes about 2 s).
    const atMs = Math.floor(random() * 1500);
    const swapAt = Date.now();
    await killAndRestart(pk.server, { since: swapAt, atMs });
    console.log(`ladder: server killed ${atMs} ms into the data swap`);

    const result: LadderResult = await acrossOutage(() => ladder.result());
    expect(result.outcome).toBe('recovered');
    expect(result.rung).toBe('data-swap');
    // The ladder's own record: each rung below the cure attempted once and failed, the swap once and cured.
    expect(
      result.view.rungs.filter((r) => r.attempts.length > 0).map((r) => [r.rung, r.attempts.length, r.status]),
    ).toEqual([
      ['apl-restart', 1, 'failed'],
      ['mw-restart', 1, 'failed'],
      ['os-reboot', 1, 'failed'],
      ['data-swap', 1, 'cured'],
    ]);
    // The lab's record: every rung's actions exactly once, in order.
    expect(actionsOf(lab, vm, since)).toEqual(
      ['apl-restart', 'mw-restart', 'os-reboot', 'data-swap'].flatMap((r) => RUNG_ACTIONS[r]!),
    );
    expect(await sha256(lab.dataVolume(vm))).toBe(image.sha256);
    expect(await heldRows(kura, lab.site)).toEqual([]);
    expect(labHolds(lab)).toEqual({ zones: [], snapshots: [], splitPairs: [] });
    console.log(`ladder: ${Date.now() - started} ms from the failure to the check`);
  });
});
