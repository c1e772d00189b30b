/** `kura catalog list|show`: what has been backed up and where each piece lies. */
import type { Command } from 'commander';
import { Catalog } from '../catalog/store';
import { InvalidInputError } from '../domain/errors';
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
      if (!Number.isInteger(limit) || limit < 1) throw new InvalidInputError(`--limit must be a positive whole number, not "${o.limit}"`);
      const store = new Catalog(ctx.paths().catalog);
      try {
        const rows = store.listBackups({ target: o.target, status: o.status as (typeof STATUSES)[number] | undefined, limit });
        print(ctx, rows, () =>
          rows.length === 0
            ? 'the catalog holds no backups yet; make one with `kura backup <vm>`'
            : table(
                ['Backup id', 'Status', 'Data time', 'Size', 'Pieces', 'Error'],
                rows.map((r) => [r.backupId, r.status, r.dataTime, formatBytes(r.sizeBytes), String(r.pieces), r.error ?? '']),
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
        print(ctx, { backup, pieces }, () =>
          [
            `${backup.backupId}: ${backup.status}, ${formatBytes(backup.sizeBytes)} of ${backup.array}/${backup.volume}, data time ${backup.dataTime}, job ${backup.job}`,
            table(
              ['Copy', 'Piece', 'Library', 'Tape', 'Position', 'Offset', 'Size', 'Stream', 'SHA-256'],
              pieces.map((p) => [String(p.copy), String(p.piece), p.library, p.tape, String(p.position), String(p.offset), formatBytes(p.sizeBytes), String(p.stream), p.sha256]),
            ),
          ].join('\n'),
        );
      } finally {
        store.close();
      }
    });
}
