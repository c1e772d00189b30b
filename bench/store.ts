/**
 * Store benchmark (seed 000): ingest MB/s into the deduplicated store of a first full backup and of
 * an incremental (10 % of the chunks changed) against `openssl dgst -sha256` of the same data in
 * the same run (hashing at the machine's best); the dedup ratio after seven rounds of churn and
 * backup; and a VM's recovery time from its whole image in the store against the five manual steps
 * of seed 000 timed from kura.yaml's `ladder.manualRebuild` (as bench/ladder does).
 *
 *   npx tsx bench/store.ts [--size 256MiB] [--chunk 4MiB] [--churn 10] [--vm-size 64MiB]
 */
import { execFile } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { parseSize } from '../src/domain/units';
import { hospitalPreset } from '../src/lab/preset';
import { ChunkStore } from '../src/store/chunk-store';
import { ingestFile } from '../src/store/ingest';
import type { ClassBackupReport, VmImageRestoreReport } from '../src/workflows/store';
import { arg, runBench, withLabStack } from './support/lab-stack';
import { printVerdict } from './support/verdict';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const mbs = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);

/** Writes `size` random bytes (incompressible, like the lab's volumes), in 4 MiB blocks. */
async function makeVolume(file: string, size: number): Promise<void> {
  const fh = await open(file, 'w');
  for (let at = 0; at < size; at += 4 * MiB)
    await fh.write(randomBytes(Math.min(4 * MiB, size - at)), 0, undefined, at);
  await fh.sync();
  await fh.close();
}

/** Overwrites `percent` % of the file's chunks with new bytes; returns the bytes changed. */
async function churn(file: string, size: number, chunk: number, percent: number): Promise<number> {
  const total = Math.ceil(size / chunk);
  const picked = new Set<number>();
  while (picked.size < Math.max(1, Math.round((total * percent) / 100))) picked.add(randomInt(total));
  const fh = await open(file, 'r+');
  let bytes = 0;
  for (const c of picked) {
    const n = Math.min(chunk, size - c * chunk);
    await fh.write(randomBytes(n), 0, n, c * chunk);
    bytes += n;
  }
  await fh.sync();
  await fh.close();
  return bytes;
}

async function opensslMs(file: string): Promise<number> {
  const t0 = performance.now();
  await run('openssl', ['dgst', '-sha256', '-r', file]);
  return performance.now() - t0;
}

async function main(): Promise<void> {
  process.env.KURA_LOG_LEVEL ??= 'ERROR';
  const size = parseSize(arg('size', '256MiB')) ?? 256 * MiB;
  const chunk = parseSize(arg('chunk', '4MiB')) ?? 4 * MiB;
  const percent = Number(arg('churn', '10'));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kura-bench-store-'));
  try {
    const file = path.join(dir, 'volume.img');
    await makeVolume(file, size);
    const store = new ChunkStore(path.join(dir, 'store'));
    const head = (round: number) => ({
      backupId: `bench@2026110${round}T020000Z`,
      target: 'bench',
      array: 'array-01',
      volume: 'bench',
      chunkSize: chunk,
      dataTime: `2026-11-0${round}T02:00:00.000Z`,
    });

    // Round 1: the first full, then openssl of the same file (in the page cache for both).
    await opensslMs(file); // warms the cache the way the ingest will find it
    let t0 = performance.now();
    await ingestFile({ store, file, job: 'bench-1', index: head(1) });
    const fullMs = performance.now() - t0;
    const sslFullMs = await opensslMs(file);

    // Rounds 2–7: churn, then an incremental each; the first incremental is timed against openssl.
    let incMs = 0;
    let sslIncMs = 0;
    let changed = 0;
    for (let round = 2; round <= 7; round++) {
      changed += await churn(file, size, chunk, percent);
      t0 = performance.now();
      await ingestFile({ store, file, job: `bench-${round}`, index: head(round) });
      if (round === 2) {
        incMs = performance.now() - t0;
        sslIncMs = await opensslMs(file);
      }
    }
    const stored = (await store.usage()).bytes;
    const logical = 7 * size;
    const ratio = logical / stored;
    const ideal = logical / (size + changed);

    console.log(
      `store benchmark: ${size / MiB} MiB volume of random bytes, ${chunk / MiB} MiB chunks, ${percent}% churn per round; 2-core machine, page cache warm`,
    );
    console.log('');
    console.log('  ingest                         ms      MB/s   openssl dgst MB/s   ratio');
    console.log(
      `  first full               ${fullMs.toFixed(0).padStart(8)}  ${mbs(size, fullMs).toFixed(0).padStart(8)}  ${mbs(size, sslFullMs).toFixed(0).padStart(18)}   ${(sslFullMs / fullMs).toFixed(2)}`,
    );
    console.log(
      `  incremental (${percent}% changed) ${incMs.toFixed(0).padStart(8)}  ${mbs(size, incMs).toFixed(0).padStart(8)}  ${mbs(size, sslIncMs).toFixed(0).padStart(18)}   ${(sslIncMs / incMs).toFixed(2)}`,
    );
    console.log('');
    console.log(
      `  after 7 rounds: ${logical / MiB} MiB backed up, ${(stored / MiB).toFixed(1)} MiB stored: dedup ratio ${ratio.toFixed(2)} (ideal for this churn ${ideal.toFixed(2)})`,
    );
    printVerdict({
      bench: 'store',
      metric: 'full ingest / openssl',
      now: sslFullMs / fullMs,
      target: 0.5,
      direction: 'atLeast',
      note: `${size / MiB} MiB, chunks ${chunk / MiB} MiB written with fsync`,
    });
    printVerdict({
      bench: 'store',
      metric: 'incremental ingest / openssl',
      now: sslIncMs / incMs,
      target: 0.8,
      direction: 'atLeast',
      note: `${percent}% of chunks changed`,
    });
    printVerdict({
      bench: 'store',
      metric: 'dedup ratio / ideal',
      now: ratio / ideal,
      target: 0.95,
      direction: 'atLeast',
      note: `7 rounds, ratio ${ratio.toFixed(2)}`,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  await vmRecovery();
}

/** A VM brought back from its whole image in the store, against the five manual steps of seed 000. */
async function vmRecovery(): Promise<void> {
  const vmSize = parseSize(arg('vm-size', '64MiB')) ?? 64 * MiB;
  const cfg = hospitalPreset({
    vms: 1,
    hosts: 2,
    dataVolumeSize: vmSize,
    softwareVolumeSize: vmSize / 2,
    site: 'bench',
    fileServers: 1,
    clients: 1,
    fileServerVolumeSize: MiB,
    clientVolumeSize: MiB,
  });
  Object.assign(cfg, { lab: { osReboot: '2s' } });
  await withLabStack('store', cfg, async ({ client, workers, loaded }) => {
    const backup = (await client.workflow.execute('classBackup', {
      taskQueue: workers.taskQueue,
      workflowId: `store/class/vm/bench`,
      args: [{ className: 'vm' }],
    })) as ClassBackupReport;
    const t0 = performance.now();
    const report = (await client.workflow.execute('vmImageRestore', {
      taskQueue: workers.taskQueue,
      workflowId: `store/vm-restore/vm-001/bench`,
      args: [{ site: 'bench', vm: 'vm-001', host: 'host-02', dataTime: backup.dataTime, healthEveryMs: 50 }],
    })) as VmImageRestoreReport;
    const ms = performance.now() - t0;
    const steps = loaded.config.ladder.manualRebuild;
    const manualMs = steps.installOs + steps.installDb + steps.restoreDb + steps.installPrograms + steps.configure;
    console.log('');
    console.log('  restore of a VM                                  time');
    console.log(
      `  from its whole image in the store (measured)  ${(ms / 1000).toFixed(2).padStart(8)} s   (${(1.5 * vmSize) / MiB} MiB, host-02, lab boot 2 s, until healthy: ${report.healthy})`,
    );
    console.log(
      `  seed 000 five manual steps (kura.yaml)        ${(manualMs / 1000).toFixed(2).padStart(8)} s   (install OS ${steps.installOs / 60_000} m, DB software ${steps.installDb / 60_000} m, restore DB ${steps.restoreDb / 60_000} m, programs ${steps.installPrograms / 60_000} m, configure ${steps.configure / 60_000} m)`,
    );
    printVerdict({
      bench: 'store',
      metric: 'five manual steps / VM image restore',
      now: manualMs / ms,
      target: 10,
      direction: 'atLeast',
      note: `${(1.5 * vmSize) / MiB} MiB VM, boot 2 s`,
    });
  });
}

runBench(main);
