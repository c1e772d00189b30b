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
/**
 * `remount`: the caller still holds the drive and the cartridge, and may have unloaded it itself in
 * a run of the same steps that was lost (a workflow task's local activities run again from its
 * start, docs/adr/047): the cartridge is loaded again first when the drive is empty. A drive that
 * holds another cartridge still fails.
 */
const Remount = { remount: z.boolean().optional() };
const WriteCatalogInput = z.object({ at: TapeAtInput, entry: TapeCatalogEntrySchema, ...Remount });
const EraseInput = z.object({ ...TapeAtInput.shape, ...Remount });

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

    /**
     * Seed 004 step 1170: writes the job's catalog rows of one cartridge onto it, after its data.
     * With `remount`, a cartridge unloaded since is loaded again first (the caller holds the drive).
     */
    async writeTapeCatalog(input: {
      at: { site: string; library: string; drive: string; tape: string; position: number };
      entry: TapeCatalogEntry;
      remount?: boolean;
    }): Promise<{ nextPosition: number }> {
      return mapFailures(async () => {
        const w = parseWith(WriteCatalogInput, input, 'tape catalog');
        const { position, ...addr } = w.at;
        if (w.remount) await drivers.tape.load(addr);
        return drivers.tape.writeCatalog({ ...addr, position }, w.entry);
      });
    },

    /**
     * Ends a cartridge's recorded data where a failed job began writing, so nothing it left remains.
     * With `remount`, a cartridge unloaded since is loaded again first (the caller holds the drive).
     */
    async eraseTape(input: {
      site: string;
      library: string;
      drive: string;
      tape: string;
      position: number;
      remount?: boolean;
    }): Promise<void> {
      return mapFailures(async () => {
        const { remount, position, ...addr } = parseWith(EraseInput, input, 'tape position');
        if (remount) await drivers.tape.load(addr);
        return drivers.tape.eraseFrom({ ...addr, position });
      });
    },
  };
}
