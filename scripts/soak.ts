/**
 * The bounded soak (`npm run soak -- --minutes 30`): its own dev server, datapath and two worker
 * processes over a small hospital lab with a second site, mixed jobs started continuously at a
 * bounded concurrency — tape, split, snapshot, store and online backups, restores compared byte for
 * byte, recovery ladders, remote-copy rounds — while device faults are injected and one of the
 * workers is killed and restarted (the other is kept, so its memory shows whether a worker levels
 * off); then a drain, a stop of everything it started, and the closing table.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode } from '@temporalio/worker';
import { freePort, startDevServer, type DevServer } from '../src/stack/devserver';
import { withMallocTuning } from '../src/stack/malloc';
import { hospitalPreset, renderConfigYaml } from '../src/lab/preset';
import { loadConfig, type LoadedConfig } from '../src/config/load';
import { kuraPaths, type KuraPaths } from '../src/config/paths';
import { createLabFiles, labVolumePath } from '../src/lab/files';
import { LabState } from '../src/lab/state';
import { ensureGuardians, installationClientInterceptors, Kura, KuraRemote, guardianWorkflowId } from '../src/client';
import { KuraStore } from '../src/api/store';
import { kuraDataConverter, WORKFLOW_BUNDLE_CONVERTERS } from '../src/codec/data-converter';
import { ensureKeyFile } from '../src/codec/keys';
import { resolveRemoteGroup } from '../src/config/remote';
import { guardianQuery } from '../src/messages';
import { rungForDepth, type CureDepth, type GuardianView, type LadderResult } from '../src/domain/ladder';
import { KuraError, ErrorType } from '../src/domain/errors';
import { workflowInterceptorModules, workflowsEntry } from '../src/worker';
import { BenchNbdClient } from '../bench/support/nbd-client';
import {
  Outcome,
  SeededRandom,
  classifyFailure,
  parseSoakArgs,
  passed,
  renderSummary,
  type FaultWindow,
  type JobRecord,
  type MemorySample,
  type SoakOptions,
} from './soak-report';

const MiB = 1024 * 1024;
const ROOT = path.resolve(__dirname, '..');
const SITE = 'soak';
const GROUP = 'db';
/** A job that takes longer than this is unexplained: nothing in this small lab should. */
const JOB_BOUND_MS = 5 * 60_000;
/** How long in-flight work may take to finish once the soak stops starting new work. */
const DRAIN_BOUND_MS = 4 * 60_000;
/** A fault stands this long before the lab is repaired, as an operator would after fixing it. */
const FAULT_STANDS_MS = 40_000;

type Kind =
  | 'backup-tape'
  | 'backup-split'
  | 'backup-snapshot'
  | 'backup-store'
  | 'backup-online'
  | 'restore'
  | 'ladder'
  | 'remote-copy';

/** How often each kind is chosen, relative to the others. */
const WEIGHTS: Record<Kind, number> = {
  'backup-tape': 3,
  'backup-split': 1.5,
  'backup-snapshot': 1.5,
  'backup-store': 2,
  'backup-online': 1.5,
  restore: 4,
  ladder: 1.5,
  'remote-copy': 1.5,
};

/** A backup the soak can restore: its id, the SHA-256 recorded when it was taken, and where it lives. */
interface Restorable {
  backupId: string;
  sha256: string;
  kind: Kind;
}

/** A process the soak started, by pid, with its output kept for a failure report. */
interface Proc {
  child: ChildProcess;
  output: string[];
}

/**
 * The soak's two workers, polling the same task queues as a deployment's replicas do: `kept`, which
 * the soak never kills on purpose and whose memory is the worker's verdict, and `killed`, which it
 * SIGKILLs on its schedule and restarts (docs/adr/051).
 */
type WorkerRole = 'kept' | 'killed';
const WORKER_ROLES: readonly WorkerRole[] = ['kept', 'killed'];

/** What starts a worker of one role: its environment (its own kura.yaml) and its metrics ports. */
interface WorkerSetup {
  env: NodeJS.ProcessEnv;
  metrics: { workerPort: number; temporalPort: number };
}

function log(line: string): void {
  process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

async function sha256(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** VmRSS of a process in bytes, from /proc (undefined when it is gone). */
function rssOf(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Where a process's resident memory lies, from /proc: its threads, malloc's main arena (`[heap]`),
 * the anonymous mappings of 64 MiB and less that glibc's thread arenas are made of, other anonymous
 * memory (the V8 heap's pages, large mallocs), and file-backed pages (code, mapped files). It tells
 * memory the native side allocated from the JavaScript heap the metrics show. Undefined when gone.
 */
export function nativeMemoryOf(
  pid: number | undefined,
): { threads: number; heap: number; arenas: number; otherAnon: number; file: number } | undefined {
  if (pid === undefined) return undefined;
  try {
    const threads = Number(/Threads:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    const out = { threads, heap: 0, arenas: 0, otherAnon: 0, file: 0 };
    let kind: 'heap' | 'arenas' | 'otherAnon' | 'file' = 'file';
    for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
      const head = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ (\d+)\s*(.*)$/.exec(line);
      if (head) {
        const size = parseInt(head[2]!, 16) - parseInt(head[1]!, 16);
        const name = head[4]!.trim();
        // A thread arena is a 64 MiB reservation (HEAP_MAX_SIZE on 64-bit), its used part read-write.
        kind =
          name === '[heap]'
            ? 'heap'
            : name === '' && head[3] === '0'
              ? size <= 64 * MiB && (parseInt(head[1]!, 16) & (64 * MiB - 1)) === 0
                ? 'arenas'
                : 'otherAnon'
              : 'file';
        continue;
      }
      const rss = /^Rss:\s+(\d+) kB/.exec(line);
      if (rss) out[kind] += Number(rss[1]) * 1024;
    }
    return out;
  } catch {
    return undefined;
  }
}

/**
 * The worker's V8 heap (from its own metrics) and the workflows its SDK holds in the sticky cache
 * (from the SDK's): beside the RSS they tell growth of live objects from a heap the collector has
 * not yet shrunk, and whether the cache is what fills it. Undefined when the worker does not answer.
 */
async function workerInsides(ports: {
  workerPort: number;
  temporalPort: number;
}): Promise<{ heapUsed?: number; heapTotal?: number; external?: number; cached?: number }> {
  const scrape = async (port: number): Promise<string> => {
    if (!port) return '';
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5_000) });
    return res.ok ? res.text() : '';
  };
  const value = (text: string, name: string): number | undefined => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const [kura, sdk] = await Promise.all([scrape(ports.workerPort), scrape(ports.temporalPort)]);
  return {
    heapUsed: value(kura, 'nodejs_heap_size_used_bytes'),
    heapTotal: value(kura, 'nodejs_heap_size_total_bytes'),
    external: value(kura, 'nodejs_external_memory_bytes'),
    cached: value(sdk, 'temporal_sticky_cache_size'),
  };
}

/**
 * The workflows in the dev server's mutable-state cache (`cache_usage{cache_type="mutablestate"}`
 * from its metrics): the server's memory grows with them until the cache is full. Undefined when the
 * server does not answer or has no such metric.
 */
async function serverCacheEntries(port: number): Promise<number | undefined> {
  if (!port) return undefined;
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5_000) });
  if (!res.ok) return undefined;
  const m = /^cache_usage\{[^}]*cache_type="mutablestate"[^}]*\} ([0-9.e+]+)$/m.exec(await res.text());
  return m ? Number(m[1]) : undefined;
}

function sizeOf(file: string): number {
  return existsSync(file) ? statSync(file).size : 0;
}

/** Spawns a Node process running TypeScript through tsx and waits for `ready` in its output. */
async function startNode(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  ready: string,
  procs: Set<Proc>,
  nodeFlags: readonly string[] = [],
): Promise<Proc> {
  const child = spawn(process.execPath, [...nodeFlags, '--require', 'tsx/cjs', script, ...args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const proc: Proc = { child, output: [] };
  procs.add(proc);
  child.once('exit', () => procs.delete(proc));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${path.basename(script)} did not start in 120 s:\n${proc.output.join('')}`)),
      120_000,
    );
    const onData = (d: Buffer) => {
      keep(proc, d);
      if (proc.output.join('').includes(ready)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(
        new Error(`${path.basename(script)} exited (${code ?? signal}) before it was ready:\n${proc.output.join('')}`),
      );
    });
  });
  child.removeAllListeners('exit');
  child.once('exit', () => procs.delete(proc));
  return proc;
}

/**
 * A query, asked again while it fails for up to 90 s: a query is answered by a worker, and the
 * worker that holds the workflow may be the one just killed (its sticky queue times out before the
 * kept worker takes the task, 20 s and more on a loaded machine). The last
 * failure is thrown when the time is up.
 */
async function queryPatiently<T>(ask: () => Promise<T>): Promise<T> {
  const until = Date.now() + 90_000;
  for (;;) {
    try {
      return await ask();
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/** Keeps the last lines a process printed, for the report of its crash. */
function keep(p: Proc, d: Buffer): void {
  p.output.push(d.toString());
  if (p.output.length > 200) p.output.splice(0, p.output.length - 200);
}

/** Stops a process by its pid: SIGTERM, then SIGKILL after `graceMs`. */
async function stopProc(p: Proc, graceMs = 8000): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise((r) => p.child.once('exit', r));
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** kura.yaml of the soak: the hospital preset with 4 small VMs, a DR site joined by one group, fast ladders. */
function soakConfig(
  dir: string,
  ports: { nbd: number; control: number; receiver: number; workerMetrics: number; sdkMetrics: number },
) {
  const cfg = hospitalPreset({
    vms: 4,
    hosts: 2,
    dataVolumeSize: 4 * MiB,
    softwareVolumeSize: 1 * MiB,
    cartridgesPerLibrary: 8,
    cartridgeCapacity: 1024 * MiB,
    drivesPerLibrary: 2,
    site: SITE,
  });
  cfg.tuning = { pieceSize: '1MiB', copyHeartbeatTimeout: '3s', deviceAttempts: 3, reserveWait: '60s' };
  cfg.security = { keyFile: path.join(dir, 'kura-keys.json') };
  // The worker's heap and the SDK's cache size, sampled beside its RSS.
  cfg.metrics = { workerPort: ports.workerMetrics, temporalPort: ports.sdkMetrics };
  cfg.store = { chunkSize: '64KiB' };
  cfg.datapath = {
    nbdPort: ports.nbd,
    controlPort: ports.control,
    copyRate: '16MiB',
    ioTimeout: '30s',
    safetyFactor: 0.5,
  };
  const main = cfg.sites[0]!;
  // Room for a replica of every volume and a snapshot or two beside them.
  main.arrays[0]!.freePool = { size: '96MiB', replicas: 16 };
  (cfg as Record<string, unknown>).ladder = {
    attempts: 1,
    healthWait: '700ms',
    healthCheckEvery: '25ms',
    backoff: '10ms',
    stabilityWindow: '0ms',
    keepImages: 2,
    healthPoll: '0ms',
    guardVms: false,
  };
  (cfg as Record<string, unknown>).lab = { aplRestart: '30ms', mwRestart: '40ms', osReboot: '60ms' };
  const dr = JSON.parse(JSON.stringify(main)) as typeof main;
  dr.name = `${SITE}-dr`;
  dr.vms = [];
  dr.policies = [];
  cfg.sites.push(dr);
  (cfg as Record<string, unknown>).remoteCopy = {
    wan: { latency: '5ms' },
    batchEntries: 16,
    resendAfter: '300ms',
    groups: [
      {
        name: GROUP,
        main: SITE,
        remote: dr.name,
        volumes: ['array-01/vm-001-data', 'array-01/vm-002-data'],
        receiverPort: ports.receiver,
      },
    ],
  };
  return cfg;
}

/**
 * A free port below the kernel's ephemeral range, for a listener that binds later and again every
 * round (the remote-copy receiver). A port from freePort() is in that range, so any process's bind
 * to port 0 (the dev server picks its internal ports so) or outgoing connection may take it between
 * the choice and the bind.
 */
async function listenerPort(): Promise<number> {
  const range = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  const below = Number.isInteger(range[0]) && (range[0] as number) > 2048 ? (range[0] as number) : 32768;
  const lowest = Math.max(1025, below - 12_000);
  for (let i = 0; i < 50; i++) {
    const port = lowest + Math.floor(Math.random() * (below - lowest));
    const free = await new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (free) return port;
  }
  return freePort();
}

/** Everything the soak started and holds, and what it has counted so far. */
class Soak {
  readonly rand: SeededRandom;
  readonly jobs: JobRecord[] = [];
  readonly mismatches: string[] = [];
  readonly faults: FaultWindow[] = [];
  readonly samples: MemorySample[] = [];
  readonly restorables: Restorable[] = [];
  readonly busyVms = new Set<string>();
  restoresVerified = 0;
  workerKills = 0;
  /** The kept worker's MALLOC_* variables, read from its /proc/<pid>/environ when it starts. */
  workerMallocEnv: string[] | undefined;
  /** The running process of each worker role (undefined while it is being restarted). */
  readonly workers: Record<WorkerRole, Proc | undefined> = { kept: undefined, killed: undefined };
  /** The worker the soak is killing on purpose, the restart of a crashed one per role, and whether the soak is stopping. */
  killing: Proc | undefined;
  readonly restarting: Partial<Record<WorkerRole, Promise<void>>> = {};
  stopping = false;
  /** The jobs in flight, for the drain. */
  running = new Set<Promise<void>>();
  private seq = 0;
  /** The instant of the first sample: the start of the soak's clock. */
  t0 = Date.now();
  /** The dev server's metrics port, where its cache's size is read beside its RSS (0: none). */
  serverMetricsPort = 0;
  /** Reads of the server's cache still in flight; the summary waits for them. */
  readonly pendingReads = new Set<Promise<void>>();

  constructor(
    readonly opts: SoakOptions,
    readonly dir: string,
    readonly loaded: LoadedConfig,
    readonly paths: KuraPaths,
    readonly server: DevServer,
    readonly datapath: Proc,
    readonly nbdPort: number,
    readonly kura: Kura,
    readonly store: KuraStore,
    readonly remote: KuraRemote,
    readonly client: Client,
    readonly workerSetups: Record<WorkerRole, WorkerSetup>,
    readonly procs: Set<Proc>,
  ) {
    this.rand = new SeededRandom(opts.seed);
  }

  get vms(): string[] {
    return this.loaded.config.sites[0]!.vms.map((v) => v.name);
  }

  dataRef(vm: string): { array: string; volume: string; file: string } {
    const ref = this.loaded.config.sites[0]!.vms.find((v) => v.name === vm)!.dataVolume;
    const [array, volume] = ref.split('/') as [string, string];
    return { array, volume, file: labVolumePath(this.paths, SITE, array, volume) };
  }

  /** Starts the worker of one role and watches it: an exit the soak did not cause is an unexplained failure. */
  async startWorker(role: WorkerRole): Promise<void> {
    // $KURA_SOAK_WORKER_FLAGS: Node or V8 flags of the workers (such as --trace-gc, which Node refuses in
    // NODE_OPTIONS); $KURA_SOAK_WORKER_LOG: a file prefix that keeps each worker's whole output (docs/soak.md).
    const flags = process.env.KURA_SOAK_WORKER_FLAGS?.split(' ').filter((f) => f !== '') ?? [];
    const w = await startNode(
      path.join(ROOT, 'src', 'worker.ts'),
      [],
      this.workerSetups[role].env,
      'workers running',
      this.procs,
      flags,
    );
    const logTo = process.env.KURA_SOAK_WORKER_LOG;
    if (logTo) {
      const out = createWriteStream(`${logTo}.${w.child.pid}`);
      out.write(w.output.join(''));
      w.child.stdout!.pipe(out);
      w.child.stderr!.pipe(out);
    }
    this.workers[role] = w;
    if (role === 'kept' && w.child.pid !== undefined)
      this.workerMallocEnv = readFileSync(`/proc/${w.child.pid}/environ`, 'utf8')
        .split('\0')
        .filter((v) => v.startsWith('MALLOC_'));
    // A worker of either role that exits without being killed by the soak is an unexplained failure:
    // recorded with the end of its output, and replaced in its role so the work goes on.
    w.child.once('exit', (code, signal) => {
      if (this.killing === w || this.stopping) return;
      const tail = w.output.join('').split('\n').slice(-40).join('\n');
      this.jobs.push({
        kind: 'worker-crash',
        outcome: Outcome.Unexplained,
        detail: `worker (${role}) ${w.child.pid} exited (${code ?? signal}):\n${tail}`,
      });
      log(`worker (${role}) ${w.child.pid} exited on its own (${code ?? signal}):\n${tail}`);
      if (this.workers[role] === w) this.workers[role] = undefined;
      this.restarting[role] ??= this.startWorker(role)
        .catch((err: unknown) => log(`worker (${role}) restart failed: ${String(err)}`))
        .finally(() => delete this.restarting[role]);
    });
  }

  /**
   * SIGKILL of the killed worker in the middle of whatever it runs, then a new one in its role; the
   * kept worker goes on, as a deployment's other replicas do when one of them dies.
   */
  async killWorker(): Promise<void> {
    const w = this.workers.killed;
    // None, or one that has exited already (its crash is recorded and its successor on the way).
    if (!w || w.child.exitCode !== null || w.child.signalCode !== null) return;
    const exited = new Promise((r) => w.child.once('exit', r));
    this.killing = w;
    w.child.kill('SIGKILL');
    await exited;
    this.workerKills++;
    log(`worker (killed) ${w.child.pid} killed (SIGKILL); starting a new one`);
    await this.startWorker('killed');
    log(`worker (killed) ${this.workers.killed?.child.pid} running`);
  }

  /** A device fault on a drive or backup server: the next transfer through it fails part way. */
  injectFault(): void {
    const site = this.loaded.config.sites[0]!;
    const devices = [...site.servers.map((s) => s.name), ...site.libraries.flatMap((l) => l.drives.map((d) => d.id))];
    const device = this.rand.pick(devices);
    const state = new LabState(this.paths.labState);
    try {
      state.addFault({ device, kind: 'fail', after: { percent: this.rand.int(10, 90) }, once: true });
    } finally {
      state.close();
    }
    this.faults.push({ device, from: Date.now(), to: Infinity });
    log(`fault injected: ${device} fails once part way through a transfer`);
  }

  /** Clears the faults and brings every device the pool holds out of service back. */
  async repair(): Promise<void> {
    const state = new LabState(this.paths.labState);
    try {
      state.clearFaults();
    } finally {
      state.close();
    }
    const tables = await this.kura.pool.tables(SITE);
    const out = [...tables.servers, ...tables.libraries, ...tables.drives, ...tables.tapes, ...tables.switches].filter(
      (r) => r.state === 'unavailable',
    );
    for (const d of out) await this.kura.pool.mark(SITE, { device: d.name, state: 'available' });
    for (const f of this.faults) if (f.to === Infinity) f.to = Date.now();
    log(`lab repaired${out.length ? `; back in service: ${out.map((d) => d.name).join(', ')}` : ''}`);
  }

  sample(): void {
    const dbFile = path.join(this.dir, 'temporal.db');
    const s: MemorySample = {
      atMs: Date.now() - this.t0,
      rss: {
        worker: rssOf(this.workers.kept?.child.pid),
        killedWorker: rssOf(this.workers.killed?.child.pid),
        server: rssOf(this.server.pid),
        datapath: rssOf(this.datapath.child.pid),
      },
      workerPid: this.workers.kept?.child.pid,
      killedWorkerPid: this.workers.killed?.child.pid,
      dbBytes: sizeOf(dbFile) + sizeOf(`${dbFile}-wal`),
    };
    this.samples.push(s);
    log(
      `memory: worker (kept) ${s.rss.worker} B, worker (killed) ${s.rss.killedWorker} B, server ${s.rss.server} B, ` +
        `datapath ${s.rss.datapath} B; server db ${s.dbBytes} B`,
    );
    const read = serverCacheEntries(this.serverMetricsPort)
      .then((n) => {
        if (n !== undefined) s.serverCacheEntries = n;
        log(`server: ${n ?? '?'} workflows in its history cache`);
      })
      .catch((err: unknown) => log(`server metrics unavailable: ${String(err)}`))
      .finally(() => this.pendingReads.delete(read));
    this.pendingReads.add(read);
    for (const role of WORKER_ROLES) {
      const pid = role === 'kept' ? s.workerPid : s.killedWorkerPid;
      const native = nativeMemoryOf(pid);
      void workerInsides(this.workerSetups[role].metrics)
        .then((w) =>
          log(
            `worker (${role}) ${pid}: V8 heap used ${w.heapUsed} B of ${w.heapTotal} B, external ${w.external} B; ` +
              `${w.cached} workflows in the SDK's cache` +
              (native
                ? `; ${native.threads} threads, malloc main arena ${native.heap} B, thread arenas ${native.arenas} B, ` +
                  `other anonymous ${native.otherAnon} B, file-backed ${native.file} B`
                : ''),
          ),
        )
        .catch((err: unknown) => log(`worker (${role}) metrics unavailable: ${String(err)}`));
    }
  }

  /** Writes a few random 64 KiB blocks to a VM's data volume through the datapath, as its host would. */
  async hostWrites(vm: string, blocks: number): Promise<void> {
    const { array, volume } = this.dataRef(vm);
    const nbd = await BenchNbdClient.connect(this.nbdPort, `${array}/${volume}`);
    try {
      const slots = (4 * MiB) / (64 * 1024);
      for (let i = 0; i < blocks; i++) await nbd.write(this.rand.int(0, slots - 1) * 64 * 1024, randomBytes(64 * 1024));
      await nbd.flush();
    } finally {
      await nbd.close();
    }
  }

  /** Picks a kind and, for kinds that own a VM while they run, a free VM; undefined when none fits now. */
  choose(): { kind: Kind; vms: string[] } | undefined {
    for (let tries = 0; tries < 10; tries++) {
      const kind = this.rand.weighted(WEIGHTS);
      if (kind === 'restore') {
        if (this.restorables.length > 0) return { kind, vms: [] };
        continue;
      }
      if (kind === 'remote-copy') {
        const vms = ['vm-001', 'vm-002'];
        if (vms.some((v) => this.busyVms.has(v))) continue;
        return { kind, vms };
      }
      const free = this.vms.filter((v) => !this.busyVms.has(v));
      if (free.length === 0) return undefined;
      return { kind, vms: [this.rand.pick(free)] };
    }
    return undefined;
  }

  /** Runs one job to its end and records its outcome; never throws. */
  async run(kind: Kind, vms: string[]): Promise<void> {
    const n = ++this.seq;
    for (const v of vms) this.busyVms.add(v);
    const startedAt = Date.now();
    let bound: NodeJS.Timeout | undefined;
    try {
      const detail = await Promise.race([
        this.perform(kind, vms, n),
        new Promise<never>((_, reject) => {
          bound = setTimeout(() => reject(new Error(`did not finish within ${JOB_BOUND_MS / 1000} s`)), JOB_BOUND_MS);
        }),
      ]);
      this.jobs.push({ kind, outcome: Outcome.Ok, detail });
      log(`#${n} ${kind} ${vms.join(',')}: ok (${((Date.now() - startedAt) / 1000).toFixed(1)} s) ${detail}`);
    } catch (err) {
      const c = classifyFailure(err, { startedAt, endedAt: Date.now() }, this.faults);
      const detail =
        c.outcome === Outcome.Expected
          ? `${c.type} while ${c.fault} was faulty: ${c.message}`
          : `#${n} ${vms.join(',')} [${c.type ?? 'untyped'}] ${c.message}\n${err instanceof Error ? (err.stack ?? '') : String(err)}`;
      this.jobs.push({ kind, outcome: c.outcome, detail });
      log(`#${n} ${kind} ${vms.join(',')}: ${c.outcome}: ${detail}`);
    } finally {
      clearTimeout(bound);
      for (const v of vms) this.busyVms.delete(v);
    }
  }

  private async perform(kind: Kind, vms: string[], n: number): Promise<string> {
    const vm = vms[0] as string;
    switch (kind) {
      case 'backup-tape':
      case 'backup-split':
      case 'backup-snapshot': {
        await this.hostWrites(vm, this.rand.int(1, 4));
        const source = await sha256(this.dataRef(vm).file);
        const method = kind === 'backup-tape' ? 'direct' : kind === 'backup-split' ? 'split' : 'snapshot';
        const report = await (await this.kura.startBackup(vm, { method })).result();
        this.expectSame(`${kind} ${report.backupId}: image vs volume at start`, report.sha256, source);
        this.restorables.push({ backupId: report.backupId, sha256: report.sha256, kind });
        return report.backupId;
      }
      case 'backup-online': {
        await this.hostWrites(vm, this.rand.int(1, 4));
        const source = await sha256(this.dataRef(vm).file);
        const handle = await this.kura.startOnlineBackup(vm, {
          settings: { ioTimeoutMs: 30_000, safetyFactor: 0.5, pollMs: 50, roundPauseMs: 50 },
        });
        const report = await handle.result();
        this.expectSame(`${kind} ${report.backupId}: image vs volume at start`, report.sha256, source);
        this.restorables.push({ backupId: report.backupId, sha256: report.sha256, kind });
        return report.backupId;
      }
      case 'backup-store': {
        await this.hostWrites(vm, this.rand.int(1, 4));
        const ref = this.dataRef(vm);
        const source = await sha256(ref.file);
        const report = await (
          await this.store.backup({ site: SITE, target: vm, array: ref.array, volume: ref.volume })
        ).result();
        // The store records a digest of its chunk index, not of the image: the volume's own, taken
        // while the soak kept every writer off it, is what a restore must give back.
        this.restorables.push({ backupId: report.backupId, sha256: source, kind });
        return `${report.backupId} (${report.newChunks}/${report.chunks} new chunks)`;
      }
      case 'restore': {
        const b = this.rand.pick(this.restorables);
        const dest = path.join(this.paths.restoreRoots[0]!, `restore-${n}.img`);
        try {
          const report = await (await this.kura.startRestore(b.backupId, dest)).result();
          const got = await sha256(report.destination);
          this.expectSame(`restore #${n} of ${b.backupId} (${b.kind})`, got, b.sha256);
          if (got === b.sha256) this.restoresVerified++;
          return `${b.backupId} (${b.kind}) verified`;
        } finally {
          rmSync(dest, { force: true });
        }
      }
      case 'ladder':
        return this.ladder(vm);
      case 'remote-copy':
        return this.remoteRound(vms);
    }
  }

  private expectSame(what: string, got: string, want: string): void {
    if (got !== want) {
      this.mismatches.push(`${what}: ${got} ≠ ${want}`);
      throw new KuraError(ErrorType.ChecksumMismatch, `${what}: SHA-256 ${got} is not the ${want} recorded`);
    }
  }

  /** A fault cured at a random depth, reported to the VM's guardian: the ladder must cure it at its rung. */
  private async ladder(vm: string): Promise<string> {
    const depth = this.rand.pick<CureDepth>(['apl', 'mw', 'os']);
    const state = new LabState(this.paths.labState);
    try {
      state.setVmFault(SITE, vm, depth);
    } finally {
      state.close();
    }
    const guardian = this.client.workflow.getHandle(guardianWorkflowId(vm));
    const view = (): Promise<GuardianView> => queryPatiently(() => guardian.query(guardianQuery));
    const before = (await view()).state.incidents;
    await this.kura.vms.reportFailure(vm, `soak: fault cured by ${depth}`);
    let g = await view();
    const until = Date.now() + 60_000;
    while (g.state.incidents <= before && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 200));
      g = await view();
    }
    const id = g.currentLadder ?? g.state.lastLadder;
    if (g.state.incidents <= before || !id) throw new Error(`the guardian of ${vm} did not start a ladder in 60 s`);
    // The guardian names the ladder just before the server has started it.
    let result: LadderResult | undefined;
    while (!result) {
      result = await this.client.workflow
        .getHandle(id)
        .result()
        .catch((err: unknown) => {
          if ((err as { name?: string }).name === 'WorkflowNotFoundError') return undefined;
          throw err;
        });
      if (!result) await new Promise((r) => setTimeout(r, 200));
    }
    if (result.outcome !== 'recovered' || result.rung !== rungForDepth(depth))
      throw new Error(
        `ladder ${id} for a fault cured by ${depth} ended ${result.outcome} at ${result.rung}, not recovered at ${rungForDepth(depth)}`,
      );
    return `${depth} fault cured at ${result.rung}`;
  }

  /** Host writes to the group's volumes; the remote site must end with the same bytes, in time. */
  private async remoteRound(vms: string[]): Promise<string> {
    for (const vm of vms) await this.hostWrites(vm, this.rand.int(1, 6));
    const group = resolveRemoteGroup(this.loaded, this.paths, GROUP);
    const equal = () => group.volumes.every((v) => readFileSync(v.mainFile).equals(readFileSync(v.remoteFile)));
    const until = Date.now() + 120_000;
    for (;;) {
      const st = await queryPatiently(() => this.remote.status(GROUP));
      if (st.lag !== null && st.lag.writes === 0 && st.lag.appliedSeq === st.lag.mainSeq && equal()) {
        return `applied through seq ${st.lag.appliedSeq}; both sites hold the same bytes`;
      }
      if (Date.now() > until) {
        const differ = group.volumes.filter((v) => !readFileSync(v.mainFile).equals(readFileSync(v.remoteFile)));
        throw new Error(
          `the remote site did not catch up in 120 s: lag ${JSON.stringify(st.lag)}; volumes differing: ${differ.map((v) => v.name).join(', ') || 'none'}; the group: ${st.role}, ${st.rounds} rounds, step "${st.step}"`,
        );
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  summary(undrained: number) {
    return {
      options: this.opts,
      elapsedMs: Date.now() - this.t0,
      jobs: this.jobs,
      restoresVerified: this.restoresVerified,
      mismatches: this.mismatches,
      faultsInjected: this.faults.length,
      workerKills: this.workerKills,
      samples: this.samples,
      tableEveryMs: this.opts.minutes < 10 ? 60_000 : 5 * 60_000,
      undrained,
      workerMallocEnv: this.workerMallocEnv,
    };
  }
}

async function main(): Promise<number> {
  const opts = parseSoakArgs(process.argv.slice(2), Date.now() % 0x100000000);
  log(
    `seed ${opts.seed} (repeat with --seed ${opts.seed}); ${opts.minutes} min at concurrency ${opts.concurrency}` +
      (opts.killEvery !== undefined ? `, a worker kill every ${opts.killEvery} min` : '') +
      (opts.serverCache !== undefined
        ? `, the server's history cache bounded to ${opts.serverCache} workflows`
        : ", the server's history cache as kura.yaml's server.historyCacheSize"),
  );
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kura-soak-'));
  const procs = new Set<Proc>();
  let server: DevServer | undefined;
  let connection: Connection | undefined;
  let soak: Soak | undefined;
  const cleanup = async () => {
    if (soak) soak.stopping = true;
    for (const p of [...procs]) await stopProc(p);
    // The connection is left to the process's exit: a job still in flight (interrupted, or not
    // drained) would otherwise have its next call thrown from a timer as "Channel has been shut down".
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  // Ctrl-C stops every process the soak started and removes its directory before exiting.
  const interrupted = () => {
    log('interrupted: stopping what the soak started');
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    const ports = {
      nbd: await freePort(),
      control: await freePort(),
      receiver: await listenerPort(),
      workerMetrics: await freePort(),
      sdkMetrics: await freePort(),
    };
    const cfg = soakConfig(dir, ports);
    const configFile = path.join(dir, 'kura.yaml');
    writeFileSync(configFile, renderConfigYaml(cfg));
    // The killed worker's kura.yaml is the same but for its metrics ports: two processes cannot serve
    // on one port, and the log shows each worker's insides. Its home, beside it, is the same.
    const killedMetrics = { workerMetrics: await freePort(), sdkMetrics: await freePort() };
    const killedConfigFile = path.join(dir, 'kura-killed-worker.yaml');
    writeFileSync(killedConfigFile, renderConfigYaml(soakConfig(dir, { ...ports, ...killedMetrics })));
    const loaded = loadConfig(configFile);
    ensureKeyFile(path.join(dir, 'kura-keys.json'));
    const paths = kuraPaths(loaded);
    await createLabFiles(loaded, paths);
    for (const r of paths.restoreRoots) mkdirSync(r, { recursive: true });

    log('starting the dev server and bundling the workflows');
    const bundlePath = path.join(dir, 'workflow-bundle.js');
    const serverMetricsPort = await freePort();
    const [srv, bundle] = await Promise.all([
      startDevServer({
        headless: true,
        port: await freePort(),
        metricsPort: serverMetricsPort,
        // kura.yaml's server.historyCacheSize, as `kura start` runs it, unless --server-cache says otherwise.
        workflowCache: opts.serverCache ?? loaded.config.server.historyCacheSize,
        dbFile: path.join(dir, 'temporal.db'),
        logFile: path.join(dir, 'temporal.log'),
        readyTimeoutMs: 90_000,
      }),
      bundleWorkflowCode({
        workflowsPath: workflowsEntry(),
        ...WORKFLOW_BUNDLE_CONVERTERS,
        workflowInterceptorModules: workflowInterceptorModules(),
        logger: {
          log: () => undefined,
          trace: () => undefined,
          debug: () => undefined,
          info: () => undefined,
          warn: () => undefined,
          error: (m: string) => log(m),
        },
      }),
    ]);
    server = srv;
    writeFileSync(bundlePath, bundle.code);
    // The workers and the datapath start with the malloc settings `bin/kura` gives them (docs/adr/054).
    const env: NodeJS.ProcessEnv = withMallocTuning({
      ...process.env,
      KURA_CONFIG: configFile,
      TEMPORAL_ADDRESS: server.address,
      TEMPORAL_NAMESPACE: server.namespace,
      KURA_WORKFLOW_BUNDLE: bundlePath,
    });
    delete env.KURA_TASK_QUEUE;
    delete env.KURA_HOME;

    const datapath = await startNode(path.join(ROOT, 'bin', 'kura'), ['datapath'], env, '"ready":true', procs);
    datapath.child.once('exit', (code, signal) => {
      if (soak?.stopping) return;
      const tail = datapath.output.join('').split('\n').slice(-40).join('\n');
      soak?.jobs.push({
        kind: 'datapath-crash',
        outcome: Outcome.Unexplained,
        detail: `datapath exited (${code ?? signal}):\n${tail}`,
      });
      log(`datapath exited on its own (${code ?? signal}):\n${tail}`);
    });
    connection = await Connection.connect({ address: server.address });
    const client = new Client({
      connection,
      namespace: server.namespace,
      dataConverter: kuraDataConverter(loaded),
      interceptors: installationClientInterceptors(loaded.config.installation),
    });
    const kura = new Kura(client, loaded);
    soak = new Soak(
      opts,
      dir,
      loaded,
      paths,
      server,
      datapath,
      ports.nbd,
      kura,
      new KuraStore(client, loaded, kura.taskQueue),
      new KuraRemote(client, loaded, kura.taskQueue),
      client,
      {
        kept: { env, metrics: loaded.config.metrics },
        killed: {
          env: { ...env, KURA_CONFIG: killedConfigFile },
          metrics: { workerPort: killedMetrics.workerMetrics, temporalPort: killedMetrics.sdkMetrics },
        },
      },
      procs,
    );
    soak.serverMetricsPort = serverMetricsPort;
    // One after the other, as the measured runs started them. Two workers opening the same fresh home
    // at once no longer meet "database is locked" (the open retries its switch to WAL, docs/adr/055).
    for (const role of WORKER_ROLES) await soak.startWorker(role);
    log(
      `dev server ${server.pid}, datapath ${datapath.child.pid}, worker (kept) ${soak.workers.kept?.child.pid}, ` +
        `worker (killed) ${soak.workers.killed?.child.pid}; starting guardians and remote copy`,
    );
    await ensureGuardians(client, loaded, kura.taskQueue);
    // A split backup splits the volume's pair: each volume is paired once, as an operator does with
    // `kura san refresh`, and every split backup resynchronises it.
    await Promise.all(soak.vms.map(async (vm) => (await kura.startReplicaRefresh(vm)).result()));
    await soak.remote.start(GROUP, { roundMs: 1000, heartbeatTimeoutMs: 2000 });

    await loop(soak);
    const undrained = await drain(soak);
    soak.sample();
    await endLongRunning(soak);
    soak.stopping = true;
    await Promise.all([...soak.pendingReads]);
    const summary = soak.summary(undrained);
    process.stdout.write(`${renderSummary(summary)}\n`);
    return passed(summary) ? 0 : 1;
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    await cleanup();
  }
}

/** Jobs started while there is time; faults, repairs, kills and samples on their own clocks. */
async function loop(soak: Soak): Promise<void> {
  const { minutes, concurrency } = soak.opts;
  const t0 = Date.now();
  const end = t0 + minutes * 60_000;
  // Every minute, so each process of the killed worker (killed every few minutes) has samples to fit; the
  // table shows them every 5 minutes (every minute in a short run).
  const sampleEvery = 60_000;
  // At least one kill and one fault even in a short run, unless the kills are given their own clock.
  const fixedKills = soak.opts.killEvery !== undefined ? soak.opts.killEvery * 60_000 : undefined;
  const killEvery = fixedKills ?? Math.min(4 * 60_000, (minutes * 60_000) / 2);
  const faultEvery = Math.min(90_000, (minutes * 60_000) / 4);
  let nextSample = t0 + sampleEvery;
  let nextKill = t0 + (fixedKills ?? killEvery * (0.5 + soak.rand.next()));
  let nextFault = t0 + faultEvery * (0.5 + soak.rand.next());
  let repairAt = Infinity;
  const running = soak.running;
  soak.t0 = t0;
  soak.sample();
  while (Date.now() < end) {
    const now = Date.now();
    if (now >= nextSample) {
      soak.sample();
      nextSample += sampleEvery;
    }
    if (now >= nextFault && repairAt === Infinity) {
      soak.injectFault();
      repairAt = now + FAULT_STANDS_MS;
      nextFault = now + faultEvery * (0.5 + soak.rand.next());
    }
    if (now >= repairAt) {
      await soak.repair().catch((err: unknown) => log(`repair failed, retrying: ${String(err)}`));
      if (soak.faults.every((f) => f.to !== Infinity)) repairAt = Infinity;
    }
    if (now >= nextKill) {
      await soak.killWorker();
      nextKill = Date.now() + (fixedKills ?? killEvery * (0.5 + soak.rand.next()));
    }
    while (running.size < concurrency) {
      const job = soak.choose();
      if (!job) break;
      const p: Promise<void> = soak.run(job.kind, job.vms).finally(() => running.delete(p));
      running.add(p);
    }
    await Promise.race([...running, new Promise((r) => setTimeout(r, 500))]);
  }
}

/** Waits for the jobs in flight within the drain's bound, repairing the lab first; returns how many did not end. */
async function drain(soak: Soak): Promise<number> {
  await soak.repair().catch((err: unknown) => log(`repair before the drain failed: ${String(err)}`));
  const running = soak.running;
  log(`draining ${running.size} job(s), at most ${DRAIN_BOUND_MS / 1000} s`);
  const bound = Date.now() + DRAIN_BOUND_MS;
  while (running.size > 0 && Date.now() < bound)
    await Promise.race([...running, new Promise((r) => setTimeout(r, 1000))]);
  return running.size;
}

/** Terminates the workflows that run forever (guardians, remote copy), so nothing outlives the soak's server for long. */
async function endLongRunning(soak: Soak): Promise<void> {
  const ids = [...soak.vms.map((vm) => guardianWorkflowId(vm)), soak.remote.workflowId(GROUP)];
  for (const id of ids)
    await soak.client.workflow
      .getHandle(id)
      .terminate('soak over')
      .catch(() => undefined);
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exit(2);
  },
);
