/**
 * Online backup through the journaling datapath (seed 002): switch the volume into backup mode,
 * copy the frozen main storage to backup storage, run catch-up rounds until the drain estimate
 * fits the host's I/O timeout, quiesce and switch back, then record the image in the catalog.
 * The host keeps reading and writing throughout; if anything fails the volume is switched back
 * to passthrough with every write on main storage.
 */
import {
  ApplicationFailure,
  isCancellation,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
  setCurrentDetails,
} from '@temporalio/workflow';
import {
  OnlineBackupRequestSchema,
  type OnlineBackupReport,
  type OnlineBackupRequest,
  type OnlinePhase,
  type OnlineProgress,
  type VolumeStatus,
} from '../domain/datapath';
import { backupIdFor } from '../domain/catalog';
import { onlineProgressQuery } from '../messages';
import { JobKind, KuraKind, KuraSite, KuraTarget } from '../search-attributes';
import { acceptInput, jobFailure, reportBackupFailure, rootFailure } from './failures';
import { Compensations } from './compensations';
import { controlActivities } from './proxies';
import { onlineActivities } from './online-proxies';
import { ErrorType } from '../domain/errors';
import { label } from './labels';

/**
 * Backs up one volume while its host keeps using it. Workflow id: online/<array>/<volume>/<time>
 * (`onlineBackupWorkflowId`).
 */
export async function onlineBackup(input: OnlineBackupRequest): Promise<OnlineBackupReport> {
  const { workflowId } = workflowInfo();
  const startedAt = new Date().toISOString();
  const progress: OnlineProgress = {
    phase: 'accept',
    activity: 'accepting the request',
    bytesDone: 0,
    bytesTotal: 0,
    startedAt,
    etaMs: null,
    unreflectedBytes: 0,
    rounds: 0,
    path: 'normal',
    quiesceMs: null,
  };
  setHandler(onlineProgressQuery, () => progress);
  const enter = (phase: OnlinePhase, activity: string) => {
    progress.phase = phase;
    progress.activity = activity;
    setCurrentDetails(`**${phase}** — ${activity}`);
  };
  const seen = (st: VolumeStatus) => {
    progress.etaMs = st.etaMs;
    progress.unreflectedBytes = st.unreflectedBytes;
    // After the switch back the datapath keeps no rounds; the job keeps what the backup took.
    if (st.mode === 'backup') {
      progress.rounds = st.rounds;
      progress.path = st.path;
    }
  };

  const req = acceptInput(OnlineBackupRequestSchema, input, 'online backup request');
  upsertSearchAttributes([
    { key: KuraKind, value: JobKind.OnlineBackup },
    { key: KuraTarget, value: label(req.target) },
    { key: KuraSite, value: label(req.site) },
  ]);
  const { settings } = req;
  const control = controlActivities({ deviceAttempts: req.deviceAttempts });
  const online = onlineActivities(req.deviceAttempts, Math.max(settings.pollMs * 20, 10_000));

  const resolved = await control.resolveTarget({ site: req.site, target: req.target }).catch((err) => {
    throw jobFailure(`online backup of ${req.target} refused`, err);
  });
  const volume = `${resolved.array}/${resolved.volume}`;
  const backupId = backupIdFor(req.target, req.requestedAt);
  const ref = { volume, backupId };
  progress.bytesTotal = resolved.sizeBytes;
  const undo = new Compensations();

  try {
    // S101–S104: journal and snapshot first, then the switch; main storage is frozen from here.
    enter('switch', `switching ${volume} into backup mode`);
    const switched = await online.enterBackupMode({ ...ref, site: req.site, requestedAt: req.requestedAt });
    undo.add('abort', () => online.abortOnline(ref));
    const image = switched.image ?? '';
    const switchedAt = switched.switchedAt ?? startedAt;
    await control.beginBackup({ ...resolved, backupId, job: workflowId, startedAt, dataTime: switchedAt });

    // S201–S202: the frozen main storage to backup storage.
    enter('base-copy', `copying ${volume} as of ${switchedAt} to backup storage`);
    seen(await online.baseCopy({ ...ref, pollMs: settings.pollMs }));
    progress.bytesDone = resolved.sizeBytes;

    // S501–S505 until S601 says the drain fits the I/O timeout; then S602–S604.
    const maxEtaMs = Math.floor(settings.ioTimeoutMs * settings.safetyFactor);
    let quiesceMs: number | null = null;
    for (let round = 1; round <= settings.maxRounds && quiesceMs === null; round++) {
      enter('catch-up', `catch-up round ${round}: writing the snapshot to main storage`);
      const r = await online.catchUpRound(ref);
      seen(r.status);
      if (r.status.etaMs !== null && r.status.etaMs < maxEtaMs) {
        enter('quiesce', `ETA ${r.status.etaMs} ms < ${maxEtaMs} ms: holding host commands, draining, switching back`);
        const f = await online.finishOnline({ ...ref, maxEtaMs });
        seen(f.status);
        if (f.switched) quiesceMs = f.quiesceMs;
      }
      if (quiesceMs === null) await sleep(settings.roundPauseMs);
    }
    if (quiesceMs === null) {
      throw ApplicationFailure.nonRetryable(
        `${volume} did not converge in ${settings.maxRounds} catch-up rounds (last ETA ${progress.etaMs ?? 'unknown'} ms, path ${progress.path}); the host writes faster than main storage takes them`,
        ErrorType.DeviceFault,
      );
    }
    undo.done('abort');
    progress.quiesceMs = quiesceMs;

    enter('record', `recording ${backupId} in the catalog`);
    const { sha256 } = await online.recordOnlineImage({
      backupId,
      job: workflowId,
      target: req.target,
      image,
      sizeBytes: resolved.sizeBytes,
      startedAt,
      dataTime: switchedAt,
    });
    enter('done', `backed up ${volume} as ${backupId}; host commands were held ${quiesceMs.toFixed(1)} ms`);
    return {
      backupId,
      workflowId,
      ...resolved,
      image,
      sha256,
      switchedAt,
      rounds: progress.rounds,
      path: progress.path,
      quiesceMs,
      ioTimeoutMs: settings.ioTimeoutMs,
      startedAt,
      endedAt: new Date().toISOString(),
    };
  } catch (err) {
    await undo.unwind();
    const root = rootFailure(err);
    const failedIn = progress.phase;
    progress.error = root.message;
    enter('failed', `failed in ${failedIn}: ${root.message}`);
    await reportBackupFailure(control, { subject: `online backup of ${req.target} failed`, workflowId, backupId, err });
    if (isCancellation(err)) throw err;
    throw jobFailure(`online backup of ${req.target} failed in ${failedIn}`, err);
  }
}
