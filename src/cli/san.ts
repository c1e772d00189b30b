/**
 * `kura san …`: the arrays' function software as an operator sees it — the pairs with their state
 * and copy progress, the snapshots, and a replica-refresh that keeps a point-in-time copy.
 */
import type { Command } from 'commander';
import type { Kura } from '../client';
import type { ReplicaReport } from '../domain/jobs';
import { formatBytes, parseDuration } from '../domain/units';
import { InvalidInputError } from '../domain/errors';
import { print, printStarted, type CliContext } from './context';
import { watchJob } from './progress';
import { table } from './table';

export function registerSanCommands(program: Command, ctx: CliContext): void {
  const san = program.command('san').description("the arrays' pairs and snapshots (seed 003's function software)");

  san
    .command('pairs')
    .description('list the volume pairs of every array of a site: state, copy progress, split time')
    .option('--site <name>', 'the site (default: the first in the configuration)')
    .action(async (o: { site?: string }) => {
      const { kura } = await ctx.connect();
      const { pairs } = await kura.sanListing({ site: o.site });
      print(ctx, { ok: true, pairs }, () => renderPairs(pairs));
    });

  san
    .command('snapshots')
    .description('list the snapshots of every array of a site')
    .option('--site <name>', 'the site (default: the first in the configuration)')
    .action(async (o: { site?: string }) => {
      const { kura } = await ctx.connect();
      const { snapshots } = await kura.sanListing({ site: o.site });
      print(ctx, { ok: true, snapshots }, () => renderSnapshots(snapshots));
    });

  san
    .command('refresh <target>')
    .description(
      "bring a target's replica up to date (pairing it from the free pool if needed) and split it, keeping it as a point-in-time copy",
    )
    .option('--site <name>', 'the site (default: the first in the configuration)')
    .option('--pair-wait <duration>', 'how long to wait for the pair to be in sync, e.g. 10m (default 10m)')
    .option('--detach', 'start the refresh and return at once, printing its workflow id')
    .action(async (target: string, o: { site?: string; pairWait?: string; detach?: boolean }) => {
      const pairWaitMs = o.pairWait === undefined ? undefined : parseDuration(o.pairWait);
      if (o.pairWait !== undefined && pairWaitMs === undefined)
        throw new InvalidInputError(`--pair-wait must be a duration such as 30s or 10m, not "${o.pairWait}"`);
      const { kura } = await ctx.connect();
      const handle = await kura.startReplicaRefresh(target, {
        site: o.site,
        ...(pairWaitMs === undefined ? {} : { pairWaitMs }),
      });
      if (o.detach) return printStarted(ctx, handle.workflowId);
      const report = await watchJob<ReplicaReport>(handle, { title: `refresh ${target}`, quiet: ctx.json() });
      print(ctx, { ok: true, ...report }, () =>
        [
          `replica ${report.replica} of ${report.array}/${report.volume} split at ${report.splitAt}`,
          `  ${formatBytes(report.copiedBytes)} copied to bring it up to date; read it at ${report.readPath}`,
        ].join('\n'),
      );
    });
}

type Listing = Awaited<ReturnType<Kura['sanListing']>>;

function renderPairs(pairs: Listing['pairs']): string {
  if (pairs.length === 0) return 'no pairs (a replica-refresh creates one: kura san refresh <target>)';
  return table(
    ['ARRAY', 'VOLUME', 'REPLICA', 'STATE', 'COPIED', 'SPLIT AT'],
    pairs.map((p) => [
      p.array,
      p.volume,
      p.replica,
      p.state,
      `${formatBytes(p.copiedBytes)} / ${formatBytes(p.totalBytes)}`,
      p.splitAt ?? '',
    ]),
  );
}

function renderSnapshots(snaps: Listing['snapshots']): string {
  if (snaps.length === 0) return 'no snapshots';
  return table(
    ['ARRAY', 'VOLUME', 'NAME', 'TAKEN AT', 'SIZE'],
    snaps.map((s) => [s.array, s.volume, s.name, s.createdAt, formatBytes(s.sizeBytes)]),
  );
}
