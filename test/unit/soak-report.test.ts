/**
 * The soak's bookkeeping: its options, its seeded choices, how a failed job is classified, the
 * memory growth fitted per hour, and the verdict its closing table gives.
 */
import { describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client';
import { InvalidInputError } from '../../src/domain/errors';
import {
  Outcome,
  SeededRandom,
  classifyFailure,
  growthPerHour,
  parseSoakArgs,
  passed,
  pooledSlope,
  renderSummary,
  slope,
  tableRows,
  type MemorySample,
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
      '| **growth/h (linear fit over all 2 samples)** | 60.0 MiB/h | per process, over 1 process(es) | 60.0 MiB/h | 0.0 MiB/h | 0.0 MiB/h |',
    );
    expect(table).toContain(
      "| **growth/h after warm-up (samples 2 min or more after each process's start)** | – | per process | – | – | |",
    );
    expect(table).toContain('Verdict: PASS');
    expect(passed(s)).toBe(true);
  });

  it('fails and lists each unexplained failure and mismatch in full', () => {
    const s = {
      ...base,
      mismatches: ['restore #4 of x: aa ≠ bb'],
      jobs: [{ kind: 'ladder', outcome: Outcome.Unexplained, detail: 'ended waiting-for-human' }],
    };
    const table = renderSummary(s);
    expect(table).toContain('Verdict: FAIL (1 unexplained, 1 mismatches, 0 not drained)');
    expect(table).toContain('- ladder: ended waiting-for-human');
    expect(table).toContain('- mismatch: restore #4 of x: aa ≠ bb');
    expect(passed(s)).toBe(false);
    expect(passed({ ...s, jobs: [], mismatches: [], undrained: 1 })).toBe(false);
  });
});
