/** `kura catalog list|show`: what has been backed up and where each piece lies. */
import type { Command } from 'commander';
import { existsSync, renameSync, rmSync } from 'node:fs';
import { Catalog } from '../catalog/store';
import { catalogContents, compareContents, rebuildFromTapes } from '../catalog/rebuild';
import { labDrivers } from '../drivers';
import { LabState } from '../lab/state';
import { DestinationExistsError, InvalidInputError } from '../domain/errors';
import { formatBytes } from '../domain/units';
import { print, type CliContext } from './context';
import { table } from './table';

const STATUSES = ['running', 'complete', 'failed'] as const;

export function registerCatalogCommands(program: Command, ctx: CliContext): void {
  const catalog = program.command('catalog').description('the catalog of backups and their pieces');

  catalog
    .command('list')
    .description('list backups, newest first')
    .option('--target <name>', 'only this target')
    .option('--status <status>', `only backups in this state (${STATUSES.join(', ')})`)
    .option('--limit <n>', 'at most this many', '100')
    .action((o: { target?: string; status?: string; limit: string }) => {
      if (o.status && !STATUSES.includes(o.status as (typeof STATUSES)[number])) {
        throw new InvalidInputError(`--status must be one of ${STATUSES.join(', ')}, not "${o.status}"`);
      }
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit < 1)
        throw new InvalidInputError(`--limit must be a positive whole number, not "${o.limit}"`);
      const store = new Catalog(ctx.paths().catalog);
      try {
        const rows = store.listBackups({
          target: o.target,
          status: o.status as (typeof STATUSES)[number] | undefined,
          limit,
        });
        print(ctx, rows, () =>
          rows.length === 0
            ? 'the catalog holds no backups yet; make one with `kura backup <vm>`'
            : table(
                ['Backup id', 'Status', 'Data time', 'Size', 'Pieces', 'Error'],
                rows.map((r) => [
                  r.backupId,
                  r.status,
                  r.dataTime,
                  formatBytes(r.sizeBytes),
                  String(r.pieces),
                  r.error ?? '',
                ]),
              ),
        );
      } finally {
        store.close();
      }
    });

  catalog
    .command('show <backup-id>')
    .description('one backup and where each of its pieces lies (library, tape, position)')
    .action((backupId: string) => {
      const store = new Catalog(ctx.paths().catalog);
      try {
        const backup = store.backup(backupId);
        const pieces = store.piecesOf(backupId);
        const streams = store.streamsOf(backupId);
        print(ctx, { backup, pieces, streams }, () =>
          [
            `${backup.backupId}: ${backup.status}, ${formatBytes(backup.sizeBytes)} of ${backup.array}/${backup.volume}, data time ${backup.dataTime}, job ${backup.job}`,
            ...(backup.error ? [`  error: ${backup.error}`] : []),
            table(
              ['Copy', 'Piece', 'Library', 'Tape', 'Position', 'Offset', 'Size', 'Stream', 'SHA-256'],
              pieces.map((p) => [
                String(p.copy),
                String(p.piece),
                p.library,
                p.tape,
                String(p.position),
                String(p.offset),
                formatBytes(p.sizeBytes),
                String(p.stream),
                p.sha256,
              ]),
            ),
            ...(streams.length
              ? [
                  'Streams:',
                  table(
                    ['Stream', 'Path', 'Tape', 'Outcome', 'Pieces', 'Reason'],
                    streams.map((r) => [
                      String(r.stream),
                      [r.server, ...r.switches, `${r.library}/${r.drive}`].join(' → '),
                      r.tape,
                      r.outcome,
                      String(r.pieces),
                      r.error ?? '',
                    ]),
                  ),
                ]
              : []),
          ].join('\n'),
        );
      } finally {
        store.close();
      }
    });

  catalog
    .command('rebuild')
    .description('rebuild the catalog from what the cartridges carry (every complete backup, its pieces and streams)')
    .requiredOption('--from-tapes', 'read the catalog blocks written on every cartridge of every library')
    .option('--out <file>', 'write the rebuilt catalog here (default: beside the catalog, as catalog.rebuilt.db)')
    .option('--replace', 'then put it in place of the catalog, keeping the old one as .bak')
    .action(async (o: { fromTapes: boolean; out?: string; replace?: boolean }) => {
      const loaded = ctx.config();
      const paths = ctx.paths();
      const out = o.out ?? paths.catalog.replace(/(\.db)?$/, '.rebuilt.db');
      if (existsSync(out))
        throw new DestinationExistsError(`${out} already exists; remove it or name another file with --out`);
      const lab = new LabState(paths.labState);
      const rebuilt = new Catalog(out);
      let differences: string[] | undefined;
      let read;
      try {
        read = await rebuildFromTapes(loaded.config, labDrivers(loaded, paths, lab).tape, rebuilt, (p) => {
          if (!ctx.json() && (p.cartridges % 10 === 0 || p.cartridges === p.cartridgesTotal))
            process.stderr.write(
              `read ${p.cartridges}/${p.cartridgesTotal} cartridges, ${p.entries} catalog entries\n`,
            );
        });
        if (existsSync(paths.catalog)) {
          const current = new Catalog(paths.catalog);
          try {
            differences = compareContents(catalogContents(current), catalogContents(rebuilt));
          } finally {
            current.close();
          }
        }
      } catch (err) {
        rebuilt.close();
        rmSync(out, { force: true });
        throw err;
      } finally {
        lab.close();
      }
      const backups = rebuilt.listBackups({ status: 'complete' }).length;
      rebuilt.close();
      let replaced = false;
      if (o.replace) {
        if (existsSync(paths.catalog)) renameSync(paths.catalog, `${paths.catalog}.bak`);
        renameSync(out, paths.catalog);
        replaced = true;
      }
      print(
        ctx,
        {
          ok: true,
          file: replaced ? paths.catalog : out,
          cartridges: read.cartridges,
          entries: read.entries,
          backups,
          differences: differences ?? null,
        },
        () =>
          [
            `rebuilt ${backups} complete backup(s) from ${read.entries} catalog entries on ${read.cartridges} cartridges into ${replaced ? `${paths.catalog} (the old one is ${paths.catalog}.bak)` : out}`,
            differences === undefined
              ? '  there was no catalog to compare with'
              : differences.length === 0
                ? '  it equals the current catalog (every complete backup, piece and stream)'
                : `  it differs from the current catalog in ${differences.length} place(s):\n${differences
                    .slice(0, 20)
                    .map((d) => `    ${d}`)
                    .join('\n')}`,
          ].join('\n'),
      );
    });
}
