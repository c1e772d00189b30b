/** The catalog store: idempotent writes, complete only with every piece, never a partial claim. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Catalog, type NewBackup } from '../../src/catalog/store';
import { catalogContents, compareContents } from '../../src/catalog/rebuild';
import Database from 'better-sqlite3';
import type { BackupModeRecord, PieceRecord } from '../../src/domain/catalog';
import { MIGRATIONS } from '../../src/catalog/migrations';
import { backupIdFor, compactTime } from '../../src/domain/catalog';
import { InvalidInputError, NotFoundError } from '../../src/domain/errors';
import { backupWorkflowId } from '../../src/api/workflow-ids';

let dir: string;
let catalog: Catalog;
const at = '2026-11-22T02:00:00.000Z';
const backup: NewBackup = {
  backupId: 'vm-001@20261122T020000Z',
  job: backupWorkflowId('vm-001', at),
  site: 'hospital',
  target: 'vm-001',
  array: 'array-01',
  volume: 'vm-001-data',
  startedAt: at,
  dataTime: at,
  sizeBytes: 300,
};

function piece(n: number, over: Partial<PieceRecord> = {}): PieceRecord {
  return {
    backupId: backup.backupId,
    copy: 0,
    piece: n,
    target: 'vm-001',
    job: backup.job,
    stream: 0,
    startedAt: at,
    endedAt: at,
    dataTime: at,
    library: 'lib-01',
    tape: 'L1T001',
    position: 512 + n * 612,
    offset: n * 100,
    sizeBytes: 100,
    sha256: String(n).repeat(64),
    ...over,
  };
}

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kura-catalog-'));
  catalog = new Catalog(path.join(dir, 'catalog.db'));
});
afterEach(() => {
  catalog.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the catalog', () => {
  it('records a backup as running, then complete with one row per piece', () => {
    expect(catalog.beginBackup(backup).status).toBe('running');
    const done = catalog.completeBackup(backup.backupId, {
      endedAt: at,
      sha256: null,
      pieces: [piece(0), piece(1), piece(2)],
    });
    expect(done.status).toBe('complete');
    expect(done.pieces).toBe(3);
    expect(catalog.piecesOf(backup.backupId).map((p) => [p.piece, p.tape, p.position, p.offset])).toEqual([
      [0, 'L1T001', 512, 0],
      [1, 'L1T001', 1124, 100],
      [2, 'L1T001', 1736, 200],
    ]);
  });

  it('lists only the backups started since a given time when asked', () => {
    const later = '2026-11-23T02:00:00.000Z';
    catalog.beginBackup(backup);
    catalog.beginBackup({ ...backup, backupId: backupIdFor('vm-001', later), startedAt: later, dataTime: later });
    expect(catalog.listBackups({ since: '2026-11-22T12:00:00.000Z' }).map((b) => b.backupId)).toEqual([
      'vm-001@20261123T020000Z',
    ]);
    expect(catalog.listBackups({ since: at })).toHaveLength(2);
  });

  it('changes nothing when the same begin and completion are recorded again (a retried activity)', () => {
    catalog.beginBackup(backup);
    catalog.beginBackup(backup);
    catalog.completeBackup(backup.backupId, { endedAt: at, sha256: null, pieces: [piece(0), piece(1), piece(2)] });
    catalog.completeBackup(backup.backupId, { endedAt: at, sha256: null, pieces: [piece(0), piece(1), piece(2)] });
    expect(catalog.listBackups()).toHaveLength(1);
    expect(catalog.piecesOf(backup.backupId)).toHaveLength(3);
  });

  it('refuses to mark a backup complete when its pieces do not cover the volume, and records nothing', () => {
    catalog.beginBackup(backup);
    expect(() =>
      catalog.completeBackup(backup.backupId, { endedAt: at, sha256: null, pieces: [piece(0), piece(1)] }),
    ).toThrow(/hold 200 bytes but the volume has 300/);
    expect(catalog.backup(backup.backupId).status).toBe('running');
    expect(catalog.piecesOf(backup.backupId)).toEqual([]);
  });

  it('refuses a different piece under a key already recorded', () => {
    catalog.beginBackup(backup);
    catalog.completeBackup(backup.backupId, { endedAt: at, sha256: null, pieces: [piece(0), piece(1), piece(2)] });
    expect(() =>
      catalog.completeBackup(backup.backupId, {
        endedAt: at,
        sha256: null,
        pieces: [piece(0, { tape: 'L1T002' }), piece(1), piece(2)],
      }),
    ).toThrow(InvalidInputError);
    expect(catalog.piecesOf(backup.backupId)[0]?.tape).toBe('L1T001');
  });

  it('never downgrades a complete backup to failed', () => {
    catalog.beginBackup(backup);
    catalog.completeBackup(backup.backupId, { endedAt: at, sha256: null, pieces: [piece(0), piece(1), piece(2)] });
    catalog.failBackup(backup.backupId, 'late failure', at);
    expect(catalog.backup(backup.backupId).status).toBe('complete');
  });

  it('names an unknown backup and how to list the known ones', () => {
    expect(() => catalog.backup('vm-404@20261122T020000Z')).toThrow(NotFoundError);
    expect(() => catalog.backup('vm-404@20261122T020000Z')).toThrow(/kura catalog list/);
  });

  it('migrates once when several processes open a new catalog at the same moment', async () => {
    const file = path.join(dir, 'shared.db');
    const root = path.resolve(__dirname, '..', '..');
    // Every child loads the code first, then waits for the same instant to open the file.
    const at = Date.now() + 4000;
    const opener = `const { Catalog } = require(${JSON.stringify(path.join(root, 'src', 'catalog', 'store.ts'))}); while (Date.now() < ${at}); new Catalog(${JSON.stringify(file)}).close();`;
    const codes = await Promise.all(
      Array.from(
        { length: 4 },
        () =>
          new Promise<number>((resolve) => {
            const child = spawn(process.execPath, ['--require', 'tsx/cjs', '-e', opener], {
              cwd: root,
              stdio: ['ignore', 'ignore', 'inherit'],
            });
            child.on('exit', (code) => resolve(code ?? -1));
          }),
      ),
    );
    expect(codes).toEqual([0, 0, 0, 0]);
    const shared = new Catalog(file);
    shared.beginBackup(backup);
    expect(shared.listBackups().map((b) => b.backupId)).toEqual([backup.backupId]);
    shared.close();
  });

  it('survives reopening: migrations run once', () => {
    catalog.beginBackup(backup);
    catalog.close();
    catalog = new Catalog(path.join(dir, 'catalog.db'));
    expect(catalog.backup(backup.backupId).target).toBe('vm-001');
  });
});

/** What pg_backup_stop answered for a backup taken in PostgreSQL's backup mode. */
const pgMode: BackupModeRecord = {
  hook: 'postgres',
  enteredAt: '2026-11-22T02:00:00.100Z',
  leftAt: '2026-11-22T02:00:00.350Z',
  seconds: 0.25,
  rounds: 2,
  label:
    'START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nLABEL: op/split-backup/vm-001 round 2\n',
  tablespaceMap: '16385 /srv/ts1\n',
  startLsn: '0/2000028',
  stopLsn: '0/2000138',
};

describe("the catalog's record of the backup mode an image was taken in", () => {
  it('keeps the label, tablespace map and WAL positions with the backup, in every read of it', () => {
    catalog.beginBackup(backup);
    const done = catalog.completeBackup(backup.backupId, {
      endedAt: at,
      sha256: null,
      pieces: [piece(0), piece(1), piece(2)],
      backupMode: pgMode,
    });
    expect(done.backupMode).toEqual(pgMode);
    catalog.close();
    catalog = new Catalog(path.join(dir, 'catalog.db'));
    expect(catalog.backup(backup.backupId).backupMode).toEqual(pgMode);
    expect(catalog.listBackups({ target: 'vm-001', status: 'complete' })[0]?.backupMode).toEqual(pgMode);
  });

  it("keeps a script hook's backup mode without a label, and a backup without a hook without one", () => {
    const script: BackupModeRecord = { hook: 'script', enteredAt: at, leftAt: at, seconds: 0, rounds: 1 };
    catalog.beginBackup(backup);
    catalog.completeBackup(backup.backupId, {
      endedAt: at,
      sha256: null,
      pieces: [piece(0), piece(1), piece(2)],
      backupMode: script,
    });
    const plain = { ...backup, backupId: 'vm-002@20261122T020000Z', target: 'vm-002' };
    catalog.beginBackup(plain);
    catalog.completeBackup(plain.backupId, {
      endedAt: at,
      sha256: null,
      pieces: [0, 1, 2].map((n) => piece(n, { backupId: plain.backupId })),
    });
    expect(catalog.backup(backup.backupId).backupMode).toEqual(script);
    expect(catalog.backup(plain.backupId)).not.toHaveProperty('backupMode');
  });

  it('records the same backup mode again as nothing new, and refuses a different one', () => {
    catalog.beginBackup(backup);
    const done = { endedAt: at, sha256: null, pieces: [piece(0), piece(1), piece(2)], backupMode: pgMode };
    catalog.completeBackup(backup.backupId, done);
    expect(catalog.completeBackup(backup.backupId, done).backupMode).toEqual(pgMode);
    expect(() =>
      catalog.completeBackup(backup.backupId, { ...done, backupMode: { ...pgMode, stopLsn: '0/3000000' } }),
    ).toThrow(InvalidInputError);
    expect(catalog.backup(backup.backupId).backupMode?.stopLsn).toBe('0/2000138');
  });

  it('is carried by the entries written on cartridges, so a rebuilt catalog has the label too', () => {
    catalog.beginBackup(backup);
    const pieces = [piece(0), piece(1), piece(2)];
    const record = catalog.completeBackup(backup.backupId, { endedAt: at, sha256: null, pieces, backupMode: pgMode });
    const rebuilt = new Catalog(':memory:');
    try {
      rebuilt.importEntry({ backup: record, pieces, streams: [] });
      expect(rebuilt.backup(backup.backupId).backupMode).toEqual(pgMode);
      expect(compareContents(catalogContents(catalog), catalogContents(rebuilt))).toEqual([]);
      // A cartridge written before labels were kept says nothing of one: the rebuild names the difference.
      const older = new Catalog(':memory:');
      const { backupMode: _label, ...withoutLabel } = record;
      older.importEntry({ backup: withoutLabel, pieces, streams: [] });
      expect(compareContents(catalogContents(catalog), catalogContents(older))).toEqual([
        expect.stringMatching(/^backup vm-001@20261122T020000Z differs: the catalog has .*"label":"START WAL LOCATION/),
      ]);
      older.close();
    } finally {
      rebuilt.close();
    }
  });

  it('migrates a catalog written before backup modes were kept, whose backups then have none', () => {
    catalog.close();
    const file = path.join(dir, 'old.db');
    const old = new Database(file);
    for (const m of MIGRATIONS.slice(0, 2)) old.exec(m);
    old.pragma('user_version = 2');
    old
      .prepare(
        `INSERT INTO backups (backup_id, job, site, target, array_name, volume, status, started_at, data_time, size_bytes)
         VALUES ('vm-001@20261122T020000Z', 'j', 'hospital', 'vm-001', 'array-01', 'vm-001-data', 'running', ?, ?, 300)`,
      )
      .run(at, at);
    old.close();
    catalog = new Catalog(file);
    expect(catalog.backup(backup.backupId)).not.toHaveProperty('backupMode');
    catalog.completeBackup(backup.backupId, {
      endedAt: at,
      sha256: null,
      pieces: [piece(0), piece(1), piece(2)],
      backupMode: pgMode,
    });
    expect(catalog.backup(backup.backupId).backupMode?.label).toBe(pgMode.label);
  });
});

describe('backup ids', () => {
  it('name the target and the instant, to the second', () => {
    expect(compactTime('2026-11-22T02:00:00.000Z')).toBe('20261122T020000Z');
    expect(backupIdFor('vm-001', '2026-11-22T02:00:05.250Z')).toBe('vm-001@20261122T020005250Z');
  });
});

describe('the catalog rebuilt from cartridge entries', () => {
  const stream = (n: number, tape: string) => ({
    backupId: backup.backupId,
    stream: n,
    server: `bks-0${n + 1}`,
    library: `lib-0${n + 1}`,
    drive: `lib-0${n + 1}-drv-1`,
    tape,
    switches: [`fcsw-0${n + 1}`],
    outcome: 'complete' as const,
    pieces: n === 0 ? 2 : 1,
    error: null,
  });

  it('equals the original when every cartridge entry is imported, and names what differs otherwise', () => {
    catalog.beginBackup(backup);
    const streams = [stream(0, 'L1T001'), stream(1, 'L2T001')];
    const pieces = [piece(0), piece(1), piece(2, { stream: 1, library: 'lib-02', tape: 'L2T001', position: 512 })];
    const record = catalog.completeBackup(backup.backupId, { endedAt: at, sha256: 'f'.repeat(64), pieces, streams });

    const rebuilt = new Catalog(path.join(dir, 'rebuilt.db'));
    try {
      // Each cartridge carries the record, its own pieces and every stream.
      rebuilt.importEntry({ backup: record, pieces: pieces.slice(0, 2), streams });
      rebuilt.importEntry({ backup: record, pieces: pieces.slice(2), streams });
      rebuilt.importEntry({ backup: record, pieces: pieces.slice(2), streams });
      expect(compareContents(catalogContents(catalog), catalogContents(rebuilt))).toEqual([]);

      const partial = new Catalog(path.join(dir, 'partial.db'));
      partial.importEntry({ backup: record, pieces: pieces.slice(0, 2), streams });
      expect(compareContents(catalogContents(catalog), catalogContents(partial))).toEqual([
        `piece ${backup.backupId}#0.2 is in the catalog only`,
      ]);
      partial.close();

      expect(() => rebuilt.importEntry({ backup: { ...record, sha256: 'e'.repeat(64) }, pieces: [], streams })).toThrow(
        /cartridges disagree about backup vm-001@20261122T020000Z/,
      );
    } finally {
      rebuilt.close();
    }
  });
});

describe("the catalog's record of how a store backup found its changed chunks", () => {
  const storeFacts = {
    store: 'primary' as const,
    chunkSize: 100,
    chunks: 3,
    newChunks: 1,
    storedBytes: 100,
    readBytes: 300,
  };
  const storePiece = piece(0, { library: 'store', tape: 'primary', position: 0, offset: 0, sizeBytes: 300 });

  it('keeps changedFrom, the note and the chunks read with the store backup', () => {
    catalog.beginBackup(backup);
    catalog.completeStoreBackup(
      backup.backupId,
      { endedAt: at, sha256: null, pieces: [storePiece] },
      { ...storeFacts, changedFrom: 'bitmap', changeNote: '1 chunk(s) marked by bitmap kura-1', readChunks: 1 },
    );
    expect(catalog.storeBackup(backup.backupId)).toMatchObject({
      changedFrom: 'bitmap',
      changeNote: '1 chunk(s) marked by bitmap kura-1',
      readChunks: 1,
    });
    expect(catalog.listStoreBackups({ target: 'vm-001' })[0]!.store.changedFrom).toBe('bitmap');
  });

  it('migrates a catalog written before they were kept: its store backups say nothing of them', () => {
    catalog.close();
    const file = path.join(dir, 'old.db');
    const before = MIGRATIONS.findIndex((m) => m.includes('changed_from'));
    const old = new Database(file);
    for (const m of MIGRATIONS.slice(0, before)) old.exec(m);
    old.pragma(`user_version = ${before}`);
    old
      .prepare(
        `INSERT INTO backups (backup_id, job, site, target, array_name, volume, status, started_at, data_time, size_bytes)
         VALUES ('vm-001@20261122T020000Z', 'j', 'hospital', 'vm-001', 'array-01', 'vm-001-data', 'complete', ?, ?, 300)`,
      )
      .run(at, at);
    old
      .prepare(
        `INSERT INTO store_backups (backup_id, store, chunk_size, chunks, new_chunks, stored_bytes, read_bytes)
         VALUES ('vm-001@20261122T020000Z', 'primary', 100, 3, 3, 300, 300)`,
      )
      .run();
    old.close();
    catalog = new Catalog(file);
    expect(catalog.storeBackup(backup.backupId)).toMatchObject({
      chunks: 3,
      changedFrom: null,
      changeNote: null,
      readChunks: null,
    });
  });
});

describe("the catalog's link from a tape copy to the store backup it came from (docs/adr/042)", () => {
  const link = { backupId: 'vm-001@20261121T020000Z', sha256: 'c'.repeat(64) };

  it('keeps the link with the tape backup in every read of it, and finds the copies of a store backup', () => {
    catalog.beginBackup({ ...backup, fromStore: link });
    // A retried begin changes nothing, the link included.
    catalog.beginBackup({ ...backup, fromStore: link });
    expect(catalog.backup(backup.backupId).fromStore).toEqual(link);
    expect(catalog.tapeCopiesOf(link.backupId)).toEqual([]);
    const record = catalog.completeBackup(backup.backupId, {
      endedAt: at,
      sha256: link.sha256,
      pieces: [piece(0), piece(1), piece(2)],
    });
    expect(record.fromStore).toEqual(link);
    expect(catalog.listBackups().map((b) => b.fromStore)).toEqual([link]);
    expect(catalog.tapeCopiesOf(link.backupId).map((b) => b.backupId)).toEqual([backup.backupId]);
    expect(catalog.tapeCopiesOf('vm-001@20261120T020000Z')).toEqual([]);
  });

  it('is carried by the entries written on cartridges, so a rebuilt catalog has it too', () => {
    catalog.beginBackup({ ...backup, fromStore: link });
    const pieces = [piece(0), piece(1), piece(2)];
    const record = catalog.completeBackup(backup.backupId, { endedAt: at, sha256: null, pieces });
    const rebuilt = new Catalog(':memory:');
    try {
      rebuilt.importEntry({ backup: record, pieces, streams: [] });
      expect(rebuilt.backup(backup.backupId).fromStore).toEqual(link);
      expect(compareContents(catalogContents(catalog), catalogContents(rebuilt))).toEqual([]);
    } finally {
      rebuilt.close();
    }
  });

  it('leaves a backup that is no copy of a store backup without one', () => {
    catalog.beginBackup(backup);
    expect('fromStore' in catalog.backup(backup.backupId)).toBe(false);
  });
});
