/**
 * The store's Temporal Schedules: one per configured target class at the class's time and zone,
 * and the copy's sync on its own interval; triggering the sync's schedule syncs the copy.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { KuraStore } from '../../src/api/store';
import { storeScheduleId } from '../../src/api/workflow-ids';
import type { Kura } from '../../src/client';
import type { KuraWorkers } from '../../src/worker';
import { uniqueId, type TestLab } from '../support/harness';
import { closeWorkflowLab, openWorkflowLab } from '../support/workflow-lab';

let lab: TestLab;
let kura: Kura;
let client: Client;
let workers: KuraWorkers;
let close: () => Promise<void>;
let installation: string;

beforeAll(async () => {
  installation = `st-${uniqueId()}`;
  ({ lab, workers, kura, client, close } = await openWorkflowLab({
    vms: 1,
    dataVolumeSize: 1024 * 1024,
    fileServers: 1,
    fileServerVolumeSize: 1024 * 1024,
    clients: 1,
    clientVolumeSize: 1024 * 1024,
    edit: (cfg) => {
      cfg.installation = installation;
      cfg.store = { syncEvery: '6h' };
    },
  }));
});

afterAll(async () => {
  for (const job of ['class-vm', 'class-server', 'class-client', 'sync'])
    await client?.schedule
      .getHandle(storeScheduleId(job, installation))
      .delete()
      .catch(() => undefined);
  await closeWorkflowLab({ lab, workers, close });
});

describe("the store's schedules", () => {
  it('are one per class at its time and the sync every store.syncEvery, and the sync schedule syncs the copy', async () => {
    const store = new KuraStore(client, lab.loaded, kura.taskQueue);
    const ids = ['class-vm', 'class-server', 'class-client', 'sync'].map((j) => storeScheduleId(j, installation));
    expect(await store.applySchedules()).toEqual({ created: ids, updated: [], deleted: [] });
    expect(await store.applySchedules()).toEqual({ created: [], updated: ids, deleted: [] });

    const client12 = await client.schedule.getHandle(storeScheduleId('class-client', installation)).describe();
    expect(client12.spec.calendars?.[0]).toMatchObject({
      hour: [{ start: 12, end: 12, step: 1 }],
      minute: [{ start: 15, end: 15, step: 1 }],
    });
    const sync = client.schedule.getHandle(storeScheduleId('sync', installation));
    expect((await sync.describe()).spec.intervals?.[0]?.every).toBe(6 * 3_600_000);

    await sync.trigger();
    const state = path.join(lab.paths.home, 'store', 'copy', 'sync.json');
    const deadline = Date.now() + 30_000;
    while (!existsSync(state) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(existsSync(state)).toBe(true);
  });
});
