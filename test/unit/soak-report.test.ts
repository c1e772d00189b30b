/**
 * The soak's bookkeeping: its options, its seeded choices, how a failed job is classified, the
 * memory growth fitted per hour, and the verdict its closing table gives.
 */
import { describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client';
import { InvalidInputError } from '../../src/domain/errors';
import {
  FLAT_MIB_PER_HOUR,
  Outcome,
  SeededRandom,
  WARM_UP_MS,
  classifyFailure,
  flatness,
  growthPerHour,
  memoryVerdict,
  parseSoakArgs,
  passed,
  pooledFit,
  pooledSlope,
  processMemory,
  renderSummary,
  slope,
  tableRows,
  type MemorySample,
  type SoakSummary,
} from '../../scripts/soak-report';

const MiB = 1024 * 1024;

/** A failed workflow as the client throws it: the typed ApplicationFailure is the cause. */
function failedJob(type: string, message: string): WorkflowFailedError {
  return new WorkflowFailedError(
    'workflow failed',
    ApplicationFailure.nonRetryable(message, type),
    'NON_RETRYABLE_FAILURE',
  );
}

describe('the soak options', () => {
  it('reads --minutes, --seed and --concurrency, with defaults for the ones left out', () => {
    expect(parseSoakArgs(['--minutes', '2', '--seed', '42'], 7)).toEqual({ minutes: 2, seed: 42, concurrency: 3 });
    expect(parseSoakArgs([], 7)).toEqual({ minutes: 30, seed: 7, concurrency: 3 });
    expect(parseSoakArgs(['--minutes', '10', '--kill-every', '20'], 7)).toStrictEqual({
      minutes: 10,
      seed: 7,
      concurrency: 3,
      killEvery: 20,
    });
    expect(() => parseSoakArgs(['--kill-every', '0'], 7)).toThrow(/killEvery/);
    expect(parseSoakArgs(['--server-cache', '512'], 7)).toStrictEqual({
      minutes: 30,
      seed: 7,
      concurrency: 3,
      serverCache: 512,
    });
    expect(() => parseSoakArgs(['--server-cache', '2.5'], 7)).toThrow(/serverCache/);
  });

  it('refuses a flag it does not know and a value that is not a number, naming them', () => {
    expect(() => parseSoakArgs(['--hours', '2'], 7)).toThrow(InvalidInputError);
    expect(() => parseSoakArgs(['--hours', '2'], 7)).toThrow(/--hours/);
    expect(() => parseSoakArgs(['--minutes', 'ten'], 7)).toThrow(/minutes/);
    expect(() => parseSoakArgs(['--concurrency', '0'], 7)).toThrow(/concurrency/);
  });
});

describe('the seeded random', () => {
  it('makes the same choices for the same seed and others for another seed', () => {
    const run = (seed: number) => {
      const r = new SeededRandom(seed);
      return Array.from({ length: 20 }, () => r.int(0, 1000));
    };
    expect(run(5)).toEqual(run(5));
    expect(run(5)).not.toEqual(run(6));
  });

  it('chooses keys in proportion to their weights and never one of weight zero', () => {
    const r = new SeededRandom(1);
    const counts = { a: 0, b: 0, c: 0 };
    for (let i = 0; i < 10_000; i++) counts[r.weighted({ a: 3, b: 1, c: 0 })]++;
    expect(counts.c).toBe(0);
    expect(counts.a / counts.b).toBeGreaterThan(2.5);
    expect(counts.a / counts.b).toBeLessThan(3.5);
  });
});

describe('a failed job', () => {
  const faults = [{ device: 'lib-01-d1', from: 1000, to: 2000 }];

  it('is expected when it failed with a device fault while a fault was injected', () => {
    const c = classifyFailure(
      failedJob('DeviceFault', 'drive lib-01-d1 failed'),
      { startedAt: 500, endedAt: 1500 },
      faults,
    );
    expect(c).toEqual({
      outcome: Outcome.Expected,
      type: 'DeviceFault',
      message: 'drive lib-01-d1 failed',
      fault: 'lib-01-d1',
    });
  });

  it('is unexplained when it failed with a device fault while no fault was injected', () => {
    const c = classifyFailure(failedJob('DeviceFault', 'drive failed'), { startedAt: 2500, endedAt: 3000 }, faults);
    expect(c.outcome).toBe(Outcome.Unexplained);
  });

  it('is unexplained when its failure is of another type or untyped, even during a fault', () => {
    const mismatch = classifyFailure(failedJob('ChecksumMismatch', 'bad'), { startedAt: 1100, endedAt: 1200 }, faults);
    expect(mismatch).toEqual({ outcome: Outcome.Unexplained, type: 'ChecksumMismatch', message: 'bad' });
    const plain = classifyFailure(new Error('socket hang up'), { startedAt: 1100, endedAt: 1200 }, faults);
    expect(plain).toEqual({ outcome: Outcome.Unexplained, type: undefined, message: 'socket hang up' });
  });
});

const sample = (min: number, worker: number, pid: number, server: number, dbBytes = 10 * MiB): MemorySample => ({
  atMs: min * 60_000,
  rss: { worker: worker * MiB, server: server * MiB, datapath: 50 * MiB },
  workerPid: pid,
  dbBytes,
});

/**
 * A run of samples given column by column: the minute of each, the worker's and the server's RSS
 * in MiB then, and the pid of the worker process that was sampled.
 */
function series(c: { minute: number[]; worker: number[]; pid: number[]; server: number[] }): MemorySample[] {
  if (![c.worker, c.pid, c.server].every((col) => col.length === c.minute.length)) {
    throw new Error('every column of a series needs one value per minute');
  }
  return c.minute.map((m, i) => sample(m, c.worker[i]!, c.pid[i]!, c.server[i]!));
}

describe('memory growth', () => {
  it('is the least-squares slope of the samples', () => {
    expect(
      slope([
        { x: 0, y: 1 },
        { x: 1, y: 3 },
        { x: 2, y: 5 },
      ]),
    ).toBe(2);
    expect(slope([{ x: 1, y: 3 }])).toBe(0);
  });

  it('is shared by several series each with its own intercept, so a fall between them is not shrinkage', () => {
    const first = [
      { x: 0, y: 100 },
      { x: 1, y: 102 },
    ];
    const second = [
      { x: 2, y: 50 },
      { x: 3, y: 52 },
      { x: 4, y: 54 },
    ];
    expect(pooledSlope([first, second])).toBeCloseTo(2);
    expect(pooledSlope([[{ x: 0, y: 1 }]])).toBe(0);
  });

  it('is fitted per hour, and for the worker per process across its restarts', () => {
    // Server: +1 MiB every 10 minutes = 6 MiB/h. Worker: +2 MiB per 10 min in each process; the
    // successor of a killed one starts small, which must not read as shrinkage.
    const samples = series({
      minute: [0, 10, 20, 30, 40],
      worker: [100, 102, 104, 80, 82],
      pid: [1, 1, 1, 2, 2],
      server: [200, 201, 202, 203, 204],
    });
    expect(growthPerHour(samples, 'server') / MiB).toBeCloseTo(6);
    expect(growthPerHour(samples, 'worker') / MiB).toBeCloseTo(12);
    expect(growthPerHour(samples, 'datapath')).toBe(0);
  });

  it("after warm-up leaves out each worker process's first minutes and the others' first minutes of the soak", () => {
    // Each worker rises 100 MiB in its first minute, then 1 MiB per 10 minutes (6 MiB/h); the
    // server rises 50 MiB in the soak's first minute, then not at all.
    const samples = series({
      minute: [0, 1, 2, 12, 13, 14, 15, 25],
      worker: [100, 200, 200, 201, 100, 200, 200, 201],
      pid: [1, 1, 1, 1, 2, 2, 2, 2],
      server: [200, 250, 250, 250, 250, 250, 250, 250],
    });
    expect(growthPerHour(samples, 'worker') / MiB).toBeGreaterThan(100);
    expect(growthPerHour(samples, 'worker', 2 * 60_000) / MiB).toBeCloseTo(6);
    expect(growthPerHour(samples, 'server', 2 * 60_000)).toBe(0);
  });
});

describe('the memory table', () => {
  it('shows the first sample, one at every mark, and the last', () => {
    const samples = [0, 1, 2, 3, 4, 5.1, 6, 7, 8, 9, 10.2, 11, 11.5].map((m) => sample(m, 100, 1, 200));
    expect(tableRows(samples, 5 * 60_000).map((s) => s.atMs / 60_000)).toEqual([0, 5.1, 10.2, 11.5]);
  });
});

describe('the closing table', () => {
  const base = {
    options: { minutes: 2, seed: 9, concurrency: 3 },
    elapsedMs: 150_000,
    restoresVerified: 2,
    faultsInjected: 1,
    workerKills: 1,
    samples: [sample(0, 100, 1, 200), sample(1, 101, 1, 201)],
    tableEveryMs: 60_000,
    undrained: 0,
  };

  it('counts jobs by kind and outcome and passes with no unexplained failure or mismatch', () => {
    const s = {
      ...base,
      mismatches: [],
      jobs: [
        { kind: 'restore', outcome: Outcome.Ok, detail: '' },
        { kind: 'restore', outcome: Outcome.Ok, detail: '' },
        { kind: 'backup-tape', outcome: Outcome.Expected, detail: 'DeviceFault' },
      ],
    };
    const table = renderSummary(s);
    expect(table).toContain('| backup-tape | 0 | 1 | 0 | 1 |');
    expect(table).toContain('| restore | 2 | 0 | 0 | 2 |');
    expect(table).toContain('| **all** | 2 | 1 | 0 | 3 |');
    expect(table).toContain('seed 9');
    expect(table).toContain(
      '| **growth/h (linear fit over all 2 samples)** | 60.0 MiB/h | per process, over 1 process(es) | – | per process, over 0 process(es) | 60.0 MiB/h | | 0.0 MiB/h | 0.0 MiB/h |',
    );
    expect(table).toContain(
      "| **growth/h after warm-up (samples 3 min or more after each process's start)** | – | per process | – | per process, for information | – | | – | |",
    );
    expect(table).toContain('| worker (kept) | 1 | 0.0: 100.0 | – | 1.0: 101.0 | – |');
    // Two minutes cannot tell whether memory is flat, and that fails nothing.
    expect(table).toContain(
      'Verdict: PASS (zero unexplained failures, zero mismatches, everything drained; memory undecided: worker (kept) (0 sample(s) after warm-up), server (0 sample(s) after warm-up), datapath (0 sample(s) after warm-up)',
    );
    expect(passed(s)).toBe(true);
  });

  it('fails and lists each unexplained failure and mismatch in full', () => {
    const s = {
      ...base,
      mismatches: ['restore #4 of x: aa ≠ bb'],
      jobs: [{ kind: 'ladder', outcome: Outcome.Unexplained, detail: 'ended waiting-for-human' }],
    };
    const table = renderSummary(s);
    expect(table).toContain('Verdict: FAIL (1 unexplained, 1 mismatches, 0 not drained; memory undecided');
    expect(table).toContain('- ladder: ended waiting-for-human');
    expect(table).toContain('- mismatch: restore #4 of x: aa ≠ bb');
    expect(passed(s)).toBe(false);
    expect(passed({ ...s, jobs: [], mismatches: [], undrained: 1 })).toBe(false);
  });
});

/** A sample with a server cache count; every RSS in MiB. */
const at = (min: number, worker: number, pid: number, server: number, datapath = 50): MemorySample => ({
  atMs: min * 60_000,
  rss: { worker: worker * MiB, server: server * MiB, datapath: datapath * MiB },
  workerPid: pid,
  dbBytes: 10 * MiB,
});

/** A soak of `minutes` (run for `ranMin`) with these samples and nothing else to tell: no job, fault or kill. */
const quietSoak = (samples: MemorySample[], minutes: number, ranMin: number, tableEveryMs: number): SoakSummary => ({
  options: { minutes, seed: 1, concurrency: 3 },
  elapsedMs: ranMin * 60_000,
  jobs: [],
  restoresVerified: 0,
  mismatches: [],
  faultsInjected: 0,
  workerKills: 0,
  samples,
  tableEveryMs,
  undrained: 0,
});

describe('the flatness of memory', () => {
  it('gives the pooled slope its standard error from the residuals about each series', () => {
    // On a line exactly: no error. Scattered by ±1 about y = x: the slope stays 1, with an error.
    const exact = pooledFit([
      [
        { x: 0, y: 0 },
        { x: 1, y: 1 },
        { x: 2, y: 2 },
      ],
    ]);
    expect(exact).toEqual({ slope: 1, stdErr: 0, points: 3 });
    const scattered = pooledFit([
      [
        { x: 0, y: 1 },
        { x: 1, y: 0 },
        { x: 2, y: 3 },
        { x: 3, y: 2 },
      ],
    ]);
    expect(scattered.slope).toBeCloseTo(0.6);
    // Residuals 0.4, -1.2, 1.2, -0.4 about the line: 3.2 over 2 degrees of freedom, Sxx 5.
    expect(scattered.stdErr).toBeCloseTo(Math.sqrt(3.2 / 2 / 5));
    // Two points fit any line: nothing to tell the error from.
    expect(
      pooledFit([
        [
          { x: 0, y: 0 },
          { x: 1, y: 5 },
        ],
      ]).stdErr,
    ).toBeUndefined();
  });

  it('is flat below the limit with its margin, growing above it, and undecided in between or without samples', () => {
    const limit = FLAT_MIB_PER_HOUR * MiB;
    expect(flatness({ slope: 0.5 * limit, stdErr: 0.2 * limit, points: 10 })).toBe('flat');
    expect(flatness({ slope: 0.9 * limit, stdErr: 0.2 * limit, points: 10 })).toBe('undecided');
    expect(flatness({ slope: 2 * limit, stdErr: 0.2 * limit, points: 10 })).toBe('growing');
    expect(flatness({ slope: 0, stdErr: undefined, points: 2 })).toBe('undecided');
  });

  it("lists each process with its RSS at its start, at its warm-up's end and at its last sample", () => {
    const samples = [
      at(0, 300, 11, 160),
      at(1, 500, 11, 200),
      at(2, 520, 11, 210),
      at(3, 530, 11, 215),
      at(4, 525, 11, 215),
      at(5, 310, 12, 215),
      at(6, 490, 12, 216),
    ];
    const rows = processMemory(samples, 3 * 60_000);
    expect(
      rows.map((r) => [
        r.key,
        r.pid,
        r.firstRss / MiB,
        r.warmRss === undefined ? undefined : r.warmRss / MiB,
        r.lastRss / MiB,
      ]),
    ).toEqual([
      ['worker', 11, 300, 530, 525],
      ['worker', 12, 310, undefined, 490],
      ['server', undefined, 160, 215, 216],
      ['datapath', undefined, 50, 50, 50],
    ]);
    expect(rows[0]!.warmMin).toBe(3);
    // Worker 11 after its warm-up: 530 → 525 MiB in a minute.
    expect(rows[0]!.fit.slope / MiB).toBeCloseTo(-300);
    expect(rows[1]!.fit.points).toBe(0);
  });

  it('says memory is flat, and the soak passes, when every process levels off after its warm-up', () => {
    // Two worker processes that rise for 2 minutes and then stay within ±2 MiB; a flat server.
    const samples: MemorySample[] = [];
    for (let m = 0; m <= 30; m++) {
      const pid = m < 15 ? 1 : 2;
      const age = pid === 1 ? m : m - 15;
      const worker = age < 2 ? 300 + 100 * age : 500 + (m % 2 === 0 ? 2 : -2);
      samples.push(at(m, worker, pid, 250 + (m % 3)));
    }
    const v = memoryVerdict(samples, WARM_UP_MS);
    expect(v.kinds.map((k) => [k.key, k.flatness])).toEqual([
      ['worker', 'flat'],
      ['server', 'flat'],
      ['datapath', 'flat'],
    ]);
    expect(v.overall).toBe('flat');
    const s = {
      ...quietSoak(samples, 30, 31, 5 * 60_000),
      jobs: [{ kind: 'restore', outcome: Outcome.Ok, detail: '' }],
      restoresVerified: 1,
      workerKills: 1,
    };
    expect(renderSummary(s)).toContain(
      'Verdict: PASS (zero unexplained failures, zero mismatches, everything drained; memory flat (growth after warm-up under 100 MiB/h per process, with 2 standard errors of margin))',
    );
    expect(passed(s)).toBe(true);
  });

  it('says memory is not flat, and the soak fails, when a process keeps growing after its warm-up', () => {
    // The server gains 10 MiB a minute throughout: 600 MiB/h, far over the limit.
    const samples = Array.from({ length: 21 }, (_, m) => at(m, 500, 1, 200 + 10 * m + (m % 2)));
    expect(memoryVerdict(samples).overall).toBe('growing');
    const s = quietSoak(samples, 20, 21, 5 * 60_000);
    const table = renderSummary(s);
    expect(table).toMatch(
      /Verdict: FAIL \(zero unexplained failures, zero mismatches, everything drained; memory NOT flat: server (59|60)\d\.\d ± \d+\.\d MiB\/h/,
    );
    expect(passed(s)).toBe(false);
  });

  it("shows the server's cache beside its RSS", () => {
    const samples = [
      { ...at(0, 300, 1, 160), serverCacheEntries: 4 },
      { ...at(1, 500, 1, 200), serverCacheEntries: 120 },
      at(2, 500, 1, 200),
    ];
    const table = renderSummary(quietSoak(samples, 2, 2, 60_000));
    expect(table).toContain('| 1.0 | 500.0 | 1 | – | – | 200.0 | 120 | 50.0 | 10.0 |');
    expect(table).toContain('| 2.0 | 500.0 | 1 | – | – | 200.0 | – | 50.0 | 10.0 |');
  });
});

/**
 * A 30-minute soak sampled every minute with two workers: the kept one (pid 1) throughout, and the
 * killed one replaced every `lifeMin` minutes (pids 100, 101, …). Each RSS is in MiB, given by the
 * minute of the soak (kept) or the age of its process (killed); the server and the datapath are flat.
 */
function twoWorkers(kept: (min: number) => number, killed: (age: number) => number, lifeMin = 6): MemorySample[] {
  return Array.from({ length: 31 }, (_, m) => ({
    ...at(m, kept(m), 1, 250 + (m % 3), 50 + (m % 2)),
    killedWorkerPid: 100 + Math.floor(m / lifeMin),
  })).map((s, m) => ({ ...s, rss: { ...s.rss, killedWorker: killed(m % lifeMin) * MiB } }));
}

/** ±2 MiB of saw-tooth, as the collectors leave it. */
const jitter = (m: number) => (m % 2 === 0 ? 2 : -2);

describe('the memory verdict with a kept and a killed worker', () => {
  it("fails on the kept worker growing 300 MiB/h, even when the killed worker's processes are flat", () => {
    const samples = twoWorkers(
      (m) => (m < 2 ? 300 + 100 * m : 500 + 5 * m + jitter(m)),
      (age) => (age < 2 ? 300 + 100 * age : 500 + jitter(age)),
    );
    const v = memoryVerdict(samples);
    expect(v.kinds.map((k) => [k.key, k.flatness])).toEqual([
      ['worker', 'growing'],
      ['server', 'flat'],
      ['datapath', 'flat'],
    ]);
    expect(v.kinds[0]!.fit.slope / MiB).toBeCloseTo(300, -1);
    expect(v.overall).toBe('growing');
    // The killed worker's processes, pooled, are flat: 6 processes, 3 samples each after warm-up.
    expect(v.killed.flatness).toBe('flat');
    expect(v.killed.processes).toBe(6);
    expect(v.killed.fit.points).toBe(15);
    const s = quietSoak(samples, 30, 31, 5 * 60_000);
    const table = renderSummary(s);
    expect(table).toMatch(
      /Verdict: FAIL \(zero unexplained failures, zero mismatches, everything drained; memory NOT flat: worker \(kept\) 30\d\.\d ± \d+\.\d MiB\/h \(rule/,
    );
    expect(table).toMatch(
      /The killed worker's 6 process\(es\), pooled after warm-up: -?\d+\.\d ± \d+\.\d MiB\/h \(by the rule: flat\)\. Shown for information, not in the verdict/,
    );
    expect(passed(s)).toBe(false);
  });

  it("passes with the kept worker flat, however the killed worker's processes grow", () => {
    // Each killed process gains 10 MiB a minute after its warm-up (600 MiB/h); the kept one levels off.
    const samples = twoWorkers(
      (m) => (m < 2 ? 300 + 100 * m : 500 + jitter(m)),
      (age) => (age < 2 ? 300 + 100 * age : 500 + 10 * age + jitter(age)),
    );
    const v = memoryVerdict(samples);
    expect(v.killed.flatness).toBe('growing');
    expect(v.killed.fit.slope / MiB).toBeCloseTo(600, -1);
    expect(v.kinds.find((k) => k.key === 'worker')!.flatness).toBe('flat');
    expect(v.overall).toBe('flat');
    const s = quietSoak(samples, 30, 31, 5 * 60_000);
    const table = renderSummary(s);
    expect(table).toContain(
      'Verdict: PASS (zero unexplained failures, zero mismatches, everything drained; memory flat (growth after warm-up under 100 MiB/h per process, with 2 standard errors of margin))',
    );
    expect(table).toMatch(
      /The killed worker's 6 process\(es\), pooled after warm-up: 60\d\.\d ± \d+\.\d MiB\/h \(by the rule: growing\)/,
    );
    expect(passed(s)).toBe(true);
  });

  it("fits the kept worker alone: the killed worker's growth in the same samples does not enter it", () => {
    const samples = twoWorkers(
      (m) => 500 + 1 * m,
      (age) => 300 + 50 * age,
    );
    // 1 MiB a minute is 60 MiB/h for the kept worker; the killed worker's processes gain 3,000 MiB/h.
    expect(growthPerHour(samples, 'worker', WARM_UP_MS) / MiB).toBeCloseTo(60);
    expect(growthPerHour(samples, 'killedWorker', WARM_UP_MS) / MiB).toBeCloseTo(3000);
  });

  it('lists every process of both workers under its own label, with its pid', () => {
    const samples = twoWorkers(
      (m) => 400 + m,
      (age) => 300 + age,
      10,
    );
    const rows = processMemory(samples);
    expect(rows.map((r) => [r.key, r.pid, r.firstMin, r.lastMin])).toEqual([
      ['worker', 1, 0, 30],
      ['killedWorker', 100, 0, 9],
      ['killedWorker', 101, 10, 19],
      ['killedWorker', 102, 20, 29],
      ['killedWorker', 103, 30, 30],
      ['server', undefined, 0, 30],
      ['datapath', undefined, 0, 30],
    ]);
    const table = renderSummary(quietSoak(samples, 30, 31, 5 * 60_000));
    expect(table).toContain('| worker (kept) | 1 | 0.0: 400.0 | 3.0: 403.0 | 30.0: 430.0 | 60.0 ± 0.0 MiB/h |');
    expect(table).toContain('| worker (killed) | 101 | 10.0: 300.0 | 13.0: 303.0 | 19.0: 309.0 | 60.0 ± 0.0 MiB/h |');
    expect(table).toContain('| worker (killed) | 103 | 30.0: 300.0 | – | 30.0: 300.0 | – |');
    // The time series: both workers side by side at minute 15.
    expect(table).toContain('| 15.0 | 415.0 | 1 | 305.0 | 101 | 250.0 | – | 51.0 | 10.0 |');
  });
});
