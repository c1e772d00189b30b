/**
 * Activities of the catalog rebuild. On a backup server's own queue (`kura-server-<name>`): read
 * the catalog blocks of the cartridge mounted in the drive the pool granted that server. On the
 * control queue, where the catalog lives: compare what the cartridges say with the catalog, and
 * merge it into a rebuilt catalog file.
 */
import * as path from 'node:path';
import { z } from 'zod';
import { Catalog } from '../catalog/store';
import { catalogContents, compareContents, contentsOfEntries, importEntries } from '../catalog/rebuild';
import { TapeCatalogEntrySchema, type TapeCatalogEntry } from '../domain/catalog';
import { InvalidInputError } from '../domain/errors';
import { parseWith } from '../domain/validate';
import type { Drivers } from '../drivers/types';
import { mapFailures } from './failures';

const ReadInput = z.object({
  site: z.string().min(1),
  /** The backup server reading: its path to the library must be zoned. */
  server: z.string().min(1),
  library: z.string().min(1),
  drive: z.string().min(1),
  tape: z.string().min(1),
});
export type ReadTapeCatalogInput = z.input<typeof ReadInput>;

const CompareInput = z.object({ site: z.string().min(1), entries: z.array(TapeCatalogEntrySchema) });
const WriteInput = z.object({ file: z.string().min(1), entries: z.array(TapeCatalogEntrySchema) });

/** Creates the rebuild's activity of a backup server's queue, bound to that worker's drivers. */
export function createCatalogReadActivities(deps: { drivers: Drivers }) {
  const { drivers } = deps;
  return {
    /**
     * Reads every catalog block of the cartridge in the granted drive, through the server's zoned
     * path. Reading changes nothing, so a retry simply reads again.
     */
    async readTapeCatalog(input: ReadTapeCatalogInput): Promise<TapeCatalogEntry[]> {
      return mapFailures(async () => {
        const r = parseWith(ReadInput, input, 'tape catalog read');
        await drivers.fabric.checkZoned(r.site, [r.server, r.library]);
        return drivers.tape.readCatalog(r.site, r.library, r.tape, r.drive);
      });
    },
  };
}

/** Creates the rebuild's activities of the control queue, bound to the worker's catalog. */
export function createCatalogRebuildActivities(deps: { catalog: Catalog }) {
  const { catalog } = deps;
  return {
    /**
     * Compares what a site's cartridges say with the catalog's complete backups of that site on
     * cartridges; InvalidInput when cartridges contradict each other about a backup.
     */
    async compareRebuiltCatalog(input: {
      site: string;
      entries: TapeCatalogEntry[];
    }): Promise<{ backups: number; differences: string[] }> {
      return mapFailures(async () => {
        const r = parseWith(CompareInput, input, 'rebuilt catalog');
        const rebuilt = contentsOfEntries(r.entries);
        return {
          backups: rebuilt.backups.length,
          differences: compareContents(catalogContents(catalog, r.site), rebuilt),
        };
      });
    },

    /**
     * Merges the entries into the catalog file at `file` (an absolute path; created when missing).
     * Idempotent: entries already in the file change nothing, so a retry leaves the same file.
     */
    async writeRebuiltCatalog(input: { file: string; entries: TapeCatalogEntry[] }): Promise<{ file: string }> {
      return mapFailures(async () => {
        const w = parseWith(WriteInput, input, 'rebuilt catalog file');
        if (!path.isAbsolute(w.file))
          throw new InvalidInputError(`the rebuilt catalog's file must be an absolute path, not "${w.file}"`);
        if (path.resolve(w.file) === path.resolve(catalog.file))
          throw new InvalidInputError(
            `the rebuilt catalog cannot be written into the catalog itself (${catalog.file}); name another file`,
          );
        const out = new Catalog(w.file);
        try {
          importEntries(out, w.entries);
        } finally {
          out.close();
        }
        return { file: w.file };
      });
    },
  };
}

export type CatalogReadActivities = ReturnType<typeof createCatalogReadActivities>;
export type CatalogRebuildActivities = ReturnType<typeof createCatalogRebuildActivities>;
