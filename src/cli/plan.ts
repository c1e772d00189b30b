/**
 * `kura plan show <operation>`: the plan of a SAN operation (seed 003 step 3) as it stands, as a
 * timeline — each launch with its device, expected and actual times and outcome — and every
 * change step 5 made to it, with the reason.
 */
import type { Command } from 'commander';
import type { PlanStep, PlanView } from '../domain/jobs';
import { formatDuration } from '../domain/units';
import { print, type CliContext } from './context';

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
