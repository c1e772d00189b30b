/**
 * `kura remote …`: async remote copy of the groups in kura.yaml (docs/adr/028) — start shipping a
 * group, its status and lag, failover to the remote site and failback to the main site.
 */
import type { Command } from 'commander';
import { KuraRemote } from '../api/remote';
import type { FailbackReport, FailoverReport, RemoteStatus } from '../domain/remote';
import { formatBytes } from '../domain/units';
import { InvalidInputError } from '../domain/errors';
import { print, printStarted, type CliContext } from './context';
import { table } from './table';

export function registerRemoteCommands(program: Command, ctx: CliContext): void {
  const remote = program
    .command('remote')
    .description("async remote copy of kura.yaml's remoteCopy groups to their disaster-recovery site");
  const connect = async () => {
    const { client, kura } = await ctx.connect();
    return new KuraRemote(client, ctx.config(), kura.taskQueue);
  };

  remote
    .command('start <group>')
    .description('copy the group to its remote site once, then ship its writes continuously')
    .option('--round <ms>', 'milliseconds each shipping round runs before the lag is reported (default 2000)')
    .action(async (group: string, o: { round?: string }) => {
      const roundMs = o.round === undefined ? undefined : Number(o.round);
      if (roundMs !== undefined && (!Number.isInteger(roundMs) || roundMs < 100))
        throw new InvalidInputError(`--round must be a whole number of milliseconds, at least 100, not "${o.round}"`);
      const handle = await (await connect()).start(group, roundMs === undefined ? {} : { roundMs });
      printStarted(ctx, handle.workflowId);
    });

  remote
    .command('status [group]')
    .description('role, lag (writes, bytes, seconds) and last failover of one group, or of every group')
    .action(async (group?: string) => {
      const r = await connect();
      const names = group ? [group] : ctx.config().config.remoteCopy.groups.map((g) => g.name);
      const rows: RemoteStatus[] = [];
      for (const name of names) rows.push(await r.status(name));
      print(ctx, { ok: true, groups: rows }, () => renderStatus(rows));
    });

  remote
    .command('failover <group>')
    .description('make the remote copy the primary; reports the writes lost (the lag at that instant)')
    .option('--reason <text>', 'why, for the record')
    .action(async (group: string, o: { reason?: string }) => {
      const report = await (await connect()).failover(group, o.reason);
      print(ctx, { ok: true, ...report }, () => renderFailover(report));
    });

  remote
    .command('failback <group>')
    .description('return to the main site, resynchronising only the blocks that differ')
    .option('--reason <text>', 'why, for the record')
    .action(async (group: string, o: { reason?: string }) => {
      const report = await (await connect()).failback(group, o.reason);
      print(ctx, { ok: true, ...report }, () => renderFailback(report));
    });
}

/** One line per group: the `kura remote status` table. */
export function renderStatus(rows: RemoteStatus[]): string {
  if (rows.length === 0) return 'no remote-copy groups (add remoteCopy.groups to kura.yaml)';
  return table(
    ['GROUP', 'ROLE', 'LAG WRITES', 'LAG BYTES', 'LAG SECONDS', 'APPLIED', 'MAIN', 'STEP'],
    rows.map((s) => [
      s.group,
      s.role,
      s.lag ? String(s.lag.writes) : '-',
      s.lag ? formatBytes(s.lag.bytes) : '-',
      s.lag ? s.lag.seconds.toFixed(1) : '-',
      s.lag ? String(s.lag.appliedSeq) : '-',
      s.lag ? String(s.lag.mainSeq) : '-',
      s.step,
    ]),
  );
}

function renderFailover(r: FailoverReport): string {
  return [
    `${r.group} failed over at ${r.at}: the remote copy is the primary, holding writes up to seq ${r.appliedSeq}`,
    `  lost: ${r.lostWrites} writes, ${formatBytes(r.lostBytes)} (${r.lossFrom === 'journal' ? "measured on the main site's journal" : 'the last lag measured; the main site did not answer'})`,
  ].join('\n');
}

function renderFailback(r: FailbackReport): string {
  return [
    `${r.group} failed back at ${r.at}: the main site is the primary again from seq ${r.baseSeq}`,
    `  resynchronised ${r.blocks} blocks, ${formatBytes(r.bytes)} of ${formatBytes(r.totalBytes)}`,
  ].join('\n');
}
