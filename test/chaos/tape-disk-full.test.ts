/**
 * Chaos: the file system holding the lab's cartridge files fills up during a tape backup (a small
 * ext4 on a loop device, as root). The copy fails with StorageFull naming the cartridge and its
 * directory, which the failed job gives as its stream's reason; no drive is marked unavailable or
 * tried again (the disk is full, the drive is sound), the catalog claims no backup that is not
 * complete, the pool holds nothing, and once there is room the same VM backs up and restores
 * byte-identical.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { Catalog } from '../../src/catalog/store';
import { LabState } from '../../src/lab/state';
import { poolWorkflowId, type Kura } from '../../src/client';
import { tablesQuery } from '../../src/messages';
import type { Client } from '@temporalio/client';
import type { KuraWorkers } from '../../src/worker';
import { SmallFileSystem } from '../support/small-fs';
import { connectKura, failureOf, makeLab, sha256, startWorkers, type TestLab } from '../support/harness';

const MiB = 1024 * 1024;

let lab: TestLab;
let workers: KuraWorkers;
let kura: Kura;
let client: Client;
let close: () => Promise<void>;
let libraries: string;
let small: SmallFileSystem | undefined;

beforeAll(async () => {
  lab = await makeLab({ vms: 1, dataVolumeSize: 8 * MiB, pieceSize: '1MiB', streams: 1, deviceAttempts: 2 });
  // A 4 MiB ext4 (about 2.5 MiB usable) mounted where the site's cartridge files live, holding
  // copies of them: the 8 MiB volume does not fit on it.
  libraries = path.join(lab.paths.lab, lab.site, 'libraries');
  const image = path.join(lab.dir, 'small-fs.img');
  const saved = mkdtempSync(path.join(lab.dir, 'cartridges-'));
  cpSync(libraries, saved, { recursive: true });
  small = SmallFileSystem.mount(image, libraries);
  cpSync(saved, libraries, { recursive: true });
  rmSync(saved, { recursive: true, force: true });
  workers = await startWorkers(lab);
  ({ kura, client, close } = await connectKura(lab));
});

afterAll(async () => {
  await close?.();
  await workers?.shutdown();
  small?.unmount();
  lab?.cleanup();
});

describe('the cartridges’ file system full during a tape backup', () => {
  it('fails the copy with StorageFull, blames no drive, claims nothing, and restores once there is room', async () => {
    const err = await (await kura.startBackup('vm-001')).result().then(
      (r) => new Error(`the backup completed on a full file system: ${JSON.stringify(r)}`),
      (e: unknown) => e,
    );
    // The copy's StorageFull reaches the job as the reason its one stream failed.
    const f = failureOf(err);
    const reason = `StorageFull: the file system holding cartridge L1T001 of library lib-01 (${libraries}/lib-01) is full (no space left on it); free space there or grow it, then run the job again`;
    expect(f.message).toContain(`stream 0 (bks-01 → fcsw-01 → lib-01/lib-01-drv-1, L1T001): ${reason}`);

    // Not a fault of the drive: it is not marked unavailable, and the copy was not tried on it again.
    const state = new LabState(lab.paths.labState);
    const starts = state.events({ device: 'lib-01-drv-1', event: 'copy-start' }).map((e) => e.detail.piece);
    state.close();
    expect(starts).toEqual([...new Set(starts)]);
    const tables = await client.workflow.getHandle(poolWorkflowId(lab.site)).query(tablesQuery);
    expect(tables.drives.filter((d) => d.state !== 'available').map((d) => [d.name, d.reason])).toEqual([]);
    const held = [...tables.servers, ...tables.drives, ...tables.tapes, ...tables.switches].filter(
      (r) => r.holders.length > 0,
    );
    expect(held).toEqual([]);

    const catalog = new Catalog(lab.paths.catalog);
    const rows = catalog.listBackups({ site: lab.site });
    catalog.close();
    expect(rows.map((r) => [r.status, r.pieces])).toEqual([['failed', 0]]);
    expect(rows[0]!.error).toContain(reason);

    // With room again (the cartridges back on the lab's own file system), the backup runs and restores.
    small!.unmount();
    const source = await sha256(lab.dataVolume('vm-001'));
    const report = await (await kura.startBackup('vm-001')).result();
    expect(report.sha256).toBe(source);
    const dest = path.join(lab.dir, 'restores', 'after-full.img');
    await (await kura.startRestore(report.backupId, dest)).result();
    expect(await sha256(dest)).toBe(source);
  });
});
