/**
 * The soak's bookkeeping, free of processes and servers: its options, a seeded random, how a job's
 * outcome is classified, the growth of a memory series by linear fit, and the closing table.
 */
import { z } from 'zod';
import { ErrorType } from '../src/domain/errors';
import { parseWith } from '../src/domain/validate';
import { failureOf } from '../src/api/failures';

export const SoakOptionsSchema = z.strictObject({
  /** How long new work is started; in-flight work is then drained within a bound. */
  minutes: z
    .number()
    .positive()
    .max(24 * 60),
  /** The seed of every random choice (jobs, targets, faults, kills); printed so a run can be repeated. */
  seed: z.number().int().min(0).max(0xffffffff),
  /** Jobs running at once. */
  concurrency: z.number().int().min(1).max(16),
  /**
   * Minutes between kills of the killed worker, the first after as many (`--kill-every`); unset, a
   * kill every 2–6 minutes and at least one in a short run. Longer than the run, none. The kept
   * worker is never killed either way: its one process shows whether a worker's memory levels off.
   */
  killEvery: z
    .number()
    .positive()
    .max(24 * 60)
    .optional(),
  /**
   * The most workflows the soak's server keeps in its history cache (`--server-cache`); unset,
   * kura.yaml's `server.historyCacheSize`, as `kura start` runs it (docs/adr/052).
   */
  serverCache: z.number().int().min(1).max(1_000_000).optional(),
});
export type SoakOptions = z.infer<typeof SoakOptionsSchema>;

/**
 * Reads `--minutes`, `--seed`, `--concurrency`, `--kill-every` and `--server-cache` from a command line
 * (defaults: 30 minutes, a seed from the clock, 3 jobs at once, kills every few minutes, the server's
 * own cache); InvalidInputError names
 * a flag that is unknown or not a number.
 */
export function parseSoakArgs(argv: string[], defaultSeed: number): SoakOptions {
  const raw: Record<string, unknown> = { minutes: 30, seed: defaultSeed, concurrency: 3 };
  const known = new Set([...Object.keys(raw), 'killEvery', 'serverCache']);
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] as string;
    const name = flag.replace(/^--/, '').replace(/-(\w)/g, (_, c: string) => c.toUpperCase());
    if (!flag.startsWith('--') || !known.has(name)) {
      raw[flag] = argv[i + 1];
      continue;
    }
    const text = argv[++i];
    raw[name] = text === undefined || text.trim() === '' || Number.isNaN(Number(text)) ? text : Number(text);
  }
  return parseWith(
    SoakOptionsSchema,
    raw,
    'soak options (--minutes <n> --seed <n> --concurrency <n> --kill-every <minutes> --server-cache <workflows>)',
  );
}

/** A small, fast, seeded generator (mulberry32): the same seed gives the same run of choices. */
export class SeededRandom {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  /** One element of a non-empty list. */
  pick<T>(xs: readonly T[]): T {
    if (xs.length === 0) throw new RangeError('pick from an empty list');
    return xs[Math.floor(this.next() * xs.length)] as T;
  }
  /** A key of `weights`, chosen in proportion to its weight. */
  weighted<K extends string>(weights: Record<K, number>): K {
    const entries = Object.entries(weights) as [K, number][];
    const total = entries.reduce((n, [, w]) => n + w, 0);
    let r = this.next() * total;
    for (const [k, w] of entries) {
      r -= w;
      if (r < 0) return k;
    }
    return entries[entries.length - 1]![0];
  }
}

/** How a job ended, as the table counts it. */
export const Outcome = {
  Ok: 'ok',
  /** Failed with a typed reason the soak caused on purpose (a device fault it injected). */
  Expected: 'expected',
  /** Anything else: printed in full; the soak exits non-zero. */
  Unexplained: 'unexplained',
} as const;
export type Outcome = (typeof Outcome)[keyof typeof Outcome];

/** Failure types a device fault may end a job with when no spare device is left to fail over to. */
export const FAULT_FAILURE_TYPES: readonly string[] = [ErrorType.DeviceFault, ErrorType.NoResources];

/** An interval of wall time, in epoch milliseconds, during which a device fault was injected. */
export interface FaultWindow {
  device: string;
  from: number;
  /** When the lab was repaired; Infinity while the fault stands. */
  to: number;
}

/**
 * A failed job's outcome: expected when its root failure is a device fault (or no resources left
 * after one) and the job ran while a fault was injected; unexplained otherwise.
 */
export function classifyFailure(
  err: unknown,
  job: { startedAt: number; endedAt: number },
  faults: readonly FaultWindow[],
): { outcome: Outcome; type: string | undefined; message: string; fault?: string } {
  const root = failureOf(err);
  const during = faults.find((f) => f.from <= job.endedAt && f.to >= job.startedAt);
  if (root.type !== undefined && FAULT_FAILURE_TYPES.includes(root.type) && during)
    return { outcome: Outcome.Expected, ...root, fault: during.device };
  return { outcome: Outcome.Unexplained, ...root };
}

/** The least-squares slope of y over x (0 with fewer than two distinct x). */
export function slope(points: readonly { x: number; y: number }[]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/**
 * The processes whose memory the soak samples: the worker it keeps (`worker`, never killed on
 * purpose, whose fit is the worker's verdict), the worker it SIGKILLs and restarts every few minutes
 * (`killedWorker`, shown for information: no process of it lives long enough to show a slow leak,
 * docs/adr/051), the server and the datapath.
 */
export type MemoryKey = 'worker' | 'killedWorker' | 'server' | 'datapath';

/** One sample of the processes' memory and the server's database. */
export interface MemorySample {
  /** Milliseconds since the soak began. */
  atMs: number;
  /**
   * VmRSS in bytes per process (undefined: not running at that instant): `worker` is the kept worker,
   * `killedWorker` the one the soak kills (absent from a sample taken without it).
   */
  rss: Record<'worker' | 'server' | 'datapath', number | undefined> & { killedWorker?: number };
  /** The kept worker's process sampled (it changes only when that worker exits on its own and is replaced). */
  workerPid: number | undefined;
  /** The killed worker's process sampled (it changes at every kill). */
  killedWorkerPid?: number;
  /** The server's SQLite file plus its WAL, in bytes. */
  dbBytes: number;
  /**
   * Workflows in the server's mutable-state cache (`cache_usage{cache_type="mutablestate"}` of its
   * metrics): what the server's memory grows with until the cache is full (docs/soak.md).
   */
  serverCacheEntries?: number;
}

/**
 * The least-squares slope shared by several series, each with its own intercept: how fast each grows
 * within itself, so a fall from one series to the next (a killed process and its successor) does
 * not read as shrinkage.
 */
export function pooledSlope(series: readonly (readonly { x: number; y: number }[])[]): number {
  let num = 0;
  let den = 0;
  for (const pts of series) {
    if (pts.length < 2) continue;
    const mx = pts.reduce((a, p) => a + p.x, 0) / pts.length;
    const my = pts.reduce((a, p) => a + p.y, 0) / pts.length;
    for (const p of pts) {
      num += (p.x - mx) * (p.y - my);
      den += (p.x - mx) ** 2;
    }
  }
  return den === 0 ? 0 : num / den;
}

/** A least-squares slope with its standard error (undefined when the points cannot give one). */
export interface Fit {
  slope: number;
  /** The slope's standard error; undefined with too few points for the residuals to say anything. */
  stdErr: number | undefined;
  points: number;
}

/**
 * The pooled slope of {@link pooledSlope} with its standard error, from the residuals about each
 * series' own line (one intercept per series and the shared slope are fitted, so the residuals have
 * that many degrees of freedom fewer): how far the slope of a handful of samples can be trusted.
 */
export function pooledFit(series: readonly (readonly { x: number; y: number }[])[]): Fit {
  const used = series.filter((pts) => pts.length >= 2);
  const n = used.reduce((a, pts) => a + pts.length, 0);
  const b = pooledSlope(used);
  let sxx = 0;
  let rss = 0;
  for (const pts of used) {
    const mx = pts.reduce((a, p) => a + p.x, 0) / pts.length;
    const my = pts.reduce((a, p) => a + p.y, 0) / pts.length;
    for (const p of pts) {
      sxx += (p.x - mx) ** 2;
      rss += (p.y - my - b * (p.x - mx)) ** 2;
    }
  }
  const df = n - used.length - 1;
  return { slope: b, stdErr: df > 0 && sxx > 0 ? Math.sqrt(rss / df / sxx) : undefined, points: n };
}

/** How the table and the verdict name each process kind. */
export const MEMORY_LABELS: Record<MemoryKey, string> = {
  worker: 'worker (kept)',
  killedWorker: 'worker (killed)',
  server: 'server',
  datapath: 'datapath',
};

/** The pid a sample gives a worker process, by which its samples are fitted per process; undefined for the others. */
function pidOf(s: MemorySample, key: MemoryKey): number | undefined {
  return key === 'worker' ? s.workerPid : key === 'killedWorker' ? s.killedWorkerPid : undefined;
}

/** The value of one kind in a sample (undefined: not running, or not sampled). */
function rssAt(s: MemorySample, key: MemoryKey): number | undefined {
  return s.rss[key];
}

/**
 * Growth per hour of one series by linear fit, in bytes. A worker's samples are fitted per process
 * (a pooled slope over its processes): the killed worker is replaced every few minutes, and each
 * successor starts small again.
 */
export function growthPerHour(samples: readonly MemorySample[], key: MemoryKey, warmUpMs = 0): number {
  return growthFit(samples, key, warmUpMs).slope;
}

/** {@link growthPerHour} with the fit's standard error, in bytes per hour. */
export function growthFit(samples: readonly MemorySample[], key: MemoryKey, warmUpMs = 0): Fit {
  const pts = withoutWarmUp(
    samples.filter((s) => rssAt(s, key) !== undefined),
    key,
    warmUpMs,
  );
  const point = (s: MemorySample) => ({ x: s.atMs / 3_600_000, y: rssAt(s, key) as number });
  const byPid = new Map<number | undefined, { x: number; y: number }[]>();
  for (const s of pts) byPid.set(pidOf(s, key), [...(byPid.get(pidOf(s, key)) ?? []), point(s)]);
  return pooledFit([...byPid.values()]);
}

/**
 * The samples taken at least `warmUpMs` after their process's first (a worker's, per process;
 * the others', after the soak's first sample): a process that starts loads its code, compiles it
 * and fills its caches and allocator arenas in its first minute or two, a rise that stops there.
 */
function withoutWarmUp(samples: readonly MemorySample[], key: MemoryKey, warmUpMs: number): MemorySample[] {
  if (warmUpMs <= 0) return [...samples];
  const first = new Map<number | undefined, number>();
  for (const s of samples) {
    const id = pidOf(s, key);
    if (!first.has(id)) first.set(id, s.atMs);
  }
  return samples.filter((s) => s.atMs - first.get(pidOf(s, key))! >= warmUpMs);
}

/**
 * How long after its start a process's memory is left out of the second fit (see {@link withoutWarmUp}):
 * a worker with its heaps bounded (docs/adr/048) reaches its plateau within about 3 minutes.
 */
export const WARM_UP_MS = 3 * 60_000;

/**
 * The rule of flat memory: growth after warm-up under this many MiB an hour, per process (the
 * kept worker's, the server's, the datapath's). 100 MiB/h is what a 30-minute run can tell from the
 * collectors' saw-tooth of a few tens of MiB, and a leak of it would take a day to add 2.4 GiB.
 */
export const FLAT_MIB_PER_HOUR = 100;

/** Whether a fit's growth is below the limit, above it, or cannot be told from its samples. */
export type Flatness = 'flat' | 'growing' | 'undecided';

/**
 * Flat when even the fit's upper bound (slope + 2 standard errors, about 95 %) is under the limit;
 * growing when its lower bound is over it; otherwise, or with too few samples, undecided.
 */
export function flatness(fit: Fit, limitBytesPerHour = FLAT_MIB_PER_HOUR * 1024 * 1024): Flatness {
  if (fit.stdErr === undefined) return 'undecided';
  if (fit.slope + 2 * fit.stdErr < limitBytesPerHour) return 'flat';
  if (fit.slope - 2 * fit.stdErr > limitBytesPerHour) return 'growing';
  return 'undecided';
}

/** One process's memory over its life, as the per-process table shows it. */
export interface ProcessMemory {
  key: MemoryKey;
  pid: number | undefined;
  /** Its first sample (minutes since the soak began) and RSS then. */
  firstMin: number;
  firstRss: number;
  /** Its first sample at or after the warm-up, if it lived that long. */
  warmMin?: number;
  warmRss?: number;
  lastMin: number;
  lastRss: number;
  /** The fit over its samples after the warm-up (bytes per hour). */
  fit: Fit;
}

/**
 * Each process's memory: every process of the kept worker and of the killed worker (by pid), the
 * server and the datapath, each with its RSS at its first sample, at the end of its warm-up and at
 * its last sample, and its own fit after the warm-up.
 */
export function processMemory(samples: readonly MemorySample[], warmUpMs = WARM_UP_MS): ProcessMemory[] {
  const out: ProcessMemory[] = [];
  for (const key of ['worker', 'killedWorker', 'server', 'datapath'] as const) {
    const mine = samples.filter((s) => rssAt(s, key) !== undefined);
    const ids = [...new Set(mine.map((s) => pidOf(s, key)))];
    for (const id of ids) {
      const own = mine.filter((s) => pidOf(s, key) === id);
      const first = own[0]!;
      const last = own[own.length - 1]!;
      const warm = own.find((s) => s.atMs - first.atMs >= warmUpMs);
      const after = own.filter((s) => s.atMs - first.atMs >= warmUpMs);
      out.push({
        key,
        pid: id,
        firstMin: first.atMs / 60_000,
        firstRss: rssAt(first, key)!,
        ...(warm ? { warmMin: warm.atMs / 60_000, warmRss: rssAt(warm, key)! } : {}),
        lastMin: last.atMs / 60_000,
        lastRss: rssAt(last, key)!,
        fit: pooledFit([after.map((s) => ({ x: s.atMs / 3_600_000, y: rssAt(s, key)! }))]),
      });
    }
  }
  return out;
}

/** The process kinds whose flatness decides the verdict: the killed worker's is not among them. */
const VERDICT_KEYS = ['worker', 'server', 'datapath'] as const;

/**
 * The memory verdict: the fit after warm-up of the kept worker, the server and the datapath, and
 * their flatness. `killed` is the killed worker's fit pooled over its processes with its flatness,
 * for information only: a process killed within minutes of its start cannot show a slow leak, so it
 * neither passes nor fails the verdict (docs/adr/051).
 */
export function memoryVerdict(
  samples: readonly MemorySample[],
  warmUpMs = WARM_UP_MS,
): {
  overall: Flatness;
  kinds: { key: MemoryKey; fit: Fit; flatness: Flatness }[];
  killed: { fit: Fit; flatness: Flatness; processes: number };
} {
  const kinds = VERDICT_KEYS.map((key) => {
    const fit = growthFit(samples, key, warmUpMs);
    return { key, fit, flatness: flatness(fit) };
  });
  const overall = kinds.some((k) => k.flatness === 'growing')
    ? 'growing'
    : kinds.every((k) => k.flatness === 'flat')
      ? 'flat'
      : 'undecided';
  const killedFit = growthFit(samples, 'killedWorker', warmUpMs);
  const processes = new Set(samples.filter((s) => s.rss.killedWorker !== undefined).map((s) => s.killedWorkerPid)).size;
  return { overall, kinds, killed: { fit: killedFit, flatness: flatness(killedFit), processes } };
}

/** A growth per hour with its 2-standard-error margin, in MiB/h. */
function growthText(fit: Fit): string {
  if (fit.points < 2) return '–';
  return fit.stdErr === undefined ? `${mib(fit.slope)} MiB/h` : `${mib(fit.slope)} ± ${mib(2 * fit.stdErr)} MiB/h`;
}

/** The samples the table shows: the first, the last, and the first at or after each `everyMs` mark. */
export function tableRows(samples: readonly MemorySample[], everyMs: number): MemorySample[] {
  const rows: MemorySample[] = [];
  let next = 0;
  samples.forEach((m, i) => {
    if (i === 0 || i === samples.length - 1 || m.atMs >= next) {
      rows.push(m);
      while (next <= m.atMs) next += everyMs;
    }
  });
  return rows;
}

/** The bytes as MiB with one decimal. */
export function mib(bytes: number | undefined): string {
  return bytes === undefined ? '–' : (bytes / (1024 * 1024)).toFixed(1);
}

/** One finished job, as the table counts it. */
export interface JobRecord {
  kind: string;
  outcome: Outcome;
  detail: string;
}

export interface SoakSummary {
  options: SoakOptions;
  /** Wall time of the whole run, drain included. */
  elapsedMs: number;
  jobs: readonly JobRecord[];
  restoresVerified: number;
  mismatches: readonly string[];
  faultsInjected: number;
  workerKills: number;
  /** Every sample taken (the fit uses them all). */
  samples: readonly MemorySample[];
  /** The table shows a sample every this many milliseconds. */
  tableEveryMs: number;
  /** Jobs still running when the drain's bound ran out. */
  undrained: number;
  /** The kept worker's glibc malloc variables, as its /proc/<pid>/environ had them (docs/adr/054). */
  workerMallocEnv?: readonly string[];
}

/** The closing table in markdown: jobs by kind and outcome, restores verified, memory, database size. */
export function renderSummary(s: SoakSummary): string {
  const out: string[] = [];
  const kinds = [...new Set(s.jobs.map((j) => j.kind))].sort();
  const count = (k: string | undefined, o: Outcome) =>
    s.jobs.filter((j) => (k === undefined || j.kind === k) && j.outcome === o).length;
  out.push(
    `## Soak: ${s.options.minutes} min, seed ${s.options.seed}, concurrency ${s.options.concurrency} (ran ${(s.elapsedMs / 60_000).toFixed(1)} min with the drain)`,
    '',
    '| operation | ok | failed (expected) | unexplained | total |',
    '|---|---:|---:|---:|---:|',
  );
  for (const k of kinds)
    out.push(
      `| ${k} | ${count(k, Outcome.Ok)} | ${count(k, Outcome.Expected)} | ${count(k, Outcome.Unexplained)} | ${s.jobs.filter((j) => j.kind === k).length} |`,
    );
  out.push(
    `| **all** | ${count(undefined, Outcome.Ok)} | ${count(undefined, Outcome.Expected)} | ${count(undefined, Outcome.Unexplained)} | ${s.jobs.length} |`,
    '',
    `Restores verified byte for byte (SHA-256 of the restored file = the one recorded at backup time): ${s.restoresVerified}; mismatches: ${s.mismatches.length}.`,
    `Device faults injected: ${s.faultsInjected}; SIGKILLs of the killed worker (restarted): ${s.workerKills}; jobs not drained in time: ${s.undrained}.`,
    ...(s.workerMallocEnv
      ? [
          `The kept worker's malloc settings (its /proc/<pid>/environ): ${s.workerMallocEnv.length > 0 ? s.workerMallocEnv.join(' ') : "none, glibc's defaults"}.`,
        ]
      : []),
    '',
    '| t (min) | worker (kept) RSS (MiB) | pid | worker (killed) RSS (MiB) | pid | server RSS (MiB) | server cache (workflows) | datapath RSS (MiB) | server DB + WAL (MiB) |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const m of tableRows(s.samples, s.tableEveryMs))
    out.push(
      `| ${(m.atMs / 60_000).toFixed(1)} | ${mib(m.rss.worker)} | ${m.workerPid ?? '–'} | ${mib(m.rss.killedWorker)} | ${m.killedWorkerPid ?? '–'} | ${mib(m.rss.server)} | ${m.serverCacheEntries ?? '–'} | ${mib(m.rss.datapath)} | ${mib(m.dbBytes)} |`,
    );
  const g = (k: MemoryKey) => growthText(growthFit(s.samples, k));
  const w = (k: MemoryKey) => growthText(growthFit(s.samples, k, WARM_UP_MS));
  const db = slope(s.samples.map((m) => ({ x: m.atMs / 3_600_000, y: m.dbBytes })));
  const warmMin = WARM_UP_MS / 60_000;
  const processes = (k: 'worker' | 'killedWorker') =>
    new Set(
      s.samples.filter((m) => m.rss[k] !== undefined).map((m) => (k === 'worker' ? m.workerPid : m.killedWorkerPid)),
    ).size;
  out.push(
    `| **growth/h (linear fit over all ${s.samples.length} samples)** | ${g('worker')} | per process, over ${processes('worker')} process(es) | ${g('killedWorker')} | per process, over ${processes('killedWorker')} process(es) | ${g('server')} | | ${g('datapath')} | ${mib(db)} MiB/h |`,
    `| **growth/h after warm-up (samples ${warmMin} min or more after each process's start)** | ${w('worker')} | per process | ${w('killedWorker')} | per process, for information | ${w('server')} | | ${w('datapath')} | |`,
    '',
    `Each process (± is two standard errors of the fit; warm-up: the first ${warmMin} min of each process's life):`,
    '',
    '| process | pid | first sample (min: MiB) | end of warm-up (min: MiB) | last sample (min: MiB) | growth/h after warm-up |',
    '|---|---:|---:|---:|---:|---:|',
  );
  const at = (min: number | undefined, rss: number | undefined) =>
    min === undefined ? '–' : `${min.toFixed(1)}: ${mib(rss)}`;
  for (const p of processMemory(s.samples))
    out.push(
      `| ${MEMORY_LABELS[p.key]} | ${p.pid ?? '–'} | ${at(p.firstMin, p.firstRss)} | ${at(p.warmMin, p.warmRss)} | ${at(p.lastMin, p.lastRss)} | ${growthText(p.fit)} |`,
    );
  const killed = memoryVerdict(s.samples).killed;
  out.push(
    '',
    `The killed worker's ${killed.processes} process(es), pooled after warm-up: ${killed.fit.points < 2 ? `${killed.fit.points} sample(s) after warm-up, too few to fit` : growthText(killed.fit)} (by the rule: ${killed.flatness}). ` +
      `Shown for information, not in the verdict: a process killed within minutes of its start cannot show a slow leak; the worker's verdict is the kept worker's (docs/adr/051).`,
    '',
    `Verdict: ${verdict(s)}`,
  );
  const bad = s.jobs.filter((j) => j.outcome === Outcome.Unexplained);
  if (bad.length > 0 || s.mismatches.length > 0) {
    out.push('', '### Unexplained failures and mismatches');
    for (const j of bad) out.push(`- ${j.kind}: ${j.detail}`);
    for (const m of s.mismatches) out.push(`- mismatch: ${m}`);
  }
  return out.join('\n');
}

/**
 * PASS when no job failed unexplained, nothing mismatched, every job was drained and memory did not
 * grow after warm-up beyond the rule ({@link memoryVerdict}: the kept worker, the server and the
 * datapath); memory that cannot be told is no fail, and the killed worker's never decides it.
 */
export function passed(
  s: Pick<SoakSummary, 'jobs' | 'mismatches' | 'undrained'> & { samples?: readonly MemorySample[] },
): boolean {
  return (
    s.jobs.every((j) => j.outcome !== Outcome.Unexplained) &&
    s.mismatches.length === 0 &&
    s.undrained === 0 &&
    memoryVerdict(s.samples ?? []).overall !== 'growing'
  );
}

function verdict(s: SoakSummary): string {
  const unexplained = s.jobs.filter((j) => j.outcome === Outcome.Unexplained).length;
  const jobsOk =
    s.jobs.every((j) => j.outcome !== Outcome.Unexplained) && s.mismatches.length === 0 && s.undrained === 0;
  const memory = memoryVerdict(s.samples);
  const jobs = jobsOk
    ? 'zero unexplained failures, zero mismatches, everything drained'
    : `${unexplained} unexplained, ${s.mismatches.length} mismatches, ${s.undrained} not drained`;
  const rule = `growth after warm-up under ${FLAT_MIB_PER_HOUR} MiB/h per process, with 2 standard errors of margin`;
  const named = (f: Flatness) =>
    memory.kinds
      .filter((k) => k.flatness === f)
      .map((k) =>
        k.fit.stdErr === undefined
          ? `${MEMORY_LABELS[k.key]} (${k.fit.points} sample(s) after warm-up)`
          : `${MEMORY_LABELS[k.key]} ${growthText(k.fit)}`,
      )
      .join(', ');
  const mem =
    memory.overall === 'flat'
      ? `memory flat (${rule})`
      : memory.overall === 'growing'
        ? `memory NOT flat: ${named('growing')} (rule: ${rule})`
        : `memory undecided: ${named('undecided')} (rule: ${rule}; too few samples after warm-up, or too scattered, to tell)`;
  return `${passed(s) ? 'PASS' : 'FAIL'} (${jobs}; ${mem})`;
}
