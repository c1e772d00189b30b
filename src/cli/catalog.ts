/**
 * `kura catalog list|show|label|rebuild`: what has been backed up and where each piece lies, the
 * backup label a restored PostgreSQL copy needs, and the catalog rebuilt from the cartridges by the
 * `catalogRebuild` workflow.
 */
import type { Command } from 'commander';
import { chownSync, existsSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Catalog } from '../catalog/store';
import type { BackupModeRecord, BackupRecord } from '../domain/catalog';
import type { CatalogRebuildReport, UnreadCartridge } from '../domain/catalog-rebuild';
import { DestinationExistsError, ErrorType, InvalidInputError, KuraError, NotFoundError } from '../domain/errors';
import { formatBytes, parseDuration } from '../domain/units';
import { print, uiLink, type CliContext } from './context';
import { watchRebuild } from './progress';
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
                // A tape copy of a store backup names the store backup it came from (docs/adr/042).
                [
                  'Backup id',
                  'Status',
                  'Data time',
                  'Size',
                  'Pieces',
                  'Error',
                  ...(rows.some((r) => r.fromStore) ? ['Copy of'] : []),
                ],
                rows.map((r) => [
                  r.backupId,
                  r.status,
                  r.dataTime,
                  formatBytes(r.sizeBytes),
                  String(r.pieces),
                  r.error ?? '',
                  ...(rows.some((x) => x.fromStore) ? [r.fromStore?.backupId ?? ''] : []),
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
            ...(backup.fromStore
              ? [
                  `  tape copy of store backup ${backup.fromStore.backupId}${backup.fromStore.sha256 ? ` (volume sha256 ${backup.fromStore.sha256})` : ''}`,
                ]
              : []),
            ...(backup.backupMode ? describeBackupMode(backup.backupId, backup.backupMode) : []),
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
    .command('label <backup-id>')
    .description(
      "the backup label (and tablespace map) PostgreSQL returned when the backup's image was taken, which a restored copy needs to start",
    )
    .option(
      '--write <dir>',
      'write it as backup_label (and a non-empty tablespace_map) into this data directory of the restored copy',
    )
    .action((backupId: string, o: { write?: string }) => {
      const store = new Catalog(ctx.paths().catalog);
      let backup: BackupRecord;
      try {
        backup = store.backup(backupId);
      } finally {
        store.close();
      }
      const mode = backup.backupMode;
      if (mode?.label === undefined)
        throw new NotFoundError(
          `backup ${backupId} has no backup label in the catalog: ${mode ? `its ${mode.hook} hook returns none` : "it was not taken in an application's backup mode (no postgres hook), or was recorded before labels were kept"}; such a copy starts by crash recovery alone`,
          { backupId },
        );
      if (o.write === undefined) {
        print(ctx, { backupId, ...mode }, () => mode.label ?? '');
        return;
      }
      const written = writeBackupLabel(path.resolve(o.write), mode as BackupModeRecord & { label: string });
      print(ctx, { ok: true, backupId, written }, () => `wrote ${written.join(' and ')} for ${backupId}`);
    });

  catalog
    .command('rebuild')
    .description('rebuild the catalog from what the cartridges carry (every complete backup, its pieces and streams)')
    .requiredOption(
      '--from-tapes',
      'read the catalog blocks written on every cartridge of every library, each in a drive the pool grants',
    )
    .option('--site <name>', 'only this site (default: every site of the configuration)')
    .option('--out <file>', 'write the rebuilt catalog here (default: beside the catalog, as catalog.rebuilt.db)')
    .option('--replace', 'then put it in place of the catalog, keeping the old one as .bak')
    .option(
      '--wait <duration>',
      "wait this long in the pool's queue for each cartridge's drive, e.g. 10m, 0s (default: tuning.reserveWait)",
    )
    .action(async (o: { fromTapes: boolean; site?: string; out?: string; replace?: boolean; wait?: string }) => {
      let reserveWaitMs: number | undefined;
      if (o.wait !== undefined) {
        reserveWaitMs = parseDuration(o.wait);
        if (reserveWaitMs === undefined)
          throw new InvalidInputError(`--wait must be a duration such as 0s, 30s or 10m, not "${o.wait}"`);
      }
      const loaded = ctx.config();
      const paths = ctx.paths();
      // Absolute: the control worker, not this process, writes the file.
      const out = path.resolve(o.out ?? paths.catalog.replace(/(\.db)?$/, '.rebuilt.db'));
      if (existsSync(out))
        throw new DestinationExistsError(`${out} already exists; remove it or name another file with --out`);
      const sites = o.site === undefined ? loaded.config.sites.map((s) => s.name) : [o.site];
      const { kura } = await ctx.connect();
      const reports: CatalogRebuildReport[] = [];
      try {
        // One site after another: each site's rebuild holds a drive in every one of its libraries.
        for (const site of sites) {
          const handle = await kura.startCatalogRebuild({
            site,
            out,
            ...(reserveWaitMs === undefined ? {} : { tuning: { reserveWaitMs } }),
          });
          reports.push(
            await watchRebuild<CatalogRebuildReport>(handle, { title: `catalog rebuild ${site}`, quiet: ctx.json() }),
          );
        }
      } catch (err) {
        rmSync(out, { force: true });
        throw err;
      }
      const unread = reports.flatMap((r) => r.unread);
      if (unread.length > 0) {
        rmSync(out, { force: true });
        throw notAllRead(unread, reports);
      }
      const differences = reports.flatMap((r) => r.differences);
      const read = {
        cartridges: reports.reduce((n, r) => n + r.cartridges, 0),
        entries: reports.reduce((n, r) => n + r.entries.length, 0),
        backups: reports.reduce((n, r) => n + r.backups, 0),
      };
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
          ...read,
          differences,
          workflowIds: reports.map((r) => r.workflowId),
        },
        () =>
          [
            `rebuilt ${read.backups} complete backup(s) from ${read.entries} catalog entries on ${read.cartridges} cartridges into ${replaced ? `${paths.catalog} (the old one is ${paths.catalog}.bak)` : out}`,
            differences.length === 0
              ? '  it equals the current catalog (every complete backup, piece and stream)'
              : `  it differs from the current catalog in ${differences.length} place(s):\n${differences
                  .slice(0, 20)
                  .map((d) => `    ${d}`)
                  .join('\n')}`,
            ...reports.map((r) => `  in the Temporal UI: ${uiLink(r.workflowId)}`),
          ].join('\n'),
      );
    });
}

/** The lines of `kura catalog show` on the backup mode a backup's image was taken in. */
function describeBackupMode(backupId: string, m: BackupModeRecord): string[] {
  const wal = m.startLsn && m.stopLsn ? `, WAL ${m.startLsn} to ${m.stopLsn}` : '';
  return [
    `  backup mode (${m.hook}): ${m.enteredAt} to ${m.leftAt}, ${m.seconds} s, ${m.rounds} round${m.rounds === 1 ? '' : 's'}${wal}`,
    ...(m.label === undefined
      ? []
      : [
          `  backup label (write it into the restored data directory with \`kura catalog label ${backupId} --write <dir>\`):`,
          ...m.label
            .trimEnd()
            .split('\n')
            .map((l) => `    ${l}`),
          ...(m.tablespaceMap
            ? [
                '  tablespace map:',
                ...m.tablespaceMap
                  .trimEnd()
                  .split('\n')
                  .map((l) => `    ${l}`),
              ]
            : []),
        ]),
  ];
}

/**
 * Writes `backup_label` (and `tablespace_map` when the cluster had tablespaces) into a restored
 * data directory, owned like the directory so the server running as its owner can read and rename
 * them. Refuses to overwrite either: a data directory that already has one is not the copy to start.
 */
function writeBackupLabel(dir: string, m: BackupModeRecord & { label: string }): string[] {
  let owner: { uid: number; gid: number };
  try {
    const st = statSync(dir);
    if (!st.isDirectory())
      throw new InvalidInputError(`${dir} is not a directory; give --write the restored data directory`);
    owner = st;
  } catch (err) {
    if (err instanceof KuraError) throw err;
    throw new NotFoundError(`no directory ${dir}; mount the restored copy and give --write its data directory`, {
      path: dir,
    });
  }
  const files: [string, string][] = [[path.join(dir, 'backup_label'), m.label]];
  if (m.tablespaceMap) files.push([path.join(dir, 'tablespace_map'), m.tablespaceMap]);
  for (const [file] of files)
    if (existsSync(file))
      throw new DestinationExistsError(`${file} already exists; Kura does not overwrite it`, { path: file });
  for (const [file, text] of files) {
    writeFileSync(file, text, { mode: 0o600, flag: 'wx' });
    if (process.getuid?.() === 0) chownSync(file, owner.uid, owner.gid);
  }
  return files.map(([file]) => file);
}

/**
 * Cartridges that could not be had or read: no catalog is written, as a rebuild that misses them
 * would silently lose their backups. Typed like the first one's failure (NoResources, DeviceFault…).
 */
function notAllRead(unread: UnreadCartridge[], reports: CatalogRebuildReport[]): KuraError {
  const total = reports.reduce((n, r) => n + r.cartridgesTotal, 0);
  const first = unread[0]?.type;
  const type = (Object.values(ErrorType) as string[]).includes(first ?? '')
    ? (first as ErrorType)
    : ErrorType.DeviceFault;
  const each = unread.map((u) => `${u.library}/${u.tape}: ${u.type}: ${u.message}`);
  return new KuraError(
    type,
    `${unread.length} of ${total} cartridge(s) could not be read, so no catalog was written (${each.join('; ')}); make their devices available (\`kura pool mark <device> available\`) and rebuild again`,
  );
}
