/**
 * Failover benchmark (seed 004's promise: a device fault does not make the backup window much
 * longer). The same backup of one lab volume, in one process against one dev server:
 *   (a) no fault, 10 chunks over 2 streams (failover mode);
 *   (b) a drive of stream 0 fails at 50% of the volume, 10 chunks: the failed chunk and the ones
 *       after it move to stream 1;
 *   (c) the old way: the same fault with the copy in one piece, so the whole copy restarts on the
 *       other stream.
 * Each backup's wall time (reserve → release, verification read-back included) is the median of
 * --runs runs; the ratios (b)/(a) (target ≤ 1.15) and (c)/(a) are printed. Both backup servers are
 * throttled to --rate, a tape drive's speed, so the page cache does not decide the result.
 *
 *   npx tsx bench/failover.ts [--size 512MiB] [--rate 128MiB] [--runs 3]
 */
import { LabState } from '../src/lab/state';
import { markDeviceSignal, poolWorkflowId, tablesQuery } from '../src/client';
import { formatBytes, parseSize } from '../src/domain/units';
import type { BackupReport } from '../src/domain/jobs';
import { arg, median, oneVmBackupConfig, runBench, withLabStack } from './support/lab-stack';
import { printVerdict } from './support/verdict';

async function main(): Promise<void> {
  const size = parseSize(arg('size', '512MiB')) ?? 512 * 1024 * 1024;
  const rate = parseSize(arg('rate', '128MiB')) ?? 128 * 1024 * 1024;
  const runs = Number(arg('runs', '3'));
  const site = 'bench';
  const cfg = oneVmBackupConfig(size, site);
  await withLabStack('failover', cfg, async ({ paths, client, kura }) => {
    const state = new LabState(paths.labState);
    const pool = client.workflow.getHandle(poolWorkflowId(site));
    let n = 0;

    /** One backup; returns its wall time in seconds and where its chunks went. */
    const backup = async (chunks: number, faulty: boolean): Promise<{ seconds: number; report: BackupReport }> => {
      state.clearFaults();
      for (const s of ['bks-01', 'bks-02'])
        state.addFault({ device: s, kind: 'slow', after: { bytes: 0 }, rateBytesPerSec: rate, once: false });
      if (faulty) state.addFault({ device: 'lib-01-drv-1', kind: 'fail', after: { percent: 50 }, once: false });
      const t0 = performance.now();
      const report: BackupReport = await (
        await kura.startBackup('vm-001', { chunks, requestedAt: new Date(Date.UTC(2026, 0, 1) + ++n).toISOString() })
      ).result();
      const seconds = (performance.now() - t0) / 1000;
      // Bring the faulted drive back for the next run, as an operator would.
      await pool.signal(markDeviceSignal, { device: 'lib-01-drv-1', state: 'available' });
      while ((await pool.query(tablesQuery)).drives.some((d) => d.state === 'unavailable'))
        await new Promise((r) => setTimeout(r, 50));
      return { seconds, report };
    };

    await backup(10, false); // warm-up: bundling, first tasks, page cache of the volume
    const cases = { clean: [] as number[], failover: [] as number[], restart: [] as number[] };
    let moved = '';
    for (let r = 0; r < runs; r++) {
      cases.clean.push((await backup(10, false)).seconds);
      const f = await backup(10, true);
      cases.failover.push(f.seconds);
      moved = f.report.pieces.map((p) => p.stream).join('');
      cases.restart.push((await backup(1, true)).seconds);
    }
    const [a, b, c] = [median(cases.clean), median(cases.failover), median(cases.restart)];
    console.log(
      `failover benchmark: one ${formatBytes(size)} volume, 2 streams, servers throttled to ${formatBytes(rate)}/s, dev server on 127.0.0.1, median of ${runs} runs`,
    );
    console.log(
      `  (a) no fault, 10 chunks             : ${a.toFixed(2)} s   runs ${cases.clean.map((x) => x.toFixed(2)).join(', ')}`,
    );
    console.log(
      `  (b) drive fails at 50%, 10 chunks   : ${b.toFixed(2)} s   runs ${cases.failover.map((x) => x.toFixed(2)).join(', ')}   chunks by stream: ${moved}`,
    );
    console.log(
      `  (c) old way: same fault, 1 piece     : ${c.toFixed(2)} s   runs ${cases.restart.map((x) => x.toFixed(2)).join(', ')}`,
    );
    console.log(`  ratio failover/clean (b)/(a)        : ${(b / a).toFixed(3)}   (target <= 1.15)`);
    console.log(`  ratio restart/clean  (c)/(a)        : ${(c / a).toFixed(3)}`);
    printVerdict({
      bench: 'failover',
      metric: 'backup with a fault ÷ without',
      now: b / a,
      target: 1.15,
      direction: 'atMost',
      note: `${formatBytes(size)} at ${formatBytes(rate)}/s, median of ${runs}`,
    });

    state.close();
  });
}

runBench(main);
