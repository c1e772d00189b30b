/**
 * Store benchmark (seed 000): ingest MB/s into the deduplicated store of a first full backup and of
 * an incremental (10 % of the chunks changed) against `openssl dgst -sha256` of the same data in
 * the same run (hashing at the machine's best); the dedup ratio after seven rounds of churn and
 * backup; and a VM's recovery time from its whole image in the store against the five manual steps
 * of seed 000 timed from kura.yaml's `ladder.manualRebuild` (as bench/ladder does).
 *
 * Two incrementals: one that compares digests (reads the whole volume: a lab array), and one of a
 * volume on a real qemu-storage-daemon array whose host writes went through its NBD export, so its
 * dirty bitmap names them and only those chunks are read. Both ratios are defined the same way —
 * openssl's time over the whole volume ÷ the incremental's time (bitmap read included) — and the
 * bitmap row also prints the bytes it read and its ratio per byte read.
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
import { mkdir, writeFile } from 'node:fs/promises';
import { parseConfigText } from '../src/config/load';
import { parseSize } from '../src/domain/units';
import { QsdDriver } from '../src/drivers/qsd/driver';
import { changedChunks } from '../src/store/changed';
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
    const bitmap = await bitmapIncremental(size, chunk, percent);
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
      `  incremental, digests        ${incMs.toFixed(0).padStart(8)}  ${mbs(size, incMs).toFixed(0).padStart(8)}  ${mbs(size, sslIncMs).toFixed(0).padStart(18)}   ${(sslIncMs / incMs).toFixed(2)}   (${percent}% changed; reads all ${size / MiB} MiB)`,
    );
    console.log(
      `  incremental, qsd bitmap     ${bitmap.ms.toFixed(0).padStart(8)}  ${mbs(size, bitmap.ms).toFixed(0).padStart(8)}  ${mbs(size, bitmap.sslMs).toFixed(0).padStart(18)}   ${(bitmap.sslMs / bitmap.ms).toFixed(2)}   (${percent}% changed; reads ${(bitmap.readBytes / MiB).toFixed(0)} MiB in ${bitmap.readChunks} chunks: per byte read ${((bitmap.sslMs * bitmap.readBytes) / size / bitmap.ms).toFixed(2)})`,
    );
    console.log(
      '  MB/s and ratio count the whole volume for every row: ratio = openssl over the volume ÷ the ingest, bitmap read included',
    );
    console.log(
      `  of the bitmap incremental's ${bitmap.ms.toFixed(0)} ms, ${bitmap.bitmapMs.toFixed(0)} ms went to the daemon: freezing the bitmap, beginning the next, reading it over NBD`,
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
      now: bitmap.sslMs / bitmap.ms,
      target: 0.8,
      direction: 'atLeast',
      note: `${percent}% of chunks changed, found by the qsd array's dirty bitmap: ${(bitmap.readBytes / MiB).toFixed(0)} of ${size / MiB} MiB read; openssl over the whole volume`,
    });
    printVerdict({
      bench: 'store',
      metric: 'incremental ingest by digests / openssl',
      now: sslIncMs / incMs,
      target: 0.8,
      direction: 'atLeast',
      note: `${percent}% of chunks changed, every chunk read and hashed (an array without a bitmap)`,
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

/**
 * A bitmap incremental on a real qemu-storage-daemon array: a full of a volume of random bytes,
 * then `percent` % of its chunks rewritten by a host through the volume's NBD export (qemu-io),
 * then the incremental timed from asking the daemon for its dirty bitmap to the index written.
 */
async function bitmapIncremental(
  size: number,
  chunk: number,
  percent: number,
): Promise<{ ms: number; bitmapMs: number; sslMs: number; readBytes: number; readChunks: number }> {
  // Unix socket paths hold 107 bytes: a short home.
  const home = mkdtempSync('/tmp/kb-');
  const loaded = parseConfigText(
    `version: 1
sites:
  - name: main
    arrays:
      - name: qa
        driver: qsd
        freePool: { size: ${size}, replicas: 1 }
        volumes:
          - { id: vol, size: ${size} }
    libraries:
      - name: lib
        drives: [{ id: drv-1 }]
        cartridges: [{ id: tape-1, capacity: 64MiB }]
    servers:
      - name: srv
`,
    path.join(home, 'kura.yaml'),
  );
  const driver = new QsdDriver(loaded, {
    home,
    lab: path.join(home, 'lab'),
    labState: path.join(home, 'lab', 'state.db'),
    catalog: path.join(home, 'catalog.db'),
    restoreRoots: [path.join(home, 'restores')],
  });
  const ref = { site: 'main', array: 'qa', volume: 'vol' };
  const array = driver.array('main', 'qa');
  const file = array.imagePath('vol');
  try {
    // The image is filled before the daemon opens it; from then on only the host's writes count.
    await mkdir(path.dirname(file), { recursive: true });
    await makeVolume(file, size);
    await driver.describeVolume('main', 'qa', 'vol');
    const store = new ChunkStore(path.join(home, 'store'));
    const head = (id: string, changeTracking: string) => ({
      backupId: `vol@${id}`,
      target: 'bench',
      array: 'qa',
      volume: 'vol',
      chunkSize: chunk,
      dataTime: '2026-11-01T02:00:00.000Z',
      changeTracking,
    });
    const began = await driver.beginTracking(ref, 'bench', undefined);
    const full = await ingestFile({ store, file, job: 'bench-q1', index: head('full', began.generation) });
    await driver.endTracking(ref, 'bench', began.generation);

    const total = Math.ceil(size / chunk);
    const picked = new Set<number>();
    while (picked.size < Math.max(1, Math.round((total * percent) / 100))) picked.add(randomInt(total));
    const data = path.join(home, 'host-write.bin');
    for (const c of picked) {
      const n = Math.min(chunk, size - c * chunk);
      await writeFile(data, randomBytes(n));
      await run('qemu-io', ['-f', 'raw', '-c', `write -s ${data} ${c * chunk} ${n}`, array.nbdUri('vol')]);
    }
    await opensslMs(file); // the same warm cache for both

    const t0 = performance.now();
    const start = await driver.beginTracking(ref, 'bench', began.generation);
    const bitmapMs = performance.now() - t0;
    if (!start.changed) throw new Error(`the bench's bitmap is gone: ${start.reason}`);
    const marked = changedChunks(start.changed, chunk, size);
    const inc = await ingestFile({
      store,
      file,
      job: 'bench-q2',
      index: head('inc', start.generation),
      previous: { index: full.index, changed: (c) => marked.has(c) },
    });
    await driver.endTracking(ref, 'bench', start.generation);
    const ms = performance.now() - t0;
    const sslMs = await opensslMs(file);
    return { ms, bitmapMs, sslMs, readBytes: inc.readBytes, readChunks: inc.readChunks };
  } finally {
    await driver.stopAll();
    rmSync(home, { recursive: true, force: true });
  }
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
