/**
 * The six-step SAN management sequence of seed 003 — accept, resolve, plan, launch, collect,
 * report — as one engine for every kind of backup: `backup` copies the volume itself to tape,
 * `split-backup` splits the volume's pair and copies the replica (Fig. 5a), `snapshot-backup`
 * copies a snapshot (Fig. 5b). Step 3 builds the launches with the pure planner of the kind
 * (operation-plan.ts); step 5 re-plans on named results: a pair not in sync within its wait falls
 * back to a snapshot, an application not in backup mode in time stops the operation before any
 * split, a full cartridge hands the remaining chunks to the next one. The copy to tape runs over
 * several disjoint streams (seed 004): in failover mode the copy is cut into chunks that move to
 * the next stream when a device fails or stops answering; in parallel mode every stream writes a
 * whole copy. Every launch has its compensation, so devices, zones, snapshots and pairs are
 * released or restored on every path and the catalog never claims a partial backup.
 */
import {
  ApplicationFailure,
  isCancellation,
  patched,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { BackupRequestSchema, kindOfMethod, type BackupReport, type BackupRequest } from '../domain/jobs';
import { backupIdFor, PIECE_HEADER_BYTES, type PieceRecord } from '../domain/catalog';
import { ErrorType } from '../domain/errors';
import type { SanAccessPlan } from '../domain/tenancy';
import type { Grant } from '../domain/pool';
import { KuraKind, KuraSite, KuraTarget, JobKind } from '../search-attributes';
import { chunkSizeFor, planPieces, type PiecePlan } from './plan';
import {
  planOperation,
  replanAsSnapshot,
  replanNextCartridge,
  snapshotNameFor,
  type EngineKind,
  type OperationPlanInput,
} from './operation-plan';
import {
  backupPoolActivities,
  controlActivities,
  localControlActivities,
  patientReleaseActivities,
  poolActivities,
  type PoolActivities,
} from './proxies';
import { acceptInput, notifyJobFailure, reportBackupFailure } from './failures';
import { Compensations } from './compensations';
import { OperationState } from './operation-state';
import {
  operationPlanInput,
  resolveOperation,
  splitPair,
  syncPair,
  takeSnapshot,
  type ArrayLaunch,
} from './array-launches';
import {
  copyByStream,
  copyFailover,
  copyParallel,
  closeLanes,
  prepareLane,
  prepareLanes,
  laneRecord,
  laneView,
  newLane,
  unloadLanes,
  verifyCopies,
  writeTapeCatalogs,
  type CopyJob,
  type Lane,
} from './streams';
import { label } from './labels';
import { endWorkflowTask } from './task-boundary';
import { storeTapeActivities } from './store-proxies';
import type { StoreCopySource } from '../activities/store-tape';

/**
 * Marks the runs whose control steps after the resolve, and the release, are local activities
 * (docs/adr/020-fleet-cost.md); earlier runs scheduled each as an activity of its own, and replay
 * must see them do so.
 */
const LOCAL_CONTROL_STEPS_PATCH = 'local-control-steps';

/**
 * Marks the runs that copy with one activity per stream, its chunks signalled as they land
 * (docs/adr/020-fleet-cost.md); earlier runs scheduled one activity per chunk and a read-back of
 * their own, and replay must see them do so.
 */
const COPY_BY_STREAM_PATCH = 'copy-by-stream';

/**
 * Marks the runs that tell the events feed of a copy refused in step 3 (docs/adr/031); earlier
 * runs could not be refused there.
 */
const ACCESS_REFUSAL_EVENT_PATCH = 'access-refusal-event';

/**
 * Marks the runs whose final release keeps trying for a bounded time (`patientReleaseActivities`);
 * earlier runs gave up after five attempts, about 8 s, and replay must see them do so.
 */
const PATIENT_RELEASE_PATCH = 'patient-release';

/**
 * Marks the runs that resolve their target as a local activity and ask the pool for a grant at
 * once as a local activity too, before a reservation that waits (docs/adr/045); earlier runs
 * scheduled the resolve and the reservation as activities of their own, and replay must see them
 * do so.
 */
const LOCAL_RESOLVE_RESERVE_PATCH = 'local-resolve-reserve';

/**
 * Marks the runs that copy a backup of the deduplicated store to tape (docs/adr/042): step 2
 * resolves the store backup instead of the volume, and the streams read its chunks. Only a request
 * naming `fromStore` takes this path, which no earlier run could.
 */
const STORE_SOURCE_PATCH = 'store-source';

/**
 * Marks the runs whose undo, after a failure, releases the devices with the same bounded patience
 * as the release of a complete backup: a failure right after a worker kill otherwise left the
 * devices held by a job that was gone once its five attempts ran out. Earlier runs replay with five.
 */
const PATIENT_UNDO_RELEASE_PATCH = 'patient-undo-release';

/**
 * Runs since this change record the backup's start, zone each stream's path and mount its cartridge
 * together, where runs before did the three one after another (docs/adr/049).
 */
const PREPARE_AT_ONCE_PATCH = 'prepare-at-once';

/**
 * Marks the runs whose end releases the devices in a workflow task of its own, after the one that
 * records the backup, writes the cartridges' catalog rows and unloads them; those steps load a
 * cartridge again that a lost run of their task already unloaded (docs/adr/047). Earlier runs did
 * all of it in one task, whose re-run after a lost worker found the cartridge gone, or the drive
 * given to another job.
 */
const TAPE_END_OWN_TASK_PATCH = 'tape-end-own-task';

/**
 * Marks the runs whose end releases the devices as an activity of its own instead of a local one
 * after a timer (docs/adr/053): scheduling the activity ends the task that records, writes the
 * catalog and unloads, as the timer did (docs/adr/047), without waiting for the server's timer
 * queue, which fires a 1 ms timer about a second late. Earlier runs replay with the timer.
 */
const RELEASE_ENDS_TASK_PATCH = 'release-ends-task';

/**
 * Marks the runs whose undo, after a failure, ends a workflow task before each release, and erases
 * with the cartridge loaded again if a lost run of the undo already unloaded it (docs/adr/047).
 */
const UNDO_RELEASE_OWN_TASK_PATCH = 'undo-release-own-task';

/**
 * Marks the runs whose end writes each stream's catalog rows, unloads its cartridge and unzones it
 * in one local activity, `closeStream` (docs/adr/057); earlier runs did the three one after another,
 * and replay must see them do so. It is asked for first, and stands for every change of this
 * workflow before it: a run with its marker takes the new side of each patch above without writing
 * that patch's marker (each marker is two events and a search-attribute upsert, docs/adr/057); a run
 * without it asks each patch where it always did.
 */
const CLOSE_STREAMS_AT_ONCE_PATCH = 'close-streams-at-once';

/** Backs up one target to tape: the SAN operation of kind `backup`, `split-backup` or `snapshot-backup`. */
export async function sanOperation(input: BackupRequest): Promise<BackupReport> {
  const { workflowId } = workflowInfo();
  const op = new OperationState(workflowId, requestedKind(input), input.target);

  // 1. Accept the request (from a person, a schedule or another workflow).
  const req = acceptInput(BackupRequestSchema, input, 'backup request');
  const kind = acceptKind(req);
  op.kind = kind;
  upsertSearchAttributes([
    { key: KuraKind, value: JobKind.Backup },
    { key: KuraTarget, value: label(req.target) },
    { key: KuraSite, value: label(req.site) },
  ]);
  const current = patched(CLOSE_STREAMS_AT_ONCE_PATCH);
  /** Whether this run takes an earlier change: every run since docs/adr/057 does, others as recorded. */
  const since = (patch: string): boolean => current || patched(patch);
  const local = since(LOCAL_CONTROL_STEPS_PATCH);
  // Runs before the resolve-and-reserve change resolved as an activity of their own, which ended
  // the workflow's first task in the `resolve` phase.
  const remote = controlActivities(req.tuning);
  const control = local ? localControlActivities(req.tuning) : remote;
  const pool = local ? backupPoolActivities(req.tuning) : poolActivities(req.tuning);

  // 2. Resolve what the processing needs: the volume behind the target, its pair and its
  // application's hook, the time, the destination.
  op.enter('resolve', `resolving ${req.target}`);
  const folded = local && since(LOCAL_RESOLVE_RESERVE_PATCH);
  const fromStore = req.fromStore !== undefined && since(STORE_SOURCE_PATCH) ? req.fromStore : undefined;
  const storeSource =
    fromStore &&
    (await resolveStoreSource(req, kind, fromStore.backupId).catch((err) =>
      op.fail(`${kind} of ${req.target} refused`, err),
    ));
  const found = storeSource
    ? storeSource.found
    : await resolveOperation(folded ? control : remote, req, kind).catch((err) =>
        op.fail(`${kind} of ${req.target} refused`, err),
      );
  const { resolved } = found;

  // 3. Plan: the launches of the array's functions, the chunks, the streams, and the order in
  // which the devices are launched, each with its expected duration.
  op.enter('plan', 'planning');
  const pieces = planPieces(resolved.sizeBytes, chunkSizeFor(resolved.sizeBytes, req.chunks, req.chunkSize));
  const plan: OperationPlanInput = {
    ...operationPlanInput(kind, req, found),
    copy: { pieces, streams: req.streams, mode: req.mode },
    snapshot: snapshotNameFor(workflowId),
  };
  op.steps = planOperation(plan);
  op.bytesTotal = resolved.sizeBytes;
  // Seed 003's zoning and LUN security, planned from step 2's findings: a refused copy is refused
  // here, before any device is touched, and is told to the events feed like any failed job.
  let servers: string[] | undefined;
  try {
    servers = copyServers(req.target, found.access, req.server);
  } catch (err) {
    if (since(ACCESS_REFUSAL_EVENT_PATCH))
      await notifyJobFailure(control, { subject: `${kind} of ${req.target} refused`, workflowId, site: req.site, err });
    return op.fail(`${kind} of ${req.target} refused`, err);
  }
  const backupId = backupIdFor(req.target, req.requestedAt);
  const startedAt = new Date().toISOString();
  const job: CopyJob = {
    req,
    resolved,
    pieces,
    backupId,
    workflowId,
    // A store backup's copy holds the data of the store backup's instant, not of the copy's.
    dataTime: storeSource ? storeSource.source.dataTime : startedAt,
    op,
    control,
    pool,
    undo: new Compensations(),
    tapeEnd: {},
    lanes: [],
    marks: [],
    ...(storeSource
      ? { store: { backupId: storeSource.source.backupId, indexDigest: storeSource.source.indexDigest } }
      : {}),
  };
  const link = storeSource ? { backupId: storeSource.source.backupId, sha256: storeSource.source.sha256 } : undefined;
  op.streamView = () => job.lanes.map((l) => ({ ...laneView(l), bytesTotal: resolved.sizeBytes }));
  const extraJobs: string[] = [];
  // Decided once, at the undo's first release, so every release of one undo is tried alike.
  let patientUndo: boolean | undefined;
  const undoReleaseActivities = (): Pick<PoolActivities, 'releaseStreams'> =>
    (patientUndo ??= since(PATIENT_UNDO_RELEASE_PATCH)) ? patientReleaseActivities(req.tuning, local) : pool;
  // The undo's release takes the drives from the job: the erases and unloads unwound before it must
  // be recorded first, or a lost worker's re-run of them would act on a drive another job holds.
  const undoRelease = (): Pick<PoolActivities, 'releaseStreams'> => ({
    releaseStreams: async (...args) => {
      if (job.undoOwnTask) await endWorkflowTask();
      return undoReleaseActivities().releaseStreams(...args);
    },
  });
  job.nextCartridge = (full, piece) => nextCartridge(job, extraJobs, full, piece, undoRelease);
  const launch: ArrayLaunch = {
    op,
    undo: job.undo,
    control,
    ref: { site: req.site, array: resolved.array, volume: resolved.volume },
    target: req.target,
    plan,
    tuning: req.tuning,
  };

  // 4. Launch the function software according to the plan; 5. collect each result.
  op.enter('launch', kind === 'backup' ? `reserving ${req.streams} stream${req.streams === 1 ? '' : 's'}` : kind);
  try {
    const image = await launchImage(launch, kind);
    if (image.readPath !== undefined) job.readPath = image.readPath;
    if (image.at !== undefined) job.dataTime = image.at;
    op.activity = `reserving ${req.streams} stream${req.streams === 1 ? '' : 's'}`;
    // Registered before the reservation, not after: a cancel that lands while the pool grants would
    // otherwise leave the grant held by a job that is gone. Releasing what a job never got is a no-op.
    job.undo.add('release', () => undoRelease().releaseStreams(req.site, { job: workflowId, tapeUsage: job.tapeEnd }));
    const reservation = {
      job: workflowId,
      streams: req.streams,
      array: resolved.array,
      ...(servers ? { servers } : {}),
      // In either mode any stream may have to hold the whole image.
      bytes: resolved.sizeBytes + pieces.length * PIECE_HEADER_BYTES,
      waitMs: req.tuning.reserveWaitMs,
      waitForUnavailable: req.tuning.waitForUnavailable,
      // Every stream direct where a copy device can carry it (docs/adr/029); absent before direct copy.
      ...(req.streamKind === 'direct' ? { direct: req.streams } : {}),
    };
    const grant = await op.step('reserve', () =>
      folded ? reserveAtOnceOrWait(pool, req.site, reservation) : pool.reserveStreams(req.site, reservation),
    );
    job.lanes = grant.streams.map((s) => newLane(req.site, workflowId, resolved.array, s));

    const begin = () =>
      control.beginBackup({
        ...resolved,
        backupId,
        job: workflowId,
        startedAt,
        dataTime: job.dataTime,
        ...(link ? { fromStore: link } : {}),
      });

    // Seed 004 steps 1020–1080 / 3000–3010: zone every path and mount every cartridge up front,
    // so a failover finds its stream ready. Runs since the change record the backup's start, zone
    // and mount all at once: three steps on different things, one round trip of the workflow
    // instead of three (docs/adr/049); each undo is registered by the step it undoes, as before.
    if (since(PREPARE_AT_ONCE_PATCH)) {
      const [begun, prepared] = await Promise.allSettled([begin(), prepareLanes(job, true)]);
      if (begun.status === 'rejected') throw begun.reason;
      if (prepared.status === 'rejected') throw prepared.reason;
    } else {
      await begin();
      await prepareLanes(job);
    }
    op.activity = `copying ${pieces.length} chunk${pieces.length === 1 ? '' : 's'} in ${req.mode} mode`;
    const written: PieceRecord[] = since(COPY_BY_STREAM_PATCH)
      ? await copyByStream(job)
      : req.mode === 'parallel'
        ? await copyParallel(job)
        : await copyFailover(job);
    // The pool knows every faulty device before the job goes on to report.
    await Promise.all(job.marks);

    // 5. Collect: read every copy back while its cartridges are mounted, then record it.
    op.enter('collect', 'verifying what was written');
    const kept = await op.step('verify', () => verifyCopies(job, written));
    if (link?.sha256 && kept.sha256 !== link.sha256)
      throw ApplicationFailure.nonRetryable(
        `the tape copy of store backup ${link.backupId} reads back as ${kept.sha256}, but the store recorded the volume as ${link.sha256}; the copy is not kept — run \`kura store verify ${link.backupId}\``,
        ErrorType.ChecksumMismatch,
      );
    op.activity = 'recording the backup';
    const endedAt = new Date().toISOString();
    const streams = job.lanes.map((l) => laneRecord(backupId, l));
    // The backup label is recorded with the image, so a restore finds it where it finds the pieces.
    const record = await op.step('record', () =>
      control.completeBackup({
        backupId,
        endedAt,
        sha256: kept.sha256,
        pieces: kept.pieces,
        streams,
        ...(launch.backupMode ? { backupMode: launch.backupMode } : {}),
      }),
    );

    // Seed 004 step 1170: each cartridge also carries its own catalog rows, after its data.
    const ownTask = since(TAPE_END_OWN_TASK_PATCH);
    if (current) {
      // Rows, unload and unzone as one step per stream (docs/adr/057).
      await op.step('tape-catalog', () => op.step('unload', () => closeLanes(job, kept.pieces, record, streams)));
    } else {
      await op.step('tape-catalog', () => writeTapeCatalogs(job, kept.pieces, record, streams, ownTask));
      await op.step('unload', () => unloadLanes(job));
    }
    // The release in a task of its own: a lost worker's re-run of the steps above then finds the
    // drives still the job's (docs/adr/047). Since docs/adr/053 the release is an activity, whose
    // scheduling ends the task; before, a timer ended it and the release ran locally in the next.
    const releaseEndsTask = ownTask && since(RELEASE_ENDS_TASK_PATCH);
    if (ownTask && !releaseEndsTask) await endWorkflowTask();
    await op.step('release', async () => {
      // The data is complete: a pool that does not answer for a while must not fail the backup.
      const release = releaseEndsTask
        ? patientReleaseActivities(req.tuning, false)
        : patched(PATIENT_RELEASE_PATCH)
          ? patientReleaseActivities(req.tuning, local)
          : pool;
      await release.releaseStreams(req.site, { job: workflowId, tapeUsage: job.tapeEnd });
      for (const extra of extraJobs) await release.releaseStreams(req.site, { job: extra, tapeUsage: job.tapeEnd });
    });
    job.undo.done('release');
    for (const extra of extraJobs) job.undo.done(`release:${extra}`);

    // The image's own end: the pair resynchronised, or the snapshot's space given back.
    if (image.from === 'replica') {
      await op.step('resync', () => control.resyncPair(launch.ref));
      job.undo.done('resync');
    } else if (image.from === 'snapshot') {
      await op.step('delete-snapshot', () => control.deleteSnapshot({ ref: launch.ref, name: image.name ?? '' }));
      job.undo.done('delete-snapshot');
    }

    // 6. Report the result to the requester.
    op.enter('report', 'done');
    const firstCopy = kept.pieces.filter((p) => p.copy === kept.copies[0]);
    const report: BackupReport = {
      backupId,
      workflowId,
      ...resolved,
      sha256: kept.sha256,
      pieces: kept.pieces.map((p) => ({
        copy: p.copy,
        piece: p.piece,
        stream: p.stream,
        library: p.library,
        tape: p.tape,
        position: p.position,
        sizeBytes: p.sizeBytes,
        sha256: p.sha256,
      })),
      server: job.lanes.find((l) => l.stream.stream === firstCopy[firstCopy.length - 1]?.stream)?.stream.server ?? '',
      mode: req.mode,
      streams,
      startedAt,
      endedAt,
      kind: image.kind,
      source: link
        ? { from: 'store', name: link.backupId, at: job.dataTime }
        : { from: image.from, ...(image.name ? { name: image.name } : {}), ...(image.at ? { at: image.at } : {}) },
      ...(link ? { fromStore: link } : {}),
      changes: op.changes,
      // Stored with the image: how long the application was in backup mode, and (PostgreSQL) the
      // backup label a restored copy needs to start.
      ...(launch.backupMode ? { backupMode: launch.backupMode } : {}),
    };
    op.enter(
      'done',
      `backed up ${resolved.sizeBytes} bytes as ${backupId} (${kept.copies.length} cop${kept.copies.length === 1 ? 'y' : 'ies'})`,
    );
    return report;
  } catch (err) {
    await Promise.all(job.marks);
    job.undoOwnTask = since(UNDO_RELEASE_OWN_TASK_PATCH);
    await job.undo.unwind();
    await reportBackupFailure(control, {
      subject: `backup of ${req.target} failed`,
      workflowId,
      backupId,
      err,
      streams: job.lanes.map((l) => laneRecord(backupId, l)),
    });
    if (isCancellation(err)) throw err;
    return op.fail(`${op.kind} of ${req.target} failed at ${op.currentStep ?? op.phase}`, err);
  }
}

/**
 * The reservation of a backup whose control steps run locally (docs/adr/045): a grant the pool can
 * make at once is asked for inside the workflow task, without a task-queue round trip; a job that
 * would have to wait (or whose local attempt failed for any other reason) asks again as an activity,
 * which joins the pool's queue and heartbeats for as long as `waitMs`. The job's release is
 * registered before either, and releasing what was never granted is a no-op.
 */
async function reserveAtOnceOrWait(
  pool: PoolActivities,
  site: string,
  reservation: Parameters<PoolActivities['reserveStreams']>[1],
): Promise<Grant> {
  try {
    const now = await pool.reserveStreamsNow(site, reservation);
    if (!('refused' in now)) return now;
  } catch (err) {
    if (isCancellation(err)) throw err;
  }
  return pool.reserveStreams(site, reservation);
}

/**
 * Step 3's access plan (seed 003's zoning and LUN security, docs/adr/031): the backup servers the
 * pool may give the copy's streams. A company's volume is copied by its owner's admitted servers
 * only; a named server must be one of them (AccessDenied, naming why, otherwise). A volume no
 * company owns leaves the pool free, or takes the named server; the copy checks its mask.
 */
function copyServers(
  target: string,
  access: SanAccessPlan | undefined,
  server: string | undefined,
): string[] | undefined {
  if (!access) return server === undefined ? undefined : [server];
  if (server !== undefined) {
    const found = access.servers.find((s) => s.name === server);
    if (!found)
      throw ApplicationFailure.nonRetryable(
        `${server} is not a backup server of this site; name one of ${access.servers.map((s) => s.name).join(', ')}`,
        ErrorType.AccessDenied,
      );
    if (found.refused !== undefined) throw ApplicationFailure.nonRetryable(found.refused, ErrorType.AccessDenied);
    return [server];
  }
  const allowed = access.servers.filter((s) => s.refused === undefined).map((s) => s.name);
  if (allowed.length === 0)
    throw ApplicationFailure.nonRetryable(
      `no backup server may copy ${target}, a volume of company ${access.owner}: ${access.servers.map((s) => s.refused).join('; ')}`,
      ErrorType.AccessDenied,
    );
  return allowed;
}

/**
 * Step 2 for a copy of a store backup (docs/adr/042): the store backup's target, volume and size,
 * and what its chunks are read by. It is copied as it is, LAN-free: there is no array function to
 * launch, and a copy device reads volumes, not the store.
 */
async function resolveStoreSource(
  req: { site: string; target: string; streamKind?: string | undefined },
  kind: EngineKind,
  backupId: string,
): Promise<{ found: Awaited<ReturnType<typeof resolveOperation>>; source: StoreCopySource & { backupId: string } }> {
  if (kind !== 'backup' || req.streamKind === 'direct')
    throw ApplicationFailure.nonRetryable(
      `a store backup is copied to tape as it is, through a backup server: ask for kind backup, method direct and LAN-free streams, not ${kind}${req.streamKind === 'direct' ? ' on direct streams' : ''}`,
      ErrorType.InvalidInput,
    );
  const source = await storeTapeActivities().resolveStoreCopy({ backupId });
  if (source.resolved.site !== req.site || source.resolved.target !== req.target)
    throw ApplicationFailure.nonRetryable(
      `store backup ${backupId} is of ${source.resolved.target} in site ${source.resolved.site}, but the request names ${req.target} in ${req.site}; name the store backup's own target`,
      ErrorType.InvalidInput,
    );
  return {
    found: { resolved: source.resolved, pair: null, hook: { kind: 'none', timeoutMs: 0 } },
    source: { ...source, backupId },
  };
}

/** The kind a request names before it is validated (for the plan query of a refused request). */
function requestedKind(input: BackupRequest): string {
  const i = input as Partial<BackupRequest>;
  return i.method !== undefined ? kindOfMethod(i.method) : (i.kind ?? 'backup');
}

/** `method` names a kind too; both may be given only when they agree. */
function acceptKind(req: { kind: EngineKind; method?: BackupRequest['method'] }): EngineKind {
  if (req.method === undefined) return req.kind;
  const byMethod = kindOfMethod(req.method) as EngineKind;
  if (req.kind !== 'backup' && req.kind !== byMethod)
    throw ApplicationFailure.nonRetryable(
      `the request asks for kind ${req.kind} but method ${req.method} (${byMethod}); give one of them`,
      ErrorType.InvalidInput,
    );
  return byMethod;
}

/** The image the copy to tape reads, and where it came from. */
interface Image {
  /** The kind that ran: the one asked for, unless step 5 changed it. */
  kind: EngineKind;
  from: 'volume' | 'replica' | 'snapshot';
  readPath?: string;
  name?: string;
  at?: string;
}

/**
 * Steps 4 and 5 before the copy to tape: the image it reads. A split-backup whose pair does not get
 * in sync within its wait re-plans as a snapshot-backup (the volume is backed up all the same, by
 * the other function of the array).
 */
async function launchImage(l: ArrayLaunch, kind: EngineKind): Promise<Image> {
  if (kind === 'backup') return { kind, from: 'volume' };
  if (kind === 'split-backup') {
    const synced = await syncPair(l);
    if (synced.inSync) {
      const pair = await splitPair(l);
      return { kind, from: 'replica', readPath: pair.readPath, name: pair.replica, at: pair.splitAt };
    }
    const why = `the pair of ${l.ref.array}/${l.ref.volume} was not in sync within ${l.plan.pairWaitMs} ms (${synced.pair.state}, ${synced.pair.copiedBytes} of ${synced.pair.totalBytes} bytes copied)`;
    l.op.replan('pair-sync', replanAsSnapshot(l.op.steps, l.plan, why), 'split-backup became snapshot-backup', why);
    l.op.kind = 'snapshot-backup';
  }
  const name = l.plan.snapshot ?? snapshotNameFor(workflowInfo().workflowId);
  const snap = await takeSnapshot(l, name);
  return { kind: 'snapshot-backup', from: 'snapshot', readPath: snap.readPath, name: snap.name, at: snap.createdAt };
}

/**
 * Step 5 on a full cartridge: one more stream is reserved (under its own job key, released with the
 * others) with a cartridge that has room for the chunks left, zoned and mounted; the copy goes on
 * there from the chunk that did not fit. The full cartridge keeps the chunks it holds.
 */
async function nextCartridge(
  job: CopyJob,
  extraJobs: string[],
  full: Lane,
  piece: PiecePlan,
  undoRelease: () => Pick<PoolActivities, 'releaseStreams'>,
): Promise<Lane> {
  const { req, resolved, op, pool } = job;
  const key = `${job.workflowId}+tape${extraJobs.length + 1}`;
  const left = job.pieces.filter((p) => p.piece >= piece.piece);
  const stream = Math.max(...job.lanes.map((l) => l.stream.stream)) + 1;
  const why = `cartridge ${full.stream.tape} in ${full.stream.library}/${full.stream.drive} filled at chunk ${piece.piece} (position ${full.position}); it keeps the ${full.pieces} chunk${full.pieces === 1 ? '' : 's'} written`;
  op.replan(
    `copy:${piece.piece}`,
    replanNextCartridge(
      op.steps,
      piece.piece,
      stream,
      `reserve a stream with another cartridge and mount it for chunks ${piece.piece}–${job.pieces.length - 1}`,
    ),
    `chunks ${piece.piece}–${job.pieces.length - 1} continue on another cartridge`,
    why,
  );
  op.activity = why;
  return op.step(`load:${stream}`, async () => {
    job.undo.add(`release:${key}`, () => undoRelease().releaseStreams(req.site, { job: key, tapeUsage: job.tapeEnd }));
    const grant = await pool.reserveStreams(req.site, {
      job: key,
      streams: 1,
      array: resolved.array,
      bytes: left.reduce((n, p) => n + p.length + PIECE_HEADER_BYTES, 0),
      waitMs: req.tuning.reserveWaitMs,
      waitForUnavailable: req.tuning.waitForUnavailable,
    });
    extraJobs.push(key);
    const granted = grant.streams[0];
    if (!granted) throw ApplicationFailure.nonRetryable(`the pool granted no stream for ${key}`, ErrorType.NoResources);
    const lane = newLane(req.site, job.workflowId, resolved.array, { ...granted, stream });
    job.lanes.push(lane);
    await prepareLane(job, lane);
    op.note(
      `load:${stream}`,
      `stream ${stream}: ${granted.server} → ${granted.library}/${granted.drive} with ${granted.tape}`,
    );
    return lane;
  });
}
