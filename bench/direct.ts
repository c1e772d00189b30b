/**
 * Direct copy benchmark (seed 003 Fig. 9; docs/adr/029): the same backup of one lab volume, in one
 * process against one dev server, alternately
 *   (a) LAN-free: backup server bks-01 reads the volume and writes the drive, its data path held to
 *       the lab's server copy throttle (`lab.serverCopyRate` = --rate, a busy server's share);
 *   (b) direct: copy device cpd-01 moves the volume to the same drive by segment commands; no
 *       backup server reads the data, so the throttle does not apply.
 * Each backup's wall time (reserve → release, verification read-back included) is the median of
 * --runs runs, with the bytes each kind of mover wrote (from the lab's events). The ratio (b)/(a)
 * is printed with its target: ≤ 0.5, the direct path at least halving the backup where the
 * server's data path is the bottleneck.
 *
 *   npx tsx bench/direct.ts [--size 256MiB] [--rate 64MiB] [--runs 3]
 */
import { LabState } from '../src/lab/state';
import { formatBytes, parseSize } from '../src/domain/units';
import type { BackupReport, StreamKind } from '../src/domain/jobs';
import { arg, median, oneVmBackupConfig, runBench, withLabStack } from './support/lab-stack';
import { printVerdict } from './support/verdict';

async function main(): Promise<void> {
  const size = parseSize(arg('size', '256MiB')) ?? 256 * 1024 * 1024;
  const rate = parseSize(arg('rate', '64MiB')) ?? 64 * 1024 * 1024;
  const runs = Number(arg('runs', '3'));
  const site = 'bench';
  const cfg = oneVmBackupConfig(size, site);
  cfg.lab = { serverCopyRate: rate };
  await withLabStack('direct', cfg, async ({ paths, kura }) => {
    const state = new LabState(paths.labState);
    let n = 0;

    /** One backup of the kind; its wall time and the bytes the servers and the copy devices wrote. */
    const backup = async (streamKind: StreamKind): Promise<{ seconds: number; byServer: number; byDevice: number }> => {
      const t0 = performance.now();
      const report: BackupReport = await (
        await kura.startBackup('vm-001', {
          streamKind,
          requestedAt: new Date(Date.UTC(2026, 0, 1) + ++n).toISOString(),
        })
      ).result();
      const seconds = (performance.now() - t0) / 1000;
      let byServer = 0;
      let byDevice = 0;
      for (const e of state.events({ event: 'copy-start' })) {
        if (e.detail.backupId !== report.backupId) continue;
        if (typeof e.detail.copyDevice === 'string') byDevice += e.detail.length as number;
        else byServer += e.detail.length as number;
      }
      return { seconds, byServer, byDevice };
    };

    await backup('lan-free'); // warm-up: bundling, first tasks, page cache of the volume
    await backup('direct');
    const lanFree: number[] = [];
    const direct: number[] = [];
    let moved = { lanFree: { byServer: 0, byDevice: 0 }, direct: { byServer: 0, byDevice: 0 } };
    for (let r = 0; r < runs; r++) {
      const a = await backup('lan-free');
      const b = await backup('direct');
      lanFree.push(a.seconds);
      direct.push(b.seconds);
      moved = { lanFree: a, direct: b };
    }
    const [a, b] = [median(lanFree), median(direct)];
    const mb = (x: { byServer: number; byDevice: number }) =>
      `servers wrote ${formatBytes(x.byServer)}, copy devices ${formatBytes(x.byDevice)}`;
    console.log(
      `direct copy benchmark: one ${formatBytes(size)} volume, 10 chunks, lab server copy throttle ${formatBytes(rate)}/s, dev server on 127.0.0.1, median of ${runs} runs`,
    );
    console.log(
      `  (a) LAN-free (bks-01 → drive)   : ${a.toFixed(2)} s   runs ${lanFree.map((x) => x.toFixed(2)).join(', ')}   ${mb(moved.lanFree)}`,
    );
    console.log(
      `  (b) direct (cpd-01 → drive)     : ${b.toFixed(2)} s   runs ${direct.map((x) => x.toFixed(2)).join(', ')}   ${mb(moved.direct)}`,
    );
    console.log(`  ratio direct/LAN-free (b)/(a)   : ${(b / a).toFixed(3)}   (target <= 0.5)`);
    printVerdict({
      bench: 'direct',
      metric: 'direct backup ÷ LAN-free',
      now: b / a,
      target: 0.5,
      direction: 'atMost',
      note: `${formatBytes(size)}, servers throttled to ${formatBytes(rate)}/s, median of ${runs}`,
    });
    state.close();
  });
}

runBench(main);
