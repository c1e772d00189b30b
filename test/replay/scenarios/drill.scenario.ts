/**
 * Runs for the recorder that no test of the default installation makes: a restore drill, the estate
 * report and a store sync (test/workflows/drill.test.ts runs them under an installation of its own,
 * and a replay worker's task queue names no installation, so those runs cannot be replayed).
 */
import * as path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { KuraDrills } from '../../../src/api/drills';
import { ClassName } from '../../../src/domain/classes';
import type { KuraWorkers } from '../../../src/worker';
import { connectKura, makeLab, startWorkers, uniqueId, type TestLab } from '../../support/harness';

const MiB = 1024 * 1024;
let lab: TestLab;
let client: Client;
let workers: KuraWorkers;
let close: () => Promise<void>;
let drills: KuraDrills;

beforeAll(async () => {
  lab = await makeLab({
    vms: 1,
    dataVolumeSize: 1 * MiB,
    softwareVolumeSize: 512 * 1024,
    fileServers: 1,
    fileServerVolumeSize: 1 * MiB,
    clients: 1,
    clientVolumeSize: 512 * 1024,
    edit: (cfg) => {
      cfg.store = { chunkSize: '64KiB' };
      cfg.lab = { osReboot: '300ms' };
    },
  });
  workers = await startWorkers(lab);
  let kura;
  ({ kura, client, close } = await connectKura(lab));
  drills = new KuraDrills(client, lab.loaded, kura.taskQueue);
  const dataTime = `${new Date(Date.now() - 86_400_000).toISOString().slice(0, 10)}T12:30:00.000Z`;
  for (const className of Object.values(ClassName))
    await client.workflow.execute('classBackup', {
      taskQueue: kura.taskQueue,
      workflowId: `store/class/${className}/${uniqueId()}`,
      args: [{ className, dataTime }],
    });
  await client.workflow.execute('storeSync', {
    taskQueue: kura.taskQueue,
    workflowId: `store/sync/${uniqueId()}`,
    args: [{}],
  });
});

afterAll(async () => {
  await close?.();
  await workers?.shutdown();
  lab?.cleanup();
});

it('a drill restores every class healthy, and the report is written', async () => {
  const report = await (await drills.run()).result();
  expect(report.failed).toBe(0);
  expect(report.targets.map((t) => t.className).sort()).toEqual(Object.values(ClassName).sort());
  const out = path.join(lab.dir, 'estate.html');
  const page = await (await drills.report(out)).result();
  expect(page.file).toBe(out);
  expect(page.bytes).toBeGreaterThan(0);
});
