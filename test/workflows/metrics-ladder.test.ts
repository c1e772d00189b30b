/**
 * The worker's metrics of VM protection, scraped as Prometheus does: a guardian's data-volume image
 * counts its bytes under the `image` method, and a recovery ladder counts its incident under the
 * rung that cured it, and under no rung that only tried.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { Kura, guardianWorkflowId, type KuraVms } from '../../src/client';
import type { ImageRecord, LadderResult } from '../../src/domain/ladder';
import { LabState } from '../../src/lab/state';
import { guardianQuery } from '../../src/messages';
import type { KuraWorkers } from '../../src/worker';
import { connectKura, startWorkers, type TestLab } from '../support/harness';
import { freePort } from '../support/nbd';
import { parseExposition, scrape, type Exposition } from '../support/prometheus';
import { makeVmLab, startGuardian, until } from '../support/vm-lab';

let lab: TestLab & { vms: string[] };
let workers: KuraWorkers;
let client: Client;
let vms: KuraVms;
let close: () => Promise<void>;
let image: ImageRecord;
let ladder: LadderResult;
let metrics: Exposition;

beforeAll(async () => {
  const workerPort = await freePort();
  lab = await makeVmLab({ vms: 1, edit: (cfg) => void (cfg.metrics = { workerPort }) });
  workers = await startWorkers(lab);
  ({ client, close } = await connectKura(lab));
  vms = new Kura(client, lab.loaded, lab.taskQueue).vms;

  const vm = lab.vms[0]!;
  await startGuardian(client, lab, vm);
  image = await vms.backupData(vm);
  // A fault the middleware's restart cures: the application's restart is tried first, and fails.
  const state = new LabState(lab.paths.labState);
  state.setVmFault(lab.site, vm, 'mw');
  state.close();
  await vms.reportFailure(vm, 'middleware hung');
  const guardian = client.workflow.getHandle(guardianWorkflowId(vm));
  const g = await until(
    () => guardian.query(guardianQuery),
    (v) => v.state.incidents > 0 && (v.currentLadder ?? v.state.lastLadder) !== undefined,
  );
  // The guardian names its ladder as it starts it: the child may not exist on the server yet.
  const ladderHandle = client.workflow.getHandle((g.currentLadder ?? g.state.lastLadder)!);
  await until(
    () => ladderHandle.describe(),
    (d) => d !== undefined,
  );
  ladder = await ladderHandle.result();
  expect(workers.metricsUrl).toBe(`http://127.0.0.1:${workerPort}/metrics`);
  metrics = parseExposition((await scrape(workers.metricsUrl!)).text);
});

afterAll(async () => {
  await workers?.shutdown();
  await close?.();
  lab?.cleanup();
});

describe("the worker's metrics of VM protection", () => {
  it("count a guardian's data-volume image with its bytes under the image method", () => {
    expect(metrics.value('kura_backup_bytes_total', { class: 'vm', method: 'image' })).toBe(image.sizeBytes);
    expect(metrics.value('kura_backups_total', { class: 'vm', method: 'image', outcome: 'complete' })).toBe(1);
  });

  it('count a ladder incident under the rung that cured it, and under no rung that only tried', () => {
    expect(ladder.outcome).toBe('recovered');
    expect(ladder.rung).toBe('mw-restart');
    expect(metrics.find('kura_ladder_incidents_cured_total').map((s) => [s.labels.rung, s.value])).toEqual([
      ['mw-restart', 1],
    ]);
  });
});
