/**
 * The copy over several disjoint streams of seed 004, as workflow code called by sanOperation:
 * preparing each stream (zone, mount), the chunked copy with failover (method 2, Figs. 11–12), the
 * parallel copy (method 1, Figs. 7–8), and the read-back of every copy. Each stream is a "lane"
 * whose state the progress query shows and whose outcome the catalog records.
 *
 * It runs inside the backup's own workflow rather than as a child: the devices, zones and
 * cartridges belong to the backup's one saga, which must undo them whatever happens here.
 */
import {
  ApplicationFailure,
  TemporalFailure,
  TimeoutFailure,
  isCancellation,
  patched,
  setHandler,
  sleep,
} from '@temporalio/workflow';
import type { CopyPieceResult, CopyRunInput, RunHeartbeat } from '../activities/copy';
import type { BackupRecord, PieceRecord, StreamRecord } from '../domain/catalog';
import { StreamKind, type BackupRequestSchema, type ResolvedTarget, type StreamProgress } from '../domain/jobs';
import type { Stream } from '../domain/pool';
import type { z } from 'zod';
import type { PiecePlan } from './plan';
import { markStep, zoneName } from './plan';
import type { Compensations } from './compensations';
import type { OperationState } from './operation-state';
import { copyActivities, directCopyActivities, type ControlActivities, type PoolActivities } from './proxies';
import { deviceTrouble, rootFailure } from './failures';
import { ErrorType, NON_RETRYABLE_ERROR_TYPES } from '../domain/errors';
import { chunkLandedSignal } from '../messages';
import type { DeviceHealth } from '../drivers/types';

/**
 * Since this patch a copy that stopped answering, with no device reporting a fault, marks only the
 * devices that fail or do not answer a probe; runs before it assumed the stream's drive
 * (docs/adr/008-streams-inside-the-backup.md, decision 3).
 */
const PROBE_DECIDES_PATCH = 'probe-decides-lost-copy';

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
  /** A backup of the deduplicated store, read from its chunks instead of the volume (docs/adr/042). */
  store?: { backupId: string; indexDigest: string };
  /**
   * Step 5's answer to a full cartridge: a new stream whose cartridge takes the chunk that did not
   * fit and every chunk after it. Without it a full cartridge fails its stream like a fault.
   */
  nextCartridge?: (full: Lane, piece: PiecePlan) => Promise<Lane>;
  /** The copy runs under way by their names, which the chunk-landed signals carry (`copyByStream`). */
  runs?: Record<string, Run>;
  /** How many runs were started: each run's name. */
  runCount?: number;
  /** The SHA-256 of each copy a run read back whole while it was mounted, by copy number. */
  verified?: Record<number, string>;
  /**
   * Set when the undo begins, in runs whose undo releases in a workflow task of its own
   * (docs/adr/047): its erases may then load again a cartridge that a lost run of the same undo
   * unloaded, since the job holds the drive until that release.
   */
  undoOwnTask?: boolean;
}

/** One stream's chunks in order as one copy activity writes them, followed by the workflow. */
export interface Run {
  lane: Lane;
  copy: number;
  pieces: PiecePlan[];
  /** Index in `pieces` of the first chunk not yet on tape. */
  next: number;
  /** Where each chunk that reached tape is recorded, shared with the mode's other runs. */
  written: PieceRecord[];
  /** The plan step of a chunk. */
  step: (p: PiecePlan) => string;
}

/** One reserved stream while the job runs. */
export interface Lane {
  stream: Stream;
  zone: string;
  /** The FC ports the zone joins: array, server, switches, library (and copy device). */
  members: string[];
  addr: { site: string; library: string; drive: string; tape: string };
  /**
   * How the stream moves the bytes now: `direct` while its copy device does (docs/adr/029), `lan-free`
   * through its backup server — from the start, or since its copy device failed.
   */
  kind: StreamKind;
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
    // The pool gives a stream a copy device only when the backup asked for direct streams.
    kind: s.copyDevice === undefined ? StreamKind.LanFree : StreamKind.Direct,
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

/** The path the bytes of a lane take now: its server's, or its copy device's when direct. */
export function laneRoute(l: Lane): string {
  if (l.kind !== StreamKind.Direct || l.stream.copyDevice === undefined) return lanePath(l.stream);
  return [l.stream.copyDevice, ...l.stream.switches, `${l.stream.library}/${l.stream.drive}`].join(' → ');
}

/** The devices a lane's bytes cross now, as the copy's fault injection and the probe see them. */
function laneDevices(l: Lane): string[] {
  const s = l.stream;
  if (l.kind === StreamKind.Direct && s.copyDevice !== undefined)
    return [s.copyDevice, ...s.switches, s.library, s.drive, s.tape];
  // Not the copy device: a LAN-free copy does not cross it, so its faults do not touch the copy.
  return [s.server, ...s.switches, s.library, s.drive, s.tape];
}

export function laneView(l: Lane): StreamProgress {
  const view: StreamProgress = {
    stream: l.stream.stream,
    path: laneRoute(l),
    tape: l.stream.tape,
    state: l.state,
    bytesDone: l.bytesDone,
    bytesTotal: 0,
  };
  if (l.error) view.error = l.error;
  if (l.stream.copyDevice !== undefined) view.kind = l.kind;
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
 * Zones each stream's path and mounts its cartridge, all streams at once (`atOnce`: each stream's
 * zoning and mount together too, see prepareLaneAtOnce). A stream that cannot be
 * prepared is marked failed (its device reported to the pool) and the job goes on with the others;
 * when none is left the job fails.
 */
export async function prepareLanes(job: CopyJob, atOnce = false): Promise<void> {
  const prepare = atOnce ? prepareLaneAtOnce : prepareLane;
  const outcomes = await Promise.allSettled(
    job.lanes.map((lane) => job.op.step(`load:${lane.stream.stream}`, () => prepare(job, lane))),
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
  const { control, req } = job;
  await control.zoneStream({ site: req.site, name: lane.zone, members: lane.members });
  laneZoned(job, lane);
  laneMounted(job, lane, await control.loadTape(lane.addr));
}

/**
 * prepareLane with the zoning and the mount asked for together: one round trip of the workflow to
 * its worker instead of two (docs/adr/049); the two touch different devices. Each undo is
 * registered once its own step succeeded, in prepareLane's order; a zoning that fails fails the
 * stream with its error, as in prepareLane, and a cartridge mounted all the same is unloaded with
 * the others at the end or by the undo.
 */
export async function prepareLaneAtOnce(job: CopyJob, lane: Lane): Promise<void> {
  const { control, req } = job;
  const [zoned, mounted] = await Promise.allSettled([
    control.zoneStream({ site: req.site, name: lane.zone, members: lane.members }),
    control.loadTape(lane.addr),
  ]);
  if (zoned.status === 'fulfilled') laneZoned(job, lane);
  if (mounted.status === 'fulfilled') laneMounted(job, lane, mounted.value);
  if (zoned.status === 'rejected') throw zoned.reason;
  if (mounted.status === 'rejected') throw mounted.reason;
}

/** A stream's path is zoned: its unzoning joins the undo. */
function laneZoned(job: CopyJob, lane: Lane): void {
  const { control, undo, req } = job;
  lane.zoned = true;
  undo.add(`unzone:${lane.stream.stream}`, () => control.unzoneStream({ site: req.site, name: lane.zone }));
}

/** A stream's cartridge is mounted: the stream writes from its end of data, and its unload and erase join the undo. */
function laneMounted(job: CopyJob, lane: Lane, mounted: Awaited<ReturnType<CopyJob['control']['loadTape']>>): void {
  const { control, undo } = job;
  lane.loaded = true;
  undo.add(`unload:${lane.stream.stream}`, () => control.unloadTape(lane.addr));
  lane.start = mounted.endOfData;
  lane.position = mounted.endOfData;
  job.tapeEnd[lane.stream.tape] = mounted.endOfData;
  // Runs before the unload (compensations unwind newest first): a failed job leaves nothing
  // of itself on the cartridge, so the next job appends where this one began.
  undo.add(`erase:${lane.stream.stream}`, async () => {
    await control.eraseTape({ ...lane.addr, position: lane.start, ...(job.undoOwnTask ? { remount: true } : {}) });
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
        const copy = copyActivities(current.stream.server, req.tuning, piece.length, attemptsOn(job, current));
        const r = await op.step(`copy:${piece.piece}`, () => copy.copyPiece(copyRequest(job, current, piece, 0)));
        written.push(pieceRecord(job, current, piece, r, 0));
        landed(job, current, piece, r);
        break;
      } catch (err) {
        if (isCancellation(err)) throw err;
        lane = await laneAfter(job, current, err, piece);
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
  return everyLane(job, runLane);
}

/**
 * The copy over the streams with one activity per stream rather than per chunk (docs/adr/020-fleet-cost.md):
 * the same two methods, chunk failover and parallel copies, with the same outcomes; each chunk that
 * reaches tape is signalled by the run, so the plan's per-chunk steps, the progress and the pieces
 * recorded follow the copy as before, and a run that fails or is lost goes on from the chunk after
 * the last one signalled.
 */
export async function copyByStream(job: CopyJob): Promise<PieceRecord[]> {
  const runs: Record<string, Run> = {};
  job.runs = runs;
  job.runCount = 0;
  job.verified = {};
  setHandler(chunkLandedSignal, ({ run: name, piece, result }) => {
    const run = runs[name];
    // A signal of a run already over (a stalled copy waking up after its timeout) changes nothing.
    if (run && run.pieces[run.next]?.piece === piece) accept(job, run, result);
  });
  return job.req.mode === 'parallel' ? copyParallelByStream(job) : copyFailoverByStream(job);
}

/**
 * Method 2 with one run per stream: the chunks left go to the first healthy stream as one run; when
 * it fails or stops answering, the chunk it was writing and every chunk after it go to the next
 * stream, and the faulty device is marked unavailable in the pool, as chunk by chunk.
 */
async function copyFailoverByStream(job: CopyJob): Promise<PieceRecord[]> {
  const { pieces } = job;
  const written: PieceRecord[] = [];
  let at = 0;
  let lane = nextHealthy(job, -1);
  while (at < pieces.length) {
    if (!lane) throw allStreamsFailed(job);
    const current: Lane = lane;
    current.state = 'copying';
    const attempts = attemptsOn(job, current);
    const run: Run = {
      lane: current,
      copy: 0,
      pieces: pieces.slice(at),
      next: 0,
      written,
      step: (p) => `copy:${p.piece}`,
    };
    try {
      await driveRun(job, run, attempts, at === 0);
      at = pieces.length;
    } catch (err) {
      at += run.next;
      if (isCancellation(err)) throw err;
      lane = await laneAfter(job, current, err, pieces[at] as PiecePlan);
    }
  }
  for (const l of job.lanes) if (l.state === 'copying') l.state = 'done';
  return written;
}

/** Method 1 with one run per stream: every stream writes the whole volume as one run, read back at its end. */
async function copyParallelByStream(job: CopyJob): Promise<PieceRecord[]> {
  const { req, pieces } = job;
  const runLane = async (lane: Lane): Promise<PieceRecord[]> => {
    const out: PieceRecord[] = [];
    const s = lane.stream.stream;
    lane.state = 'copying';
    try {
      await driveRun(
        job,
        { lane, copy: s, pieces, next: 0, written: out, step: (p) => `copy:${s}:${p.piece}` },
        req.tuning.deviceAttempts,
        true,
      );
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
  return everyLane(job, runLane);
}

/**
 * Runs a stream's chunks as copy runs until all are on tape, or throws the failure that ended them
 * (with `run.next` at the chunk that did not land). A chunk keeps its retry rules: up to `attempts`
 * tries on this stream with the same backoff, never for a failure no retry can cure, each try
 * resuming after the bytes the last heartbeat reported. `verify`: a run that starts with the copy's
 * first chunk reads the whole copy back at its end.
 */
async function driveRun(job: CopyJob, run: Run, attempts: number, verify: boolean): Promise<void> {
  const { req, op } = job;
  const runs = job.runs as Record<string, Run>;
  let resumeBytes = 0;
  let tries = 0;
  let triedAt = run.next;
  for (;;) {
    const first = run.next;
    const rest = run.pieces.slice(first);
    const head = rest[0];
    if (!head) return;
    const whole = verify && first === 0;
    const name = `${run.lane.stream.stream}.${(job.runCount = (job.runCount ?? 0) + 1)}`;
    runs[name] = run;
    if (tries === 0) begin(job, run, head);
    const bytes = rest.reduce((n, p) => n + p.length, 0);
    const input = runRequest(job, run, name, rest, resumeBytes, whole);
    const device = run.lane.kind === StreamKind.Direct ? run.lane.stream.copyDevice : undefined;
    try {
      // A direct stream's run goes to its copy device's own queue; the backup server moves nothing.
      const out =
        device === undefined
          ? await copyActivities(run.lane.stream.server, req.tuning, whole ? 2 * bytes : bytes, 1).copyRun(input)
          : await directCopyActivities(device, req.tuning, whole ? 2 * bytes : bytes, 1).directCopyRun({
              ...input,
              copyDevice: device,
            });
      delete runs[name];
      for (const [i, r] of out.pieces.entries()) if (first + i === run.next) accept(job, run, r);
      if (whole && out.image) (job.verified as Record<number, string>)[run.copy] = out.image.sha256;
      return;
    } catch (err) {
      delete runs[name];
      if (isCancellation(err)) throw err;
      const beat = lastBeat(err);
      // Lost while reading itself back: its last chunk is on tape too (the workflow reads it back).
      if (beat?.landed && beat.piece === run.pieces[run.next]?.piece) accept(job, run, beat.landed);
      const at = run.pieces[run.next];
      if (!at) return;
      if (run.next !== triedAt) {
        tries = 0;
        triedAt = run.next;
      }
      tries += 1;
      if (tries >= attempts || !retryable(err)) {
        op.steps = markStep(op.steps, run.step(at), 'failed', new Date().toISOString(), rootFailure(err).message);
        throw err;
      }
      resumeBytes = beat?.piece === at.piece ? beat.bytes : 0;
      await sleep(1000 * 2 ** (tries - 1));
    }
  }
}

/** A chunk of a run reached tape: recorded, accounted, and the run's next chunk shown as running. */
function accept(job: CopyJob, run: Run, r: CopyPieceResult): void {
  const piece = run.pieces[run.next] as PiecePlan;
  run.written.push(pieceRecord(job, run.lane, piece, r, run.copy));
  landed(job, run.lane, piece, r);
  job.op.steps = markStep(job.op.steps, run.step(piece), 'done', new Date().toISOString());
  job.op.currentStep = undefined;
  run.next += 1;
  const next = run.pieces[run.next];
  if (next) begin(job, run, next);
}

/** The plan and progress show a run's chunk being written. */
function begin(job: CopyJob, run: Run, piece: PiecePlan): void {
  const { op, pieces } = job;
  const id = run.step(piece);
  op.currentStep = id;
  op.steps = markStep(op.steps, id, 'running', new Date().toISOString());
  if (job.req.mode === 'parallel') return;
  const s = run.lane.stream;
  op.activity = `copying chunk ${piece.piece + 1} of ${pieces.length} on stream ${s.stream} (${s.tape})`;
  op.note(id, `stream ${s.stream}: ${lanePath(s)} with ${s.tape}`);
}

/** Whether the activity's own retry policy would have tried again after this failure. */
function retryable(err: unknown): boolean {
  let cur: unknown = err;
  for (let depth = 0; cur && depth < 10; depth++) {
    if (cur instanceof TimeoutFailure) return true;
    if (cur instanceof ApplicationFailure) {
      const type = cur.type;
      return !cur.nonRetryable && !NON_RETRYABLE_ERROR_TYPES.some((t) => t === type);
    }
    cur = cur instanceof TemporalFailure || cur instanceof Error ? (cur as Error).cause : undefined;
  }
  return true;
}

/**
 * What a failed run last reported of its chunk: from the heartbeat the server held when the run
 * stopped answering, or from the details of the failure it threw.
 */
function lastBeat(err: unknown): RunHeartbeat | undefined {
  let cur: unknown = err;
  for (let depth = 0; cur && depth < 10; depth++) {
    let d: unknown;
    if (cur instanceof TimeoutFailure) d = cur.lastHeartbeatDetails;
    else if (cur instanceof ApplicationFailure) d = (cur.details?.[0] as { resume?: unknown } | undefined)?.resume;
    const beat = d as Partial<RunHeartbeat> | undefined;
    if (beat && Number.isSafeInteger(beat.piece) && Number.isSafeInteger(beat.bytes)) return beat as RunHeartbeat;
    cur = cur instanceof TemporalFailure || cur instanceof Error ? (cur as Error).cause : undefined;
  }
  return undefined;
}

function runRequest(
  job: CopyJob,
  run: Run,
  name: string,
  pieces: PiecePlan[],
  resumeBytes: number,
  verify: boolean,
): CopyRunInput {
  const s = run.lane.stream;
  const { req, resolved } = job;
  return {
    site: req.site,
    server: s.server,
    devices: laneDevices(run.lane),
    source: {
      array: resolved.array,
      volume: resolved.volume,
      volumeSize: resolved.sizeBytes,
      ...(job.readPath === undefined ? {} : { readPath: job.readPath }),
      // Only a store copy names the store, so a volume's copy requests are what they were before.
      ...(job.store === undefined ? {} : { store: job.store }),
    },
    target: { ...run.lane.addr, position: run.lane.position },
    run: name,
    header: {
      backupId: job.backupId,
      target: resolved.target,
      job: job.workflowId,
      copy: run.copy,
      dataTime: job.dataTime,
    },
    pieces: pieces.map((p) => ({ piece: p.piece, offset: p.offset, length: p.length })),
    resumeBytes,
    verify,
  };
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
  const { req } = job;
  const copies = [...new Set(written.map((p) => p.copy))].sort((a, b) => a - b);
  let sha256: string | undefined;
  const kept: number[] = [];
  for (const c of copies) {
    const pieces = written.filter((p) => p.copy === c).sort((a, b) => a.piece - b.piece);
    const lastLane = job.lanes.find((l) => l.stream.stream === pieces[pieces.length - 1]?.stream) as Lane;
    try {
      const v = await readBack(job, c, pieces, lastLane);
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

/** One copy's read-back: an activity on the server of its last stream, unless its own run read it back whole. */
async function readBack(
  job: CopyJob,
  copy: number,
  pieces: PieceRecord[],
  lastLane: Lane,
): Promise<{ sha256: string }> {
  const read = job.verified?.[copy];
  if (read !== undefined) return { sha256: read };
  const { req, resolved } = job;
  return copyActivities(lastLane.stream.server, req.tuning, resolved.sizeBytes).verifyImage({
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
}

/**
 * Seed 004 step 1170: once the catalog records the backup, each cartridge gets its rows written
 * after its data. From here the catalog claims what the kept cartridges hold, so no later failure
 * may erase them; a cartridge that ends up holding nothing of the backup is cut back instead.
 * With `remount` (docs/adr/047), a cartridge that the unload after this step already took out of
 * its drive, in a run of the same workflow task that was lost, is loaded again first: the job holds
 * the drive until its release, which runs in a workflow task of its own.
 */
export async function writeTapeCatalogs(
  job: CopyJob,
  kept: PieceRecord[],
  backup: BackupRecord,
  streams: StreamRecord[],
  remount = false,
): Promise<void> {
  for (const lane of job.lanes) {
    if (kept.some((p) => p.stream === lane.stream.stream)) job.undo.done(`erase:${lane.stream.stream}`);
  }
  await Promise.all(
    job.lanes.filter((l) => l.loaded).map((lane) => closeCartridge(job, lane, kept, backup, streams, remount)),
  );
}

/** Unmounts and unzones every stream; the streams share nothing, so all at once. */
export async function unloadLanes(job: CopyJob): Promise<void> {
  await Promise.all(job.lanes.map((lane) => unloadLane(job, lane)));
}

/** Unmounts and unzones one stream. */
async function unloadLane(job: CopyJob, lane: Lane): Promise<void> {
  if (lane.loaded) await job.control.unloadTape(lane.addr);
  job.undo.done(`unload:${lane.stream.stream}`);
  if (lane.zoned) await job.control.unzoneStream({ site: job.req.site, name: lane.zone });
  job.undo.done(`unzone:${lane.stream.stream}`);
}

/**
 * writeTapeCatalogs and unloadLanes with each stream's part as one control step (docs/adr/057):
 * `closeStream` writes the stream's catalog rows onto its cartridge (or cuts back a cartridge that
 * holds nothing of the backup), unloads it and unzones the stream, so the end of a backup costs one
 * round trip of the workflow to its worker where it cost three. The streams share nothing, so all
 * at once. Each undo is dropped as the steps one at a time drop it: a kept cartridge's erase before
 * anything is written, the rest once the stream is closed. A step that fails after its retries (not
 * a cancellation) is done again one part at a time, as before the change — every part is
 * idempotent, and a cartridge the failed step unloaded is loaded again for its rows — so a
 * cartridge that cannot take its rows is told and does not fail the job, and any other failure
 * leaves the same undo as before. Every stream's step has settled before a failure is thrown.
 */
export async function closeLanes(
  job: CopyJob,
  kept: PieceRecord[],
  backup: BackupRecord,
  streams: StreamRecord[],
): Promise<void> {
  for (const lane of job.lanes) {
    if (kept.some((p) => p.stream === lane.stream.stream)) job.undo.done(`erase:${lane.stream.stream}`);
  }
  const outcomes = await Promise.allSettled(job.lanes.map((lane) => closeLane(job, lane, kept, backup, streams)));
  const cancelled = outcomes.find(
    (o): o is PromiseRejectedResult => o.status === 'rejected' && isCancellation(o.reason),
  );
  const failed = cancelled ?? outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (failed) throw failed.reason;
}

/** One stream's part of closeLanes. */
async function closeLane(
  job: CopyJob,
  lane: Lane,
  kept: PieceRecord[],
  backup: BackupRecord,
  streams: StreamRecord[],
): Promise<void> {
  const { site } = job.req;
  const onTape = kept.filter((p) => p.tape === lane.stream.tape && p.library === lane.stream.library);
  if (lane.loaded || lane.zoned) {
    try {
      const out = await job.control.closeStream({
        site,
        ...(lane.loaded
          ? {
              cartridge: {
                library: lane.stream.library,
                drive: lane.stream.drive,
                tape: lane.stream.tape,
                end:
                  onTape.length > 0
                    ? { rows: { position: lane.position, entry: { backup, pieces: onTape, streams } } }
                    : { eraseFrom: lane.start },
              },
            }
          : {}),
        ...(lane.zoned ? { zone: lane.zone } : {}),
      });
      if (lane.loaded) job.tapeEnd[lane.stream.tape] = out.nextPosition ?? lane.start;
    } catch (err) {
      if (isCancellation(err)) throw err;
      // The parts one at a time, each with its own retries and its own answer to a failure.
      if (lane.loaded) await closeCartridge(job, lane, kept, backup, streams, true);
      await unloadLane(job, lane);
      return;
    }
  }
  if (lane.loaded && onTape.length === 0) job.undo.done(`erase:${lane.stream.stream}`);
  job.undo.done(`unload:${lane.stream.stream}`);
  job.undo.done(`unzone:${lane.stream.stream}`);
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
  remount: boolean,
): Promise<void> {
  const onTape = kept.filter((p) => p.tape === lane.stream.tape && p.library === lane.stream.library);
  // Only runs since the change ask for it, so an old run's activity inputs stay what they were.
  const again = remount ? { remount: true } : {};
  try {
    if (onTape.length > 0) {
      const out = await job.control.writeTapeCatalog({
        at: { ...lane.addr, position: lane.position },
        entry: { backup, pieces: onTape, streams },
        ...again,
      });
      job.tapeEnd[lane.stream.tape] = out.nextPosition;
    } else {
      await job.control.eraseTape({ ...lane.addr, position: lane.start, ...again });
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
/**
 * Runs `runLane` on every stream not failed, at once, and gathers what they wrote; a cancellation
 * is thrown once all have settled, and no chunk written at all fails the job.
 */
async function everyLane(job: CopyJob, runLane: (lane: Lane) => Promise<PieceRecord[]>): Promise<PieceRecord[]> {
  job.op.activity = `copying on ${job.lanes.filter((l) => l.state !== 'failed').length} streams at once`;
  // allSettled, not all: a cancellation must not leave sibling copies running while the saga unloads.
  const results = await Promise.allSettled(job.lanes.filter((l) => l.state !== 'failed').map(runLane));
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (rejected) throw rejected.reason;
  const written = results.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
  if (written.length === 0) throw allStreamsFailed(job);
  return written;
}

/**
 * Method 2's attempts on a stream: one while another stream stands by (the chunks move there); the
 * last stream left retries its own devices instead, as a single-stream copy would.
 */
function attemptsOn(job: CopyJob, lane: Lane): number {
  // A direct stream has its own LAN-free path to go on with: its copy device gets one attempt.
  if (lane.kind === StreamKind.Direct) return 1;
  return nextHealthy(job, lane.stream.stream) ? 1 : job.req.tuning.deviceAttempts;
}

/**
 * Method 2's answer to a copy that failed at `piece`: a full cartridge gives way to the next one on
 * the same stream (the chunks already there stay: the cartridge is full, not faulty); any other
 * failure marks the stream failed and moves the chunk and the rest to the next healthy stream.
 */
async function laneAfter(job: CopyJob, lane: Lane, err: unknown, piece: PiecePlan): Promise<Lane | undefined> {
  if (job.nextCartridge && rootFailure(err).type === ErrorType.TapeFull) {
    lane.state = lane.pieces > 0 ? 'done' : 'standby';
    return job.nextCartridge(lane, piece);
  }
  if (lane.kind === StreamKind.Direct) return directLaneAfter(job, lane, err, piece);
  await laneFailed(job, lane, err, `at chunk ${piece.piece}`);
  return nextHealthy(job, lane.stream.stream);
}

/**
 * Chunk failover across kinds (docs/adr/029): a direct stream that failed moves its chunk and the
 * rest to a LAN-free stream. When its copy device reported the fault, that copy device is marked
 * unavailable and the same stream goes on through its backup server (its drive and cartridge are
 * sound, and the chunks already written stay where they are). Any other failure fails the stream
 * as on a LAN-free one, and the next stream takes the rest LAN-free — a copy device that stopped
 * answering too: it may wake and write again, so its cartridge takes no more chunks of this job.
 */
async function directLaneAfter(job: CopyJob, lane: Lane, err: unknown, piece: PiecePlan): Promise<Lane | undefined> {
  const device = lane.stream.copyDevice as string;
  const root = rootFailure(err);
  if (deviceTrouble(err).device === device) {
    const reason =
      `${root.message} (job ${job.workflowId}, stream ${lane.stream.stream}, at chunk ${piece.piece})`.slice(0, 500);
    job.marks.push(job.pool.markDevice(job.req.site, { device, state: 'unavailable', reason }).catch(() => undefined));
    lane.kind = StreamKind.LanFree;
    job.op.activity = `copy device ${device} of stream ${lane.stream.stream} failed at chunk ${piece.piece}: ${root.message}; the stream goes on LAN-free through ${lane.stream.server}`;
    return lane;
  }
  await laneFailed(job, lane, err, `at chunk ${piece.piece}`);
  const next = nextHealthy(job, lane.stream.stream);
  if (next) next.kind = StreamKind.LanFree;
  return next;
}

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
  if (trouble.device === undefined && trouble.timedOut && patched(PROBE_DECIDES_PATCH)) {
    await probeLostLane(job, lane, root.type, when);
    job.op.activity = `stream ${lane.stream.stream} failed ${when}: ${lane.error}`;
    return;
  }
  let device = trouble.device;
  let why = root.message;
  if (device === undefined && trouble.timedOut) {
    const found = await job.control
      .probeStream({
        site: job.req.site,
        devices: laneDevices(lane),
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

/**
 * A lane whose copy stopped answering with no device reporting a fault: its devices are probed,
 * and only those that fail the probe or do not answer it are marked unavailable. When every device
 * answers, the worker running the copy was lost, not a device: the chunks still move on, but
 * nothing is marked, so a lost worker takes no healthy drive out of service.
 */
async function probeLostLane(job: CopyJob, lane: Lane, type: string, when: string): Promise<void> {
  const devices = laneDevices(lane);
  let found: DeviceHealth[];
  try {
    // A device is given as long to answer as a copy may go without a heartbeat, within 1 to 5 s.
    const timeoutMs = Math.min(5000, Math.max(1000, job.req.tuning.copyHeartbeatTimeoutMs));
    found = await job.control.probeStream({ site: job.req.site, devices, timeoutMs });
  } catch (e) {
    // Nothing is known of the devices: marking one would be the guess this rule exists to avoid.
    lane.error = `${lane.error}; its devices could not be probed (${rootFailure(e).message}), so none was marked unavailable`;
    return;
  }
  if (found.length === 0) {
    lane.error = `${type}: the copy stopped answering while its devices answer a probe (${devices.join(', ')}): the worker running it was probably lost`;
    return;
  }
  for (const h of found) {
    const reason =
      `stopped answering: ${h.reason} (job ${job.workflowId}, stream ${lane.stream.stream}, ${when})`.slice(0, 500);
    // Marked while the copy goes on: the next chunk need not wait for the pool's bookkeeping.
    job.marks.push(
      job.pool.markDevice(job.req.site, { device: h.device, state: 'unavailable', reason }).catch(() => undefined),
    );
  }
  lane.error = `${lane.error}; ${found.map((h) => `${h.device} ${h.reason}`).join('; ')}`;
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
      // Only a store copy names the store, so a volume's copy requests are what they were before.
      ...(job.store === undefined ? {} : { store: job.store }),
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
