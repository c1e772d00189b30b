import { describe, expect, it } from 'vitest';
import { jobDurationMs, planNight, zonedInstant, type NightJob } from '../../src/domain/night-plan';
import { InvalidInputError } from '../../src/domain/errors';

/** 100 MB/s, so an hour moves 360 GB: the sizes below give the seed's durations exactly. */
const RATE = 100_000_000;
const HOUR = 3_600_000;

function job(target: string, sizeBytes: number, extra: Partial<NightJob> = {}): NightJob {
  return {
    job: `idc/${target}`,
    policy: 'idc',
    target,
    sizeBytes,
    sizeFrom: 'catalog',
    bytesPerSecond: RATE,
    rateFrom: 'configured',
    ...extra,
  };
}

// Seed 003's internet data centre: A's WWW server 1 h, B's application server 30 min, A's
// application server 1 h 30, B's WWW server 2 h, in that order.
const IDC = [job('a-www', 360e9), job('b-app', 180e9), job('a-app', 540e9), job('b-www', 720e9)];
const NIGHT = { date: '2026-12-01', timezone: 'UTC', window: { start: '00:00', end: '06:00' } };

describe('the night planner', () => {
  it("reproduces the seed's example on one drive: A's WWW 0:00, B's app 1:00, A's app 1:30, B's WWW 3:00", () => {
    const plan = planNight({ ...NIGHT, drives: ['lib1/d1'], jobs: IDC });
    expect(plan.jobs.map((j) => [j.target, j.start, j.end, j.drives])).toEqual([
      ['a-www', '00:00', '01:00', ['lib1/d1']],
      ['b-app', '01:00', '01:30', ['lib1/d1']],
      ['a-app', '01:30', '03:00', ['lib1/d1']],
      ['b-www', '03:00', '05:00', ['lib1/d1']],
    ]);
    expect(plan.jobs.map((j) => j.startAt)).toEqual([
      '2026-12-01T00:00:00.000Z',
      '2026-12-01T01:00:00.000Z',
      '2026-12-01T01:30:00.000Z',
      '2026-12-01T03:00:00.000Z',
    ]);
    expect(plan.unfit).toEqual([]);
    expect(plan.endAt).toBe('2026-12-01T05:00:00.000Z');
  });

  it('runs the jobs concurrently on two drives, and the night ends earlier', () => {
    const plan = planNight({ ...NIGHT, drives: ['lib1/d1', 'lib1/d2'], jobs: IDC });
    expect(plan.jobs.map((j) => [j.target, j.start, j.end, j.drives])).toEqual([
      ['a-www', '00:00', '01:00', ['lib1/d1']],
      ['b-app', '00:00', '00:30', ['lib1/d2']],
      ['a-app', '00:30', '02:00', ['lib1/d2']],
      ['b-www', '01:00', '03:00', ['lib1/d1']],
    ]);
    expect(plan.endAt).toBe('2026-12-01T03:00:00.000Z');
    expect(Date.parse(plan.endAt)).toBeLessThan(
      Date.parse(planNight({ ...NIGHT, drives: ['lib1/d1'], jobs: IDC }).endAt),
    );
  });

  it('names a job too large for the whole window, and why, and still plans the others', () => {
    const plan = planNight({ ...NIGHT, drives: ['lib1/d1'], jobs: [...IDC.slice(0, 2), job('c-db', 3e12)] });
    expect(plan.jobs.map((j) => j.target)).toEqual(['a-www', 'b-app']);
    expect(plan.unfit).toHaveLength(1);
    expect(plan.unfit[0]).toMatchObject({ job: 'idc/c-db', target: 'c-db', durationMs: 500 * 60_000 });
    expect(plan.unfit[0]!.reason).toBe(
      "it needs 8.3 h for 2.7 TiB at 100.0 MB/s (kura.yaml's night.throughput), longer than the whole window 00:00–06:00 (6.0 h); widen the window, or split the target",
    );
  });

  it('names a job that would end after the window closes behind the others, and lets a later short one fit', () => {
    // On one drive B's WWW ends at 05:00; a 1 h 30 job would end at 06:30; a 30 min one still fits.
    const plan = planNight({
      ...NIGHT,
      drives: ['lib1/d1'],
      jobs: [...IDC, job('c-web', 540e9), job('c-app', 180e9)],
    });
    expect(plan.unfit.map((u) => u.target)).toEqual(['c-web']);
    expect(plan.unfit[0]!.reason).toContain('the first free drive is free at 05:00, so it would end at 06:30');
    expect(plan.unfit[0]!.reason).toContain('after the window closes at 06:00');
    expect(plan.jobs.at(-1)).toMatchObject({ target: 'c-app', start: '05:00', end: '05:30' });
  });

  it('gives a job of two streams two drives at once, from when both are free', () => {
    const plan = planNight({
      ...NIGHT,
      drives: ['d1', 'd2'],
      jobs: [job('a-www', 360e9), job('b-app', 180e9, { drives: 2 })],
    });
    expect(plan.jobs[1]).toMatchObject({ target: 'b-app', drives: ['d1', 'd2'], start: '01:00', end: '01:30' });
  });

  it('names a job that needs more drives than are free', () => {
    const plan = planNight({ ...NIGHT, drives: ['d1'], jobs: [job('a-www', 360e9, { drives: 2 })] });
    expect(plan.jobs).toEqual([]);
    expect(plan.unfit[0]!.reason).toBe(
      "it holds 2 drives at once (its streams) but only 1 is free; lower the policy's streams or free a drive",
    );
  });

  it('names every job when no drive is free', () => {
    const plan = planNight({ ...NIGHT, drives: [], jobs: IDC });
    expect(plan.unfit.map((u) => u.target)).toEqual(['a-www', 'b-app', 'a-app', 'b-www']);
    expect(plan.unfit[0]!.reason).toMatch(/^no drive of the library is free/);
  });

  it('runs a window across midnight into the next day', () => {
    const plan = planNight({ ...NIGHT, window: { start: '22:00', end: '04:00' }, drives: ['d1'], jobs: IDC });
    expect(plan.window).toMatchObject({
      startAt: '2026-12-01T22:00:00.000Z',
      endAt: '2026-12-02T04:00:00.000Z',
      lengthMs: 6 * HOUR,
    });
    expect(plan.jobs.map((j) => j.start)).toEqual(['22:00', '23:00', '23:30', '01:00']);
    expect(plan.jobs[3]!.startAt).toBe('2026-12-02T01:00:00.000Z');
  });

  it('keeps wall-clock times in the zone of the window', () => {
    const plan = planNight({ ...NIGHT, timezone: 'Asia/Tokyo', drives: ['d1'], jobs: IDC });
    expect(plan.jobs.map((j) => j.start)).toEqual(['00:00', '01:00', '01:30', '03:00']);
    // Tokyo is UTC+9: local midnight of 1 December is 15:00 UTC on 30 November.
    expect(plan.jobs[0]!.startAt).toBe('2026-11-30T15:00:00.000Z');
  });

  it('finds the instant of a wall-clock time on both sides of a daylight-saving change', () => {
    expect(new Date(zonedInstant('2026-03-28', '02:00', 'Europe/London')).toISOString()).toBe(
      '2026-03-28T02:00:00.000Z',
    );
    expect(new Date(zonedInstant('2026-03-30', '02:00', 'Europe/London')).toISOString()).toBe(
      '2026-03-30T01:00:00.000Z',
    );
  });

  it('rounds durations up to whole minutes, at least one', () => {
    expect(jobDurationMs(0, RATE)).toBe(60_000);
    expect(jobDurationMs(6e9, RATE)).toBe(60_000);
    expect(jobDurationMs(6e9 + 1000, RATE)).toBe(120_000);
    expect(jobDurationMs(360e9, RATE)).toBe(HOUR);
  });

  it('refuses a malformed request, naming the field', () => {
    expect(() => planNight({ ...NIGHT, date: '1 Dec', drives: ['d1'], jobs: IDC })).toThrow(InvalidInputError);
    expect(() => planNight({ ...NIGHT, window: { start: '25:00', end: '06:00' }, drives: [], jobs: [] })).toThrow(
      /invalid night plan request: window\.start: must be a time of day as HH:MM/,
    );
  });
});
