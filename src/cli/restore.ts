/** `kura restore <backup-id> --to <path> [--store primary|copy]`: restore a backup into a new file, verified piece by piece. */
import * as path from 'node:path';
import type { Command } from 'commander';
import type { RestoreReport } from '../domain/jobs';
import { InvalidInputError } from '../domain/errors';
import { STORE_LIBRARY, StoreNameSchema } from '../domain/store';
import { parseWith } from '../domain/validate';
import { formatBytes, parseDuration } from '../domain/units';
import { Catalog } from '../catalog/store';
import { checkRestoreDestination } from '../config/targets';
import { watchJob } from './progress';
import { print, uiLink, type CliContext } from './context';

export function registerRestoreCommands(program: Command, ctx: CliContext): void {
  program
    .command('restore <backup-id>')
    .description('restore a backup into a new file below a restore root')
    .requiredOption('--to <path>', 'the file to create (it must not exist)')
    .option('--site <name>', 'the site (default: the first in the configuration)')
    .option(
      '--store <name>',
      'for a backup in the deduplicated store: primary or copy, the store to read first (the other gives any chunk it lacks)',
    )
    .option(
      '--wait <duration>',
      "wait in the pool's queue this long, also for devices marked unavailable to be brought back, e.g. 30m (default: wait tuning.reserveWait for busy devices, and fail at once when only a device marked unavailable stands in the way)",
    )
    .action(async (backupId: string, o: { to: string; site?: string; wait?: string; store?: string }) => {
      if (!o.to.trim()) throw new InvalidInputError('--to needs a path');
      const fromStore = o.store === undefined ? undefined : parseWith(StoreNameSchema, o.store, '--store');
      const waitMs = o.wait === undefined ? undefined : parseDuration(o.wait);
      if (o.wait !== undefined && waitMs === undefined)
        throw new InvalidInputError(`--wait must be a duration such as 30s, 10m or 2h, not "${o.wait}"`);
      // Fail fast, before any job starts: unknown backup, forbidden or existing destination.
      const paths = ctx.paths();
      const catalog = new Catalog(paths.catalog);
      try {
        catalog.backup(backupId);
        // Only a store backup has two stores to choose from; on tape (or disk) the flag would be silently ignored.
        if (fromStore !== undefined && !catalog.piecesOf(backupId).some((p) => p.library === STORE_LIBRARY))
          throw new InvalidInputError(
            `--store applies only to a backup in the deduplicated store; ${backupId} is on tape, so restore it without --store`,
          );
      } finally {
        catalog.close();
      }
      const destination = checkRestoreDestination(path.resolve(o.to), paths.restoreRoots, ctx.config().file);
      const { kura } = await ctx.connect();
      const handle = await kura.startRestore(backupId, destination, {
        site: o.site,
        ...(fromStore === undefined ? {} : { fromStore }),
        ...(waitMs === undefined ? {} : { tuning: { reserveWaitMs: waitMs, waitForUnavailable: true } }),
      });
      const t0 = Date.now();
      const report = await watchJob<RestoreReport>(handle, { title: `restore ${backupId}`, quiet: ctx.json() });
      const seconds = (Date.now() - t0) / 1000;
      print(ctx, { ok: true, ...report }, () =>
        [
          `restored ${backupId} to ${report.destination}`,
          `  ${formatBytes(report.sizeBytes)} from ${report.pieces} piece(s), every checksum verified; sha256 ${report.sha256}`,
          `  ${seconds.toFixed(1)} s; in the Temporal UI: ${uiLink(report.workflowId)}`,
        ].join('\n'),
      );
    });
}
