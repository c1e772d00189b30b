/**
 * Orchestration benchmark: N end-to-end backups of small lab volumes (reserve, mount, copy,
 * unmount, record, release — real files, real catalog) against N empty workflows on the same
 * Temporal dev server, both with the same bound of K in flight. Prints both rates and the ratio,
 * then the same N backups as one fleet run (child workflows in a sliding window of K).
 *
 *   npx tsx bench/spine.ts [--n 77] [--k 4] [--size 1MiB] [--guardians off|on]
 *
 * The VM guardians of the recovery ladder (a workflow per VM polling its health) are off by
 * default: they are a load of their own that grows with the estate, not a backup's orchestration,
 * and bench/fleet.ts measures them (docs/adr/020-fleet-cost.md).
 */
import { loadavg } from 'node:os';
import { NativeConnection, Worker } from '@temporalio/worker';
import { hospitalPreset } from '../src/lab/preset';
import { kuraDataConverter } from '../src/codec/data-converter';
import { parseSize } from '../src/domain/units';
import { arg, runBench, withLabStack } from './support/lab-stack';
import { printVerdict } from './support/verdict';

/** End-to-end backups ÷ empty workflows, as rates at the same bound (docs/adr/020-fleet-cost.md). */
const TARGET_RATIO = 0.5;

/** Runs `count` jobs with at most `k` in flight; returns the wall time in seconds. */
async function window(count: number, k: number, job: (i: number) => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(k, count) }, async () => {
      while (next < count) await job(next++);
    }),
  );
  return (performance.now() - t0) / 1000;
}

async function main(): Promise<void> {
  const n = Number(arg('n', '77'));
  const k = Number(arg('k', '4'));
  const size = parseSize(arg('size', '1MiB')) ?? 1024 * 1024;
  const cfg = hospitalPreset({ vms: n, dataVolumeSize: size, softwareVolumeSize: 4096, site: 'bench' });
  // One stream, one chunk: this measures orchestration per job, not the stream logic (bench/failover does).
  cfg.tuning = { pieceSize: '256MiB', reserveWait: '10m', streams: 1, chunks: 1 };
  const guardians = arg('guardians', 'off') === 'on';
  if (!guardians) cfg.ladder = { guardVms: false };
  await withLabStack('spine', cfg, async ({ server, loaded, client, kura }) => {
    const native = await NativeConnection.connect({ address: server.address });
    const baseline = await Worker.create({
      connection: native,
      // The same encryption as Kura's workers, so the ratio compares orchestration, not the codec.
      dataConverter: kuraDataConverter(loaded),
      taskQueue: 'bench-empty',
      workflowsPath: require.resolve('./support/empty-workflow'),
    });
    const baselineRun = baseline.run();
    const vms = loaded.config.sites[0]!.vms.map((v) => v.name);

    // Warm both paths once so bundling and first-task costs are not measured.
    await client.workflow.execute('emptyWorkflow', { taskQueue: 'bench-empty', workflowId: 'warm-empty' });
    await (await kura.startBackup(vms[0]!, { requestedAt: new Date(0).toISOString() })).result();

    const emptySeconds = await window(n, k, (i) =>
      client.workflow.execute('emptyWorkflow', { taskQueue: 'bench-empty', workflowId: `empty-${i}` }),
    );
    const at = Date.now();
    const fleetT0 = performance.now();
    const fleet = await (
      await kura.startFleet('all', { concurrency: k, requestedAt: new Date(at + n + 1000).toISOString() })
    ).result();
    const fleetSeconds = (performance.now() - fleetT0) / 1000;
    const backupSeconds = await window(n, k, (i) =>
      kura.startBackup(vms[i]!, { requestedAt: new Date(at + i).toISOString() }).then((h) => h.result()),
    );

    const emptyRate = n / emptySeconds;
    const backupRate = n / backupSeconds;
    console.log(
      `spine benchmark: N=${n} backups of ${size} bytes each, concurrency bound K=${k}, dev server (SQLite) on 127.0.0.1, ${guardians ? 'a guardian per VM' : 'no VM guardians'}, load average ${loadavg()[0]!.toFixed(2)}`,
    );
    console.log(`  empty workflows     : ${emptySeconds.toFixed(2)} s, ${emptyRate.toFixed(1)} workflows/s`);
    console.log(
      `  end-to-end backups  : ${backupSeconds.toFixed(2)} s, ${backupRate.toFixed(1)} backups/s (${((n * size) / backupSeconds / 1024 / 1024).toFixed(1)} MiB/s)`,
    );
    console.log(
      `  ratio backups/empty : ${(backupRate / emptyRate).toFixed(3)}  (each backup: 3 activities — resolve, reserve, and one copy run that reads its copy back — and 8 local activities in 4 workflow tasks: record start, zone, mount, record, tape catalog, unmount, unzone, release)`,
    );
    console.log(
      `  fleet run (children): ${fleetSeconds.toFixed(2)} s, ${(n / fleetSeconds).toFixed(1)} backups/s, ${fleet.succeeded} succeeded, ${fleet.failed} failed`,
    );

    printVerdict({
      bench: 'spine',
      metric: 'backups ÷ empty workflows (rate)',
      now: backupRate / emptyRate,
      target: TARGET_RATIO,
      direction: 'atLeast',
      note: `N=${n}, K=${k}, ${size} bytes per backup, 1 stream, 1 chunk, guardians ${guardians ? 'on' : 'off'}`,
    });

    baseline.shutdown();
    await baselineRun;
    await native.close();
  });
}

runBench(main);
