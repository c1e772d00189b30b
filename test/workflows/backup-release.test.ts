/**
 * A backup whose data is complete, and a restore whose pieces are read, outlast a resource pool that
 * does not answer their release for a while (as after a worker kill on a loaded machine): the
 * release is tried again until the pool is back, the job completes and the devices end released.
 */
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServiceError, type Client } from '@temporalio/client';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { tablesQuery } from '../../src/messages';
import { poolWorkflowId, type Kura } from '../../src/client';
import type { KuraWorkers } from '../../src/worker';
import { Catalog } from '../../src/catalog/store';
import { connectKura, makeLab, sha256, startWorkers, type TestLab } from '../support/harness';

/** Longer than the five attempts (about 8 s) a release had before, well within its bound now. */
const POOL_SILENT_MS = 9_000;
/**
 * A restore releases through an activity, not a local one: its five attempts from 0.5 s took 7.5 s
 * of backoff plus each attempt's round trip through the server, up to about 14 s on a loaded machine.
 */
const RESTORE_POOL_SILENT_MS = 18_000;
let silentMs = POOL_SILENT_MS;

let lab: TestLab;
let workers: KuraWorkers;
let kura: Kura;
let client: Client;
let close: () => Promise<void>;
/** When the first release was tried, and every attempt's outcome. */
let firstRelease: number | undefined;
const attempts: string[] = [];

/** The pool "does not answer" a release for POOL_SILENT_MS, failing as the client did in the soak. */
const silentPool: ActivityInterceptorsFactory = (ctx) => ({
  inbound: {
    async execute(input, next) {
      if (ctx.info.activityType !== 'releaseStreams') return next(input);
      firstRelease ??= Date.now();
      if (Date.now() - firstRelease < silentMs) {
        attempts.push('failed');
        throw new ServiceError('Workflow Update failed');
      }
      const result = await next(input);
      attempts.push('released');
      return result;
    },
  },
});

beforeAll(async () => {
  lab = await makeLab({ vms: 1, dataVolumeSize: 1024 * 1024, pieceSize: '1MiB', streams: 1, chunks: 1 });
  workers = await startWorkers(lab, lab.loaded, { activityInterceptors: [silentPool] });
  ({ kura, client, close } = await connectKura(lab));
});

afterAll(async () => {
  await close?.();
  await workers?.shutdown();
  lab?.cleanup();
});

/** Every device of the site's pool that some job still holds, as `device:job`. */
async function poolHolders(): Promise<string[]> {
  const tables = await client.workflow.getHandle(poolWorkflowId(lab.site)).query(tablesQuery);
  return [...tables.servers, ...tables.drives, ...tables.tapes, ...tables.switches, ...tables.libraries].flatMap((r) =>
    r.holders.map((h) => `${r.name}:${h.job}`),
  );
}

describe('the release at the end of a backup', () => {
  it('is tried again while the pool does not answer, and the backup completes with its devices released', async () => {
    const source = await sha256(lab.dataVolume('vm-001'));
    const handle = await kura.startBackup('vm-001');
    const report = await handle.result();

    expect(report.sha256).toBe(source);
    const catalog = new Catalog(lab.paths.catalog);
    expect(catalog.backup(report.backupId).status).toBe('complete');
    catalog.close();
    // More attempts than the five the release used to have (all of them failed), the last went through.
    expect(attempts.length).toBeGreaterThan(5);
    expect(attempts.slice(0, 5)).toEqual(['failed', 'failed', 'failed', 'failed', 'failed']);
    expect(attempts.at(-1)).toBe('released');
    const tables = await client.workflow.getHandle(poolWorkflowId(lab.site)).query(tablesQuery);
    const holders = [
      ...tables.servers,
      ...tables.drives,
      ...tables.tapes,
      ...tables.switches,
      ...tables.libraries,
    ].flatMap((r) => r.holders.map((h) => `${r.name}:${h.job}`));
    expect(holders).toEqual([]);
  });

  it("is as patient at the end of a restore's cartridge: the restore completes with the backup's bytes", async () => {
    const backup = await (await kura.startBackup('vm-001')).result();
    // The pool falls silent again from the restore's first release on.
    firstRelease = undefined;
    attempts.length = 0;
    silentMs = RESTORE_POOL_SILENT_MS;
    const dest = path.join(lab.dir, 'restores', 'vm-001.img');
    const restored = await (await kura.startRestore(backup.backupId, dest)).result();

    expect(await sha256(dest)).toBe(backup.sha256);
    expect(restored.sha256).toBe(backup.sha256);
    expect(attempts.length).toBeGreaterThan(5);
    expect(attempts.slice(0, 5)).toEqual(['failed', 'failed', 'failed', 'failed', 'failed']);
    expect(attempts.at(-1)).toBe('released');
    expect(await poolHolders()).toEqual([]);
  });
});
