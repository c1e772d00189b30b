/** `kura backup <target>`: back up a VM's data volume (or array/volume) to tape, showing progress. */
import type { Command } from 'commander';
import type { BackupReport } from '../domain/jobs';
import { InvalidInputError } from '../domain/errors';
import { formatBytes } from '../domain/units';
import { watchJob } from './progress';
import { print, uiLink, type CliContext } from './context';
import { runOnlineBackup } from './online';

export function registerBackupCommands(program: Command, ctx: CliContext): void {
  program
    .command('backup <target>')
    .description('back up a VM (its data volume) or a volume named array/volume to tape')
    .option('--site <name>', 'the site (default: the first in the configuration)')
    .option('--streams <n>', 'independent copy streams to reserve', '1')
    .option('--detach', 'start the backup and return at once, printing its workflow id')
    .option('--online', 'back up while the host keeps writing, through the datapath (see `kura datapath`); shows phase and ETA')
    .action(async (target: string, o: { site?: string; streams: string; detach?: boolean; online?: boolean }) => {
      if (o.online) return runOnlineBackup(ctx, target, o);
      const streams = Number(o.streams);
      if (!Number.isInteger(streams) || streams < 1 || streams > 8) throw new InvalidInputError(`--streams must be a whole number from 1 to 8, not "${o.streams}"`);
      const { kura } = await ctx.connect();
      const handle = await kura.startBackup(target, { site: o.site, streams });
      if (o.detach) {
        print(ctx, { ok: true, workflowId: handle.workflowId }, () => `started ${handle.workflowId}\n  watch: ${uiLink(handle.workflowId)}`);
        return;
      }
      const t0 = Date.now();
      const report = await watchJob<BackupReport>(handle, { title: `backup ${target}`, quiet: ctx.json() });
      const seconds = (Date.now() - t0) / 1000;
      print(ctx, { ok: true, ...report }, () =>
        [
          `backed up ${target} (${report.array}/${report.volume}) as ${report.backupId}`,
          `  ${formatBytes(report.sizeBytes)} in ${report.pieces.length} piece(s) on ${[...new Set(report.pieces.map((p) => `${p.library}/${p.tape}`))].join(', ')} via ${report.server}`,
          `  ${seconds.toFixed(1)} s, ${formatBytes(report.sizeBytes / Math.max(seconds, 0.001))}/s`,
          `  restore with: kura restore ${report.backupId} --to <path>`,
          `  in the Temporal UI: ${uiLink(report.workflowId)}`,
        ].join('\n'),
      );
    });
}
