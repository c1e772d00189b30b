/**
 * The night planner's inputs and its schedules: each scheduled job's size and throughput read from
 * the catalog (else the volume and kura.yaml), the library's free drives, and, once planned, one
 * Temporal Schedule per job at its computed time in place of its policy's fixed nightly time.
 */
import type { Client } from '@temporalio/client';
import { upsertSchedule } from './schedules';
import { TypedSearchAttributes } from '@temporalio/common';
import { Catalog } from '../catalog/store';
import { kuraPaths } from '../config/paths';
import type { LoadedConfig } from '../config/load';
import { findSite, resolveTargetRef } from '../config/targets';
import { copySettings, policyTargets } from '../config/tuning';
import { NoResourcesError } from '../domain/errors';
import type { Site } from '../domain/inventory';
import { DEFAULT_NIGHT } from '../domain/night-config';
import {
  RateSource,
  SizeSource,
  dateIn,
  planNight,
  type NightJob,
  type NightPlan,
  type NightPlanInput,
} from '../domain/night-plan';
import { JobKind, KuraKind, KuraSite, KuraTarget } from '../search-attributes';
import { searchAttributeLabels } from '../codec/labels';
import type { KuraPool } from './pool';
import { nightJobScheduleId, parseScheduleId, scheduleIdFor, scheduledNightJobWorkflowId } from './workflow-ids';

/** How many of a target's last complete backups its throughput is measured over. */
const MEASURED_BACKUPS = 3;

/** A drive the plan leaves out, and why (the pool marked it unavailable). */
export interface DriveLeftOut {
  drive: string;
  reason: string;
}

/**
 * The planner's request for a site's night: every target of every policy of the site, in
 * kura.yaml's order, with its size (its last complete backup's, else its volume's), its
 * throughput (the mean of its last complete backups', else `night.throughput`) and the drives it
 * holds at once (its policy's streams); the site's drives less those in `unavailable`.
 */
export function nightPlanRequest(
  loaded: LoadedConfig,
  catalog: Catalog,
  opts: { site?: string; date?: string; unavailable?: DriveLeftOut[]; now?: number } = {},
): { site: string; request: NightPlanInput; leftOut: DriveLeftOut[] } {
  const site = findSite(loaded.config, opts.site);
  const night = site.night ?? DEFAULT_NIGHT;
  const down = new Map((opts.unavailable ?? []).map((d) => [d.drive, d.reason]));
  const allDrives = site.libraries.flatMap((l) => l.drives.map((d) => d.id));
  const jobs: NightJob[] = [];
  for (const policy of site.policies) {
    const { targets } = policyTargets(loaded.config, site.name, policy.name) ?? { targets: [] };
    const { streams } = copySettings(loaded.config, site.name, policy.name);
    for (const target of targets) {
      jobs.push({
        job: `${policy.name}/${target}`,
        policy: policy.name,
        target,
        drives: streams,
        ...sizeAndRate(site, catalog, target, night.throughput),
      });
    }
  }
  return {
    site: site.name,
    request: {
      date: opts.date ?? dateIn(night.timezone, opts.now ?? Date.now()),
      timezone: night.timezone,
      window: night.window,
      drives: allDrives.filter((d) => !down.has(d)),
      jobs,
    },
    leftOut: allDrives.filter((d) => down.has(d)).map((d) => ({ drive: d, reason: down.get(d) ?? '' })),
  };
}

function sizeAndRate(
  site: Site,
  catalog: Catalog,
  target: string,
  configured: number,
): Pick<NightJob, 'sizeBytes' | 'sizeFrom' | 'bytesPerSecond' | 'rateFrom'> {
  const past = catalog.listBackups({ site: site.name, target, status: 'complete', limit: MEASURED_BACKUPS });
  const rates = past.flatMap((b) => {
    const ms = b.endedAt ? Date.parse(b.endedAt) - Date.parse(b.startedAt) : 0;
    return ms > 0 && b.sizeBytes > 0 ? [(b.sizeBytes / ms) * 1000] : [];
  });
  const size = past[0]
    ? { sizeBytes: past[0].sizeBytes, sizeFrom: SizeSource.Catalog }
    : { sizeBytes: resolveTargetRef(site, target).sizeBytes, sizeFrom: SizeSource.Volume };
  const rate =
    rates.length > 0
      ? { bytesPerSecond: rates.reduce((a, b) => a + b, 0) / rates.length, rateFrom: RateSource.Measured }
      : { bytesPerSecond: configured, rateFrom: RateSource.Configured };
  return { ...size, ...rate };
}

/** A site's night plan with what went into it: drives left out, and a note when the pool was not asked. */
export interface NightPlanResult {
  site: string;
  plan: NightPlan;
  leftOut: DriveLeftOut[];
  /** Set when the pool did not answer and every drive of kura.yaml was counted free. */
  note?: string;
}

/**
 * Plans a site's night from kura.yaml and the catalog; the drives the running pool marks
 * unavailable are left out. Without a pool (none given, or it does not answer) every drive of
 * kura.yaml is counted free, and the result says so.
 */
export async function computeNightPlan(
  loaded: LoadedConfig,
  opts: { site?: string; date?: string; now?: number } = {},
  pool?: KuraPool,
): Promise<NightPlanResult> {
  const site = findSite(loaded.config, opts.site);
  let unavailable: DriveLeftOut[] = [];
  let note: string | undefined;
  if (pool) {
    try {
      const tables = await pool.tables(site.name);
      unavailable = tables.drives
        .filter((d) => d.state === 'unavailable')
        .map((d) => ({ drive: d.name, reason: d.reason ?? 'marked unavailable' }));
    } catch (err) {
      note = `the pool did not answer (${err instanceof Error ? err.message : String(err)}); every drive of kura.yaml is counted free`;
    }
  } else note = 'the pool was not asked (no connection to Temporal); every drive of kura.yaml is counted free';
  const catalog = new Catalog(kuraPaths(loaded).catalog);
  try {
    const { request, leftOut } = nightPlanRequest(loaded, catalog, { ...opts, site: site.name, unavailable });
    return { site: site.name, plan: planNight(request), leftOut, ...(note ? { note } : {}) };
  } finally {
    catalog.close();
  }
}

/** What `applyNightSchedules` changed, by schedule id. */
export interface AppliedNightSchedules {
  created: string[];
  updated: string[];
  /** The policies' fixed-time schedules the plan replaced, and job schedules no longer planned. */
  deleted: string[];
  /** Jobs left without a schedule because they do not fit (only with `skipUnfit`). */
  skipped: string[];
}

/**
 * Installs the plan: one schedule per planned job (`kura/<site>/<policy>+<target>`) firing a fleet
 * run of that one target daily at its start time in the plan's zone, overlapping runs skipped;
 * the fixed-time schedules of the site's policies and the job schedules of jobs no longer planned
 * are deleted. Idempotent: applying the same plan again updates the same schedules. A plan with
 * jobs that do not fit is refused before anything changes (NoResources, naming each job and why),
 * unless `skipUnfit`, when those jobs get no schedule and are reported as skipped.
 */
export async function applyNightSchedules(
  client: Client,
  loaded: LoadedConfig,
  site: string,
  plan: NightPlan,
  taskQueue: string,
  opts: { skipUnfit?: boolean } = {},
): Promise<AppliedNightSchedules> {
  if (plan.unfit.length > 0 && !opts.skipUnfit)
    throw new NoResourcesError(
      `the night plan of site ${site} leaves ${plan.unfit.length} job${plan.unfit.length === 1 ? '' : 's'} out, so no schedule was changed: ${plan.unfit.map((u) => `${u.job}: ${u.reason}`).join('; ')}. Make them fit, or apply with --skip-unfit to schedule the others`,
      { site, unfit: plan.unfit.map((u) => u.job) },
    );
  const { installation } = loaded.config;
  const labels = searchAttributeLabels(loaded);
  const out: AppliedNightSchedules = {
    created: [],
    updated: [],
    deleted: [],
    skipped: plan.unfit.map((u) => u.job),
  };
  const wanted = new Set<string>();
  for (const job of plan.jobs) {
    const scheduleId = nightJobScheduleId(site, job.policy, job.target, installation);
    wanted.add(scheduleId);
    const [hour, minute] = job.start.split(':').map(Number) as [number, number];
    const spec = { calendars: [{ hour, minute }], timezone: plan.timezone };
    const action = {
      type: 'startWorkflow' as const,
      workflowType: 'fleetProtection',
      workflowId: scheduledNightJobWorkflowId(job.policy, job.target, installation),
      taskQueue,
      args: [
        {
          site,
          policy: job.policy,
          targets: [job.target],
          concurrency: 1,
          requestedBy: `schedule:${scheduleId}`,
          done: [],
        },
      ],
      typedSearchAttributes: new TypedSearchAttributes([
        { key: KuraKind, value: JobKind.Fleet },
        { key: KuraTarget, value: labels.value(job.target) },
        { key: KuraSite, value: labels.value(site) },
      ]),
      memo: labels.memo,
    };
    out[await upsertSchedule(client, scheduleId, spec, action)].push(scheduleId);
  }
  const policies = new Set(
    findSite(loaded.config, site).policies.map((p) => scheduleIdFor(site, p.name, installation)),
  );
  for await (const s of client.schedule.list()) {
    const parsed = parseScheduleId(s.scheduleId);
    if (parsed?.installation !== installation || parsed.site !== site) continue;
    // The policy's fixed time gives way to its jobs' planned times; a job no longer planned loses its schedule.
    const replaced = parsed.target === undefined && policies.has(s.scheduleId);
    const stale = parsed.target !== undefined && !wanted.has(s.scheduleId);
    if (replaced || stale) {
      await client.schedule.getHandle(s.scheduleId).delete();
      out.deleted.push(s.scheduleId);
    }
  }
  return out;
}
