/**
 * Copy activities, run on a backup server's own queue (`kura-server-<name>`): move pieces between
 * a volume and a cartridge. They heartbeat `{bytes, total}` as they go, and a retried attempt
 * resumes after the bytes its predecessor reported instead of copying them again.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import type { CopyResult, CopyToTapeRequest, Drivers, ProgressFn } from '../drivers/types';
import { ChecksumMismatchError, ErrorType, KuraError } from '../domain/errors';
import { PieceHeaderSchema } from '../domain/catalog';
import { parseWith } from '../domain/validate';
import { chunkLandedSignal, type ChunkLanded } from '../messages';
import { mapFailures, toFailure } from './failures';

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
    /** A backup in the deduplicated store read instead of the volume (docs/adr/042). */
    store: z.object({ backupId: z.string().min(1), indexDigest: z.string().regex(/^[0-9a-f]{64}$/) }).optional(),
  }),
  target: z.object({ ...TapeAddress, position: z.number().int().min(0) }),
  header: PieceHeaderSchema,
});
export type CopyPieceInput = z.input<typeof CopyPieceInput>;

export const CopyRunInput = z.object({
  site: z.string(),
  server: z.string(),
  devices: z.array(z.string()),
  source: CopyPieceInput.shape.source.omit({ offset: true, length: true }),
  /** Where the run's first chunk goes; each later one follows the one before it on the cartridge. */
  target: z.object({ ...TapeAddress, position: z.number().int().min(0) }),
  /** The workflow's name for this run, echoed in each chunk-landed signal so it can drop a stale one. */
  run: z.string().min(1),
  header: PieceHeaderSchema.pick({ backupId: true, target: true, job: true, copy: true, dataTime: true }),
  /** The chunks of the run, in image order. */
  pieces: z
    .array(
      z.object({ piece: z.number().int().min(0), offset: z.number().int().min(0), length: z.number().int().min(1) }),
    )
    .min(1),
  /** Bytes of the first chunk already on tape from an interrupted run (its last heartbeat). */
  resumeBytes: z.number().int().min(0).default(0),
  /** Whether the run holds a whole copy and reads it back at the end, while the cartridge is mounted. */
  verify: z.boolean().default(false),
});
export type CopyRunInput = z.input<typeof CopyRunInput>;

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

/**
 * A run's heartbeat: the chunk being written and its bytes on tape. While the run reads itself back,
 * `landed` carries its last chunk, which no signal reported: a run lost then is not copied again.
 */
export interface RunHeartbeat extends HeartbeatDetails {
  piece: number;
  landed?: CopyPieceResult;
}

export interface CopyRunResult {
  /** Every chunk of the run, in its order. */
  pieces: CopyPieceResult[];
  /** The whole copy's SHA-256 as read back, when the run was asked to verify and the read-back passed. */
  image?: { sha256: string; bytes: number };
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
        await checkSourceAccess(drivers, req);
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
     * Copies a stream's chunks one after another onto its cartridge (seed 004 steps 3050–3160 for
     * one stream): one activity for the stream instead of one per chunk, so a backup costs fewer
     * round trips through the server (docs/adr/020-fleet-cost.md). Each chunk that reaches tape is
     * signalled to the workflow before the next is begun, so the workflow's history is the record
     * of what landed; the last one comes with the result. The workflow retries or fails a run over
     * itself (the activity has one attempt): a resumed run starts at the first chunk not signalled,
     * after the bytes of it the last heartbeat reported, and a failure carries those bytes in its
     * details (`resume`). With `verify` the run reads its chunks back at the end; a read-back that
     * fails leaves the image out of the result, and the workflow reads the copy back itself.
     */
    async copyRun(input: CopyRunInput): Promise<CopyRunResult> {
      return runChunks(drivers, CopyRunInput, input, {
        what: 'copy run',
        zone: (req) => [req.source.array, req.server, req.target.library],
        copyOne: (piece, _req, onProgress, signal) => drivers.copy.copyToTape(piece, onProgress, signal),
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

/** How a run's chunks reach the cartridge: through a backup server, or a copy device's segment commands. */
export interface RunMover<R extends z.output<typeof CopyRunInput>> {
  /** What the input is called in a validation error. */
  what: string;
  /** The ports that must share a zone for the bytes to cross the fabric. */
  zone: (req: R) => string[];
  copyOne: (piece: CopyToTapeRequest, req: R, onProgress: ProgressFn, signal: AbortSignal) => Promise<CopyResult>;
}

/**
 * A copy run's chunks one after another onto the cartridge, for `copyRun` and for the direct copy
 * of docs/adr/029 alike: each chunk that lands is signalled to the workflow before the next is
 * begun, heartbeats carry the chunk and its bytes, a failure carries them in its details (`resume`),
 * and with `verify` the run reads its chunks back at the end.
 */
export async function runChunks<S extends z.ZodType<z.output<typeof CopyRunInput>>>(
  drivers: Drivers,
  schema: S,
  input: unknown,
  mover: RunMover<z.output<S>>,
): Promise<CopyRunResult> {
  const ctx = Context.current();
  const at = { piece: -1, bytes: 0 };
  try {
    const req = parseWith(schema, input, mover.what);
    await drivers.fabric.checkZoned(req.site, mover.zone(req));
    // A copy device acts on the backup server's behalf: the server's LUN mask admits the read.
    await checkSourceAccess(drivers, req);
    const workflowId = ctx.info.workflowExecution?.workflowId;
    if (workflowId === undefined)
      throw new KuraError(ErrorType.InvalidInput, 'a copy run reports its chunks to the operation that runs it');
    const { position: start, ...tape } = req.target;
    const landed: CopyPieceResult[] = [];
    let position = start;
    for (const [i, p] of req.pieces.entries()) {
      // A run the workflow gave up on (its heartbeat timed out) must not begin another chunk.
      ctx.cancellationSignal.throwIfAborted();
      const resumeBytes = i === 0 ? resumePoint({ bytes: req.resumeBytes }, p.length) : 0;
      at.piece = p.piece;
      at.bytes = resumeBytes;
      const beat = (bytes: number, total: number) => {
        at.bytes = bytes;
        ctx.heartbeat({ piece: p.piece, bytes, total } satisfies RunHeartbeat);
      };
      beat(resumeBytes, p.length);
      const startedAt = new Date().toISOString();
      const r = await mover.copyOne(
        {
          site: req.site,
          devices: req.devices,
          source: { ...req.source, offset: p.offset, length: p.length },
          target: { ...tape, position },
          header: { ...req.header, piece: p.piece, offset: p.offset, sizeBytes: p.length },
          resumeBytes,
        },
        req,
        (progress) => beat(progress.bytes, progress.total),
        ctx.cancellationSignal,
      );
      const result: CopyPieceResult = { ...r, startedAt, endedAt: new Date().toISOString() };
      landed.push(result);
      position = r.nextPosition;
      if (i < req.pieces.length - 1) {
        const landing: ChunkLanded = { run: req.run, piece: p.piece, result };
        await ctx.client.workflow.getHandle(workflowId).signal(chunkLandedSignal, landing);
      }
    }
    at.piece = -1;
    if (!req.verify) return { pieces: landed };
    const last = landed[landed.length - 1] as CopyPieceResult;
    const lastPiece = req.pieces[req.pieces.length - 1]?.piece ?? 0;
    const reading = () =>
      ctx.heartbeat({
        piece: lastPiece,
        bytes: last.bytes,
        total: last.bytes,
        landed: last,
      } satisfies RunHeartbeat);
    // Before the first byte is read back: a read-back too short to report progress still says so.
    reading();
    try {
      const image = await drivers.copy.verifyOnTape(
        {
          site: req.site,
          pieces: landed.map((r, i) => ({
            source: { ...tape, position: r.position },
            expect: { backupId: req.header.backupId, piece: req.pieces[i]?.piece ?? i, sizeBytes: r.bytes },
            sha256: r.sha256,
          })),
        },
        reading,
        ctx.cancellationSignal,
      );
      return { pieces: landed, image };
    } catch (err) {
      if (ctx.cancellationSignal.aborted) throw err;
      // The copy is on tape; reading it back is the workflow's own step, which retries and decides.
      return { pieces: landed };
    }
  } catch (err) {
    throw withResume(toFailure(err), at);
  }
}

/**
 * Seed 003's LUN security for the bytes a copy reads: a volume's mask must admit the server. A
 * store backup is not read from the array (docs/adr/042), so no mask applies to it.
 */
async function checkSourceAccess(
  drivers: Drivers,
  req: { site: string; server: string; source: { array: string; volume: string; store?: unknown } },
): Promise<void> {
  if (req.source.store !== undefined) return;
  await drivers.storage.checkAccess(req.site, req.source.array, req.source.volume, req.server);
}

/** A run's failure, with the chunk it was writing and that chunk's bytes already on tape. */
function withResume(failure: unknown, at: { piece: number; bytes: number }): unknown {
  if (!(failure instanceof ApplicationFailure) || at.piece < 0 || at.bytes <= 0) return failure;
  const first: unknown = failure.details?.[0];
  const details = typeof first === 'object' && first !== null ? first : {};
  return ApplicationFailure.create({
    message: failure.message,
    type: failure.type ?? undefined,
    nonRetryable: failure.nonRetryable ?? false,
    details: [{ ...details, resume: { piece: at.piece, bytes: at.bytes } }, ...(failure.details?.slice(1) ?? [])],
    cause: failure.cause,
  });
}

/** Where a retried attempt may resume: the last heartbeat's byte count, if it is plausible. */
function resumePoint(details: unknown, length: number): number {
  const d = details as Partial<HeartbeatDetails> | undefined;
  const bytes = typeof d?.bytes === 'number' && Number.isSafeInteger(d.bytes) ? d.bytes : 0;
  return bytes > 0 && bytes < length ? bytes : 0;
}
