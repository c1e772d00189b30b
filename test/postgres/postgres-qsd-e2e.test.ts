/**
 * End to end on a qemu-storage-daemon array: PostgreSQL 15 with its data directory on ext4 on a qsd
 * volume and pgbench writing throughout; a split-backup and a snapshot-backup each go to tape
 * through the engine with the `postgres` hook; each image is restored to a new volume of the array,
 * a second PostgreSQL starts on it from the backup label with the WAL stored with the image, and
 * recovers to a cluster pg_amcheck finds sound and whose balances agree with pgbench's history.
 */
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Kura } from '../../src/client';
import type { BackupReport } from '../../src/domain/jobs';
import { freePort } from '../../src/stack/devserver';
import type { KuraWorkers } from '../../src/worker';
import { connectKura, startWorkers } from '../support/harness';
import {
  keepWal,
  pgAmcheck,
  postgresDir,
  pgbenchInit,
  pgbenchSums,
  PG_VOLUME_BYTES,
  startPgbench,
  startPgOnVolume,
  startRecovered,
  walSegmentOf,
  type PgbenchRun,
  type PgOnVolume,
} from '../support/pg-on-qsd';
import { PG_PASSWORD } from '../support/postgres';
import { makeQsdLab, QSD_ARRAY, type QsdTestLab } from '../support/qsd-site';

let lab: QsdTestLab;
let workers: KuraWorkers;
let kura: Kura;
let close: () => Promise<void>;
let pg: PgOnVolume;
let bench: PgbenchRun;
const walDirs: string[] = [];

beforeAll(async () => {
  const port = await freePort();
  process.env.KURA_TEST_PG_PASSWORD = PG_PASSWORD;
  lab = await makeQsdLab({
    vms: 1,
    dataVolumeSize: PG_VOLUME_BYTES,
    // A replica or snapshot and the two restored volumes at once.
    freePool: 4 * PG_VOLUME_BYTES,
    pieceSize: '8MiB',
    streams: 1,
    chunks: 4,
    edit: (cfg) => {
      cfg.sites[0]!.hooks = [
        {
          target: 'vm-001',
          kind: 'postgres',
          host: '127.0.0.1',
          port,
          user: 'postgres',
          passwordEnv: 'KURA_TEST_PG_PASSWORD',
          timeout: '60s',
          // The stop returns once the WAL up to the backup's end is archived: the image needs it.
          waitForArchive: true,
        },
      ];
    },
  });
  workers = await startWorkers(lab);
  ({ kura, close } = await connectKura(lab));
  pg = await startPgOnVolume(lab.array(), 'vm-001-data', { port });
  await pgbenchInit(pg, 1);
  bench = startPgbench(pg, { clients: 2 });
}, 300_000);

afterAll(async () => {
  await bench?.stop();
  await pg?.stop();
  await close?.();
  await workers?.shutdown();
  await lab?.cleanupQsd();
  for (const d of walDirs) rmSync(d, { recursive: true, force: true });
}, 120_000);

/**
 * Restores the backup to a new volume of the array, starts PostgreSQL on it from the report's backup
 * label with the WAL kept after the backup, and checks the recovered cluster.
 */
async function restoreAndRecover(report: BackupReport, volume: string, wal: string): Promise<void> {
  const restored = await (await kura.startRestore(report.backupId, { array: QSD_ARRAY, volume })).result();
  expect(restored.sha256).toBe(report.sha256);
  expect(restored.volume?.volume).toBe(volume);

  const mode = report.backupMode!;
  const copy = await startRecovered(lab.array(), volume, mode, wal);
  try {
    const log = await copy.log();
    // It recovered from the backup's start, as the label says, and reached the backup's end.
    expect(log).toContain(`redo starts at ${mode.startLsn}`);
    expect(log).toContain('consistent recovery state reached');
    const check = await pgAmcheck(copy.server, copy.sockDir);
    expect(check).toEqual({ code: 0, output: '' });
    const sums = await pgbenchSums(copy.server);
    expect(sums.transactions).toBeGreaterThan(0);
    expect(sums.accounts).toBe(sums.history);
    expect(sums.tellers).toBe(sums.history);
    expect(sums.branches).toBe(sums.history);
  } finally {
    await copy.stop();
  }
}

/** Keeps the WAL archived so far with the image, and checks it reaches the backup's end. */
async function walOf(report: BackupReport, name: string): Promise<string> {
  // Off the lab's directory, which only root may enter: the restored server reads it as postgres.
  const dir = await postgresDir(`kpq-${name}-`);
  walDirs.push(dir);
  const kept = await keepWal(pg.archive, dir);
  expect(kept).toContain(walSegmentOf(report.backupMode!.stopLsn!));
  return dir;
}

describe('PostgreSQL on a qemu-storage-daemon volume, with pgbench writing throughout', () => {
  it('a split-backup in backup mode goes to tape, restores to a new volume and recovers consistent', async () => {
    const a = lab.array();
    await lab.qsd.createPair(lab.ref('vm-001'));
    expect((await a.waitPair('vm-001-data', 'in-sync', 120_000)).state).toBe('in-sync');
    const before = (await pgbenchSums(pg.server)).transactions;

    const report = await (await kura.startBackup('vm-001', { method: 'split' })).result();
    expect(report.source?.from).toBe('replica');
    expect(report.backupMode).toMatchObject({ hook: 'postgres', rounds: 1 });
    // pgbench kept writing while the backup ran.
    expect((await pgbenchSums(pg.server)).transactions).toBeGreaterThan(before);

    try {
      await restoreAndRecover(report, 'vm-001-split', await walOf(report, 'split'));
    } finally {
      // A snapshot cannot be taken while the pair's mirror holds the volume.
      await lab.qsd.deletePair(lab.ref('vm-001'));
    }
  }, 600_000);

  it('a snapshot-backup in backup mode goes to tape, restores to a new volume and recovers consistent', async () => {
    const before = (await pgbenchSums(pg.server)).transactions;
    const report = await (await kura.startBackup('vm-001', { method: 'snapshot' })).result();
    expect(report.source?.from).toBe('snapshot');
    expect(report.backupMode).toMatchObject({ hook: 'postgres', rounds: 1 });
    expect((await pgbenchSums(pg.server)).transactions).toBeGreaterThan(before);

    await restoreAndRecover(report, 'vm-001-snap', await walOf(report, 'snapshot'));
  }, 600_000);

  it("the source cluster's balances agree with pgbench's history after its run", async () => {
    const before = (await pgbenchSums(pg.server)).transactions;
    await bench.stop();
    const sums = await pgbenchSums(pg.server);
    expect(sums.accounts).toBe(sums.history);
    expect(sums.tellers).toBe(sums.history);
    expect(sums.branches).toBe(sums.history);
    expect(sums.transactions).toBeGreaterThanOrEqual(before);
  });
});
