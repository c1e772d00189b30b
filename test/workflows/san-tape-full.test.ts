/**
 * Step 5's re-plan on a full cartridge: the chunks already written stay on it, one more stream with
 * another cartridge is reserved and mounted, and the copy goes on there; the backup restores
 * byte-identical from both cartridges and every device is released.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open } from 'node:fs/promises';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { Catalog } from '../../src/catalog/store';
import { labCartridgePath } from '../../src/lab/files';
import { planQuery, tablesQuery } from '../../src/messages';
import { connectKura, makeLab, sha256, startWorkers, type TestLab } from '../support/harness';
import type { KuraWorkers } from '../../src/worker';
import { poolWorkflowId, type Kura } from '../../src/client';

const MiB = 1024 * 1024;
const CAPACITY = 8 * MiB;

let lab: TestLab;
let workers: KuraWorkers;
let kura: Kura;
let client: Client;
let close: () => Promise<void>;

beforeAll(async () => {
  // One stream, four chunks of 1 MiB, cartridges of 8 MiB.
  lab = await makeLab({
    vms: 1,
    dataVolumeSize: 4 * MiB,
    pieceSize: '1MiB',
    streams: 1,
    chunks: 4,
    cartridgeCapacity: CAPACITY,
  });
  workers = await startWorkers(lab);
  ({ kura, client, close } = await connectKura(lab));
});

afterAll(async () => {
  await close?.();
  await workers?.shutdown();
  lab?.cleanup();
});

describe('a cartridge fills during the copy', () => {
  it('continues on the next cartridge from the chunk that did not fit, and restores byte-identical', async () => {
    // The first cartridge the pool grants holds data the pool does not know of (written by another
    // system): after two of the four chunks it is full.
    const first = labCartridgePath(lab.paths, lab.site, 'lib-01', 'L1T001');
    const fh = await open(first, 'r+');
    try {
      await fh.truncate(CAPACITY - 2 * (MiB + 512) - 100 * 1024);
    } finally {
      await fh.close();
    }
    const source = await sha256(lab.dataVolume('vm-001'));
    const handle = await kura.startBackup('vm-001');
    const report = await handle.result();

    expect(report.sha256).toBe(source);
    expect(report.pieces.map((p) => [p.piece, p.tape])).toEqual([
      [0, 'L1T001'],
      [1, 'L1T001'],
      [2, report.pieces[2]!.tape],
      [3, report.pieces[2]!.tape],
    ]);
    expect(report.pieces[2]!.tape).not.toBe('L1T001');
    expect(report.changes).toHaveLength(1);
    expect(report.changes?.[0]).toMatchObject({ step: 'copy:2', what: 'chunks 2–3 continue on another cartridge' });
    expect(report.changes?.[0]?.why).toMatch(/cartridge L1T001 in lib-01\/lib-01-drv-\d filled at chunk 2/);

    const plan = await handle.query(planQuery);
    const ids = plan.steps.map((s) => s.id);
    expect(ids.indexOf('load:1')).toBeGreaterThan(ids.indexOf('copy:1'));
    expect(ids.indexOf('load:1')).toBeLessThan(ids.indexOf('copy:2'));
    expect(plan.steps.every((s) => s.status === 'done')).toBe(true);

    const catalog = new Catalog(lab.paths.catalog);
    try {
      expect(catalog.backup(report.backupId).status).toBe('complete');
      expect(new Set(catalog.piecesOf(report.backupId).map((p) => p.tape)).size).toBe(2);
    } finally {
      catalog.close();
    }
    const dest = path.join(lab.dir, 'restores', 'vm-001.img');
    await (await kura.startRestore(report.backupId, dest)).result();
    expect(await sha256(dest)).toBe(source);

    const t = await client.workflow.getHandle(poolWorkflowId(lab.site)).query(tablesQuery);
    expect([...t.servers, ...t.drives, ...t.tapes, ...t.switches].flatMap((r) => r.holders)).toEqual([]);
  });
});
