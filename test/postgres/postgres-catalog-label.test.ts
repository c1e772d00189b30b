/**
 * The backup label a split-backup with the `postgres` hook got from pg_backup_stop is kept with the
 * image: in the catalog (shown by `kura catalog show`, written into a data directory by
 * `kura catalog label --write`), in the catalog block on the cartridge, and in a restore's result.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { Catalog } from '../../src/catalog/store';
import { LabArrayFunctions } from '../../src/drivers/lab/array-functions';
import { LabTapeLibrary } from '../../src/drivers/lab/tape';
import { LabState } from '../../src/lab/state';
import type { BackupReport } from '../../src/domain/jobs';
import type { KuraWorkers } from '../../src/worker';
import type { Kura } from '../../src/client';
import {
  cliJson,
  connectKura,
  eventually,
  makeLab,
  runKura,
  sha256,
  startWorkers,
  type TestLab,
} from '../support/harness';
import { PG_PASSWORD, startPostgres, type TestPostgres } from '../support/postgres';

let pg: TestPostgres;
let lab: TestLab;
let workers: KuraWorkers;
let kura: Kura;
let close: () => Promise<void>;
let state: LabState;
let report: BackupReport;

beforeAll(async () => {
  pg = await startPostgres();
  process.env.KURA_TEST_PG_PASSWORD = PG_PASSWORD;
  lab = await makeLab({
    vms: 1,
    dataVolumeSize: 4 * 1024 * 1024,
    pieceSize: '1MiB',
    streams: 1,
    chunks: 4,
    edit: (cfg) => {
      const site = cfg.sites[0]!;
      site.arrays[0]!.freePool = { size: '64MiB', replicas: 4, copyRate: '64MiB' };
      site.hooks = [
        {
          target: 'vm-001',
          kind: 'postgres',
          host: '127.0.0.1',
          port: pg.port,
          user: 'postgres',
          timeout: '10s',
          passwordEnv: 'KURA_TEST_PG_PASSWORD',
        },
      ];
    },
  });
  workers = await startWorkers(lab);
  ({ kura, close } = await connectKura(lab));
  state = new LabState(lab.paths.labState);
  const arrays = new LabArrayFunctions(lab.loaded, lab.paths, state);
  const ref = { site: lab.site, array: 'array-01', volume: 'vm-001-data' };
  await arrays.createPair(ref);
  await eventually(async () => (await arrays.pairStatus(ref)).state === 'in-sync', 15_000);
  report = await (await kura.startBackup('vm-001', { method: 'split' })).result();
});

afterAll(async () => {
  state?.close();
  await close?.();
  await workers?.shutdown();
  lab?.cleanup();
  await pg?.stop();
});

describe('the backup label of a split-backup with the postgres hook', () => {
  it('is recorded in the catalog with the image, as the report gives it', () => {
    const mode = report.backupMode!;
    expect(mode.label).toContain(`START WAL LOCATION: ${mode.startLsn}`);
    const catalog = new Catalog(lab.paths.catalog);
    try {
      expect(catalog.backup(report.backupId).backupMode).toEqual(mode);
    } finally {
      catalog.close();
    }
  });

  it('is shown by `kura catalog show`, in words and in JSON', async () => {
    const mode = report.backupMode!;
    const shown = await runKura(lab, ['catalog', 'show', report.backupId]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(
      `  backup mode (postgres): ${mode.enteredAt} to ${mode.leftAt}, ${mode.seconds} s, 1 round, WAL ${mode.startLsn} to ${mode.stopLsn}`,
    );
    expect(shown.stdout).toContain(`kura catalog label ${report.backupId} --write <dir>`);
    for (const line of mode.label!.trimEnd().split('\n')) expect(shown.stdout).toContain(`\n    ${line}\n`);

    const json = cliJson<{ backup: { backupMode: unknown } }>(
      await runKura(lab, ['--json', 'catalog', 'show', report.backupId]),
    );
    expect(json.backup.backupMode).toEqual(mode);
  });

  it('is written into a data directory by `kura catalog label --write`, readable by its owner only, and never over one there', async () => {
    const mode = report.backupMode!;
    const printed = await runKura(lab, ['catalog', 'label', report.backupId]);
    expect(printed.stdout).toBe(`${mode.label}\n`);

    const data = path.join(lab.dir, 'restored-pgdata');
    mkdirSync(data);
    const written = await runKura(lab, ['catalog', 'label', report.backupId, '--write', data]);
    expect(written.code).toBe(0);
    expect(written.stdout).toBe(`wrote ${path.join(data, 'backup_label')} for ${report.backupId}\n`);
    expect(readFileSync(path.join(data, 'backup_label'), 'utf8')).toBe(mode.label);
    // No tablespaces in this cluster: an empty map is not written.
    expect(mode.tablespaceMap).toBe('');
    expect(existsSync(path.join(data, 'tablespace_map'))).toBe(false);
    expect(statSync(path.join(data, 'backup_label')).mode & 0o777).toBe(0o600);

    const again = await runKura(lab, ['catalog', 'label', report.backupId, '--write', data]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/DestinationExists: .*backup_label already exists; Kura does not overwrite it/);
    expect(readFileSync(path.join(data, 'backup_label'), 'utf8')).toBe(mode.label);
  });

  it("is in the catalog block written on the image's cartridge, so a rebuild from tapes keeps it", async () => {
    const piece = report.pieces[0]!;
    const tape = new LabTapeLibrary(lab.loaded, lab.paths, state);
    const entries = await tape.readCatalog(lab.site, piece.library, piece.tape);
    const entry = entries.find((e) => e.backup.backupId === report.backupId);
    expect(entry?.backup.backupMode).toEqual(report.backupMode);
  });

  it("comes back in the restore's result beside the restored image", async () => {
    const dest = path.join(lab.paths.restoreRoots[0]!, 'vm-001-labelled.img');
    const restored = await (await kura.startRestore(report.backupId, dest)).result();
    expect(restored.sha256).toBe(report.sha256);
    expect(await sha256(dest)).toBe(report.sha256);
    expect(restored.backupMode).toEqual(report.backupMode);
  });
});
