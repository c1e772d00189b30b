/**
 * Rebuilding the catalog from cartridges alone (seed 004 step 1170's purpose): every cartridge of
 * every library carries, after each job's data, that job's catalog rows for the cartridge; reading
 * them all back gives the catalog of every complete backup.
 */
import type { Config } from '../domain/inventory';
import { DISK_LIBRARY, type BackupRecord, type PieceRecord, type StreamRecord } from '../domain/catalog';
import type { TapeLibraryDriver } from '../drivers/types';
import type { Catalog } from './store';

export interface RebuildProgress {
  cartridges: number;
  cartridgesTotal: number;
  entries: number;
}

/** What a catalog says of its complete backups, in a fixed order, so two catalogs can be compared. */
export interface CatalogContents {
  backups: BackupRecord[];
  pieces: PieceRecord[];
  streams: StreamRecord[];
}

/**
 * Reads the catalog blocks of every cartridge of every site into `into` (which should be empty).
 * Returns how many cartridges and catalog entries were read.
 */
export async function rebuildFromTapes(
  config: Config,
  tape: TapeLibraryDriver,
  into: Catalog,
  onProgress?: (p: RebuildProgress) => void,
): Promise<RebuildProgress> {
  const cartridges = config.sites.flatMap((s) =>
    s.libraries.flatMap((l) => l.cartridges.map((c) => ({ site: s.name, library: l.name, tape: c.id }))),
  );
  const progress: RebuildProgress = { cartridges: 0, cartridgesTotal: cartridges.length, entries: 0 };
  for (const c of cartridges) {
    for (const entry of await tape.readCatalog(c.site, c.library, c.tape)) {
      into.importEntry(entry);
      progress.entries += 1;
    }
    progress.cartridges += 1;
    onProgress?.({ ...progress });
  }
  return progress;
}

/**
 * The complete backups of a catalog that lie on cartridges, with their pieces and streams, sorted.
 * Backups kept only on disk backup storage (online images) are not on any cartridge, so they are
 * left out of what a rebuild from cartridges can be compared with.
 */
export function catalogContents(catalog: Catalog): CatalogContents {
  const backups = catalog
    .listBackups({ status: 'complete' })
    .filter((b) => catalog.piecesOf(b.backupId).some((p) => p.library !== DISK_LIBRARY))
    .sort((a, b) => a.backupId.localeCompare(b.backupId));
  return {
    backups,
    pieces: backups.flatMap((b) => catalog.piecesOf(b.backupId)),
    streams: backups.flatMap((b) => catalog.streamsOf(b.backupId)),
  };
}

/** Differences between two catalogs' contents, in words; empty when they are equal. */
export function compareContents(
  a: CatalogContents,
  b: CatalogContents,
  names: [string, string] = ['the catalog', 'the cartridges'],
): string[] {
  const out: string[] = [];
  const keyed = <T>(rows: T[], key: (r: T) => string) => new Map(rows.map((r) => [key(r), JSON.stringify(r)]));
  const check = <T>(what: string, x: T[], y: T[], key: (r: T) => string) => {
    const mx = keyed(x, key);
    const my = keyed(y, key);
    for (const [k, v] of mx) {
      if (!my.has(k)) out.push(`${what} ${k} is in ${names[0]} only`);
      else if (my.get(k) !== v) out.push(`${what} ${k} differs: ${names[0]} has ${v}, ${names[1]} has ${my.get(k)}`);
    }
    for (const k of my.keys()) if (!mx.has(k)) out.push(`${what} ${k} is in ${names[1]} only`);
  };
  check('backup', a.backups, b.backups, (r) => r.backupId);
  check('piece', a.pieces, b.pieces, (r) => `${r.backupId}#${r.copy}.${r.piece}`);
  check('stream', a.streams, b.streams, (r) => `${r.backupId}#s${r.stream}`);
  return out;
}
