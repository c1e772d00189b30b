/**
 * The lab of the drill tests and of the replay recorder's drill scenario: one VM, one file server
 * and one client (every class of seed 000, small volumes), workers and a client on it, every class
 * backed up into the store at one instant inside the clients' window, and the copy synced.
 */
import type { Client } from '@temporalio/client';
import type { ConfigInput } from '../../src/domain/inventory';
import { KuraDrills } from '../../src/api/drills';
import { ClassName } from '../../src/domain/classes';
import type { KuraWorkers } from '../../src/worker';
import { uniqueId, type TestLab } from './harness';
import { openWorkflowLab } from './workflow-lab';

const MiB = 1024 * 1024;

export interface DrillLab {
  lab: TestLab;
  client: Client;
  workers: KuraWorkers;
  drills: KuraDrills;
  /** The control task queue of the lab's installation. */
  taskQueue: string;
  close(): Promise<void>;
}

/**
 * Makes the drill lab and backs every class up. `installation` names one of its own (its runs are
 * then not the default installation's); `edit` changes kura.yaml further before it is written.
 */
export async function makeDrillLab(
  opts: { installation?: string; edit?: (cfg: ConfigInput) => void } = {},
): Promise<DrillLab> {
  const { lab, workers, kura, client, close } = await openWorkflowLab({
    vms: 1,
    dataVolumeSize: 1 * MiB,
    softwareVolumeSize: 512 * 1024,
    fileServers: 1,
    fileServerVolumeSize: 1 * MiB,
    clients: 1,
    clientVolumeSize: 512 * 1024,
    edit: (cfg) => {
      if (opts.installation !== undefined) cfg.installation = opts.installation;
      cfg.store = { chunkSize: '64KiB' };
      cfg.lab = { osReboot: '300ms' };
      opts.edit?.(cfg);
    },
  });
  const drills = new KuraDrills(client, lab.loaded, kura.taskQueue);
  const prefix = opts.installation === undefined ? '' : `${opts.installation}/`;
  // Every class backed up at one instant inside the clients' window, then the copy synced.
  const dataTime = `${new Date(Date.now() - 86_400_000).toISOString().slice(0, 10)}T12:30:00.000Z`;
  for (const className of Object.values(ClassName))
    await client.workflow.execute('classBackup', {
      taskQueue: kura.taskQueue,
      workflowId: `${prefix}store/class/${className}/${uniqueId()}`,
      args: [{ className, dataTime }],
    });
  await client.workflow.execute('storeSync', {
    taskQueue: kura.taskQueue,
    workflowId: `${prefix}store/sync/${uniqueId()}`,
    args: [{}],
  });
  return { lab, client, workers, drills, taskQueue: kura.taskQueue, close };
}
