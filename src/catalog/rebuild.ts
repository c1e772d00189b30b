/**
 * Rebuilding the catalog from cartridges alone (seed 004 step 1170's purpose): every cartridge of
 * every library carries, after each job's data, that job's catalog rows for the cartridge; put
 * together, what the cartridges say is the catalog of every complete backup. Reading them is the
 * `catalogRebuild` workflow's work (through drives the pool grants); here is what becomes of the
 * entries read, and how two catalogs compare.
 */
import {
  DISK_LIBRARY,
  type BackupRecord,
  type PieceRecord,
  type StreamRecord,
  type TapeCatalogEntry,
} from '../domain/catalog';
import { Catalog } from './store';

/** What a catalog says of its complete backups, in a fixed order, so two catalogs can be compared. */
export interface CatalogContents {
  backups: BackupRecord[];
  pieces: PieceRecord[];
  streams: StreamRecord[];
}

/**
 * Merges entries read from cartridges into a catalog (idempotent: an entry already there changes
 * nothing); refuses, with InvalidInputError, entries that contradict each other or the catalog.
 */
export function importEntries(into: Catalog, entries: TapeCatalogEntry[]): void {
  for (const entry of entries) into.importEntry(entry);
}

/** The contents a catalog rebuilt from these entries holds, built in memory and not kept. */
export function contentsOfEntries(entries: TapeCatalogEntry[]): CatalogContents {
  const rebuilt = new Catalog(':memory:');
  try {
    importEntries(rebuilt, entries);
    return catalogContents(rebuilt);
  } finally {
    rebuilt.close();
  }
}

/**
 * The complete backups of a catalog that lie on cartridges, with their pieces and streams, sorted.
 * Backups kept only on disk backup storage (online images) are not on any cartridge, so they are
 * left out of what a rebuild from cartridges can be compared with. With `site`, that site's only.
 */
export function catalogContents(catalog: Catalog, site?: string): CatalogContents {
  const backups = catalog
    .listBackups({ status: 'complete', site })
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
