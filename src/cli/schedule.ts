/** `kura schedule apply|list|trigger`: each policy's nightly time as a Temporal Schedule. */
import type { Command } from 'commander';
import { policyScheduleId, scheduledFleetWorkflowId } from '../client';
import { print, type CliContext } from './context';
import { table } from './table';

export function registerScheduleCommands(program: Command, ctx: CliContext): void {
  const schedule = program.command('schedule').description("the policies' nightly runs as Temporal Schedules");

  schedule
    .command('apply')
    .description('create or update one schedule per policy of kura.yaml (overlapping runs are skipped)')
    .action(async () => {
      const { kura } = await ctx.connect();
      const r = await kura.applySchedules();
      print(ctx, r, () =>
        [
          `schedules: ${r.created.length} created, ${r.updated.length} updated, ${r.deleted.length} deleted`,
          ...r.created.map((s) => `  + ${s}`),
          ...r.updated.map((s) => `  ~ ${s}`),
          ...r.deleted.map((s) => `  - ${s}`),
        ].join('\n'),
      );
    });

  schedule
    .command('list')
    .description("list Kura's schedules with their next run")
    .action(async () => {
      const { kura } = await ctx.connect();
      const rows = await kura.listSchedules();
      print(ctx, rows, () =>
        rows.length
          ? table(
              ['Schedule', 'Next run', 'Paused', 'Last run'],
              rows.map((r) => [r.scheduleId, r.next, String(r.paused), r.recent]),
            )
          : 'no schedules; create them with `kura schedule apply`',
      );
    });

  schedule
    .command('trigger <policy>')
    .description("run a policy's schedule now")
    .option('--site <name>', 'the site (default: the first in the configuration)')
    .action(async (policy: string, o: { site?: string }) => {
      // Refuse an unknown site or policy before connecting.
      policyScheduleId(ctx.config(), policy, o.site);
      const { kura } = await ctx.connect();
      const id = await kura.triggerSchedule(policy, { site: o.site });
      print(
        ctx,
        { ok: true, scheduleId: id },
        () => `triggered ${id}; the run appears in the Temporal UI as ${scheduledFleetWorkflowId(policy)}-<time>`,
      );
    });
}
