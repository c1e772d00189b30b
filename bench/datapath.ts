/**
 * The online-backup datapath against Debian's nbdkit: the same client workload (random 4 KiB reads
 * and writes, --depth requests at a time, one by default) against (a) `nbdkit file` serving the file, (b) Kura's
 * datapath in passthrough, (c) Kura's datapath during an online backup (base copy and catch-up
 * rounds running). Prints throughput, latency p50/p99, the ratios b/a and c/b, and the measured
 * quiesce window of the switch back ÷ the host's I/O timeout.
 *
 * Runs alternate (a), (b), (c) so a busy neighbour on a shared machine hits all three alike; the
 * figures are medians over the runs.
 *
 * Before those, six passthrough cases through `qemu-img bench` (a client Kura does not ship): 4 KiB
 * reads and writes at depth 1 and 16, 256 KiB reads and writes at depth 16, against Kura and against
 * nbdkit serving a copy of the volume, alternating; each prints both times, nbdkit's ÷ Kura's and
 * whether that meets the target; then an nbdcopy of an image of the volume's size into each (a
 * restore over NBD, several connections), with the same target as the large writes it is made of.
 *
 *   npx tsx bench/datapath.ts [--runs 3] [--qemu-runs 3] [--qemu-warmup 1] [--depth 1] [--size 64MiB] [--ops 20000] [--write-ratio 0.5] [--copy-rate 64MiB] [--io-timeout 30s] [--journal-sync on-flush|every-write]
 *
 * `--ops` is the length of each workload. The default, 20,000 requests (about a second here), makes
 * (c) span the backup it measures — the base copy of the 64 MiB volume at the 64 MiB/s copy rate,
 * then catch-up — where 2,000 saw only its first tenth of a second, and a p99 of 20 requests
 * (docs/adr/058). (c)'s throughput and p99 against (b)'s are printed with their targets: ≥ 0.7
 * and ≤ 2×.
 *
 * `--qemu-warmup` runs each qemu-img case that many times against both servers before the runs that
 * count (1 by default; 0: a freshly started server's first runs count).
 *
 * `--journal-sync` is kura.yaml's `datapath.journalSync` for Kura's server (docs/adr/046): the
 * journal made durable on FLUSH and FUA (the default), or before each write's ack.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { copyFile, mkdtemp, open, rm } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { DatapathClient } from '../src/datapath/client';
import { readControlToken } from '../src/datapath/token';
import { InvalidInputError } from '../src/domain/errors';
import { formatBytes, parseDuration, parseSize } from '../src/domain/units';
import { BenchNbdClient } from './support/nbd-client';
import { printVerdict } from './support/verdict';
import { freePort } from '../src/stack/devserver';
import { seededRandom } from '../src/domain/seeded-random';
import type { JournalSync } from '../src/datapath/journal';

/** During a backup, the host's throughput ÷ passthrough's, at least; and its p99 ÷ passthrough's, at most. */
const DURING_THROUGHPUT_TARGET = 0.7;
const DURING_P99_TARGET = 2;
const MiB = 1024 * 1024;
const IO = 4096;
const WARMUP = 50;
const EXPORT = 'bench/vol';

interface Args {
  runs: number;
  size: number;
  ops: number;
  writeRatio: number;
  copyRate: number;
  ioTimeoutMs: number;
  depth: number;
  qemuRuns: number;
  qemuWarmup: number;
  journalSync: JournalSync;
}

function args(): Args {
  const argv = process.argv.slice(2);
  const value = (flag: string, dflt: string): string => {
    const i = argv.indexOf(flag);
    return i === -1 ? dflt : (argv[i + 1] ?? dflt);
  };
  const size = parseSize(value('--size', '64MiB'));
  if (size === undefined || size < MiB || size % IO !== 0)
    throw new InvalidInputError('--size must be a size of at least 1MiB, a multiple of 4 KiB');
  const ops = Number(value('--ops', '20000'));
  if (!Number.isSafeInteger(ops) || ops < 100)
    throw new InvalidInputError('--ops must be a whole number of at least 100');
  const writeRatio = Number(value('--write-ratio', '0.5'));
  if (!(writeRatio >= 0 && writeRatio <= 1)) throw new InvalidInputError('--write-ratio must be between 0 and 1');
  const copyRate = parseSize(value('--copy-rate', '64MiB'));
  if (copyRate === undefined)
    throw new InvalidInputError('--copy-rate must be a size per second such as 32MiB (0: unpaced)');
  const ioTimeoutMs = parseDuration(value('--io-timeout', '30s'));
  if (ioTimeoutMs === undefined || ioTimeoutMs <= 0)
    throw new InvalidInputError('--io-timeout must be a duration such as 30s');
  const runs = Number(value('--runs', '3'));
  if (!Number.isSafeInteger(runs) || runs < 0)
    throw new InvalidInputError('--runs must be a whole number (0: only the qemu-img cases)');
  const depth = Number(value('--depth', '1'));
  if (!Number.isSafeInteger(depth) || depth < 1 || depth > 32)
    throw new InvalidInputError('--depth must be a whole number from 1 to 32');
  const qemuRuns = Number(value('--qemu-runs', String(runs)));
  if (!Number.isSafeInteger(qemuRuns) || qemuRuns < 0)
    throw new InvalidInputError('--qemu-runs must be a whole number (0: skip the qemu-img cases)');
  const qemuWarmup = Number(value('--qemu-warmup', '1'));
  if (!Number.isSafeInteger(qemuWarmup) || qemuWarmup < 0)
    throw new InvalidInputError('--qemu-warmup must be a whole number (0: the first runs count)');
  const journalSync = value('--journal-sync', 'on-flush');
  if (journalSync !== 'on-flush' && journalSync !== 'every-write')
    throw new InvalidInputError('--journal-sync must be on-flush or every-write');
  return { runs, size, ops, writeRatio, copyRate, ioTimeoutMs, depth, qemuRuns, qemuWarmup, journalSync };
}

interface Figures {
  opsPerSec: number;
  mibPerSec: number;
  p50: number;
  p99: number;
  writeP99: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function workload(port: number, a: Args): Promise<Figures> {
  const c = await BenchNbdClient.connect(port, EXPORT);
  const rnd = seededRandom(42);
  const blocks = a.size / IO;
  const all: number[] = [];
  const writes: number[] = [];
  let t0 = 0;
  let next = 0;
  // `depth` lanes take the requests of one seeded sequence in turn, so every server sees the same ones.
  const lane = async () => {
    const buf = randomBytes(IO);
    for (let i = next++; i < a.ops + WARMUP; i = next++) {
      if (i === WARMUP) t0 = performance.now();
      const offset = Math.floor(rnd() * blocks) * IO;
      const isWrite = rnd() < a.writeRatio;
      buf.writeUInt32LE(i, 0);
      const s = performance.now();
      if (isWrite) await c.write(offset, buf);
      else await c.read4k(offset, IO);
      const ms = performance.now() - s;
      if (i >= WARMUP) {
        all.push(ms);
        if (isWrite) writes.push(ms);
      }
    }
  };
  await Promise.all(Array.from({ length: a.depth }, lane));
  const elapsed = performance.now() - t0;
  await c.flush();
  await c.close();
  all.sort((x, y) => x - y);
  writes.sort((x, y) => x - y);
  return {
    opsPerSec: (a.ops * 1000) / elapsed,
    mibPerSec: (a.ops * IO) / MiB / (elapsed / 1000),
    p50: percentile(all, 50),
    p99: percentile(all, 99),
    writeP99: percentile(writes, 99),
  };
}

/** One `qemu-img bench` case: qemu's own NBD client, which Kura does not ship, against both servers. */
interface QemuCase {
  name: string;
  write: boolean;
  depth: number;
  count: number;
  size: string;
}

/** The passthrough cases and their target: nbdkit's time ÷ Kura's time at least this. */
const QEMU_CASES: QemuCase[] = [
  { name: 'read 4k qd1', write: false, depth: 1, count: 20000, size: '4k' },
  { name: 'write 4k qd1', write: true, depth: 1, count: 20000, size: '4k' },
  { name: 'read 4k qd16', write: false, depth: 16, count: 20000, size: '4k' },
  { name: 'write 4k qd16', write: true, depth: 16, count: 20000, size: '4k' },
  { name: 'read 256k qd16', write: false, depth: 16, count: 2000, size: '256k' },
  { name: 'write 256k qd16', write: true, depth: 16, count: 2000, size: '256k' },
];
const QEMU_TARGET = 0.8;

/** Runs `qemu-img bench` once; resolves with the run's time in seconds as qemu-img reports it. */
async function qemuBench(url: string, c: QemuCase): Promise<number> {
  const argv = ['bench', '-f', 'raw', ...(c.write ? ['-w'] : []), '-d', String(c.depth), '-c', String(c.count)];
  argv.push('-s', c.size, '-S', c.size, url);
  const child = spawn('qemu-img', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  const m = /Run completed in ([\d.]+) seconds/.exec(out);
  if (code !== 0 || !m) throw new Error(`qemu-img ${argv.join(' ')} failed (${code}): ${out}`);
  return Number(m[1]);
}

/** Copies `image` into the export at `url` with nbdcopy; resolves with the wall time in seconds. */
async function nbdCopy(image: string, url: string): Promise<number> {
  const t0 = performance.now();
  const child = spawn('nbdcopy', [image, url], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`nbdcopy ${image} ${url} failed (${code}): ${err}`);
  return (performance.now() - t0) / 1000;
}

async function writeRandomFile(file: string, size: number): Promise<void> {
  const fh = await open(file, 'w');
  for (let off = 0; off < size; off += MiB)
    await fh.write(randomBytes(Math.min(MiB, size - off)), 0, Math.min(MiB, size - off), off);
  await fh.close();
}

/**
 * A process's CPU time so far, user and system, all its threads, in clock ticks (`/proc/<pid>/stat`;
 * 0 where there is no such file, and the bench then prints no CPU line).
 */
function cpuTicks(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), r(true)));
      s.once('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

async function startKura(
  file: string,
  stateDir: string,
  copyRate: number,
  journalSync: JournalSync,
): Promise<{ child: ChildProcess; nbdPort: number; controlPort: number; tokenFile: string }> {
  const child = spawn(
    process.execPath,
    [
      '--require',
      'tsx/cjs',
      path.join(__dirname, 'support', 'datapath-server.ts'),
      file,
      stateDir,
      String(copyRate),
      journalSync,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  const ready = await new Promise<{ nbdPort: number; controlPort: number; tokenFile: string }>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.includes('"ready"'));
      if (line) resolve(JSON.parse(line) as { nbdPort: number; controlPort: number; tokenFile: string });
    });
    child.once('exit', (code) => reject(new Error(`datapath exited with ${code}`)));
  });
  return { child, ...ready };
}

const fmt = (f: Figures) =>
  `${f.opsPerSec.toFixed(0).padStart(6)} ops/s ${f.mibPerSec.toFixed(2).padStart(7)} MiB/s   p50 ${f.p50.toFixed(3)} ms   p99 ${f.p99.toFixed(3)} ms   write p99 ${f.writeP99.toFixed(3)} ms`;

async function main(): Promise<void> {
  const a = args();
  const dir = await mkdtemp(path.join(tmpdir(), 'kura-bench-datapath-'));
  const file = path.join(dir, 'volume.img');
  const procs: ChildProcess[] = [];
  try {
    const fh = await open(file, 'w');
    for (let off = 0; off < a.size; off += MiB)
      await fh.write(randomBytes(Math.min(MiB, a.size - off)), 0, Math.min(MiB, a.size - off), off);
    await fh.sync();
    await fh.close();
    console.log(
      `workload: ${a.ops} requests of 4 KiB at random offsets, ${Math.round(a.writeRatio * 100)}% writes, ${a.depth === 1 ? 'one at a time' : `${a.depth} at a time`}, on a ${formatBytes(a.size)} file (${WARMUP} warm-up requests not counted); during a backup the journal is made durable ${a.journalSync === 'on-flush' ? 'on FLUSH and FUA' : 'before each ack'} (--journal-sync ${a.journalSync})`,
    );

    const kitPort = await freePort();
    const kit = spawn(
      'nbdkit',
      ['-f', '--exit-with-parent', '-i', '127.0.0.1', '-p', String(kitPort), 'file', `file=${file}`],
      { stdio: 'ignore' },
    );
    procs.push(kit);
    await waitForPort(kitPort);
    const kura = await startKura(file, path.join(dir, 'state'), a.copyRate, a.journalSync);
    procs.push(kura.child);
    const control = new DatapathClient(`http://127.0.0.1:${kura.controlPort}`, readControlToken(kura.tokenFile));

    if (a.qemuRuns > 0) {
      // nbdkit serves a copy, so its writes and Kura's land on files of the same content and layout.
      const copy = path.join(dir, 'volume-copy.img');
      await copyFile(file, copy);
      const kitCopyPort = await freePort();
      const kitCopy = spawn(
        'nbdkit',
        ['-f', '--exit-with-parent', '-i', '127.0.0.1', '-p', String(kitCopyPort), 'file', `file=${copy}`],
        { stdio: 'ignore' },
      );
      procs.push(kitCopy);
      await waitForPort(kitCopyPort);
      console.log(
        `qemu-img bench, nbdkit file on a copy of the volume vs Kura passthrough, alternating, ${a.qemuRuns} run(s) each after ${a.qemuWarmup} warm-up run(s) each not counted; ratio = nbdkit's time ÷ Kura's (target ≥ ${QEMU_TARGET})`,
      );
      for (const c of QEMU_CASES) {
        const kit: number[] = [];
        const ku: number[] = [];
        // A server that has just started serves its first thousands of requests of a kind slower
        // while V8 compiles their path (docs/adr/056); both are warmed alike, and the runs that
        // count are the ones a datapath that has been up for a while gives.
        for (let run = 0; run < a.qemuWarmup; run++) {
          await qemuBench(`nbd://127.0.0.1:${kitCopyPort}/`, c);
          await qemuBench(`nbd://127.0.0.1:${kura.nbdPort}/${EXPORT}`, c);
        }
        // Each server's own CPU (all its threads) over the runs that count: on a shared machine the
        // wall time follows the neighbours, the CPU a server needs for the same requests much less.
        const cpu = { kit: 0, kura: 0 };
        for (let run = 0; run < a.qemuRuns; run++) {
          const k0 = cpuTicks(kitCopy.pid);
          kit.push(await qemuBench(`nbd://127.0.0.1:${kitCopyPort}/`, c));
          cpu.kit += cpuTicks(kitCopy.pid) - k0;
          const u0 = cpuTicks(kura.child.pid);
          ku.push(await qemuBench(`nbd://127.0.0.1:${kura.nbdPort}/${EXPORT}`, c));
          cpu.kura += cpuTicks(kura.child.pid) - u0;
        }
        const [mk, mu] = [median(kit), median(ku)];
        const ratio = mk / mu;
        console.log(
          `  ${c.name.padEnd(16)} (-d ${String(c.depth).padStart(2)} -c ${String(c.count).padStart(5)} -s ${c.size.padEnd(4)}${c.write ? ' -w' : '   '})   nbdkit ${mk.toFixed(3)} s   kura ${mu.toFixed(3)} s   ratio ${ratio.toFixed(2)}   target ${QEMU_TARGET}   ${ratio >= QEMU_TARGET ? 'pass' : 'short'}   (kura runs: ${ku.map((x) => x.toFixed(3)).join(' ')}; nbdkit runs: ${kit.map((x) => x.toFixed(3)).join(' ')})`,
        );
        if (cpu.kura > 0)
          console.log(
            `  ${''.padEnd(16)} server CPU over those runs: nbdkit ${cpu.kit} ticks, kura ${cpu.kura} ticks, nbdkit ÷ kura ${(cpu.kit / cpu.kura).toFixed(2)}`,
          );
        printVerdict({
          bench: 'datapath',
          metric: `qemu-img bench ${c.name}: nbdkit ÷ Kura (time)`,
          now: ratio,
          target: QEMU_TARGET,
          direction: 'atLeast',
          note: `median of ${a.qemuRuns}`,
        });
      }
      // A restore or a migration over NBD: one sequential copy of a whole image into the export, by
      // nbdcopy, which opens several connections when the server announces multi-conn (both do).
      const image = path.join(dir, 'restore-source.img');
      await writeRandomFile(image, a.size);
      const kit2: number[] = [];
      const ku2: number[] = [];
      for (let run = 0; run < a.qemuRuns; run++) {
        kit2.push(await nbdCopy(image, `nbd://127.0.0.1:${kitCopyPort}/`));
        ku2.push(await nbdCopy(image, `nbd://127.0.0.1:${kura.nbdPort}/${EXPORT}`));
      }
      const [mk2, mu2] = [median(kit2), median(ku2)];
      const ratio2 = mk2 / mu2;
      console.log(
        `  ${'nbdcopy restore'.padEnd(16)} (${formatBytes(a.size)} image, multi-conn)       nbdkit ${mk2.toFixed(3)} s   kura ${mu2.toFixed(3)} s   ratio ${ratio2.toFixed(2)}   target ${QEMU_TARGET}   ${ratio2 >= QEMU_TARGET ? 'pass' : 'short'}   (kura runs: ${ku2.map((x) => x.toFixed(3)).join(' ')}; nbdkit runs: ${kit2.map((x) => x.toFixed(3)).join(' ')})`,
      );
      printVerdict({
        bench: 'datapath',
        metric: 'nbdcopy of an image into the export: nbdkit ÷ Kura (time)',
        now: ratio2,
        target: QEMU_TARGET,
        direction: 'atLeast',
        note: `median of ${a.qemuRuns}; the target of the large writes it is made of`,
      });
      kitCopy.kill('SIGTERM');
      await new Promise((r) => kitCopy.once('exit', r));
      console.log('');
    }
    if (a.runs === 0) return;
    const maxEtaMs = Math.floor(a.ioTimeoutMs * 0.5);
    const fa: Figures[] = [];
    const fb: Figures[] = [];
    const fc: Figures[] = [];
    const quiesce: number[] = [];

    for (let run = 1; run <= a.runs; run++) {
      // (a) Debian's nbdkit file plugin serving the same file.
      fa.push(await workload(kitPort, a));
      console.log(`run ${run} (a) nbdkit file          ${fmt(fa[fa.length - 1]!)}`);

      // (b) Kura's datapath in passthrough, its own process.
      fb.push(await workload(kura.nbdPort, a));
      console.log(`run ${run} (b) kura passthrough     ${fmt(fb[fb.length - 1]!)}`);

      // (c) the same during an online backup: base copy paced at --copy-rate, then catch-up rounds.
      const backupId = `bench-${run}`;
      await control.enterBackup(EXPORT, backupId, path.join(dir, `image-${run}.img`));
      await control.startBaseCopy(EXPORT, backupId);
      let driving = true;
      let rounds = 0;
      const driver = (async () => {
        while (driving) {
          const st = await control.status(EXPORT);
          if (st.phase === 'catch-up') {
            await control.catchUp(EXPORT, backupId);
            rounds++;
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      const before = await control.status(EXPORT);
      fc.push(await workload(kura.nbdPort, a));
      const after = await control.status(EXPORT);
      driving = false;
      await driver;
      console.log(`run ${run} (c) kura during backup   ${fmt(fc[fc.length - 1]!)}`);
      console.log(
        `        during (c): base copy ${formatBytes(before.baseCopiedBytes)} → ${formatBytes(after.baseCopiedBytes)} of ${formatBytes(a.size)}, ${rounds} catch-up round(s), ${after.journalEntries} journal entries, path ${after.path}`,
      );

      // The switch back: rounds until the estimate fits ioTimeout × 0.5, then the measured quiesce.
      while ((await control.status(EXPORT)).phase === 'base-copy') await new Promise((r) => setTimeout(r, 100));
      let q: number | null = null;
      while (q === null) {
        await control.catchUp(EXPORT, backupId);
        const f = await control.finish(EXPORT, backupId, maxEtaMs);
        if (f.switched) q = f.quiesceMs;
      }
      quiesce.push(q);
      console.log(`        quiesce window ${q.toFixed(2)} ms`);
    }
    kit.kill('SIGTERM');
    kura.child.kill('SIGTERM');
    await Promise.all([new Promise((r) => kit.once('exit', r)), new Promise((r) => kura.child.once('exit', r))]);

    const med = (xs: Figures[]): Figures => ({
      opsPerSec: median(xs.map((x) => x.opsPerSec)),
      mibPerSec: median(xs.map((x) => x.mibPerSec)),
      p50: median(xs.map((x) => x.p50)),
      p99: median(xs.map((x) => x.p99)),
      writeP99: median(xs.map((x) => x.writeP99)),
    });
    const [ma, mb, mc] = [med(fa), med(fb), med(fc)];
    const mq = median(quiesce);
    console.log('');
    console.log(`medians of ${a.runs} run(s):`);
    console.log(`(a) nbdkit file          ${fmt(ma)}`);
    console.log(`(b) kura passthrough     ${fmt(mb)}`);
    console.log(`(c) kura during backup   ${fmt(mc)}`);
    console.log(
      `ratio b/a (kura passthrough ÷ nbdkit):   throughput ${(mb.opsPerSec / ma.opsPerSec).toFixed(2)}   p50 ${(mb.p50 / ma.p50).toFixed(2)}×   p99 ${(mb.p99 / ma.p99).toFixed(2)}×`,
    );
    console.log(
      `ratio c/b (during backup ÷ passthrough): throughput ${(mc.opsPerSec / mb.opsPerSec).toFixed(2)}   p50 ${(mc.p50 / mb.p50).toFixed(2)}×   p99 ${(mc.p99 / mb.p99).toFixed(2)}×`,
    );
    console.log(
      `quiesce window ${mq.toFixed(2)} ms ÷ I/O timeout ${a.ioTimeoutMs} ms = ${(mq / a.ioTimeoutMs).toExponential(2)}`,
    );
    const window = `median of ${a.runs}, ${a.ops} requests a run, ${a.depth === 1 ? 'one at a time' : `${a.depth} at a time`}`;
    printVerdict({
      bench: 'datapath',
      metric: 'host I/O during a backup: throughput ÷ passthrough',
      now: mc.opsPerSec / mb.opsPerSec,
      target: DURING_THROUGHPUT_TARGET,
      direction: 'atLeast',
      note: window,
    });
    printVerdict({
      bench: 'datapath',
      metric: 'host I/O during a backup: p99 ÷ passthrough',
      now: mc.p99 / mb.p99,
      target: DURING_P99_TARGET,
      direction: 'atMost',
      note: window,
    });
  } finally {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
