/**
 * Split benchmark (seed 003's non-stop backup: the application keeps running while its volume is
 * backed up, and backup mode lasts only as long as the split, not as long as the copy to tape).
 * PostgreSQL 15 on ext4 on a qemu-storage-daemon volume, pgbench writing from start to end
 * (2 clients, no vacuum), in one run against one dev server:
 *   (a) pgbench's rate with no backup running, over --window seconds before the backups and as
 *       many after them;
 *   (b) its rate while a split-backup (`postgres` hook) copies the split replica to tape;
 *   (c) its rate while a snapshot-backup does the same from a copy-before-write snapshot.
 * A rate is the transactions pgbench committed in the window (rows added to pgbench_history) ÷ the
 * window's seconds, so all three are measured the same way. Also, per backup, the seconds
 * PostgreSQL spent in backup mode (the hook's measure, pg_backup_start to pg_backup_stop) ÷ the
 * operation's wall time from start to report.
 *
 * Targets: TPS during a backup ≥ 0.5 of TPS without (the host's writes go on; a write-blocking
 * mirror and copy-before-write cost something, reading the image for tape on the same disk too);
 * backup mode ÷ the operation's time ≤ 0.1 (the seed's claim: backup mode ends with the split or
 * snapshot, before the copy to tape, which is most of the operation).
 *
 *   npx tsx bench/split.ts [--size 128MiB] [--scale 1] [--window 10]
 */
import { hospitalPreset } from '../src/lab/preset';
import { QsdDriver } from '../src/drivers/qsd/driver';
import { formatBytes, parseSize } from '../src/domain/units';
import type { BackupReport } from '../src/domain/jobs';
import { freePort } from '../src/stack/devserver';
import {
  pgbenchInit,
  pgbenchSums,
  PG_VOLUME_BYTES,
  startPgbench,
  startPgOnVolume,
  type PgbenchRun,
  type PgOnVolume,
} from '../test/support/pg-on-qsd';
import { PG_PASSWORD } from '../test/support/postgres';
import { arg, runBench, withLabStack } from './support/lab-stack';
import { printVerdict } from './support/verdict';

const TPS_TARGET = 0.5;
const BACKUP_MODE_TARGET = 0.1;

interface Window {
  seconds: number;
  transactions: number;
  tps: number;
}

/** Transactions pgbench committed while `during` ran, and the rate. */
async function window(pg: PgOnVolume, during: () => Promise<void>): Promise<Window> {
  const before = (await pgbenchSums(pg.server)).transactions;
  const t0 = performance.now();
  await during();
  const seconds = (performance.now() - t0) / 1000;
  const transactions = (await pgbenchSums(pg.server)).transactions - before;
  return { seconds, transactions, tps: transactions / seconds };
}

async function main(): Promise<void> {
  const size = parseSize(arg('size', '128MiB')) ?? PG_VOLUME_BYTES;
  const scale = Number(arg('scale', '1'));
  const windowSeconds = Number(arg('window', '10'));
  const site = 'bench';
  const port = await freePort();
  process.env.KURA_BENCH_PG_PASSWORD = PG_PASSWORD;
  const cfg = hospitalPreset({
    vms: 1,
    dataVolumeSize: size,
    softwareVolumeSize: 4096,
    cartridgeCapacity: 64 * 1024 * 1024 * 1024,
    cartridgesPerLibrary: 2,
    site,
  });
  const array = cfg.sites[0]!.arrays[0]!;
  array.driver = 'qsd';
  array.freePool = { size: 2 * size };
  cfg.sites[0]!.hooks = [
    {
      target: 'vm-001',
      kind: 'postgres',
      host: '127.0.0.1',
      port,
      user: 'postgres',
      passwordEnv: 'KURA_BENCH_PG_PASSWORD',
      timeout: '60s',
      waitForArchive: true,
    },
  ];
  cfg.tuning = { pieceSize: '64MiB', reserveWait: '10m', copyHeartbeatTimeout: '10s', streams: 1, chunks: 4 };

  await withLabStack('split', cfg, async ({ loaded, paths, kura }) => {
    const qsd = new QsdDriver(loaded, paths);
    const a = qsd.array(site, 'array-01');
    const ref = { site, array: 'array-01', volume: 'vm-001-data' };
    let pg: PgOnVolume | undefined;
    let bench: PgbenchRun | undefined;
    try {
      pg = await startPgOnVolume(a, 'vm-001-data', { port });
      await pgbenchInit(pg, scale);
      bench = startPgbench(pg, { clients: 2, seconds: 3600 });
      const on = pg;
      // Warm-up: the first seconds of pgbench fill caches.
      await new Promise((r) => setTimeout(r, 3000));

      const idle = () => window(on, () => new Promise((r) => setTimeout(r, windowSeconds * 1000)));
      const before = await idle();

      await qsd.createPair(ref);
      const synced = await a.waitPair('vm-001-data', 'in-sync', 600_000);
      if (synced.state !== 'in-sync') throw new Error(`the pair did not get in sync: ${synced.state}`);
      let split: BackupReport | undefined;
      const duringSplit = await window(on, async () => {
        split = await (await kura.startBackup('vm-001', { method: 'split' })).result();
      });
      // A copy-before-write snapshot is not taken while the pair's mirror holds the volume.
      await qsd.deletePair(ref);
      let snap: BackupReport | undefined;
      const duringSnapshot = await window(on, async () => {
        snap = await (await kura.startBackup('vm-001', { method: 'snapshot' })).result();
      });

      // The baseline is measured before and after the backups, so a drift of the machine's load
      // over the run does not land on one side of the ratio only.
      const after = await idle();
      const baseline: Window = {
        seconds: before.seconds + after.seconds,
        transactions: before.transactions + after.transactions,
        tps: (before.transactions + after.transactions) / (before.seconds + after.seconds),
      };
      const modeShare = (r: BackupReport, w: Window) => (r.backupMode?.seconds ?? Number.NaN) / w.seconds;
      const line = (label: string, w: Window) =>
        `  ${label.padEnd(34)}: ${w.tps.toFixed(1).padStart(8)} tps   (${w.transactions} transactions in ${w.seconds.toFixed(2)} s)`;
      console.log(
        `split benchmark: PostgreSQL 15 on ext4 on a ${formatBytes(size)} qemu-storage-daemon volume, pgbench -s ${scale} with 2 clients writing throughout, one run`,
      );
      console.log(line('(a) no backup (before and after)', baseline));
      console.log(line('(b) during a split-backup', duringSplit));
      console.log(line('(c) during a snapshot-backup', duringSnapshot));
      console.log(
        `  ratio (b)/(a)                     : ${(duringSplit.tps / baseline.tps).toFixed(3)}   (target >= ${TPS_TARGET})`,
      );
      console.log(
        `  ratio (c)/(a)                     : ${(duringSnapshot.tps / baseline.tps).toFixed(3)}   (target >= ${TPS_TARGET})`,
      );
      console.log(
        `  split-backup: backup mode ${split!.backupMode!.seconds.toFixed(3)} s of ${duringSplit.seconds.toFixed(2)} s = ${modeShare(split!, duringSplit).toFixed(3)}   (target <= ${BACKUP_MODE_TARGET})`,
      );
      console.log(
        `  snapshot-backup: backup mode ${snap!.backupMode!.seconds.toFixed(3)} s of ${duringSnapshot.seconds.toFixed(2)} s = ${modeShare(snap!, duringSnapshot).toFixed(3)}   (target <= ${BACKUP_MODE_TARGET})`,
      );
      const note = `${formatBytes(size)} volume, pgbench -s ${scale}, 2 clients, baseline 2 × ${windowSeconds} s`;
      printVerdict({
        bench: 'split',
        metric: 'pgbench TPS during a split-backup ÷ without',
        now: duringSplit.tps / baseline.tps,
        target: TPS_TARGET,
        direction: 'atLeast',
        note,
      });
      printVerdict({
        bench: 'split',
        metric: 'pgbench TPS during a snapshot-backup ÷ without',
        now: duringSnapshot.tps / baseline.tps,
        target: TPS_TARGET,
        direction: 'atLeast',
        note,
      });
      printVerdict({
        bench: 'split',
        metric: 'backup mode ÷ split-backup time',
        now: modeShare(split!, duringSplit),
        target: BACKUP_MODE_TARGET,
        direction: 'atMost',
        note,
      });
      printVerdict({
        bench: 'split',
        metric: 'backup mode ÷ snapshot-backup time',
        now: modeShare(snap!, duringSnapshot),
        target: BACKUP_MODE_TARGET,
        direction: 'atMost',
        note,
      });
    } finally {
      await bench?.stop();
      await pg?.stop();
      await qsd.deletePair(ref).catch(() => undefined);
      // The array's daemon outlives the workers by design; the benchmark stops the one it started.
      await qsd.stopAll();
    }
  });
}

runBench(main);
