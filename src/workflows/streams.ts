/**
 * The copy over several disjoint streams of seed 004, as workflow code called by sanOperation:
 * preparing each stream (zone, mount), the chunked copy with failover (method 2, Figs. 11–12), the
 * parallel copy (method 1, Figs. 7–8), and the read-back of every copy. Each stream is a "lane"
 * whose state the progress query shows and whose outcome the catalog records.
 *
 * It runs inside the backup's own workflow rather than as a child: the devices, zones and
 * cartridges belong to the backup's one saga, which must undo them whatever happens here.
 */
import { ApplicationFailure, isCancellation } from '@temporalio/workflow';
import type { CopyPieceResult } from '../activities/copy';
import type { BackupRecord, PieceRecord, StreamRecord } from '../domain/catalog';
import type { BackupRequestSchema, ResolvedTarget, StreamProgress } from '../domain/jobs';
import type { Stream } from '../domain/pool';
import type { z } from 'zod';
import type { PiecePlan } from './plan';
import { zoneName } from './plan';
import type { Compensations } from './compensations';
import type { OperationState } from './operation-state';
import { copyActivities, type ControlActivities, type PoolActivities } from './proxies';
import { deviceTrouble, rootFailure } from './failures';
import { ErrorType } from '../domain/errors';

/** Everything the stream functions share with the backup that runs them. */
export interface CopyJob {
  req: z.output<typeof BackupRequestSchema>;
  resolved: ResolvedTarget;
  pieces: PiecePlan[];
  backupId: string;
  workflowId: string;
  dataTime: string;
  op: OperationState;
  control: ControlActivities;
  pool: PoolActivities;
  undo: Compensations;
  /** End of recorded data per cartridge, handed to the pool on release. */
  tapeEnd: Record<string, number>;
  lanes: Lane[];
  /** Devices being marked unavailable in the pool; the copy does not wait for them, collect does. */
  marks: Promise<unknown>[];
  /** A split replica or snapshot holding the volume's image, read instead of the volume. */
  readPath?: string;
  /**
   * Step 5's answer to a full cartridge: a new stream whose cartridge takes the chunk that did not
   * fit and every chunk after it. Without it a full cartridge fails its stream like a fault.
   */
  nextCartridge?: (full: Lane, piece: PiecePlan) => Promise<Lane>;
}

/** One reserved stream while the job runs. */
export interface Lane {
  stream: Stream;
  zone: string;
  /** The FC ports the zone joins: array, server, switches, library (and copy device). */
  members: string[];
  addr: { site: string; library: string; drive: string; tape: string };
  zoned: boolean;
  loaded: boolean;
  /** Where this job began writing on the cartridge, and the next append point. */
  start: number;
  position: number;
  state: StreamProgress['state'];
  bytesDone: number;
  pieces: number;
  error: string | null;
}

export function newLane(site: string, job: string, array: string, s: Stream): Lane {
  return {
    stream: s,
    zone: zoneName(job, s.stream),
    members: [...new Set([array, s.server, ...s.switches, s.library, ...(s.copyDevice ? [s.copyDevice] : [])])],
    addr: { site, library: s.library, drive: s.drive, tape: s.tape },
    zoned: false,
    loaded: false,
    start: 0,
    position: 0,
    state: 'standby',
    bytesDone: 0,
    pieces: 0,
    error: null,
  };
}

/** `bks-01 → fcsw-01 → lib-01/lib-01-drv-1`, as the pool and the progress bars name a stream. */
export function lanePath(s: Stream): string {
  return [s.server, ...s.switches, `${s.library}/${s.drive}`].join(' → ');
}

export function laneView(l: Lane): StreamProgress {
  const view: StreamProgress = {
    stream: l.stream.stream,
    path: lanePath(l.stream),
    tape: l.stream.tape,
    state: l.state,
    bytesDone: l.bytesDone,
    bytesTotal: 0,
  };
  if (l.error) view.error = l.error;
  return view;
}

/** The catalog's row for a stream: `complete` when it holds recorded chunks, else failed or standby. */
export function laneRecord(backupId: string, l: Lane): StreamRecord {
  const s = l.stream;
  const outcome = l.state === 'failed' ? 'failed' : l.pieces > 0 ? 'complete' : 'standby';
  return {
    backupId,
    stream: s.stream,
    server: s.server,
    library: s.library,
    drive: s.drive,
    tape: s.tape,
    switches: s.switches,
    outcome,
    pieces: l.pieces,
    error: l.error,
  };
}

/**
 * Zones each stream's path and mounts its cartridge, all streams at once. A stream that cannot be
 * prepared is marked failed (its device reported to the pool) and the job goes on with the others;
 * when none is left the job fails.
 */
export async function prepareLanes(job: CopyJob): Promise<void> {
  const outcomes = await Promise.allSettled(
    job.lanes.map((lane) => job.op.step(`load:${lane.stream.stream}`, () => prepareLane(job, lane))),
  );
  const cancelled = outcomes.find(
    (o): o is PromiseRejectedResult => o.status === 'rejected' && isCancellation(o.reason),
  );
  if (cancelled) throw cancelled.reason;
  for (const [i, o] of outcomes.entries()) {
    if (o.status === 'rejected') await laneFailed(job, job.lanes[i] as Lane, o.reason, 'while preparing it');
  }
  if (!job.lanes.some((l) => l.state !== 'failed')) throw allStreamsFailed(job);
}

/** Zones one stream's path and mounts its cartridge, each undo registered once its step succeeded. */
export async function prepareLane(job: CopyJob, lane: Lane): Promise<void> {
  const { control, undo, req } = job;
  await control.zoneStream({ site: req.site, name: lane.zone, members: lane.members });
  lane.zoned = true;
  undo.add(`unzone:${lane.stream.stream}`, () => control.unzoneStream({ site: req.site, name: lane.zone }));
  const mounted = await control.loadTape(lane.addr);
  lane.loaded = true;
  undo.add(`unload:${lane.stream.stream}`, () => control.unloadTape(lane.addr));
  lane.start = mounted.endOfData;
  lane.position = mounted.endOfData;
  job.tapeEnd[lane.stream.tape] = mounted.endOfData;
  // Runs before the unload (compensations unwind newest first): a failed job leaves nothing
  // of itself on the cartridge, so the next job appends where this one began.
  undo.add(`erase:${lane.stream.stream}`, async () => {
    await control.eraseTape({ ...lane.addr, position: lane.start });
    job.tapeEnd[lane.stream.tape] = lane.start;
  });
}

/**
 * Method 2 (seed 004 steps 3050–3160): the chunks in order, each one activity with a single
 * attempt and a heartbeat timeout, on the first stream still healthy. A chunk that fails or stops
 * answering moves, with every chunk after it, to the next stream; the faulty device is marked
 * unavailable in the pool. Three or more streams chain.
 */
export async function copyFailover(job: CopyJob): Promise<PieceRecord[]> {
  const { req, pieces, op } = job;
  const written: PieceRecord[] = [];
  let lane = nextHealthy(job, -1);
  for (const piece of pieces) {
    for (;;) {
      if (!lane) throw allStreamsFailed(job);
      const current: Lane = lane;
      current.state = 'copying';
      op.activity = `copying chunk ${piece.piece + 1} of ${pieces.length} on stream ${current.stream.stream} (${current.stream.tape})`;
      op.note(
        `copy:${piece.piece}`,
        `stream ${current.stream.stream}: ${lanePath(current.stream)} with ${current.stream.tape}`,
      );
      try {
        // One attempt while another stream stands by (the chunk moves there); the last stream left
        // retries its own devices instead, as a single-stream copy would.
        const attempts = nextHealthy(job, current.stream.stream) ? 1 : req.tuning.deviceAttempts;
        const copy = copyActivities(current.stream.server, req.tuning, piece.length, attempts);
        const r = await op.step(`copy:${piece.piece}`, () => copy.copyPiece(copyRequest(job, current, piece, 0)));
        written.push(pieceRecord(job, current, piece, r, 0));
        landed(job, current, piece, r);
        break;
      } catch (err) {
        if (isCancellation(err)) throw err;
        if (job.nextCartridge && rootFailure(err).type === ErrorType.TapeFull) {
          // The chunks already there stay: the cartridge is full, not faulty.
          current.state = current.pieces > 0 ? 'done' : 'standby';
          lane = await job.nextCartridge(current, piece);
          continue;
        }
        await laneFailed(job, current, err, `at chunk ${piece.piece}`);
        lane = nextHealthy(job, current.stream.stream);
      }
    }
  }
  for (const l of job.lanes) if (l.state === 'copying') l.state = 'done';
  return written;
}

/**
 * Method 1 (seed 004 steps 1090–1160): every stream copies the whole volume at once, each on its
 * own backup server's queue, its chunks retried on the same devices; the job goes on when at least
 * one stream finished. Copy numbers are stream numbers.
 */
export async function copyParallel(job: CopyJob): Promise<PieceRecord[]> {
  const { req, pieces, op } = job;
  const runLane = async (lane: Lane): Promise<PieceRecord[]> => {
    const out: PieceRecord[] = [];
    const copy = copyActivities(lane.stream.server, req.tuning);
    lane.state = 'copying';
    try {
      for (const piece of pieces) {
        const r = await op.step(`copy:${lane.stream.stream}:${piece.piece}`, () =>
          copy.copyPiece(copyRequest(job, lane, piece, lane.stream.stream)),
        );
        out.push(pieceRecord(job, lane, piece, r, lane.stream.stream));
        landed(job, lane, piece, r);
      }
      lane.state = 'done';
      return out;
    } catch (err) {
      if (isCancellation(err)) throw err;
      await laneFailed(job, lane, err, `at chunk ${out.length}`);
      // Chunks of a copy that did not finish are not part of the backup.
      lane.pieces = 0;
      return [];
    }
  };
  op.activity = `copying on ${job.lanes.filter((l) => l.state !== 'failed').length} streams at once`;
  // allSettled, not all: a cancellation must not leave sibling copies running while the saga unloads.
  const results = await Promise.allSettled(job.lanes.filter((l) => l.state !== 'failed').map(runLane));
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (rejected) throw rejected.reason;
  const written = results.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
  if (written.length === 0) throw allStreamsFailed(job);
  return written;
}

/**
 * Reads every copy back while its cartridges are mounted: each piece must hash as written, and the
 * whole image's SHA-256 comes out. In parallel mode a copy that fails its read-back, or differs
 * from the first good one, is dropped and its stream marked failed; with no copy left the job fails.
 */
export async function verifyCopies(
  job: CopyJob,
  written: PieceRecord[],
): Promise<{ pieces: PieceRecord[]; copies: number[]; sha256: string }> {
  const { req, resolved } = job;
  const copies = [...new Set(written.map((p) => p.copy))].sort((a, b) => a - b);
  let sha256: string | undefined;
  const kept: number[] = [];
  for (const c of copies) {
    const pieces = written.filter((p) => p.copy === c).sort((a, b) => a.piece - b.piece);
    const lastLane = job.lanes.find((l) => l.stream.stream === pieces[pieces.length - 1]?.stream) as Lane;
    try {
      const v = await copyActivities(lastLane.stream.server, req.tuning, resolved.sizeBytes).verifyImage({
        site: req.site,
        pieces: pieces.map((p) => {
          const lane = job.lanes.find((l) => l.stream.stream === p.stream) as Lane;
          return {
            source: { ...lane.addr, position: p.position },
            expect: { backupId: job.backupId, piece: p.piece, sizeBytes: p.sizeBytes },
            sha256: p.sha256,
          };
        }),
      });
      if (sha256 !== undefined && v.sha256 !== sha256) {
        throw ApplicationFailure.nonRetryable(
          `copy ${c} reads back as ${v.sha256}, but copy ${kept[0]} as ${sha256}; the volume changed while it was copied`,
          ErrorType.ChecksumMismatch,
        );
      }
      sha256 = v.sha256;
      kept.push(c);
    } catch (err) {
      if (isCancellation(err) || req.mode !== 'parallel') throw err;
      await laneFailed(job, lastLane, err, 'when its copy was read back');
      lastLane.pieces = 0;
    }
  }
  if (sha256 === undefined) throw allStreamsFailed(job);
  return { pieces: written.filter((p) => kept.includes(p.copy)), copies: kept, sha256 };
}

/**
 * Seed 004 step 1170: once the catalog records the backup, each cartridge gets its rows written
 * after its data. From here the catalog claims what the kept cartridges hold, so no later failure
 * may erase them; a cartridge that ends up holding nothing of the backup is cut back instead.
 */
export async function writeTapeCatalogs(
  job: CopyJob,
  kept: PieceRecord[],
  backup: BackupRecord,
  streams: StreamRecord[],
): Promise<void> {
  for (const lane of job.lanes) {
    if (kept.some((p) => p.stream === lane.stream.stream)) job.undo.done(`erase:${lane.stream.stream}`);
  }
  await Promise.all(job.lanes.filter((l) => l.loaded).map((lane) => closeCartridge(job, lane, kept, backup, streams)));
}

/** Unmounts and unzones every stream; the streams share nothing, so all at once. */
export async function unloadLanes(job: CopyJob): Promise<void> {
  await Promise.all(
    job.lanes.map(async (lane) => {
      if (lane.loaded) await job.control.unloadTape(lane.addr);
      job.undo.done(`unload:${lane.stream.stream}`);
      if (lane.zoned) await job.control.unzoneStream({ site: job.req.site, name: lane.zone });
      job.undo.done(`unzone:${lane.stream.stream}`);
    }),
  );
}

/**
 * Seed 004 step 1170 for one cartridge: write its rows of the recorded backup onto it, after its
 * data; a cartridge that holds nothing of the backup is cut back to where the job began. The
 * backup is already complete in the catalog, so a cartridge that cannot take its rows does not
 * fail the job: people are told that a rebuild from cartridges would miss the backup there.
 */
async function closeCartridge(
  job: CopyJob,
  lane: Lane,
  kept: PieceRecord[],
  backup: BackupRecord,
  streams: StreamRecord[],
): Promise<void> {
  const onTape = kept.filter((p) => p.tape === lane.stream.tape && p.library === lane.stream.library);
  try {
    if (onTape.length > 0) {
      const out = await job.control.writeTapeCatalog({
        at: { ...lane.addr, position: lane.position },
        entry: { backup, pieces: onTape, streams },
      });
      job.tapeEnd[lane.stream.tape] = out.nextPosition;
    } else {
      await job.control.eraseTape({ ...lane.addr, position: lane.start });
      job.tapeEnd[lane.stream.tape] = lane.start;
      job.undo.done(`erase:${lane.stream.stream}`);
    }
  } catch (err) {
    if (isCancellation(err) || onTape.length === 0) throw err;
    const root = rootFailure(err);
    job.op.activity = `the catalog rows could not be written onto ${lane.stream.tape}: ${root.message}`;
    await job.control
      .notify({
        subject: `catalog rows of ${job.backupId} not written onto cartridge ${lane.stream.tape}`,
        detail: {
          workflowId: job.workflowId,
          type: root.type,
          error: root.message,
          consequence:
            'the backup is complete and restorable; a catalog rebuilt from cartridges will miss it on this cartridge',
        },
      })
      .catch(() => undefined);
  }
}

/** The first lane after `after` (by stream number) that has not failed. */
function nextHealthy(job: CopyJob, after: number): Lane | undefined {
  return job.lanes.find((l) => l.stream.stream > after && l.state !== 'failed');
}

/** Accounts a chunk that reached the cartridge. */
function landed(job: CopyJob, lane: Lane, piece: PiecePlan, r: CopyPieceResult): void {
  lane.position = r.nextPosition;
  lane.pieces += 1;
  lane.bytesDone += piece.length;
  job.tapeEnd[lane.stream.tape] = r.nextPosition;
  const bytes = job.lanes.map((l) => l.bytesDone);
  // Parallel copies each carry the whole image; failover chunks add up across the streams.
  job.op.bytesDone = job.req.mode === 'parallel' ? Math.max(...bytes) : bytes.reduce((a, b) => a + b, 0);
}

/**
 * A stream has failed: remember why, and when the failure points at a device — one a DeviceFault
 * names, or the one a probe finds after the copy stopped answering — mark it unavailable in the
 * pool with the reason, so later jobs avoid it until an operator marks it available again.
 */
async function laneFailed(job: CopyJob, lane: Lane, err: unknown, when: string): Promise<void> {
  const root = rootFailure(err);
  lane.state = 'failed';
  lane.error = `${root.type}: ${root.message}`;
  const trouble = deviceTrouble(err);
  let device = trouble.device;
  let why = root.message;
  if (device === undefined && trouble.timedOut) {
    const found = await job.control
      .probeStream({
        site: job.req.site,
        devices: [
          lane.stream.server,
          ...lane.stream.switches,
          lane.stream.library,
          lane.stream.drive,
          lane.stream.tape,
        ],
      })
      .catch(() => []);
    device = found[0]?.device ?? lane.stream.drive;
    why = found[0]
      ? `stopped answering: ${found[0].reason}`
      : 'stopped answering during a copy (no device reported a fault; the drive is assumed)';
  }
  if (device !== undefined) {
    const reason = `${why} (job ${job.workflowId}, stream ${lane.stream.stream}, ${when})`.slice(0, 500);
    // Marked while the copy goes on: the next chunk need not wait for the pool's bookkeeping.
    job.marks.push(job.pool.markDevice(job.req.site, { device, state: 'unavailable', reason }).catch(() => undefined));
  }
  job.op.activity = `stream ${lane.stream.stream} failed ${when}: ${root.message}`;
}

function allStreamsFailed(job: CopyJob): ApplicationFailure {
  const failed = job.lanes.filter((l) => l.state === 'failed');
  const why = failed
    .map((l) => `stream ${l.stream.stream} (${lanePath(l.stream)}, ${l.stream.tape}): ${l.error}`)
    .join('; ');
  return ApplicationFailure.nonRetryable(`all ${job.lanes.length} streams failed: ${why}`, ErrorType.DeviceFault);
}

function copyRequest(job: CopyJob, lane: Lane, piece: PiecePlan, copy: number) {
  const s = lane.stream;
  const { req, resolved } = job;
  return {
    site: req.site,
    server: s.server,
    devices: [s.server, ...s.switches, s.library, s.drive, s.tape, ...(s.copyDevice ? [s.copyDevice] : [])],
    source: {
      array: resolved.array,
      volume: resolved.volume,
      offset: piece.offset,
      length: piece.length,
      volumeSize: resolved.sizeBytes,
      ...(job.readPath === undefined ? {} : { readPath: job.readPath }),
    },
    target: { ...lane.addr, position: lane.position },
    header: {
      backupId: job.backupId,
      target: resolved.target,
      job: job.workflowId,
      copy,
      piece: piece.piece,
      offset: piece.offset,
      sizeBytes: piece.length,
      dataTime: job.dataTime,
    },
  };
}

function pieceRecord(job: CopyJob, lane: Lane, piece: PiecePlan, r: CopyPieceResult, copy: number): PieceRecord {
  const s = lane.stream;
  return {
    backupId: job.backupId,
    copy,
    piece: piece.piece,
    target: job.resolved.target,
    job: job.workflowId,
    stream: s.stream,
    startedAt: r.startedAt,
    endedAt: r.endedAt,
    dataTime: job.dataTime,
    library: s.library,
    tape: s.tape,
    position: r.position,
    offset: piece.offset,
    sizeBytes: r.bytes,
    sha256: r.sha256,
  };
}
