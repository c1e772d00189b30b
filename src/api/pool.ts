/**
 * The client side of a site's resource pool (seed 004): start it with the site's inventory, read
 * its tables, and mark a device available or unavailable, each refusal typed with a message that
 * says what to do.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import type { LoadedConfig } from '../config/load';
import { findSite } from '../config/targets';
import { ErrorType, KuraError, NotFoundError } from '../domain/errors';
import type { Site } from '../domain/inventory';
import type { DeviceRow, MarkRequest, PoolTables } from '../domain/pool';
import { findDevice, tablesFromSite } from '../domain/pool-tables';
import { markDeviceSignal, syncInventorySignal, tablesQuery } from '../messages';
import type { resourcePool } from '../workflows/resource-pool';
import { CONTROL_TASK_QUEUE, installationOfTaskQueue } from './task-queues';
import { poolWorkflowId } from './workflow-ids';

/** How long `mark` waits to read back the changed row. */
const READ_BACK_MS = 5000;

/**
 * Starts the site's pool if it is not running and hands it the site's current inventory (new
 * devices are added, removed free ones dropped). The worker calls this for every site at start-up,
 * with its control task queue, whose installation the pool's id takes.
 */
export async function ensurePool(
  client: Client,
  site: Site,
  taskQueue: string = CONTROL_TASK_QUEUE,
  /** The memo of `searchAttributeLabels(loaded)`, so the pool hashes its site's name when asked to. */
  memo: Record<string, string> = {},
): Promise<void> {
  const tables = tablesFromSite(site);
  await client.workflow.signalWithStart<typeof resourcePool, [PoolTables]>('resourcePool', {
    workflowId: poolWorkflowId(site.name, installationOfTaskQueue(taskQueue)),
    taskQueue,
    memo,
    args: [{ site: site.name, tables }],
    signal: syncInventorySignal,
    signalArgs: [tables],
    staticSummary: `resource pool of site ${site.name}`,
  });
}

/** The resource pools of an installation as the CLI and other services use them (`kura.pool`). */
export class KuraPool {
  constructor(
    readonly client: Client,
    readonly loaded: LoadedConfig,
    readonly taskQueue: string,
  ) {}

  /**
   * Starts the pool of a site of kura.yaml (default: of every site), or hands a running one the
   * current inventory, as the worker does at start-up.
   */
  async ensure(site?: string): Promise<void> {
    const wanted = site === undefined ? undefined : findSite(this.loaded.config, site).name;
    for (const s of this.loaded.config.sites) {
      if (wanted === undefined || s.name === wanted) await ensurePool(this.client, s, this.taskQueue);
    }
  }

  /**
   * The pool of a site. Without a run id, so it follows the pool through its continue-as-new runs.
   */
  handle(site: string): WorkflowHandle<typeof resourcePool> {
    return this.client.workflow.getHandle<typeof resourcePool>(poolWorkflowId(site, this.loaded.config.installation));
  }

  /** The running pool's tables; a missing pool or a silent worker becomes an error that says what to start. */
  async tables(site: string): Promise<PoolTables> {
    try {
      return await this.handle(site).query(tablesQuery);
    } catch (err) {
      if (err instanceof KuraError) throw err;
      if (err instanceof WorkflowNotFoundError) {
        throw new NotFoundError(
          `no resource pool is running for site ${site}; start the worker (\`npm run worker\`), which starts one pool per site`,
          { site },
        );
      }
      throw new KuraError(
        ErrorType.Unavailable,
        `the resource pool of site ${site} did not answer (${err instanceof Error ? err.message : String(err)}); is a worker running on the control task queue?`,
        { cause: err },
      );
    }
  }

  /**
   * Marks a device (un)available and returns its row once the pool shows the change. NotFound for
   * a device the pool does not have, naming the valid ones.
   */
  async mark(site: string, req: MarkRequest): Promise<DeviceRow> {
    const before = await this.tables(site);
    if (!findDevice(before, req.device)) {
      throw new NotFoundError(
        `no device ${req.device} in the pool of site ${site}; valid names are ${validNames(before)}`,
        { device: req.device, site },
      );
    }
    await this.handle(site).signal(markDeviceSignal, req);
    return this.readBack(site, req.device, req.state);
  }

  /**
   * A signal is applied when the pool's next workflow task runs, so the row is read until it shows
   * the new state (or the time is up, and the last reading is shown).
   */
  private async readBack(site: string, device: string, state: 'available' | 'unavailable'): Promise<DeviceRow> {
    const deadline = Date.now() + READ_BACK_MS;
    for (;;) {
      const row = findDevice(await this.tables(site), device);
      if (!row)
        throw new NotFoundError(`device ${device} left the pool of site ${site} while it was being marked`, {
          device,
          site,
        });
      const applied = state === 'unavailable' ? row.state === 'unavailable' : row.state !== 'unavailable';
      if (applied || Date.now() > deadline) return row;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

function validNames(tables: PoolTables): string {
  const kinds: [string, DeviceRow[]][] = [
    ['servers', tables.servers],
    ['libraries', tables.libraries],
    ['drives', tables.drives],
    ['tapes', tables.tapes],
    ['switches', tables.switches],
    ['copy devices', tables.copyDevices],
  ];
  return kinds
    .filter(([, rows]) => rows.length > 0)
    .map(([kind, rows]) => `${kind}: ${rows.map((r) => r.name).join(', ')}`)
    .join('; ');
}
