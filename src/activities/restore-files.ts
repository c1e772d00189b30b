/**
 * Restore destination activities, run on the `kura-control` queue: a restore is written to a
 * partial file beside a checked destination, pieces kept on disk backup storage are copied into
 * it, and only a verified file is moved into place — never over anything.
 */
import { constants as fsConstants, existsSync, realpathSync, statSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { Context } from '@temporalio/activity';
import { z } from 'zod';
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import { fileRange } from '../datamover/file-range';
import { sha256File } from '../datamover/files';
import { moveBytes } from '../datamover/mover';
import { sha256Hex } from '../datamover/sha256';
import { ChecksumMismatchError, DestinationExistsError, InvalidInputError, NotFoundError } from '../domain/errors';
import { checkRestoreDestination, findSite } from '../config/targets';
import { checkRestoreOwnership } from '../domain/tenancy';
import { labVolumePath } from '../lab/files';
import { parseWith } from '../domain/validate';
import { NameSchema } from '../domain/inventory';
import { RestoreVolumeSchema } from '../domain/jobs';
import type { Drivers } from '../drivers/types';
import { mapFailures } from './failures';

const DiskPieceInput = z.object({
  image: z.string().min(1),
  position: z.number().int().min(0),
  sizeBytes: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  destination: z.object({ path: z.string().min(1), offset: z.number().int().min(0) }),
});
/** The volume a restored backup was taken of: on a SAN shared by companies, its owner's volumes alone may take it. */
const BackupSource = z.object({ backupId: z.string().min(1), site: NameSchema, array: NameSchema, volume: NameSchema });
const RestorePaths = z.object({
  destination: z.string().min(1),
  job: z.string().min(1),
  source: BackupSource.optional(),
});
const VolumeRestoreInput = RestoreVolumeSchema.extend({ site: NameSchema, job: z.string().min(1) });
const VolumeAllocation = VolumeRestoreInput.extend({
  sizeBytes: z.number().int().positive(),
  source: BackupSource.optional(),
});

/**
 * Creates the restore destination activities bound to one configuration's home and restore roots,
 * and to the arrays that create new volumes for restores.
 */
export function createRestoreFileActivities(deps: {
  loaded: LoadedConfig;
  paths: KuraPaths;
  drivers: Pick<Drivers, 'volumes'>;
}) {
  const { loaded, paths, drivers } = deps;

  return {
    /**
     * Restores a piece kept on disk backup storage (an online backup's image, library `disk`): copies
     * it into the restore file and checks its SHA-256. The image path is relative to Kura's home and
     * must stay inside it. A retry simply copies again.
     */
    async readDiskPiece(input: {
      image: string;
      position: number;
      sizeBytes: number;
      sha256: string;
      destination: { path: string; offset: number };
    }): Promise<{ sha256: string; bytes: number }> {
      return mapFailures(async () => {
        const r = parseWith(DiskPieceInput, input, 'disk piece');
        const file = path.resolve(paths.home, r.image);
        if (path.relative(paths.home, file).startsWith('..'))
          throw new InvalidInputError(`disk piece ${r.image} lies outside Kura's home ${paths.home}`);
        if (!existsSync(file))
          throw new NotFoundError(`the image ${file} of this backup is gone from disk backup storage`);
        const ctx = Context.current();
        await mkdir(path.dirname(r.destination.path), { recursive: true });
        const src = await open(file, 'r');
        let sha256: string;
        try {
          // O_CREAT without O_TRUNC: other pieces of the same restore may already be in the file.
          const dst = await open(r.destination.path, fsConstants.O_RDWR | fsConstants.O_CREAT);
          try {
            ({ sha256 } = await moveBytes({
              source: fileRange(src, r.position, {
                name: file,
                endOfData: (at) =>
                  new ChecksumMismatchError(
                    `the image ${file} ends after ${at} bytes, before the ${r.sizeBytes} the catalog recorded`,
                  ),
              }),
              sink: fileRange(dst, r.destination.offset, { name: r.destination.path }),
              length: r.sizeBytes,
              onProgress: (p) => ctx.heartbeat({ bytes: p.bytes }),
            }));
            await dst.sync();
          } finally {
            await dst.close();
          }
        } finally {
          await src.close();
        }
        if (sha256 !== r.sha256)
          throw new ChecksumMismatchError(
            `the image ${file} hashes to ${sha256} but the catalog recorded ${r.sha256}; disk backup storage did not keep it`,
          );
        return { sha256, bytes: r.sizeBytes };
      });
    },

    /**
     * Checks a restore destination before anything is written (see checkRestoreDestination) and
     * names the partial file the pieces are written to until the restore is verified.
     */
    async prepareRestore(input: {
      destination: string;
      job: string;
      source?: z.input<typeof BackupSource>;
    }): Promise<{ destination: string; partial: string }> {
      return mapFailures(async () => {
        const { destination, job, source } = parseWith(RestorePaths, input, 'restore destination');
        // Before the restore roots: a path that is another company's volume is refused as such.
        if (source) {
          const onto = labVolumeAt(loaded, paths, source.site, path.resolve(destination));
          if (onto) checkRestoreOwnership(findSite(loaded.config, source.site), source, onto);
        }
        const abs = checkRestoreDestination(destination, paths.restoreRoots, loaded.file);
        return { destination: abs, partial: partialPath(abs, job) };
      });
    },

    /**
     * Verifies the restored file (size, and whole-image SHA-256 when the catalog has one), makes it
     * durable and moves it into place. Idempotent: a retry after the move checks the destination.
     */
    async finishRestore(input: {
      destination: string;
      partial: string;
      sizeBytes: number;
      sha256: string | null;
    }): Promise<{ sha256: string; sizeBytes: number }> {
      return mapFailures(async () => {
        const source = existsSync(input.partial) ? input.partial : input.destination;
        if (!existsSync(source))
          throw new NotFoundError(`the restored data at ${input.partial} is gone; run the restore again`);
        const size = statSync(source).size;
        if (size !== input.sizeBytes) {
          throw new ChecksumMismatchError(
            `restored ${size} bytes but the backup holds ${input.sizeBytes}; the restore is incomplete and was not moved into place`,
          );
        }
        const ctx = Context.current();
        const sha256 = await sha256File(source, { onProgress: (p) => ctx.heartbeat({ bytes: p.bytes }) });
        if (input.sha256 && sha256 !== input.sha256) {
          throw new ChecksumMismatchError(
            `restored image hashes to ${sha256} but the catalog recorded ${input.sha256}; the restore was not moved into place`,
          );
        }
        if (source === input.partial) {
          if (existsSync(input.destination)) {
            throw new DestinationExistsError(
              `restore destination ${input.destination} appeared while restoring; the restored data stays at ${input.partial}`,
            );
          }
          const fh = await open(input.partial, 'r+');
          await fh.sync();
          await fh.close();
          await rename(input.partial, input.destination);
          const dir = await open(path.dirname(input.destination), 'r');
          await dir.sync().catch(() => undefined);
          await dir.close();
        }
        return { sha256, sizeBytes: size };
      });
    },

    /**
     * Allocates the new volume a restore goes to, on its array, and names the volume's image as the
     * destination and a partial file beside it, like a restore to a file: the pieces go to the
     * partial file and only a verified image becomes the volume's. Idempotent for the same job.
     */
    async prepareVolumeRestore(
      input: z.input<typeof VolumeAllocation>,
    ): Promise<{ destination: string; partial: string }> {
      return mapFailures(async () => {
        const { site, array, volume, sizeBytes, job, source } = parseWith(VolumeAllocation, input, 'restore volume');
        if (source) checkRestoreOwnership(findSite(loaded.config, site), source, { array, volume });
        const { file } = await drivers.volumes.allocateVolume({ site, array, volume }, sizeBytes, job);
        return { destination: file, partial: partialPath(file, job) };
      });
    },

    /** Has the array serve the restored volume once its image is verified; answers where hosts reach it. */
    async commitVolumeRestore(
      input: z.input<typeof VolumeRestoreInput>,
    ): Promise<{ sizeBytes: number; nbdUri: string }> {
      return mapFailures(async () => {
        const { site, array, volume, job } = parseWith(VolumeRestoreInput, input, 'restore volume');
        return drivers.volumes.commitVolume({ site, array, volume }, job);
      });
    },

    /** Gives the volume of a failed restore back to its array's free pool. */
    async releaseVolumeRestore(input: z.input<typeof VolumeRestoreInput>): Promise<void> {
      return mapFailures(async () => {
        const { site, array, volume, job } = parseWith(VolumeRestoreInput, input, 'restore volume');
        await drivers.volumes.releaseVolume({ site, array, volume }, job);
      });
    },

    /** Removes a partial restore after a failure, so nothing half-done is left behind. */
    async discardRestore(input: { partial: string }): Promise<void> {
      await rm(input.partial, { force: true });
    },
  };
}

/** The partial file of one restore job, beside the destination so the final rename is atomic. */
export function partialPath(destination: string, job: string): string {
  return `${destination}.kura-partial-${sha256Hex(job).slice(0, 12)}`;
}

/**
 * The volume of the site whose lab file `file` is (symlinks resolved), if any: a restore written
 * there would overwrite that volume.
 */
function labVolumeAt(
  loaded: LoadedConfig,
  paths: KuraPaths,
  site: string,
  file: string,
): { array: string; volume: string } | undefined {
  const real = (p: string) => (existsSync(p) ? realpathSync(p) : p);
  const target = real(file);
  for (const a of findSite(loaded.config, site).arrays)
    for (const v of a.volumes)
      if (real(labVolumePath(paths, site, a.name, v.id)) === target) return { array: a.name, volume: v.id };
  return undefined;
}
