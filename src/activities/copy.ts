/**
 * Copy activities, run on a backup server's own queue (`kura-server-<name>`): move one piece
 * between a volume and a cartridge. They heartbeat `{bytes, total}` as they go, and a retried
 * attempt resumes after the bytes its predecessor reported instead of copying them again.
 */
import { Context } from '@temporalio/activity';
import { z } from 'zod';
import type { CopyResult, Drivers } from '../drivers/types';
import { ChecksumMismatchError } from '../domain/errors';
import { PieceHeaderSchema } from '../domain/catalog';
import { parseWith } from '../domain/validate';
import { mapFailures } from './failures';

const TapeAddress = { site: z.string(), library: z.string(), drive: z.string(), tape: z.string() };

const CopyPieceInput = z.object({
  site: z.string(),
  /** The backup server running this copy: its path must be zoned and the LUN mask must admit it. */
  server: z.string(),
  devices: z.array(z.string()),
  source: z.object({
    array: z.string(),
    volume: z.string(),
    offset: z.number().int().min(0),
    length: z.number().int().min(1),
    volumeSize: z.number().int().min(1),
    /** A split replica or a snapshot holding the volume's image, read instead of the volume. */
    readPath: z.string().min(1).optional(),
  }),
  target: z.object({ ...TapeAddress, position: z.number().int().min(0) }),
  header: PieceHeaderSchema,
});
export type CopyPieceInput = z.input<typeof CopyPieceInput>;

const ReadPieceInput = z.object({
  site: z.string(),
  server: z.string(),
  devices: z.array(z.string()),
  source: z.object({ ...TapeAddress, position: z.number().int().min(0) }),
  expect: z.object({ backupId: z.string(), piece: z.number().int().min(0), sizeBytes: z.number().int().min(0) }),
  destination: z.object({ path: z.string(), offset: z.number().int().min(0) }),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});
export type ReadPieceInput = z.input<typeof ReadPieceInput>;

const VerifyImageInput = z.object({
  site: z.string(),
  pieces: z
    .array(
      z.object({
        source: z.object({ ...TapeAddress, position: z.number().int().min(0) }),
        expect: z.object({ backupId: z.string(), piece: z.number().int().min(0), sizeBytes: z.number().int().min(0) }),
        sha256: z.string().regex(/^[0-9a-f]{64}$/),
      }),
    )
    .min(1),
});
export type VerifyImageInput = z.input<typeof VerifyImageInput>;

export interface HeartbeatDetails {
  bytes: number;
  total: number;
}

export interface CopyPieceResult extends CopyResult {
  startedAt: string;
  endedAt: string;
}

/** Creates the copy activities bound to one worker's drivers. */
export function createCopyActivities(deps: { drivers: Drivers }) {
  const { drivers } = deps;

  return {
    /** Copies one piece of a volume onto a cartridge at a fixed position (seed 004 step 3050). */
    async copyPiece(input: CopyPieceInput): Promise<CopyPieceResult> {
      return mapFailures(async () => {
        const req = parseWith(CopyPieceInput, input, 'copy request');
        // Seed 003: data crosses the SAN only inside a zone, and only to a server the LUN admits.
        await drivers.fabric.checkZoned(req.site, [req.source.array, req.server, req.target.library]);
        await drivers.storage.checkAccess(req.site, req.source.array, req.source.volume, req.server);
        const ctx = Context.current();
        const resumeBytes = resumePoint(ctx.info.heartbeatDetails, req.source.length);
        const startedAt = new Date().toISOString();
        const result = await drivers.copy.copyToTape(
          { ...req, resumeBytes },
          (p) => ctx.heartbeat({ bytes: p.bytes, total: p.total } satisfies HeartbeatDetails),
          ctx.cancellationSignal,
        );
        return { ...result, startedAt, endedAt: new Date().toISOString() };
      });
    },

    /**
     * Read-after-write verification while the cartridge is still mounted: every piece is read
     * back and must hash to what was written; returns the whole image's SHA-256. A retry simply
     * reads again from the start (reading changes nothing).
     */
    async verifyImage(input: VerifyImageInput): Promise<{ sha256: string; bytes: number }> {
      return mapFailures(async () => {
        const req = parseWith(VerifyImageInput, input, 'verify request');
        const ctx = Context.current();
        return drivers.copy.verifyOnTape(
          req,
          (p) => ctx.heartbeat({ bytes: p.bytes, total: p.total } satisfies HeartbeatDetails),
          ctx.cancellationSignal,
        );
      });
    },

    /**
     * Reads one piece back from a cartridge into the restore file, and checks its SHA-256 against
     * the catalog; a mismatch is non-retryable (the tape holds other data than was recorded).
     */
    async readPiece(input: ReadPieceInput): Promise<{ sha256: string; bytes: number }> {
      return mapFailures(async () => {
        const req = parseWith(ReadPieceInput, input, 'read request');
        await drivers.fabric.checkZoned(req.site, [req.server, req.source.library]);
        const ctx = Context.current();
        const resumeBytes = resumePoint(ctx.info.heartbeatDetails, req.expect.sizeBytes);
        const out = await drivers.copy.readFromTape(
          { ...req, resumeBytes },
          (p) => ctx.heartbeat({ bytes: p.bytes, total: p.total } satisfies HeartbeatDetails),
          ctx.cancellationSignal,
        );
        if (out.sha256 !== req.sha256) {
          throw new ChecksumMismatchError(
            `piece ${req.expect.piece} of ${req.expect.backupId} on ${req.source.library}/${req.source.tape} at position ${req.source.position} hashes to ${out.sha256}, but the catalog recorded ${req.sha256}; the cartridge may be damaged`,
            { tape: req.source.tape, position: req.source.position },
          );
        }
        return out;
      });
    },
  };
}

export type CopyActivities = ReturnType<typeof createCopyActivities>;

/** Where a retried attempt may resume: the last heartbeat's byte count, if it is plausible. */
function resumePoint(details: unknown, length: number): number {
  const d = details as Partial<HeartbeatDetails> | undefined;
  const bytes = typeof d?.bytes === 'number' && Number.isSafeInteger(d.bytes) ? d.bytes : 0;
  return bytes > 0 && bytes < length ? bytes : 0;
}
