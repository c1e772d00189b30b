/**
 * The direct copy of seed 003 Fig. 9 (docs/adr/029), run on a copy device's own queue
 * (`kura-copy-<name>`): the copy device moves a stream's chunks from the volume to the drive by
 * segment commands, each chunk one command; no backup server reads the bytes. The run keeps every
 * rule of a copy run through a server (chunk-landed signals, heartbeats, resume, read-back).
 */
import type { z } from 'zod';
import type { Drivers } from '../drivers/types';
import { NameSchema } from '../domain/inventory';
import { CopyRunInput, runChunks, type CopyRunResult } from './copy';

const DirectCopyRunInput = CopyRunInput.extend({
  /** The copy device executing the run; `server` is the backup server on whose behalf it reads the volume. */
  copyDevice: NameSchema,
});
export type DirectCopyRunInput = z.input<typeof DirectCopyRunInput>;

/** Creates the activities of a copy device's worker, bound to its drivers. */
export function createDirectCopyActivities(deps: { drivers: Drivers }) {
  const { drivers } = deps;
  return {
    /**
     * Copies a direct stream's chunks onto its cartridge, each as one segment command of the copy
     * device (source volume and address, target drive and address, length). Idempotent as a copy
     * run is: a chunk written again at its address replaces what an earlier attempt left there.
     */
    async directCopyRun(input: DirectCopyRunInput): Promise<CopyRunResult> {
      return runChunks(drivers, DirectCopyRunInput, input, {
        what: 'direct copy run',
        // The bytes cross the fabric between the array, the copy device and the library only.
        zone: (req) => [req.source.array, req.copyDevice, req.target.library],
        copyOne: (piece, req, onProgress, signal) => {
          const { position, ...target } = piece.target;
          const { offset: _offset, length: _length, ...source } = piece.source;
          return drivers.copy.executeSegment(
            {
              site: piece.site,
              copyDevice: req.copyDevice,
              devices: piece.devices,
              source,
              target,
              sourceAddress: piece.source.offset,
              targetAddress: position,
              length: piece.source.length,
              header: piece.header,
              resumeBytes: piece.resumeBytes,
            },
            onProgress,
            signal,
          );
        },
      });
    },
  };
}

export type DirectCopyActivities = ReturnType<typeof createDirectCopyActivities>;
