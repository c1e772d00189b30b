/**
 * Restore (seed 004 Fig. 10, steps 2000–2110): find the backup's pieces in the catalog, check the
 * destination, then for each cartridge in turn reserve library + cartridge + server + path, zone
 * the path, mount, read the pieces in order verifying each checksum, unmount, unzone and release;
 * finally verify the whole file and move it into place. When a cartridge cannot be had or read,
 * the pieces still to restore come from another copy (parallel mode keeps one per stream); without
 * one the restore fails naming the cartridge. A cartridge behind a device marked unavailable is given
 * up at once, not waited for in the pool's queue, unless the request asks to wait for such devices
 * (`kura restore --wait`) and no other copy can stand in; the progress then says what it waits for.
 * A failed restore leaves nothing at the destination. A restore to a new volume (`toVolume`) has the
 * array allocate it from its free pool, writes its image the same way, and has the array serve it
 * to hosts once verified; a failed one gives the volume back.
 */
import {
  ApplicationFailure,
  TemporalFailure,
  isCancellation,
  patched,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { RestoreRequestSchema, type PlanStep, type RestoreReport, type RestoreRequest } from '../domain/jobs';
import { DISK_LIBRARY, type PieceRecord } from '../domain/catalog';
import { UnavailableBlockSchema, type Stream, type UnavailableBlock } from '../domain/pool';
import { bringBackHint, describeUnavailable } from '../domain/pool-tables';
import { formatDuration } from '../domain/units';
import { KuraKind, KuraSite, KuraTarget, JobKind } from '../search-attributes';
import { groupByTape, planRestoreSteps, replanRestore, step, zoneName, type Mount } from './plan';
import { acceptInput, notifyJobFailure, rootFailure } from './failures';
import { Compensations } from './compensations';
import { OperationState } from './operation-state';
import { controlActivities, copyActivities, patientReleaseActivities, poolActivities } from './proxies';
import { ErrorType } from '../domain/errors';
import { label } from './labels';
import { STORE_LIBRARY, StoreNameSchema, type StoreFallback, type StoreName } from '../domain/store';
import { storeActivities } from './store-proxies';

/** Marks the runs that tell the events feed of their failure (docs/adr/031); earlier runs only failed. */
const RESTORE_FAILURE_EVENT_PATCH = 'restore-failure-event';

/**
 * Marks the runs that read a backup back through the servers its volume admits only — on a SAN
 * shared by companies, its owner's (docs/adr/031); earlier runs took any server.
 */
const RESTORE_READERS_PATCH = 'restore-readers';

/**
 * Marks the runs that release a cartridge's devices, after its pieces are read or in the undo of a
 * failure, with bounded patience (`patientReleaseActivities`): after a worker kill the site's pool
 * may not answer for about a minute, longer than the five attempts earlier runs replay with.
 */
const PATIENT_RESTORE_RELEASE_PATCH = 'patient-restore-release';

/** Restores one backup into a new file under a restore root, or into a new volume of an array. */
export async function restore(input: RestoreRequest): Promise<RestoreReport> {
  const { workflowId } = workflowInfo();
  const op = new OperationState(workflowId, 'restore', input.backupId);

  // 2000–2020: accept the user's choice of data and destination.
  const req = acceptInput(RestoreRequestSchema, input, 'restore request');
  const control = controlActivities(req.tuning);
  const pool = poolActivities(req.tuning);
  // Decided at the first release, once for the run, so every cartridge's release is tried alike.
  let patientRelease: boolean | undefined;
  const release = (): Pick<typeof pool, 'releaseStreams'> =>
    (patientRelease ??= patched(PATIENT_RESTORE_RELEASE_PATCH)) ? patientReleaseActivities(req.tuning, false) : pool;

  // 2030: find where the pieces lie.
  op.enter('resolve', `looking up ${req.backupId} in the catalog`);
  const found = await control
    .findBackup({ backupId: req.backupId })
    .catch((err) => op.fail(`restore of ${req.backupId} refused`, err));
  const { backup } = found;
  upsertSearchAttributes([
    { key: KuraKind, value: JobKind.Restore },
    { key: KuraTarget, value: label(backup.target) },
    { key: KuraSite, value: label(backup.site) },
  ]);
  // A new volume is allocated on its array (from its free pool) and written like a new file.
  const toVolume = req.toVolume && { site: backup.site, ...req.toVolume, job: workflowId };
  // On a SAN shared by companies, a backup goes back onto its own company's volumes only (ADR 031).
  const source = { backupId: backup.backupId, site: backup.site, array: backup.array, volume: backup.volume };
  const target = await (
    toVolume
      ? control.prepareVolumeRestore({ ...toVolume, sizeBytes: backup.sizeBytes, source })
      : control.prepareRestore({ destination: req.destination ?? '', job: workflowId, source })
  ).catch(async (err) => {
    if (patched(RESTORE_FAILURE_EVENT_PATCH))
      await notifyJobFailure(control, {
        subject: `restore of ${req.backupId} refused`,
        workflowId,
        site: backup.site,
        err,
      });
    return op.fail(`restore of ${req.backupId} refused`, err);
  });
  // On a SAN shared by companies a company's backup is read back by its own servers alone.
  const readers = patched(RESTORE_READERS_PATCH)
    ? (
        await control
          .planSanAccess({ site: backup.site, array: backup.array, volume: backup.volume })
          .catch(async (err) => {
            await notifyJobFailure(control, {
              subject: `restore of ${req.backupId} refused`,
              workflowId,
              site: backup.site,
              err,
            });
            return op.fail(`restore of ${req.backupId} refused`, err);
          })
      ).servers
    : null;

  // Plan: every piece from the lowest-numbered copy whose cartridge is not given up on; one mount
  // per run of consecutive pieces on the same cartridge.
  op.enter('plan', 'planning');
  const pieceNumbers = [...new Set(found.pieces.map((p) => p.piece))].sort((a, b) => a - b);
  /** Cartridges given up on, with the typed failure that made the restore give them up. */
  const skipped: { tape: string; type: string; message: string }[] = [];
  const usable = (p: PieceRecord) => !skipped.some((s) => s.tape === p.tape);
  const choose = (piece: number) =>
    found.pieces.filter((p) => p.piece === piece && usable(p)).sort((a, b) => a.copy - b.copy)[0];
  const planFrom = (next: number): Mount[] =>
    groupByTape(
      pieceNumbers
        .slice(next)
        .map(choose)
        .filter((p): p is PieceRecord => p !== undefined),
    );
  const withVolume = (steps: PlanStep[]): PlanStep[] =>
    toVolume
      ? [
          ...steps,
          {
            ...step('serve-volume', `serve ${toVolume.array}/${toVolume.volume} to hosts`, 'array', ['finish']),
            device: toVolume.array,
          },
        ]
      : steps;
  op.steps = withVolume(planRestoreSteps(planFrom(0), target.destination));
  op.bytesTotal = backup.sizeBytes;

  // 2040–2110: for each cartridge, reserve, zone, load, read, unload, unzone, release.
  op.enter('launch', 'restoring');
  const startedAt = new Date().toISOString();
  const undo = new Compensations();
  if (toVolume) undo.add('give the volume back', () => control.releaseVolumeRestore(toVolume));
  undo.add('discard the partial file', () => control.discardRestore({ partial: target.partial }));
  const copiesUsed = new Set<number>();
  const store = storeActivities(req.tuning.copyHeartbeatTimeoutMs);
  const storeFallbacks: StoreFallback[] = [];
  let storeRead: StoreName | undefined;
  try {
    let next = 0;
    for (let i = 0; next < pieceNumbers.length; i++) {
      const mount = planFrom(next)[0];
      const wanted = pieceNumbers[next] as number;
      if (!mount || mount.pieces[0]?.piece !== wanted) throw noCopyLeft(req.backupId, wanted, found.pieces, skipped);
      const done = { pieces: 0 };
      try {
        await readMount(i, mount, done);
        next += done.pieces;
        mount.pieces.forEach((p) => copiesUsed.add(p.copy));
      } catch (err) {
        if (isCancellation(err)) throw err;
        // Pieces already read from this cartridge stay; the rest come from another copy.
        next += done.pieces;
        mount.pieces.slice(0, done.pieces).forEach((p) => copiesUsed.add(p.copy));
        const root = rootFailure(err);
        skipped.push({ tape: mount.tape, type: root.type, message: root.message });
        op.steps = withVolume(
          replanRestore(
            op.steps.filter((s) => s.id !== 'serve-volume'),
            i,
            mount,
            planFrom(next),
            target.destination,
          ),
        );
        op.activity = `cartridge ${mount.tape} given up (${root.message}); reading the rest from another copy`;
      }
    }

    op.enter('collect', 'verifying the restored image');
    const verified = await op.step('finish', () =>
      control.finishRestore({
        destination: target.destination,
        partial: target.partial,
        sizeBytes: backup.sizeBytes,
        sha256: backup.sha256,
      }),
    );

    // The volume is served only once its image is verified and in place.
    const served = toVolume && (await op.step('serve-volume', () => control.commitVolumeRestore(toVolume)));

    op.enter(
      'done',
      `restored ${backup.sizeBytes} bytes to ${toVolume ? `volume ${toVolume.array}/${toVolume.volume}` : target.destination}`,
    );
    return {
      backupId: backup.backupId,
      workflowId,
      destination: target.destination,
      ...(toVolume && served
        ? { volume: { array: toVolume.array, volume: toVolume.volume, nbdUri: served.nbdUri } }
        : {}),
      sizeBytes: verified.sizeBytes,
      sha256: verified.sha256,
      pieces: pieceNumbers.length,
      copiesUsed: [...copiesUsed].sort((a, b) => a - b),
      skippedTapes: skipped.map((s) => ({ tape: s.tape, reason: `${s.type}: ${s.message}` })),
      startedAt,
      endedAt: new Date().toISOString(),
      // What a restored application copy needs beside its data to start (a PostgreSQL backup label).
      ...(backup.backupMode ? { backupMode: backup.backupMode } : {}),
      ...(storeFallbacks.length > 0 ? { storeFallbacks } : {}),
      ...(storeRead ? { store: storeRead } : {}),
    };
  } catch (err) {
    await undo.unwind();
    if (isCancellation(err)) throw err;
    if (patched(RESTORE_FAILURE_EVENT_PATCH))
      await notifyJobFailure(control, {
        subject: `restore of ${req.backupId} failed at ${op.currentStep ?? op.phase}`,
        workflowId,
        site: backup.site,
        err,
      });
    return op.fail(`restore of ${req.backupId} failed at ${op.currentStep ?? op.phase}`, err);
  }

  /**
   * Reserves a stream with the mount's cartridge: waiting up to reserveWait for busy devices, but not
   * for devices marked unavailable, so the restore can turn to another copy at once. Only when none
   * can stand in and the request asks to wait for such devices does it wait — saying what for.
   */
  async function reserveFor(job: string, m: Mount) {
    const ask = {
      job,
      streams: 1,
      array: backup.array,
      tape: m.tape,
      bytes: 0,
      ...(readers ? { servers: readers } : {}),
    };
    const startedAt = Date.now();
    op.activity = `reserving a drive and a path for cartridge ${m.tape}`;
    try {
      return await pool.reserveStreams(backup.site, {
        ...ask,
        waitMs: req.tuning.reserveWaitMs,
        waitForUnavailable: false,
      });
    } catch (err) {
      const block = unavailableBlock(err);
      // Given up, this cartridge is given up for good: wait unless every piece on it has another copy.
      const otherCopy = m.pieces.every((p) =>
        found.pieces.some((q) => q.piece === p.piece && q.tape !== m.tape && usable(q)),
      );
      if (!block || !req.tuning.waitForUnavailable || otherCopy) throw err;
      const left = Math.max(0, req.tuning.reserveWaitMs - (Date.now() - startedAt));
      op.activity = `waiting up to ${formatDuration(left)} for cartridge ${m.tape} (${m.pieces.length} of ${pieceNumbers.length} pieces): ${describeUnavailable(block)}; ${bringBackHint(block)}`;
      return await pool.reserveStreams(backup.site, { ...ask, waitMs: left, waitForUnavailable: true });
    }
  }

  /**
   * Reads one run of pieces from one cartridge, holding its stream only meanwhile; whatever fails,
   * the cartridge is unloaded and the zone and devices released before the error goes on.
   */
  async function readMount(i: number, m: Mount, done: { pieces: number }): Promise<void> {
    // The deduplicated store: the whole image from its index, chunk by chunk, each checked; a chunk
    // missing or damaged in the chosen store comes from the other, and the report says which.
    if (m.library === STORE_LIBRARY) {
      for (const p of m.pieces) {
        const prefer = StoreNameSchema.catch('primary').parse(req.fromStore ?? p.tape);
        storeRead = prefer;
        op.activity = `reading ${backup.backupId} from the ${prefer} store`;
        const read = await op.step(`read:${p.piece}`, () =>
          store.readStoreBackup({
            backupId: backup.backupId,
            prefer,
            destination: { path: target.partial, offset: p.offset },
          }),
        );
        storeFallbacks.push(...read.fallbacks);
        if (read.fallbacks.length > 0)
          op.activity = `${read.fallbacks.length} chunk(s) taken from the ${read.fallbacks[0]?.from} store: ${read.fallbacks[0]?.reason}`;
        done.pieces += 1;
        op.bytesDone += p.sizeBytes;
      }
      return;
    }
    // Disk backup storage (an online backup's image): no cartridge, drive or path to reserve.
    if (m.library === DISK_LIBRARY) {
      for (const p of m.pieces) {
        await op.step(`read:${p.piece}`, () =>
          control.readDiskPiece({
            image: p.tape,
            position: p.position,
            sizeBytes: p.sizeBytes,
            sha256: p.sha256,
            destination: { path: target.partial, offset: p.offset },
          }),
        );
        done.pieces += 1;
        op.bytesDone += p.sizeBytes;
      }
      return;
    }
    const job = `${workflowId}#${i}`;
    const held = new Compensations();
    try {
      // Registered before the reservation, not after: a cancel that lands while the pool grants would
      // otherwise leave the grant held by a job that is gone. Releasing what a job never got is a no-op.
      held.add('release', () => release().releaseStreams(backup.site, { job }));
      const grant = await op.step(`reserve:${i}`, () => reserveFor(job, m));
      const stream = grant.streams[0] as Stream;
      op.activity = `loading cartridge ${m.tape} into ${stream.drive}`;
      const zone = zoneName(job, 0);
      await control.zoneStream({
        site: backup.site,
        name: zone,
        members: [...new Set([backup.array, stream.server, ...stream.switches, stream.library])],
      });
      held.add('unzone', () => control.unzoneStream({ site: backup.site, name: zone }));
      const addr = { site: backup.site, library: stream.library, drive: stream.drive, tape: stream.tape };
      await op.step(`load:${i}`, () => control.loadTape(addr));
      held.add('unload', () => control.unloadTape(addr));
      const copy = copyActivities(stream.server, req.tuning);
      for (const p of m.pieces) {
        op.activity = `reading piece ${p.piece + 1} of ${pieceNumbers.length} from ${p.tape} (copy ${p.copy})`;
        await op.step(`read:${p.piece}`, () =>
          copy.readPiece({
            site: backup.site,
            server: stream.server,
            devices: [stream.server, ...stream.switches, stream.library, stream.drive, stream.tape],
            source: { ...addr, position: p.position },
            expect: { backupId: backup.backupId, piece: p.piece, sizeBytes: p.sizeBytes },
            destination: { path: target.partial, offset: p.offset },
            sha256: p.sha256,
          }),
        );
        done.pieces += 1;
        op.bytesDone += p.sizeBytes;
      }
      await op.step(`unload:${i}`, () => control.unloadTape(addr));
      held.done('unload');
      await control.unzoneStream({ site: backup.site, name: zone });
      held.done('unzone');
      await op.step(`release:${i}`, () => release().releaseStreams(backup.site, { job }));
      held.done('release');
    } catch (err) {
      await held.unwind();
      throw err;
    }
  }
}

/** The devices marked unavailable that a reservation's NoResources failure names, if it names any. */
function unavailableBlock(err: unknown): UnavailableBlock | undefined {
  let cur: unknown = err;
  for (let depth = 0; cur && depth < 10; depth++) {
    if (cur instanceof ApplicationFailure && cur.type === ErrorType.NoResources) {
      const block = UnavailableBlockSchema.safeParse(cur.details?.[0]);
      if (block.success) return block.data;
    }
    cur = cur instanceof TemporalFailure || cur instanceof Error ? (cur as Error).cause : undefined;
  }
  return undefined;
}

/** No copy of a piece is left to read: name the cartridges that were tried and why each failed. */
function noCopyLeft(
  backupId: string,
  piece: number,
  pieces: PieceRecord[],
  skipped: { tape: string; type: string; message: string }[],
): ApplicationFailure {
  const holders = pieces.filter((p) => p.piece === piece);
  const tried = skipped.filter((s) => holders.some((h) => h.tape === s.tape));
  // Typed like the last cartridge's failure (NoResources, DeviceFault, …): that is what to fix.
  const type = tried[tried.length - 1]?.type ?? ErrorType.NotFound;
  const detail = tried.map((s) => `cartridge ${s.tape}: ${s.type}: ${s.message}`).join('; ');
  const copies = holders.length === 1 ? 'its only copy' : `all ${holders.length} copies`;
  // A reservation refused names the devices and the command that brings each back; a read failure does not.
  const then =
    type === ErrorType.NoResources
      ? 'restore again once the cartridge can be had, or restore with `--wait <duration>` to wait for it'
      : 'make the cartridge available (`kura pool mark <device> available`) and restore again';
  return ApplicationFailure.nonRetryable(
    `piece ${piece} of ${backupId} cannot be read from ${copies} (${detail}); ${then}`,
    type,
  );
}
