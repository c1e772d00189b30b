/**
 * Online-backup activities (seed 002): each drives the datapath through its control API — switch,
 * base copy, one catch-up round, finish, abort — or records the finished image in the catalog.
 * All are idempotent: the datapath keys every call by the backup id, so a retried call (after a
 * worker crash or a datapath restart) continues where the last one got to.
 */
import * as path from 'node:path';
import { Context, sleep } from '@temporalio/activity';
import { z } from 'zod';
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import type { Catalog } from '../catalog/store';
import { compactTime } from '../domain/catalog';
import {
  BackupRefSchema,
  FinishSchema,
  type FinishResult,
  type RoundResult,
  type VolumeStatus,
} from '../domain/datapath';
import { DeviceFaultError } from '../domain/errors';
import { DatapathClient } from '../datapath/client';
import { controlTokenFile, readControlToken } from '../datapath/token';
import { sha256File } from '../datamover/files';
import { parseWith } from '../domain/validate';
import { mapFailures } from './failures';

export interface OnlineDeps {
  loaded: LoadedConfig;
  paths: KuraPaths;
  catalog: Catalog;
}

// Each activity takes the control API's body of its call plus the volume it addresses.
const VolumeInput = BackupRefSchema.extend({ volume: z.string().regex(/^[^/]+\/[^/]+$/, 'must be array/volume') });
const EnterInput = VolumeInput.extend({ site: z.string().min(1), requestedAt: z.string().min(1) });
const BaseCopyInput = VolumeInput.extend({ pollMs: z.number().int().min(10) });
const FinishInput = FinishSchema.extend(VolumeInput.shape);
const RecordInput = z.object({
  backupId: z.string().min(1),
  job: z.string().min(1),
  target: z.string().min(1),
  image: z.string().min(1),
  sizeBytes: z.number().int().min(0),
  startedAt: z.string(),
  dataTime: z.string(),
});

/** Where the image of an online backup goes on backup storage (disk, as seed 004 allows); fixed by the request, so retries agree. */
export function onlineImagePath(paths: KuraPaths, site: string, volume: string, requestedAt: string): string {
  return path.join(paths.home, 'online', site, volume, `${compactTime(requestedAt)}.img`);
}

/** Creates the online-backup activities bound to one configuration and catalog. */
export function createOnlineActivities(deps: OnlineDeps) {
  const { loaded, paths, catalog } = deps;
  const tokenFile = controlTokenFile(loaded, paths);
  const client = () =>
    new DatapathClient(`http://127.0.0.1:${loaded.config.datapath.controlPort}`, () => readControlToken(tokenFile));

  return {
    /** S101–S104: the datapath initialises journal and snapshot, then freezes main storage. */
    async enterBackupMode(input: z.input<typeof EnterInput>): Promise<VolumeStatus> {
      return mapFailures(async () => {
        const i = parseWith(EnterInput, input, 'enter-backup request');
        return client().enterBackup(i.volume, i.backupId, onlineImagePath(paths, i.site, i.volume, i.requestedAt));
      });
    },

    /**
     * S201–S202: starts (or resumes) the base copy and waits for it, heartbeating the bytes copied.
     * A datapath that restarted resumes from its last durable progress when asked again.
     */
    async baseCopy(input: z.input<typeof BaseCopyInput>): Promise<VolumeStatus> {
      return mapFailures(async () => {
        const i = parseWith(BaseCopyInput, input, 'base copy request');
        const dp = client();
        let st = await dp.startBaseCopy(i.volume, i.backupId);
        while (st.phase === 'base-copy') {
          Context.current().heartbeat({ bytes: st.baseCopiedBytes, phase: st.phase });
          if (!st.baseCopyRunning) {
            if (st.baseCopyError)
              throw new DeviceFaultError(i.volume, `base copy of ${i.volume} stopped: ${st.baseCopyError}`);
            st = await dp.startBaseCopy(i.volume, i.backupId);
            continue;
          }
          await sleep(i.pollMs);
          st = await dp.status(i.volume);
          if (st.backupId !== i.backupId)
            throw new DeviceFaultError(
              i.volume,
              `${i.volume} left backup mode for ${i.backupId} during the base copy (now: ${st.backupId ?? 'passthrough'})`,
            );
        }
        return st;
      });
    },

    /** S501–S505: one catch-up round; its result carries the status with the ETA. */
    async catchUpRound(input: z.input<typeof VolumeInput>): Promise<RoundResult> {
      return mapFailures(async () => {
        const i = parseWith(VolumeInput, input, 'catch-up request');
        const timer = setInterval(() => Context.current().heartbeat({ phase: 'catch-up' }), 1000);
        try {
          return await client().catchUp(i.volume, i.backupId);
        } finally {
          clearInterval(timer);
        }
      });
    },

    /** S601–S604: quiesce, drain and switch back if the estimate allows; reports the measured window. */
    async finishOnline(input: z.input<typeof FinishInput>): Promise<FinishResult> {
      return mapFailures(async () => {
        const i = parseWith(FinishInput, input, 'finish request');
        const dp = client();
        const st = await dp.status(i.volume);
        // A retry after this backup's switch back already happened (even across a datapath restart).
        if (st.mode === 'passthrough' && st.lastFinished?.backupId === i.backupId)
          return { switched: true, etaMs: 0, quiesceMs: st.lastFinished.quiesceMs, drainedBytes: 0, status: st };
        return dp.finish(i.volume, i.backupId, i.maxEtaMs);
      });
    },

    /** Back to passthrough at once (the saga's undo); idempotent. */
    async abortOnline(input: z.input<typeof VolumeInput>): Promise<VolumeStatus> {
      return mapFailures(async () => {
        const i = parseWith(VolumeInput, input, 'abort request');
        return client().abort(i.volume, i.backupId);
      });
    },

    /** Hashes the image and records it in the catalog as a complete backup of one piece on disk. */
    async recordOnlineImage(input: z.input<typeof RecordInput>): Promise<{ sha256: string }> {
      return mapFailures(async () => {
        const i = parseWith(RecordInput, input, 'image record');
        const ctx = Context.current();
        const sha256 = await sha256File(i.image, { onProgress: (p) => ctx.heartbeat({ bytes: p.bytes }) });
        const endedAt = new Date().toISOString();
        // A disk destination: the "library" is `disk` and the "tape" is the image's path below Kura's home.
        catalog.completeBackup(i.backupId, {
          endedAt,
          sha256,
          pieces: [
            {
              backupId: i.backupId,
              copy: 0,
              piece: 0,
              target: i.target,
              job: i.job,
              stream: 0,
              startedAt: i.startedAt,
              endedAt,
              dataTime: i.dataTime,
              library: 'disk',
              tape: path.relative(paths.home, i.image),
              position: 0,
              offset: 0,
              sizeBytes: i.sizeBytes,
              sha256,
            },
          ],
        });
        return { sha256 };
      });
    },
  };
}

export type OnlineActivities = ReturnType<typeof createOnlineActivities>;
