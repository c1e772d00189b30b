/**
 * Restore (seed 004 Fig. 10, steps 2000–2110): find the backup's pieces in the catalog, check the
 * destination, then for each cartridge in turn reserve library + cartridge + server + path, mount,
 * read the pieces in order verifying each checksum, unmount and release; finally verify the whole
 * file and move it into place. A failed restore leaves nothing behind at the destination.
 */
import { isCancellation, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import { RestoreRequestSchema, type RestoreReport, type RestoreRequest } from '../domain/jobs';
import type { Stream } from '../domain/pool';
import { KuraKind, KuraSite, KuraTarget, JobKind } from '../searchAttributes';
import { groupByTape, planRestoreSteps } from './plan';
import { acceptInput } from './failures';
import { Compensations } from './compensations';
import { OperationState } from './operation-state';
import { controlActivities, copyActivities, poolActivities } from './proxies';

/** Restores one backup into a new file under a restore root. */
export async function restore(input: RestoreRequest): Promise<RestoreReport> {
  const { workflowId } = workflowInfo();
  const op = new OperationState(workflowId, 'restore', input.backupId);

  // 2000–2020: accept the user's choice of data and destination.
  const req = acceptInput(RestoreRequestSchema, input, 'restore request');
  const control = controlActivities(req.tuning);
  const pool = poolActivities(req.tuning);

  // 2030: find where the pieces lie.
  op.enter('resolve', `looking up ${req.backupId} in the catalog`);
  const found = await control.findBackup({ backupId: req.backupId }).catch((err) => op.fail(`restore of ${req.backupId} refused`, err));
  const { backup } = found;
  upsertSearchAttributes([
    { key: KuraKind, value: JobKind.Restore },
    { key: KuraTarget, value: backup.target },
    { key: KuraSite, value: backup.site },
  ]);
  const target = await control.prepareRestore({ destination: req.destination, job: workflowId }).catch((err) => op.fail(`restore of ${req.backupId} refused`, err));

  // Plan: one mount per run of consecutive pieces on the same cartridge.
  op.enter('plan', 'planning');
  const pieces = found.pieces.filter((p) => p.copy === 0);
  const mounts = groupByTape(pieces);
  op.steps = planRestoreSteps(mounts, target.destination);
  op.bytesTotal = backup.sizeBytes;

  // 2040–2110: for each cartridge, reserve, load, read, unload, release.
  op.enter('launch', 'restoring');
  const startedAt = new Date().toISOString();
  const undo = new Compensations();
  undo.add('discard the partial file', () => control.discardRestore({ partial: target.partial }));
  try {
    for (const [i, m] of mounts.entries()) {
      const job = `${workflowId}#${i}`;
      const grant = await op.step(`reserve:${i}`, () =>
        pool.reserveStreams(backup.site, { job, streams: 1, array: backup.array, tape: m.tape, bytes: 0, waitMs: req.tuning.reserveWaitMs }),
      );
      undo.add(`release:${i}`, () => pool.releaseStreams(backup.site, { job }));
      const stream = grant.streams[0] as Stream;
      const addr = { site: backup.site, library: stream.library, drive: stream.drive, tape: stream.tape };
      await op.step(`load:${i}`, () => control.loadTape(addr));
      undo.add(`unload:${i}`, () => control.unloadTape(addr));
      const copy = copyActivities(stream.server, req.tuning);
      for (const p of m.pieces) {
        op.activity = `reading piece ${p.piece + 1} of ${pieces.length} from ${p.tape}`;
        await op.step(`read:${p.piece}`, () =>
          copy.readPiece({
            site: backup.site,
            devices: [stream.server, ...stream.switches, stream.library, stream.drive, stream.tape],
            source: { ...addr, position: p.position },
            expect: { backupId: backup.backupId, piece: p.piece, sizeBytes: p.sizeBytes },
            destination: { path: target.partial, offset: p.offset },
            sha256: p.sha256,
          }),
        );
        op.bytesDone += p.sizeBytes;
      }
      await op.step(`unload:${i}`, () => control.unloadTape(addr));
      undo.done(`unload:${i}`);
      await op.step(`release:${i}`, () => pool.releaseStreams(backup.site, { job }));
      undo.done(`release:${i}`);
    }

    op.enter('collect', 'verifying the restored image');
    const verified = await op.step('finish', () =>
      control.finishRestore({ destination: target.destination, partial: target.partial, sizeBytes: backup.sizeBytes, sha256: backup.sha256 }),
    );

    op.enter('done', `restored ${backup.sizeBytes} bytes to ${target.destination}`);
    return {
      backupId: backup.backupId,
      workflowId,
      destination: target.destination,
      sizeBytes: verified.sizeBytes,
      sha256: verified.sha256,
      pieces: pieces.length,
      startedAt,
      endedAt: new Date().toISOString(),
    };
  } catch (err) {
    await undo.unwind();
    if (isCancellation(err)) throw err;
    return op.fail(`restore of ${req.backupId} failed at ${op.currentStep ?? op.phase}`, err);
  }
}
