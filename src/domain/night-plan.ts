/**
 * The night planner (seed 003, the internet-data-centre example): given each scheduled job's size
 * and throughput, the library's free drives and the backup window, it computes a start time for
 * every job so that all finish inside the window, and names the jobs that cannot, with the reason.
 * Pure: the CLI and the schedules feed it from kura.yaml, the catalog and the pool.
 */
import { z } from 'zod';
import { HHMM } from './ladder-config';
import { formatBytes, formatDuration } from './units';
import { parseWith } from './validate';

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

/** Where a job's size came from: its last complete backup, or the volume's size in kura.yaml. */
export const SizeSource = { Catalog: 'catalog', Volume: 'volume' } as const;
export type SizeSource = (typeof SizeSource)[keyof typeof SizeSource];

/** Where a job's throughput came from: its past backups, or kura.yaml's `night.throughput`. */
export const RateSource = { Measured: 'measured', Configured: 'configured' } as const;
export type RateSource = (typeof RateSource)[keyof typeof RateSource];

export const NightJobSchema = z.object({
  /** The job's stable name, `<policy>/<target>`: one schedule each. */
  job: z.string().min(1),
  policy: z.string().min(1),
  target: z.string().min(1),
  sizeBytes: z.number().int().nonnegative(),
  sizeFrom: z.enum([SizeSource.Catalog, SizeSource.Volume]),
  /** Bytes per second this job's backup moves. */
  bytesPerSecond: z.number().positive(),
  rateFrom: z.enum([RateSource.Measured, RateSource.Configured]),
  /** Drives the job holds at once (its streams, seed 004): every one for its whole run. */
  drives: z.number().int().min(1).default(1),
});
export type NightJob = z.input<typeof NightJobSchema>;

export const NightPlanInputSchema = z.object({
  /** The calendar date (in `timezone`) on which the window opens, YYYY-MM-DD. */
  date: z
    .string()
    .regex(/^\d{4}-\d{2}-\d{2}$/, 'must be a date as YYYY-MM-DD, e.g. 2026-12-01')
    .refine((d) => !Number.isNaN(Date.parse(`${d}T00:00:00Z`)), 'is not a calendar date'),
  timezone: z.string().min(1),
  window: z.object({ start: HHMM, end: HHMM }),
  /** The library's free drives, by name, in the order they are preferred. */
  drives: z.array(z.string().min(1)),
  /** Jobs in priority order: kura.yaml's policies, then each policy's targets, as written. */
  jobs: z.array(NightJobSchema),
});
export type NightPlanInput = z.input<typeof NightPlanInputSchema>;

/** A job the plan fits: its drives and its start and end, as local HH:MM and as ISO instants. */
export interface PlannedJob {
  job: string;
  policy: string;
  target: string;
  sizeBytes: number;
  sizeFrom: SizeSource;
  bytesPerSecond: number;
  rateFrom: RateSource;
  durationMs: number;
  drives: string[];
  /** Local wall-clock time in the plan's zone, HH:MM: what the job's schedule fires at. */
  start: string;
  end: string;
  startAt: string;
  endAt: string;
  /** From the window's opening, ms. */
  offsetMs: number;
}

/** A job that does not fit the window on the free drives, and why, in words an operator acts on. */
export interface UnfitJob {
  job: string;
  policy: string;
  target: string;
  sizeBytes: number;
  durationMs: number;
  reason: string;
}

export interface NightPlan {
  date: string;
  timezone: string;
  window: { start: string; end: string; startAt: string; endAt: string; lengthMs: number };
  drives: string[];
  jobs: PlannedJob[];
  unfit: UnfitJob[];
  /** When the last planned job ends (the window's opening when none is planned). */
  endAt: string;
}

/**
 * How long a job takes: its size at its throughput, rounded up to whole minutes (a Temporal
 * Schedule's calendar fires on minutes, so every start must fall on one), at least one minute for
 * the cartridge's load and unload.
 */
export function jobDurationMs(sizeBytes: number, bytesPerSecond: number): number {
  // To the microsecond first, so a size that is an exact number of minutes is not pushed past one by float error.
  const ms = Math.round((sizeBytes / bytesPerSecond) * 1e6) / 1e3;
  return Math.max(MINUTE, Math.ceil(ms / MINUTE) * MINUTE);
}

/**
 * Plans the night: jobs in their priority order, each on the drive(s) that free up first, starting
 * as soon as those are free; a job that would end after the window closes, or needs more drives
 * than are free, is left out and named with the reason, and holds no drive, so the jobs after it
 * may still fit. Order is the operator's (kura.yaml), not longest-first: it is what reproduces the
 * schedule an operator expects from the seed's example, and what decides who is left out when the
 * night is short.
 */
export function planNight(input: NightPlanInput): NightPlan {
  const req = parseWith(NightPlanInputSchema, input, 'night plan request');
  const opensAt = zonedInstant(req.date, req.window.start, req.timezone);
  let closesAt = zonedInstant(req.date, req.window.end, req.timezone);
  if (closesAt <= opensAt) closesAt = zonedInstant(nextDate(req.date), req.window.end, req.timezone);
  const lengthMs = closesAt - opensAt;
  const at = (offset: number) => new Date(opensAt + offset).toISOString();
  const clock = (offset: number) => wallClock(opensAt + offset, req.timezone);

  const freeAt = req.drives.map(() => 0);
  const jobs: PlannedJob[] = [];
  const unfit: UnfitJob[] = [];
  for (const j of req.jobs) {
    const durationMs = jobDurationMs(j.sizeBytes, j.bytesPerSecond);
    const need = `${formatDuration(durationMs)} for ${formatBytes(j.sizeBytes)} at ${formatRate(j.bytesPerSecond)} (${j.rateFrom === RateSource.Measured ? 'measured by its past backups' : "kura.yaml's night.throughput"})`;
    const leaveOut = (reason: string) =>
      unfit.push({ job: j.job, policy: j.policy, target: j.target, sizeBytes: j.sizeBytes, durationMs, reason });
    if (req.drives.length === 0) {
      leaveOut('no drive of the library is free; mark a drive available (`kura pool mark <drive> available`)');
      continue;
    }
    if (j.drives > req.drives.length) {
      leaveOut(
        `it holds ${j.drives} drives at once (its streams) but only ${req.drives.length} ${req.drives.length === 1 ? 'is' : 'are'} free; lower the policy's streams or free a drive`,
      );
      continue;
    }
    if (durationMs > lengthMs) {
      leaveOut(
        `it needs ${need}, longer than the whole window ${req.window.start}–${req.window.end} (${formatDuration(lengthMs)}); widen the window, or split the target`,
      );
      continue;
    }
    // The `drives` drives that free up first; ties go to the drive listed first.
    const chosen = req.drives
      .map((name, i) => ({ name, i, free: freeAt[i] ?? 0 }))
      .sort((a, b) => a.free - b.free || a.i - b.i)
      .slice(0, j.drives);
    const offsetMs = Math.max(...chosen.map((c) => c.free));
    const endMs = offsetMs + durationMs;
    if (endMs > lengthMs) {
      leaveOut(
        `it needs ${need}; the first free ${j.drives === 1 ? 'drive is' : `${j.drives} drives are`} free at ${clock(offsetMs)}, so it would end at ${clock(endMs)}, after the window closes at ${req.window.end}; add a drive, widen the window, or move it to a policy listed earlier`,
      );
      continue;
    }
    for (const c of chosen) freeAt[c.i] = endMs;
    jobs.push({
      job: j.job,
      policy: j.policy,
      target: j.target,
      sizeBytes: j.sizeBytes,
      sizeFrom: j.sizeFrom,
      bytesPerSecond: j.bytesPerSecond,
      rateFrom: j.rateFrom,
      durationMs,
      drives: chosen.sort((a, b) => a.i - b.i).map((c) => c.name),
      start: clock(offsetMs),
      end: clock(endMs),
      startAt: at(offsetMs),
      endAt: at(endMs),
      offsetMs,
    });
  }
  const last = Math.max(0, ...jobs.map((j) => j.offsetMs + j.durationMs));
  return {
    date: req.date,
    timezone: req.timezone,
    window: { start: req.window.start, end: req.window.end, startAt: at(0), endAt: at(lengthMs), lengthMs },
    drives: req.drives,
    jobs,
    unfit,
    endAt: at(last),
  };
}

/** A throughput in words: `100.0 MB/s`. */
export function formatRate(bytesPerSecond: number): string {
  return bytesPerSecond >= 1e9
    ? `${(bytesPerSecond / 1e9).toFixed(1)} GB/s`
    : bytesPerSecond >= 1e6
      ? `${(bytesPerSecond / 1e6).toFixed(1)} MB/s`
      : `${(bytesPerSecond / 1e3).toFixed(1)} kB/s`;
}

/** The day after a YYYY-MM-DD date. */
export function nextDate(date: string): string {
  return new Date(Date.parse(`${date}T00:00:00Z`) + DAY).toISOString().slice(0, 10);
}

/** Today's date (YYYY-MM-DD) in a time zone at the instant `now`. */
export function dateIn(timezone: string, now: number): string {
  const p = zoneParts(now, timezone);
  return `${p.year}-${pad(p.month)}-${pad(p.day)}`;
}

/**
 * The instant (ms since the epoch) at which the wall clock of `timezone` reads `hhmm` on `date`.
 * The zone's offset is read at a first guess and read again at the result, which settles it on
 * either side of a daylight-saving change.
 */
export function zonedInstant(date: string, hhmm: string, timezone: string): number {
  const [y, m, d] = date.split('-').map(Number) as [number, number, number];
  const [h, mi] = hhmm.split(':').map(Number) as [number, number];
  const asUtc = Date.UTC(y, m - 1, d, h, mi);
  let t = asUtc - offsetOf(asUtc, timezone);
  t = asUtc - offsetOf(t, timezone);
  return t;
}

/** The local wall-clock time HH:MM of an instant in a time zone. */
export function wallClock(instant: number, timezone: string): string {
  const p = zoneParts(instant, timezone);
  return `${pad(p.hour)}:${pad(p.minute)}`;
}

function offsetOf(instant: number, timezone: string): number {
  const p = zoneParts(instant, timezone);
  return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - Math.floor(instant / 1000) * 1000;
}

function zoneParts(instant: number, timezone: string) {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: timezone,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  }).formatToParts(new Date(instant));
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  return {
    year: get('year'),
    month: get('month'),
    day: get('day'),
    hour: get('hour'),
    minute: get('minute'),
    second: get('second'),
  };
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}
