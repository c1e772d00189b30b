/** The catalog rebuild's control activities: comparing cartridge entries with the catalog, writing the rebuilt file. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { createCatalogRebuildActivities } from '../../src/activities/catalog-rebuild';
import { catalogContents, compareContents } from '../../src/catalog/rebuild';
import { Catalog } from '../../src/catalog/store';
import type { PieceRecord, TapeCatalogEntry } from '../../src/domain/catalog';
import { backupWorkflowId } from '../../src/api/workflow-ids';

const at = '2026-11-22T02:00:00.000Z';

let dir: string;
let catalog: Catalog;
let activities: ReturnType<typeof createCatalogRebuildActivities>;

/** Records a complete one-piece backup of `vm` on `tape` in the catalog and returns its entry on that cartridge. */
function backedUp(vm: string, site: string, tape: string): TapeCatalogEntry {
  const backupId = `${vm}@20261122T020000Z`;
  const job = backupWorkflowId(vm, '2026-11-22T02:00:00Z');
  catalog.beginBackup({
    backupId,
    job,
    site,
    target: vm,
    array: 'array-01',
    volume: `${vm}-data`,
    startedAt: at,
    dataTime: at,
    sizeBytes: 100,
  });
  const piece: PieceRecord = {
    backupId,
    copy: 0,
    piece: 0,
    target: vm,
    job,
    stream: 0,
    startedAt: at,
    endedAt: at,
    dataTime: at,
    library: 'lib-01',
    tape,
    position: 512,
    offset: 0,
    sizeBytes: 100,
    sha256: 'a'.repeat(64),
  };
  const backup = catalog.completeBackup(backupId, { endedAt: at, sha256: 'b'.repeat(64), pieces: [piece] });
  return { backup, pieces: [piece], streams: [] };
}

async function failureOf(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kura-rebuild-'));
  catalog = new Catalog(path.join(dir, 'catalog.db'));
  activities = createCatalogRebuildActivities({ catalog });
});
afterEach(() => {
  catalog.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('compareRebuiltCatalog', () => {
  it("finds the entries of a site equal to that site's catalog, leaving other sites out", async () => {
    const a = backedUp('vm-001', 'hospital', 'L1T001');
    const b = backedUp('vm-002', 'hospital', 'L1T002');
    backedUp('vm-003', 'branch', 'B1T001');
    expect(await activities.compareRebuiltCatalog({ site: 'hospital', entries: [a, b] })).toEqual({
      backups: 2,
      differences: [],
    });
  });

  it('names a backup that no cartridge carries', async () => {
    const a = backedUp('vm-001', 'hospital', 'L1T001');
    backedUp('vm-002', 'hospital', 'L1T002');
    const out = await activities.compareRebuiltCatalog({ site: 'hospital', entries: [a] });
    expect(out.backups).toBe(1);
    expect(out.differences).toEqual([
      'backup vm-002@20261122T020000Z is in the catalog only',
      'piece vm-002@20261122T020000Z#0.0 is in the catalog only',
    ]);
  });

  it('refuses with InvalidInput entries of two cartridges that disagree about a backup', async () => {
    const a = backedUp('vm-001', 'hospital', 'L1T001');
    const other = { ...a, backup: { ...a.backup, sizeBytes: 200 } };
    const err = await failureOf(activities.compareRebuiltCatalog({ site: 'hospital', entries: [a, other] }));
    expect(err.type).toBe('InvalidInput');
    expect(err.nonRetryable).toBe(true);
    expect(err.message).toMatch(/^cartridges disagree about backup vm-001@20261122T020000Z/);
  });
});

describe('writeRebuiltCatalog', () => {
  it('writes a catalog equal to the original, and a retry leaves the same file', async () => {
    const entries = [backedUp('vm-001', 'hospital', 'L1T001'), backedUp('vm-002', 'hospital', 'L1T002')];
    const file = path.join(dir, 'rebuilt.db');
    expect(await activities.writeRebuiltCatalog({ file, entries })).toEqual({ file });
    expect(await activities.writeRebuiltCatalog({ file, entries })).toEqual({ file });
    const rebuilt = new Catalog(file);
    try {
      expect(compareContents(catalogContents(catalog), catalogContents(rebuilt))).toEqual([]);
      expect(rebuilt.listBackups()).toHaveLength(2);
    } finally {
      rebuilt.close();
    }
  });

  it('refuses a relative path and the catalog itself with InvalidInput, writing nothing', async () => {
    const entries = [backedUp('vm-001', 'hospital', 'L1T001')];
    const relative = await failureOf(activities.writeRebuiltCatalog({ file: 'rebuilt.db', entries }));
    expect(relative.type).toBe('InvalidInput');
    expect(relative.message).toBe(`the rebuilt catalog's file must be an absolute path, not "rebuilt.db"`);
    expect(existsSync(path.resolve('rebuilt.db'))).toBe(false);
    const itself = await failureOf(activities.writeRebuiltCatalog({ file: catalog.file, entries }));
    expect(itself.type).toBe('InvalidInput');
    expect(itself.message).toMatch(/cannot be written into the catalog itself/);
  });
});
