/** `kura schedule apply|list|trigger`: each policy's nightly time as a Temporal Schedule. */
import type { Command } from 'commander';
import { findSite } from '../config/targets';
import { NotFoundError } from '../domain/errors';
import { scheduleIdFor } from '../api';
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
      const { client } = await ctx.connect();
      const rows: { scheduleId: string; next: string; paused: boolean; recent: string }[] = [];
      for await (const s of client.schedule.list()) {
        if (!s.scheduleId.startsWith('kura/')) continue;
        rows.push({
          scheduleId: s.scheduleId,
          next: s.info.nextActionTimes[0]?.toISOString() ?? '',
          paused: s.state.paused,
          recent: s.info.recentActions.at(-1)?.takenAt.toISOString() ?? '',
        });
      }
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
      const site = findSite(ctx.config().config, o.site);
      if (!site.policies.some((p) => p.name === policy))
        throw new NotFoundError(
          `no policy "${policy}" in site ${site.name}; policies: ${site.policies.map((p) => p.name).join(', ') || '(none)'}`,
        );
      const { client } = await ctx.connect();
      const id = scheduleIdFor(site.name, policy);
      await client.schedule.getHandle(id).trigger();
      print(
        ctx,
        { ok: true, scheduleId: id },
        () => `triggered ${id}; the run appears in the Temporal UI as fleet/${policy}-<time>`,
      );
    });
}
