/**
 * Tape activities, run on the `kura-control` queue: the backup manager mounts and unmounts
 * cartridges, writes a job's catalog rows onto a cartridge, and erases what a failed job left.
 */
import { z } from 'zod';
import type { Drivers } from '../drivers/types';
import { TapeCatalogEntrySchema, type TapeCatalogEntry } from '../domain/catalog';
import { parseWith } from '../domain/validate';
import { mapFailures } from './failures';

const TapeAddressInput = z.object({ site: z.string(), library: z.string(), drive: z.string(), tape: z.string() });
const TapeAtInput = z.object({ ...TapeAddressInput.shape, position: z.number().int().min(0) });
const WriteCatalogInput = z.object({ at: TapeAtInput, entry: TapeCatalogEntrySchema });

/** Creates the tape activities bound to one worker's tape library driver. */
export function createTapeActivities(deps: { drivers: Pick<Drivers, 'tape'> }) {
  const { drivers } = deps;

  return {
    /** Seed 003 Fig. 8: the backup manager mounts a cartridge in a drive; returns the append point. */
    async loadTape(input: {
      site: string;
      library: string;
      drive: string;
      tape: string;
    }): Promise<{ endOfData: number; capacityBytes: number }> {
      return mapFailures(() => drivers.tape.load(parseWith(TapeAddressInput, input, 'tape address')));
    },

    async unloadTape(input: { site: string; library: string; drive: string; tape: string }): Promise<void> {
      return mapFailures(() => drivers.tape.unload(parseWith(TapeAddressInput, input, 'tape address')));
    },

    /** Seed 004 step 1170: writes the job's catalog rows of one cartridge onto it, after its data. */
    async writeTapeCatalog(input: {
      at: { site: string; library: string; drive: string; tape: string; position: number };
      entry: TapeCatalogEntry;
    }): Promise<{ nextPosition: number }> {
      return mapFailures(async () => {
        const w = parseWith(WriteCatalogInput, input, 'tape catalog');
        return drivers.tape.writeCatalog(w.at, w.entry);
      });
    },

    /** Ends a cartridge's recorded data where a failed job began writing, so nothing it left remains. */
    async eraseTape(input: {
      site: string;
      library: string;
      drive: string;
      tape: string;
      position: number;
    }): Promise<void> {
      return mapFailures(async () => drivers.tape.eraseFrom(parseWith(TapeAtInput, input, 'tape position')));
    },
  };
}
