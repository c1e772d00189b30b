/**
 * The six-step SAN management sequence of seed 003 — accept, resolve, plan, launch, collect,
 * report — for a backup of one volume to tape over several disjoint streams (seed 004): in
 * failover mode the copy is cut into chunks that move to the next stream when a device fails or
 * stops answering; in parallel mode every stream writes a whole copy. Devices and zones are
 * released on every path (success, failure, cancellation) and the catalog never claims a partial
 * backup.
 */
import { isCancellation, patched, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import { BackupRequestSchema, type BackupReport, type BackupRequest, type ResolvedTarget } from '../domain/jobs';
import { backupIdFor, PIECE_HEADER_BYTES, type PieceRecord } from '../domain/catalog';
import { KuraKind, KuraSite, KuraTarget, JobKind } from '../search-attributes';
import { chunkSizeFor, planBackupSteps, planPieces } from './plan';
import { backupPoolActivities, controlActivities, localControlActivities, poolActivities } from './proxies';
import { acceptInput, reportBackupFailure } from './failures';
import { Compensations } from './compensations';
import { OperationState } from './operation-state';
import {
  copyFailover,
  copyParallel,
  prepareLanes,
  laneRecord,
  laneView,
  newLane,
  unloadLanes,
  verifyCopies,
  writeTapeCatalogs,
  type CopyJob,
} from './streams';

/**
 * Marks the runs whose control steps after the resolve, and the release, are local activities
 * (docs/adr/020-fleet-cost.md); earlier runs scheduled each as an activity of its own, and replay
 * must see them do so.
 */
const LOCAL_CONTROL_STEPS_PATCH = 'local-control-steps';

/** Backs up one target to tape: the SAN operation of kind `backup`. */
export async function sanOperation(input: BackupRequest): Promise<BackupReport> {
  const { workflowId } = workflowInfo();
  const op = new OperationState(workflowId, 'backup', input.target);

  // 1. Accept the request (from a person, a schedule or another workflow).
  const req = acceptInput(BackupRequestSchema, input, 'backup request');
  upsertSearchAttributes([
    { key: KuraKind, value: JobKind.Backup },
    { key: KuraTarget, value: req.target },
    { key: KuraSite, value: req.site },
  ]);
  const local = patched(LOCAL_CONTROL_STEPS_PATCH);
  // Resolving stays an activity of its own: it ends the workflow's first task in the `resolve`
  // phase, which is where a person watching the progress sees the request accepted.
  const remote = controlActivities(req.tuning);
  const control = local ? localControlActivities(req.tuning) : remote;
  const pool = local ? backupPoolActivities(req.tuning) : poolActivities(req.tuning);

  // 2. Resolve what the processing needs: the volume behind the target, the time, the destination.
  op.enter('resolve', `resolving ${req.target}`);
  const resolved: ResolvedTarget = await remote
    .resolveTarget({ site: req.site, target: req.target })
    .catch((err) => op.fail(`backup of ${req.target} refused`, err));

  // 3. Plan: the chunks, the streams, and the order in which the devices are launched.
  op.enter('plan', 'planning');
  const pieces = planPieces(resolved.sizeBytes, chunkSizeFor(resolved.sizeBytes, req.chunks, req.chunkSize));
  op.steps = planBackupSteps(req.target, pieces, req.streams, req.mode);
  op.bytesTotal = resolved.sizeBytes;
  const backupId = backupIdFor(req.target, req.requestedAt);
  const startedAt = new Date().toISOString();
  const job: CopyJob = {
    req,
    resolved,
    pieces,
    backupId,
    workflowId,
    dataTime: startedAt,
    op,
    control,
    pool,
    undo: new Compensations(),
    tapeEnd: {},
    lanes: [],
    marks: [],
  };
  op.streamView = () => job.lanes.map((l) => ({ ...laneView(l), bytesTotal: resolved.sizeBytes }));

  // 4. Launch the function software according to the plan; 5. collect each result.
  op.enter('launch', `reserving ${req.streams} stream${req.streams === 1 ? '' : 's'}`);
  try {
    const grant = await op.step('reserve', () =>
      pool.reserveStreams(req.site, {
        job: workflowId,
        streams: req.streams,
        array: resolved.array,
        // In either mode any stream may have to hold the whole image.
        bytes: resolved.sizeBytes + pieces.length * PIECE_HEADER_BYTES,
        waitMs: req.tuning.reserveWaitMs,
        waitForUnavailable: req.tuning.waitForUnavailable,
      }),
    );
    job.undo.add('release', () => pool.releaseStreams(req.site, { job: workflowId, tapeUsage: job.tapeEnd }));
    job.lanes = grant.streams.map((s) => newLane(req.site, workflowId, resolved.array, s));

    await control.beginBackup({ ...resolved, backupId, job: workflowId, startedAt, dataTime: startedAt });

    // Seed 004 steps 1020–1080 / 3000–3010: zone every path and mount every cartridge up front,
    // so a failover finds its stream ready.
    await prepareLanes(job);
    op.activity = `copying ${pieces.length} chunk${pieces.length === 1 ? '' : 's'} in ${req.mode} mode`;
    const written: PieceRecord[] = req.mode === 'parallel' ? await copyParallel(job) : await copyFailover(job);
    // The pool knows every faulty device before the job goes on to report.
    await Promise.all(job.marks);

    // 5. Collect: read every copy back while its cartridges are mounted, then record it.
    op.enter('collect', 'verifying what was written');
    const kept = await op.step('verify', () => verifyCopies(job, written));
    op.activity = 'recording the backup';
    const endedAt = new Date().toISOString();
    const streams = job.lanes.map((l) => laneRecord(backupId, l));
    const record = await op.step('record', () =>
      control.completeBackup({ backupId, endedAt, sha256: kept.sha256, pieces: kept.pieces, streams }),
    );

    // Seed 004 step 1170: each cartridge also carries its own catalog rows, after its data.
    await op.step('tape-catalog', () => writeTapeCatalogs(job, kept.pieces, record, streams));
    await op.step('unload', () => unloadLanes(job));
    await op.step('release', () => pool.releaseStreams(req.site, { job: workflowId, tapeUsage: job.tapeEnd }));
    job.undo.done('release');

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
    };
    op.enter(
      'done',
      `backed up ${resolved.sizeBytes} bytes as ${backupId} (${kept.copies.length} cop${kept.copies.length === 1 ? 'y' : 'ies'})`,
    );
    return report;
  } catch (err) {
    await Promise.all(job.marks);
    await job.undo.unwind();
    await reportBackupFailure(control, {
      subject: `backup of ${req.target} failed`,
      workflowId,
      backupId,
      err,
      streams: job.lanes.map((l) => laneRecord(backupId, l)),
    });
    if (isCancellation(err)) throw err;
    return op.fail(`backup of ${req.target} failed at ${op.currentStep ?? op.phase}`, err);
  }
}
