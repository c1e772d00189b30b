/**
 * The catalog rebuilt from cartridges by the `catalogRebuild` workflow, against a real Temporal
 * server and real lab files, after backups on both libraries: every cartridge is read in a drive
 * the pool granted, the rebuilt contents equal the catalog's, nothing stays reserved, zoned or
 * loaded, and a cartridge whose drive cannot be had is reported by name.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { Catalog } from '../../src/catalog/store';
import { catalogContents, compareContents, contentsOfEntries } from '../../src/catalog/rebuild';
import { catalogRebuildWorkflowId } from '../../src/api/workflow-ids';
import type { CatalogRebuildReport } from '../../src/domain/catalog-rebuild';
import type { BackupReport } from '../../src/domain/jobs';
import type { PoolTables } from '../../src/domain/pool';
import { LabState } from '../../src/lab/state';
import { catalogRebuildProgressQuery } from '../../src/messages';
import {
  connectKura,
  eventually,
  makeLab,
  repairLab,
  startWorkers,
  unavailableDevices,
  type TestLab,
} from '../support/harness';
import type { KuraWorkers } from '../../src/worker';
import type { Kura } from '../../src/client';

const MiB = 1024 * 1024;

let lab: TestLab;
let workers: KuraWorkers;
let kura: Kura;
let close: () => Promise<void>;
let state: LabState;
let seq = 0;

beforeAll(async () => {
  // Two libraries (lib-01 behind bks-01, lib-02 behind bks-02), each with two drives and four cartridges.
  lab = await makeLab({ vms: 3, dataVolumeSize: 2 * MiB, pieceSize: '512KiB' });
  workers = await startWorkers(lab);
  ({ kura, close } = await connectKura(lab));
  state = new LabState(lab.paths.labState);
  // Copies on both libraries (parallel), one on lib-01 alone, and one cut over both by a failover.
  const backups: Promise<BackupReport>[] = [
    kura.startBackup('vm-001', { requestedAt: at(), mode: 'parallel' }).then((h) => h.result()),
    kura.startBackup('vm-002', { requestedAt: at(), streams: 1 }).then((h) => h.result()),
  ];
  for (const b of await Promise.all(backups)) expect(b.pieces.length).toBeGreaterThan(0);
  state.addFault({ device: 'bks-01', kind: 'fail', after: { percent: 50 }, once: false });
  const split: BackupReport = await (await kura.startBackup('vm-003', { requestedAt: at() })).result();
  expect(new Set(split.pieces.map((p) => p.library))).toEqual(new Set(['lib-01', 'lib-02']));
  await repair();
});

afterAll(async () => {
  state?.clearFaults();
  await close?.();
  await workers?.shutdown();
  state?.close();
  lab?.cleanup();
});

afterEach(repair);

const pool = (): Promise<PoolTables> => kura.pool.tables(lab.site);

function markDevice(device: string, up: boolean, reason?: string): Promise<unknown> {
  return kura.pool.mark(lab.site, { device, state: up ? 'available' : 'unavailable', reason });
}

/** Clears the faults and brings every device back into service. */
function repair(): Promise<void> {
  return repairLab(kura, lab.site, state);
}

const unavailable = (t: PoolTables): string[] => unavailableDevices(t).map((d) => d.name);
const until = eventually;

/** A distinct request time per job, so no two jobs share a workflow id. */
function at(): string {
  return new Date(Date.UTC(2026, 10, 23, 3, 0, 0, ++seq)).toISOString();
}

/** Every drive free and empty, every cartridge unheld and unloaded, no zone left on the fabric. */
async function expectClean(): Promise<void> {
  const tables = await pool();
  const held = [...tables.servers, ...tables.libraries, ...tables.drives, ...tables.tapes, ...tables.switches].flatMap(
    (r) => r.holders.map((h) => `${r.name}:${h.job}`),
  );
  expect(held).toEqual([]);
  expect(tables.drives.map((d) => d.state)).toEqual(tables.drives.map(() => 'available'));
  expect(tables.drives.map((d) => state.driveContents(lab.site, d.name))).toEqual(tables.drives.map(() => null));
  expect(tables.tapes.map((t) => state.driveHolding(lab.site, t.name))).toEqual(tables.tapes.map(() => null));
  expect(state.zones(lab.site)).toEqual([]);
}

/** The cartridges loaded since `since`, each with the drive it went into. */
function loadsSince(since: number): { tape: string; library: string; drive: string }[] {
  return state
    .events({ event: 'load', since })
    .filter((e) => e.detail.site === lab.site)
    .map((e) => ({ tape: String(e.detail.tape), library: String(e.detail.library), drive: e.device }));
}

const lastSeq = () => state.events().at(-1)?.seq ?? 0;

describe('the catalogRebuild workflow', () => {
  it('reads every cartridge of both libraries in pool-granted drives and finds the catalog equal', async () => {
    const since = lastSeq();
    const out = path.join(lab.dir, 'rebuilt-all.db');
    const requestedAt = at();
    const handle = await kura.startCatalogRebuild({ site: lab.site, requestedAt, out });
    expect(handle.workflowId).toBe(catalogRebuildWorkflowId(lab.site, requestedAt));
    const report: CatalogRebuildReport = await handle.result();

    expect(report.unread).toEqual([]);
    expect([report.cartridges, report.cartridgesTotal]).toEqual([8, 8]);
    expect(report.differences).toEqual([]);
    const current = new Catalog(lab.paths.catalog);
    const written = new Catalog(out);
    try {
      const contents = catalogContents(current, lab.site);
      expect(contents.backups.map((b) => b.target).sort()).toEqual(['vm-001', 'vm-002', 'vm-003']);
      expect(report.backups).toBe(3);
      expect(compareContents(contents, contentsOfEntries(report.entries))).toEqual([]);
      // The file the workflow wrote holds the same: the catalog could be replaced by it.
      expect(compareContents(contents, catalogContents(written))).toEqual([]);
    } finally {
      current.close();
      written.close();
    }
    expect(new Set(report.entries.flatMap((e) => e.pieces.map((p) => p.library)))).toEqual(
      new Set(['lib-01', 'lib-02']),
    );

    // Each cartridge was mounted once, in a drive of its own library.
    const loads = loadsSince(since);
    expect(loads.map((l) => l.tape).sort()).toEqual(
      ['L1T001', 'L1T002', 'L1T003', 'L1T004', 'L2T001', 'L2T002', 'L2T003', 'L2T004'].sort(),
    );
    for (const l of loads) expect(l.drive.startsWith(`${l.library}-drv-`)).toBe(true);

    const progress = await handle.query(catalogRebuildProgressQuery);
    expect(progress).toMatchObject({ phase: 'done', cartridges: 8, cartridgesTotal: 8, unread: [] });
    expect(progress.entries).toBe(report.entries.length);
    expect(progress.libraries.map((l) => [l.library, l.done, l.total, l.state])).toEqual([
      ['lib-01', 4, 4, 'done'],
      ['lib-02', 4, 4, 'done'],
    ]);
    await expectClean();
  });

  it('reads through the other drive of a library whose first drive is marked unavailable', async () => {
    await markDevice('lib-01-drv-1', false, 'head cleaning');
    await until(async () => unavailable(await pool()).length === 1);
    const since = lastSeq();
    const report: CatalogRebuildReport = await (
      await kura.startCatalogRebuild({ site: lab.site, requestedAt: at() })
    ).result();
    expect(report.unread).toEqual([]);
    expect(report.differences).toEqual([]);
    expect(report.file).toBeNull();
    const drives = loadsSince(since).filter((l) => l.library === 'lib-01');
    expect(drives.map((l) => l.drive)).toEqual(['lib-01-drv-2', 'lib-01-drv-2', 'lib-01-drv-2', 'lib-01-drv-2']);
    // The drive marked unavailable stays so, with its reason; everything else is free again.
    const tables = await pool();
    expect(tables.drives.find((d) => d.name === 'lib-01-drv-1')).toMatchObject({
      state: 'unavailable',
      reason: 'head cleaning',
      holders: [],
    });
    await repair();
    await expectClean();
  });

  it('reports by name every cartridge whose drive cannot be had, reads the others, and writes no file', async () => {
    await markDevice('lib-01-drv-1', false, 'head failure');
    await markDevice('lib-01-drv-2', false, 'sent for repair');
    await until(async () => unavailable(await pool()).length === 2);
    const since = lastSeq();
    const out = path.join(lab.dir, 'rebuilt-partial.db');
    const handle = await kura.startCatalogRebuild({
      site: lab.site,
      requestedAt: at(),
      out,
      tuning: { reserveWaitMs: 300 },
    });
    const report: CatalogRebuildReport = await handle.result();

    expect(report.unread.map((u) => [u.library, u.tape, u.type])).toEqual([
      ['lib-01', 'L1T001', 'NoResources'],
      ['lib-01', 'L1T002', 'NoResources'],
      ['lib-01', 'L1T003', 'NoResources'],
      ['lib-01', 'L1T004', 'NoResources'],
    ]);
    for (const u of report.unread) {
      // The drives are out until a person brings them back: each cartridge is refused at once,
      // naming the drives, their reasons and how to bring them back, rather than waiting.
      expect(u.message).toContain(
        `cartridge ${u.tape} cannot be had: lib-01-drv-1 is unavailable: head failure; lib-01-drv-2 is unavailable: sent for repair`,
      );
      expect(u.message).toContain('`kura pool mark lib-01-drv-1 available`');
    }
    expect([report.cartridges, report.cartridgesTotal]).toEqual([4, 8]);
    expect(loadsSince(since).map((l) => l.library)).toEqual(['lib-02', 'lib-02', 'lib-02', 'lib-02']);
    // What lies on lib-01 alone is missing from the rebuilt contents, and said so.
    expect(report.differences.length).toBeGreaterThan(0);
    expect(report.differences.some((d) => /^backup vm-002@\S+ is in the catalog only$/.test(d))).toBe(true);
    expect(report.file).toBeNull();
    expect(existsSync(out)).toBe(false);

    const progress = await handle.query(catalogRebuildProgressQuery);
    expect(progress.unread.map((u) => u.tape).sort()).toEqual(['L1T001', 'L1T002', 'L1T003', 'L1T004']);
    const tables = await pool();
    expect(tables.drives.filter((d) => d.holders.length > 0)).toEqual([]);
    await repair();
    await expectClean();
  });
});
