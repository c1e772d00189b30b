/**
 * The online-backup datapath against Debian's nbdkit: the same client workload (random 4 KiB reads
 * and writes, one request at a time) against (a) `nbdkit file` serving the file, (b) Kura's
 * datapath in passthrough, (c) Kura's datapath during an online backup (base copy and catch-up
 * rounds running). Prints throughput, latency p50/p99, the ratios b/a and c/b, and the measured
 * quiesce window of the switch back ÷ the host's I/O timeout.
 *
 *   npx tsx bench/datapath.ts [--size 64MiB] [--ops 2000] [--write-ratio 0.5] [--copy-rate 64MiB] [--io-timeout 30s]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { DatapathClient } from '../src/datapath/client';
import { InvalidInputError } from '../src/domain/errors';
import { formatBytes, parseDuration, parseSize } from '../src/domain/units';
import { BenchNbdClient } from './support/nbd-client';

const MiB = 1024 * 1024;
const IO = 4096;
const WARMUP = 50;
const EXPORT = 'bench/vol';

interface Args {
  size: number;
  ops: number;
  writeRatio: number;
  copyRate: number;
  ioTimeoutMs: number;
}

function args(): Args {
  const argv = process.argv.slice(2);
  const value = (flag: string, dflt: string): string => {
    const i = argv.indexOf(flag);
    return i === -1 ? dflt : (argv[i + 1] ?? dflt);
  };
  const size = parseSize(value('--size', '64MiB'));
  if (size === undefined || size < MiB || size % IO !== 0) throw new InvalidInputError('--size must be a size of at least 1MiB, a multiple of 4 KiB');
  const ops = Number(value('--ops', '2000'));
  if (!Number.isSafeInteger(ops) || ops < 100) throw new InvalidInputError('--ops must be a whole number of at least 100');
  const writeRatio = Number(value('--write-ratio', '0.5'));
  if (!(writeRatio >= 0 && writeRatio <= 1)) throw new InvalidInputError('--write-ratio must be between 0 and 1');
  const copyRate = parseSize(value('--copy-rate', '64MiB'));
  if (copyRate === undefined) throw new InvalidInputError('--copy-rate must be a size per second such as 32MiB (0: unpaced)');
  const ioTimeoutMs = parseDuration(value('--io-timeout', '30s'));
  if (ioTimeoutMs === undefined || ioTimeoutMs <= 0) throw new InvalidInputError('--io-timeout must be a duration such as 30s');
  return { size, ops, writeRatio, copyRate, ioTimeoutMs };
}

/** A small seeded PRNG (mulberry32), so every server gets the very same sequence of requests. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Figures {
  opsPerSec: number;
  mibPerSec: number;
  p50: number;
  p99: number;
  writeP99: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function workload(port: number, a: Args): Promise<Figures> {
  const c = await BenchNbdClient.connect(port, EXPORT);
  const rnd = prng(42);
  const blocks = a.size / IO;
  const buf = randomBytes(IO);
  const all: number[] = [];
  const writes: number[] = [];
  let t0 = 0;
  for (let i = 0; i < a.ops + WARMUP; i++) {
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
  const elapsed = performance.now() - t0;
  await c.flush();
  await c.close();
  all.sort((x, y) => x - y);
  writes.sort((x, y) => x - y);
  return { opsPerSec: (a.ops * 1000) / elapsed, mibPerSec: (a.ops * IO) / MiB / (elapsed / 1000), p50: percentile(all, 50), p99: percentile(all, 99), writeP99: percentile(writes, 99) };
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
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

async function startKura(file: string, stateDir: string, copyRate: number): Promise<{ child: ChildProcess; nbdPort: number; controlPort: number }> {
  const child = spawn(process.execPath, ['--require', 'tsx/cjs', path.join(__dirname, 'support', 'datapath-server.ts'), file, stateDir, String(copyRate)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const ready = await new Promise<{ nbdPort: number; controlPort: number }>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.includes('"ready"'));
      if (line) resolve(JSON.parse(line) as { nbdPort: number; controlPort: number });
    });
    child.once('exit', (code) => reject(new Error(`datapath exited with ${code}`)));
  });
  return { child, ...ready };
}

const fmt = (f: Figures) => `${f.opsPerSec.toFixed(0).padStart(6)} ops/s ${f.mibPerSec.toFixed(2).padStart(7)} MiB/s   p50 ${f.p50.toFixed(3)} ms   p99 ${f.p99.toFixed(3)} ms   write p99 ${f.writeP99.toFixed(3)} ms`;

async function main(): Promise<void> {
  const a = args();
  const dir = await mkdtemp(path.join(tmpdir(), 'kura-bench-datapath-'));
  const file = path.join(dir, 'volume.img');
  const procs: ChildProcess[] = [];
  try {
    const fh = await open(file, 'w');
    for (let off = 0; off < a.size; off += MiB) await fh.write(randomBytes(Math.min(MiB, a.size - off)), 0, Math.min(MiB, a.size - off), off);
    await fh.sync();
    await fh.close();
    console.log(`workload: ${a.ops} requests of 4 KiB at random offsets, ${Math.round(a.writeRatio * 100)}% writes, one at a time, on a ${formatBytes(a.size)} file (${WARMUP} warm-up requests not counted)`);

    // (a) Debian's nbdkit file plugin serving the same file.
    const kitPort = await freePort();
    const kit = spawn('nbdkit', ['-f', '--exit-with-parent', '-i', '127.0.0.1', '-p', String(kitPort), 'file', `file=${file}`], { stdio: 'ignore' });
    procs.push(kit);
    await waitForPort(kitPort);
    const fa = await workload(kitPort, a);
    kit.kill('SIGTERM');
    await new Promise((r) => kit.once('exit', r));
    console.log(`(a) nbdkit file          ${fmt(fa)}`);

    // (b) Kura's datapath in passthrough, its own process.
    const kura = await startKura(file, path.join(dir, 'state'), a.copyRate);
    procs.push(kura.child);
    const fb = await workload(kura.nbdPort, a);
    console.log(`(b) kura passthrough     ${fmt(fb)}`);

    // (c) the same during an online backup: base copy paced at --copy-rate, then catch-up rounds.
    const control = new DatapathClient(`http://127.0.0.1:${kura.controlPort}`);
    await control.enterBackup(EXPORT, 'bench', path.join(dir, 'image.img'));
    await control.startBaseCopy(EXPORT, 'bench');
    let driving = true;
    let rounds = 0;
    const driver = (async () => {
      while (driving) {
        const st = await control.status(EXPORT);
        if (st.phase === 'catch-up') {
          await control.catchUp(EXPORT, 'bench');
          rounds++;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const before = await control.status(EXPORT);
    const fc = await workload(kura.nbdPort, a);
    const after = await control.status(EXPORT);
    driving = false;
    await driver;
    console.log(`(c) kura during backup   ${fmt(fc)}`);
    console.log(`    during (c): base copy ${formatBytes(before.baseCopiedBytes)} → ${formatBytes(after.baseCopiedBytes)} of ${formatBytes(a.size)}, ${rounds} catch-up round(s), ${after.journalEntries} journal entries, path ${after.path}`);

    // The switch back: rounds until the estimate fits ioTimeout × 0.5, then the measured quiesce.
    const maxEtaMs = Math.floor(a.ioTimeoutMs * 0.5);
    while ((await control.status(EXPORT)).phase === 'base-copy') await new Promise((r) => setTimeout(r, 100));
    let quiesceMs: number | null = null;
    let drained = 0;
    let finishRounds = 0;
    while (quiesceMs === null) {
      await control.catchUp(EXPORT, 'bench');
      finishRounds++;
      const f = await control.finish(EXPORT, 'bench', maxEtaMs);
      if (f.switched) {
        quiesceMs = f.quiesceMs;
        drained = f.drainedBytes;
      }
    }
    kura.child.kill('SIGTERM');
    await new Promise((r) => kura.child.once('exit', r));

    console.log('');
    console.log(`ratio b/a (kura passthrough ÷ nbdkit):   throughput ${(fb.opsPerSec / fa.opsPerSec).toFixed(2)}   p50 ${(fb.p50 / fa.p50).toFixed(2)}×   p99 ${(fb.p99 / fa.p99).toFixed(2)}×`);
    console.log(`ratio c/b (during backup ÷ passthrough): throughput ${(fc.opsPerSec / fb.opsPerSec).toFixed(2)}   p50 ${(fc.p50 / fb.p50).toFixed(2)}×   p99 ${(fc.p99 / fb.p99).toFixed(2)}×`);
    console.log(`quiesce window ${quiesceMs!.toFixed(2)} ms (drained ${formatBytes(drained)} after ${finishRounds} more round(s)) ÷ I/O timeout ${a.ioTimeoutMs} ms = ${(quiesceMs! / a.ioTimeoutMs).toExponential(2)}`);
  } finally {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
