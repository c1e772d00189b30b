/**
 * `kura plan show <operation>`: the plan of a SAN operation (seed 003 step 3) as it stands, as a
 * timeline — each launch with its device, expected and actual times and outcome — and every
 * change step 5 made to it, with the reason. `kura plan night` and `kura plan apply`: the night
 * planner (seed 003's internet data centre), each scheduled job's start time fitted to the window
 * on the library's free drives, and those times installed as Temporal Schedules.
 */
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { computeNightPlan, type NightPlanResult } from '../client';
import { findSite } from '../config/targets';
import { KuraError } from '../domain/errors';
import type { PlanStep, PlanView } from '../domain/jobs';
import { formatRate, wallClock } from '../domain/night-plan';
import { nightPlanSvg } from '../domain/night-svg';
import { formatBytes, formatDuration } from '../domain/units';
import { print, type CliContext } from './context';
import { table } from './table';

export function registerPlanCommands(program: Command, ctx: CliContext): void {
  const plan = program.command('plan').description('the plans of SAN operations');
  plan
    .command('show <operation>')
    .description('print the plan of an operation (its workflow id, e.g. op/split-backup/vm-001/…) as a timeline')
    .action(async (workflowId: string) => {
      const { kura } = await ctx.connect();
      const view = await kura.plan(workflowId);
      print(ctx, { ok: true, ...view }, () => renderTimeline(view));
    });

  plan
    .command('night')
    .description(
      "plan tonight's backups: a start time and drive for every job of the site's policies so that all end in the window",
    )
    .option('--site <name>', 'the site (default: the first in the configuration)')
    .option('--date <YYYY-MM-DD>', "the date the window opens on (default: today in the window's time zone)")
    .option('--svg <file>', 'also draw the plan as an SVG Gantt chart (one lane per drive, the window marked)')
    .action(async (o: { site?: string; date?: string; svg?: string }) => {
      findSite(ctx.config().config, o.site);
      const result = await nightPlanOf(ctx, o);
      if (o.svg) writeFileSync(path.resolve(o.svg), nightPlanSvg(result.plan));
      print(
        ctx,
        { ok: result.plan.unfit.length === 0, ...result, ...(o.svg ? { svg: path.resolve(o.svg) } : {}) },
        () => [renderNightPlan(result), ...(o.svg ? [`chart: ${path.resolve(o.svg)}`] : [])].join('\n'),
      );
      if (result.plan.unfit.length > 0) process.exitCode = 1;
    });

  plan
    .command('apply')
    .description(
      "install the night plan: one Temporal Schedule per job at its planned time, replacing the policies' fixed nightly times",
    )
    .option('--site <name>', 'the site (default: the first in the configuration)')
    .option(
      '--date <YYYY-MM-DD>',
      "the date whose sizes and drives the plan is made for (default: today in the window's time zone)",
    )
    .option('--skip-unfit', 'schedule the jobs that fit and leave the others without a schedule (default: refuse)')
    .action(async (o: { site?: string; date?: string; skipUnfit?: boolean }) => {
      findSite(ctx.config().config, o.site);
      const { kura } = await ctx.connect();
      const r = await kura.applyNightPlan(o);
      print(ctx, { ok: true, ...r }, () =>
        [
          renderNightPlan(r),
          '',
          `schedules: ${r.applied.created.length} created, ${r.applied.updated.length} updated, ${r.applied.deleted.length} deleted`,
          ...r.applied.created.map((id) => `  + ${id}`),
          ...r.applied.updated.map((id) => `  ~ ${id}`),
          ...r.applied.deleted.map((id) => `  - ${id}`),
          ...r.applied.skipped.map((job) => `  ! ${job}: not scheduled (it does not fit)`),
        ].join('\n'),
      );
    });
}

/**
 * The plan through the running pool (drives it marks unavailable left out); when Temporal cannot
 * be reached, from kura.yaml alone, saying so.
 */
async function nightPlanOf(ctx: CliContext, o: { site?: string; date?: string }): Promise<NightPlanResult> {
  let kura;
  try {
    kura = (await ctx.connect()).kura;
  } catch (err) {
    if (err instanceof KuraError) throw err;
    const result = await computeNightPlan(ctx.config(), o);
    return {
      ...result,
      note: `Temporal did not answer (${err instanceof Error ? err.message : String(err)}), so the pool was not asked; every drive of kura.yaml is counted free`,
    };
  }
  return kura.nightPlan(o);
}

/** The night plan as a table, then the jobs that do not fit with the reason, and the drives left out. */
export function renderNightPlan(r: NightPlanResult): string {
  const { plan } = r;
  const lines = [
    `night of ${plan.date} at site ${r.site}: window ${plan.window.start}–${plan.window.end} (${plan.timezone}), ${plan.drives.length} free drive${plan.drives.length === 1 ? '' : 's'}${plan.drives.length ? ` (${plan.drives.join(', ')})` : ''}`,
  ];
  if (plan.jobs.length > 0)
    lines.push(
      table(
        ['Start', 'End', 'Drive', 'Job', 'Size', 'Throughput', 'Takes'],
        plan.jobs.map((j) => [
          j.start,
          j.end,
          j.drives.join('+'),
          j.job,
          `${formatBytes(j.sizeBytes)} (${j.sizeFrom === 'catalog' ? 'last backup' : 'volume'})`,
          `${formatRate(j.bytesPerSecond)} (${j.rateFrom})`,
          formatDuration(j.durationMs),
        ]),
      ),
    );
  else lines.push('no job is planned');
  if (plan.jobs.length > 0) lines.push(`all planned jobs end by ${wallClock(Date.parse(plan.endAt), plan.timezone)}`);
  if (plan.unfit.length > 0) {
    lines.push('', `${plan.unfit.length} job${plan.unfit.length === 1 ? ' does' : 's do'} not fit:`);
    for (const u of plan.unfit) lines.push(`  ${u.job}: ${u.reason}`);
  }
  for (const d of r.leftOut) lines.push(`drive ${d.drive} left out: ${d.reason}`);
  if (r.note) lines.push(`note: ${r.note}`);
  return lines.join('\n');
}

const MARK: Record<PlanStep['status'], string> = {
  pending: '·',
  running: '▶',
  done: '✓',
  failed: '✗',
  skipped: '–',
};

/** The plan as lines: `+offset  mark id  title  [device]  expected / took  detail`, then the changes. */
export function renderTimeline(view: PlanView): string {
  const starts = view.steps.flatMap((s) => (s.startedAt ? [Date.parse(s.startedAt)] : []));
  const t0 = starts.length > 0 ? Math.min(...starts) : undefined;
  const idWidth = Math.max(...view.steps.map((s) => s.id.length), 4);
  const lines = [`${view.kind} of ${view.target} — ${view.workflowId} — ${view.phase}`];
  for (const s of view.steps) {
    const at = s.startedAt && t0 !== undefined ? `+${formatDuration(Date.parse(s.startedAt) - t0)}` : '';
    const took =
      s.startedAt && s.endedAt ? `took ${formatDuration(Date.parse(s.endedAt) - Date.parse(s.startedAt))}` : '';
    const expected = s.expectedMs !== undefined ? `expected ${formatDuration(s.expectedMs)}` : '';
    const times = [expected, took].filter(Boolean).join(', ');
    const after = s.dependsOn.length > 0 ? ` after ${s.dependsOn.join(', ')}` : '';
    lines.push(
      `${at.padStart(9)}  ${MARK[s.status]} ${s.id.padEnd(idWidth)}  ${s.title}${s.device ? ` [${s.device}]` : ''}${after}${times ? ` (${times})` : ''}${s.detail ? `\n${' '.repeat(13 + idWidth)}${s.detail}` : ''}`,
    );
  }
  const changes = view.changes ?? [];
  if (changes.length > 0) {
    lines.push('', 'changes to the plan:');
    for (const c of changes) lines.push(`  ${c.at}  after ${c.step}: ${c.what} — because ${c.why}`);
  }
  return lines.join('\n');
}
