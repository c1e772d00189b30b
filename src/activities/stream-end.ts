/**
 * The end of one stream of a complete backup as one control step (docs/adr/057): its cartridge gets
 * the backup's catalog rows after its data — or, holding nothing of the backup, is cut back to where
 * the job began — and is unloaded, then the stream's zone is removed. These are the tape and fabric
 * activities `writeTapeCatalog` or `eraseTape`, `unloadTape` and `unzoneStream`, called here one
 * after another in that order, with the same inputs and checks.
 */
import type { TapeCatalogEntry } from '../domain/catalog';
import type { Drivers } from '../drivers/types';
import { createFabricActivities } from './fabric';
import { createTapeActivities } from './tape';

/** One stream to close: its cartridge while it is mounted, its zone while it is zoned. */
export interface CloseStreamInput {
  site: string;
  cartridge?: {
    library: string;
    drive: string;
    tape: string;
    /** Where the rows go (the cartridge's append point), or where to cut back to when it holds none. */
    end: { rows: { position: number; entry: TapeCatalogEntry } } | { eraseFrom: number };
  };
  zone?: string;
}

/** Creates the stream-end activity bound to one worker's tape library and fabric drivers. */
export function createStreamEndActivities(deps: { drivers: Pick<Drivers, 'tape' | 'fabric' | 'copy'> }) {
  const tape = createTapeActivities(deps);
  const fabric = createFabricActivities(deps);

  return {
    /**
     * Writes a stream's catalog rows onto its cartridge (or cuts the cartridge back), unloads it and
     * unzones the stream; returns the cartridge's end of data after the rows. Every part is
     * idempotent: the rows are written at a position the caller gives, and a cartridge that an
     * earlier attempt already unloaded is loaded again first (`remount`: the job holds the drive
     * until its release, which comes after this step), so an attempt retried from its start writes
     * the same bytes at the same place, and unloading or unzoning again finds nothing to do.
     */
    async closeStream(input: CloseStreamInput): Promise<{ nextPosition?: number }> {
      let nextPosition: number | undefined;
      const c = input.cartridge;
      if (c) {
        const addr = { site: input.site, library: c.library, drive: c.drive, tape: c.tape };
        if ('rows' in c.end) {
          const at = { ...addr, position: c.end.rows.position };
          ({ nextPosition } = await tape.writeTapeCatalog({ at, entry: c.end.rows.entry, remount: true }));
        } else {
          await tape.eraseTape({ ...addr, position: c.end.eraseFrom, remount: true });
        }
        await tape.unloadTape(addr);
      }
      if (input.zone !== undefined) await fabric.unzoneStream({ site: input.site, name: input.zone });
      return nextPosition === undefined ? {} : { nextPosition };
    },
  };
}
