/**
 * Store-to-tape benchmark (docs/adr/042: a store backup goes to tape through the same streams as a
 * volume). In one process against one dev server, the same lab volume:
 *   (a) backed up to tape from the volume itself (the baseline: `kura backup`);
 *   (b) backed up into the store once (not timed), then copied to tape from the store (`kura store
 *       to-tape`): the same streams, but every chunk read from the store, decompressed and
 *       digest-checked.
 * Each wall time (reserve → release, read-back included) is the median of --runs runs; the ratio
 * (b)/(a) is printed against its target (≤ 1.25). Both backup servers are throttled to --rate, a tape
 * drive's speed, as in bench/failover.ts, so the page cache does not decide the result.
 *
 *   npx tsx bench/store-tape.ts [--size 256MiB] [--rate 128MiB] [--runs 3]
 */
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { LabState } from '../src/lab/state';
import { KuraStore } from '../src/api/store';
import { formatBytes, parseSize } from '../src/domain/units';
import { labVolumePath } from '../src/lab/files';
import type { BackupReport } from '../src/domain/jobs';
import type { StoreBackupReport } from '../src/domain/store';
import { arg, median, oneVmBackupConfig, runBench, withLabStack } from './support/lab-stack';
import { printVerdict } from './support/verdict';

async function main(): Promise<void> {
  const size = parseSize(arg('size', '256MiB')) ?? 256 * 1024 * 1024;
  const rate = parseSize(arg('rate', '128MiB')) ?? 128 * 1024 * 1024;
  const runs = Number(arg('runs', '3'));
  const site = 'bench';
  const cfg = oneVmBackupConfig(size, site);
  await withLabStack('store-tape', cfg, async ({ paths, client, kura, loaded }) => {
    const state = new LabState(paths.labState);
    const store = new KuraStore(client, loaded, kura.taskQueue);
    const vm = loaded.config.sites[0]!.vms[0]!;
    const [array, volume] = vm.dataVolume.split('/') as [string, string];
    // Random bytes, so the store's chunks do not compress away and the read is of real chunk files.
    const fh = await open(labVolumePath(paths, site, array, volume), 'r+');
    for (let at = 0; at < size; at += 4 * 1024 * 1024)
      await fh.write(randomBytes(Math.min(4 * 1024 * 1024, size - at)), 0, undefined, at);
    await fh.close();
    state.clearFaults();
    for (const s of ['bks-01', 'bks-02'])
      state.addFault({ device: s, kind: 'slow', after: { bytes: 0 }, rateBytesPerSec: rate, once: false });

    let n = 0;
    const instant = () => new Date(Date.UTC(2026, 0, 1, 0, 0, ++n)).toISOString();
    const stored: StoreBackupReport = await client.workflow.execute('storeBackup', {
      taskQueue: kura.taskQueue,
      workflowId: `store/backup/bench-${Date.now()}`,
      args: [{ site, target: vm.name, array, volume, dataTime: instant() }],
    });

    const fromVolume = async (): Promise<number> => {
      const t0 = performance.now();
      const r: BackupReport = await (await kura.startBackup(vm.name, { requestedAt: instant() })).result();
      if (r.sha256 !== stored.sha256) throw new Error(`the volume's tape backup hashes to ${r.sha256}`);
      return (performance.now() - t0) / 1000;
    };
    const fromStore = async (): Promise<number> => {
      const t0 = performance.now();
      const r = await (await store.toTape(stored.backupId, { requestedAt: instant() })).result();
      if (r.copies[0]?.sha256 !== stored.sha256)
        throw new Error(`the store's tape copy hashes to ${r.copies[0]?.sha256}`);
      return (performance.now() - t0) / 1000;
    };

    await fromVolume(); // warm-up: bundling, first tasks, page cache
    const cases = { volume: [] as number[], store: [] as number[] };
    for (let r = 0; r < runs; r++) {
      cases.volume.push(await fromVolume());
      cases.store.push(await fromStore());
    }
    const [a, b] = [median(cases.volume), median(cases.store)];
    console.log(
      `store-to-tape benchmark: one ${formatBytes(size)} volume (random bytes, ${formatBytes(loaded.config.store.chunkSize)} store chunks), 2 streams in failover mode, servers throttled to ${formatBytes(rate)}/s, median of ${runs} runs`,
    );
    console.log(
      `  (a) tape backup from the volume     : ${a.toFixed(2)} s   runs ${cases.volume.map((x) => x.toFixed(2)).join(', ')}`,
    );
    console.log(
      `  (b) tape copy from the store backup : ${b.toFixed(2)} s   runs ${cases.store.map((x) => x.toFixed(2)).join(', ')}`,
    );
    console.log(`  ratio store/volume (b)/(a)          : ${(b / a).toFixed(3)}   (target <= 1.25)`);
    printVerdict({
      bench: 'store-tape',
      metric: 'tape copy from the store ÷ tape backup from the volume',
      now: b / a,
      target: 1.25,
      direction: 'atMost',
      note: `${formatBytes(size)} at ${formatBytes(rate)}/s, median of ${runs}`,
    });
    state.close();
  });
}

runBench(main);
