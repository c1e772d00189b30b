/**
 * The six-step SAN management sequence of seed 003 — accept, resolve, plan, launch, collect,
 * report — for a backup of one volume to tape through one reserved stream. Devices are released
 * on every path (success, failure, cancellation) and the catalog never claims a partial backup.
 */
import {
  CancellationScope,
  isCancellation,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { ResolvedTarget } from '../activities/control';
import type { CopyPieceResult } from '../activities/copy';
import { BackupRequestSchema, type BackupReport, type BackupRequest } from '../domain/jobs';
import { backupIdFor, PIECE_HEADER_BYTES, type PieceRecord } from '../domain/catalog';
import type { Stream } from '../domain/pool';
import { KuraKind, KuraSite, KuraTarget, JobKind } from '../searchAttributes';
import { planBackupSteps, planPieces, type PiecePlan } from './plan';
import { controlActivities, copyActivities, poolActivities } from './proxies';
import { acceptInput, rootFailure } from './failures';
import { Compensations } from './compensations';
import { OperationState } from './operation-state';

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
  const control = controlActivities(req.tuning);
  const pool = poolActivities(req.tuning);

  // 2. Resolve what the processing needs: the volume behind the target, the time, the destination.
  op.enter('resolve', `resolving ${req.target}`);
  const resolved = await control.resolveTarget({ site: req.site, target: req.target }).catch((err) => op.fail(`backup of ${req.target} refused`, err));

  // 3. Plan: the pieces and the order in which storage, library and copy device are launched.
  op.enter('plan', 'planning');
  const pieces = planPieces(resolved.sizeBytes, req.tuning.pieceSize);
  op.steps = planBackupSteps(req.target, pieces);
  op.bytesTotal = resolved.sizeBytes;
  const backupId = backupIdFor(req.target, req.requestedAt);

  // 4. Launch the function software according to the plan; 5. collect each result.
  op.enter('launch', 'reserving a stream');
  const startedAt = new Date().toISOString();
  const undo = new Compensations();
  let tapeEnd: Record<string, number> = {};
  try {
    const grant = await op.step('reserve', () =>
      pool.reserveStreams(req.site, {
        job: workflowId,
        streams: 1,
        array: resolved.array,
        bytes: resolved.sizeBytes + pieces.length * PIECE_HEADER_BYTES,
        waitMs: req.tuning.reserveWaitMs,
      }),
    );
    undo.add('release', () => pool.releaseStreams(req.site, { job: workflowId, tapeUsage: tapeEnd }));
    const stream = grant.streams[0] as Stream;
    const tapeAddr = { site: req.site, library: stream.library, drive: stream.drive, tape: stream.tape };
    op.note('reserve', `${stream.server} → ${stream.switches.join(' → ') || 'direct'} → ${stream.library}/${stream.drive} with ${stream.tape}`);

    await control.beginBackup({
      backupId,
      job: workflowId,
      site: req.site,
      target: req.target,
      array: resolved.array,
      volume: resolved.volume,
      startedAt,
      dataTime: startedAt,
      sizeBytes: resolved.sizeBytes,
    });

    const mounted = await op.step('load', () => control.loadTape(tapeAddr));
    undo.add('unload', () => control.unloadTape(tapeAddr));
    let position = mounted.endOfData;
    tapeEnd = { [stream.tape]: position };

    const copy = copyActivities(stream.server, req.tuning);
    const written: PieceRecord[] = [];
    for (const piece of pieces) {
      op.activity = `copying piece ${piece.piece + 1} of ${pieces.length} to ${stream.tape}`;
      tapeEnd = { [stream.tape]: position + PIECE_HEADER_BYTES + piece.length };
      const result = await op.step(`copy:${piece.piece}`, () =>
        copy.copyPiece(copyRequest(req.site, stream, resolved, piece, position, { backupId, job: workflowId, dataTime: startedAt })),
      );
      written.push(pieceRecord(backupId, req.target, workflowId, stream, piece, result, startedAt));
      position = result.nextPosition;
      tapeEnd = { [stream.tape]: position };
      op.bytesDone += piece.length;
    }

    // 5. Collect: read the image back while the cartridge is mounted, then record it.
    op.enter('collect', `verifying ${stream.tape}`);
    const verified = await op.step('verify', () =>
      copyActivities(stream.server, req.tuning, resolved.sizeBytes).verifyImage({
        site: req.site,
        source: tapeAddr,
        pieces: written.map((p) => ({ position: p.position, expect: { backupId, piece: p.piece, sizeBytes: p.sizeBytes }, sha256: p.sha256 })),
      }),
    );
    op.activity = 'recording the backup';
    await op.step('unload', () => control.unloadTape(tapeAddr));
    undo.done('unload');
    await op.step('record', () => control.completeBackup({ backupId, endedAt: new Date().toISOString(), sha256: verified.sha256, pieces: written }));
    await op.step('release', () => pool.releaseStreams(req.site, { job: workflowId, tapeUsage: tapeEnd }));
    undo.done('release');

    // 6. Report the result to the requester.
    op.enter('report', 'done');
    const report: BackupReport = {
      backupId,
      workflowId,
      site: req.site,
      target: req.target,
      array: resolved.array,
      volume: resolved.volume,
      sizeBytes: resolved.sizeBytes,
      sha256: verified.sha256,
      pieces: written.map((p) => ({ piece: p.piece, library: p.library, tape: p.tape, position: p.position, sizeBytes: p.sizeBytes, sha256: p.sha256 })),
      server: stream.server,
      startedAt,
      endedAt: new Date().toISOString(),
    };
    op.enter('done', `backed up ${resolved.sizeBytes} bytes as ${backupId}`);
    return report;
  } catch (err) {
    await undo.unwind();
    // The catalog and the people are told even when the job is being cancelled.
    await CancellationScope.nonCancellable(async () => {
      const root = rootFailure(err);
      await control.failBackup({ backupId, error: `${root.type}: ${root.message}`, endedAt: new Date().toISOString() }).catch(() => undefined);
      await control.notify({ subject: `backup of ${req.target} failed`, detail: { workflowId, backupId, type: root.type, error: root.message } }).catch(() => undefined);
    });
    if (isCancellation(err)) throw err;
    return op.fail(`backup of ${req.target} failed at ${op.currentStep ?? op.phase}`, err);
  }
}


function copyRequest(
  site: string,
  stream: Stream,
  resolved: ResolvedTarget,
  piece: PiecePlan,
  position: number,
  job: { backupId: string; job: string; dataTime: string },
) {
  return {
    site,
    devices: [stream.server, ...stream.switches, stream.library, stream.drive, stream.tape, ...(stream.copyDevice ? [stream.copyDevice] : [])],
    source: { array: resolved.array, volume: resolved.volume, offset: piece.offset, length: piece.length, volumeSize: resolved.sizeBytes },
    target: { site, library: stream.library, drive: stream.drive, tape: stream.tape, position },
    header: { backupId: job.backupId, target: resolved.target, job: job.job, copy: 0, piece: piece.piece, offset: piece.offset, sizeBytes: piece.length, dataTime: job.dataTime },
  };
}

function pieceRecord(backupId: string, target: string, job: string, stream: Stream, piece: PiecePlan, r: CopyPieceResult, dataTime: string): PieceRecord {
  return {
    backupId,
    copy: 0,
    piece: piece.piece,
    target,
    job,
    stream: stream.stream,
    startedAt: r.startedAt,
    endedAt: r.endedAt,
    dataTime,
    library: stream.library,
    tape: stream.tape,
    position: r.position,
    offset: piece.offset,
    sizeBytes: r.bytes,
    sha256: r.sha256,
  };
}
