/**
 * VM activities, run on the control queue: the management device of seed 001 (units 31–33) —
 * data-volume image backups kept K deep and verified by checksum, base images, health checks and
 * waits, restarts, new volumes from images, the data swap and the rebuild on a substitute host.
 * Each validates its input, calls the hypervisor driver or the image store, heartbeats long work,
 * and is idempotent under retry (every action carries a request id).
 */
import { rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { Context, log } from '@temporalio/activity';
import { z } from 'zod';
import type { LoadedConfig } from '../config/load';
import type { Drivers, ImageRef, VmHealth } from '../drivers/types';
import { findSite, requireHost } from '../config/targets';
import { ChecksumMismatchError } from '../domain/errors';
import {
  ImageKind,
  RESTART_SCOPES,
  isDefiniteFailure,
  type HealthEnd,
  type ImageRecord,
  type RestartScope,
} from '../domain/ladder';
import type { ImageStore } from '../images/store';
import { sha256File } from '../datamover/files';
import { parseWith } from '../domain/validate';
import { mapFailures } from './failures';

export interface VmActivityDeps {
  loaded: LoadedConfig;
  drivers: Drivers;
  images: ImageStore;
}

const VmInput = z.object({ site: z.string().min(1), vm: z.string().min(1) });
const RequestFields = { request: z.string().min(1), rung: z.string().min(1), incident: z.string().min(1) };
const BackupInput = VmInput.extend({ imageId: z.string().min(1), keep: z.number().int().min(1) });
const BaseImageInput = VmInput.extend({ kind: z.enum(['software', 'guarantee']) });
const WaitInput = VmInput.extend({
  timeoutMs: z.number().int().min(0),
  everyMs: z.number().int().min(1),
  /** The ladder's rung this wait judges; the worker's metrics count the rung that cured. */
  rung: z.string().min(1).optional(),
  failAfter: z.number().int().min(0).default(0),
});
/** What a health wait heartbeats, and a retry of it resumes from. */
interface WaitBeat {
  waitedMs: number;
  state: string;
  checks: number;
  failedChecks: number;
}
const RestartInput = VmInput.extend({ scope: z.enum(RESTART_SCOPES), ...RequestFields });
const CreateInput = VmInput.extend({ imageId: z.string().min(1), ...RequestFields });
const SwapInput = VmInput.extend({ volume: z.string().min(1), imageId: z.string().min(1), ...RequestFields });
const RebuildInput = VmInput.extend({ host: z.string().min(1), ...RequestFields });

/** What a guardian needs to know of its VM: the hosts of its site (a rebuild may pick one of them). */
export interface VmProfile {
  site: string;
  vm: string;
  hosts: string[];
}

/** Creates the VM activities bound to one worker's configuration, drivers and image store. */
export function createVmActivities(deps: VmActivityDeps) {
  const { loaded, drivers, images } = deps;
  const hv = drivers.hypervisor;

  const heartbeat = (details: unknown) => Context.current().heartbeat(details);

  /** Verifies an image's file against its recorded checksum. */
  const verify = async (img: ImageRecord): Promise<boolean> => {
    if (!existsSync(img.file)) return false;
    return (await sha256File(img.file)) === img.sha256;
  };

  const baseImage = async (site: string, vm: string, kind: 'software' | 'guarantee'): Promise<ImageRecord> => {
    const imageId = `${vm}@${kind}`;
    if (images.has(imageId)) {
      const img = images.get(imageId);
      if (await verify(img)) return img;
      images.remove(imageId);
    }
    const file = images.fileFor(site, vm, imageId);
    const made = await hv.writeBaseImage(site, vm, kind, file, (p) => heartbeat(p));
    return images.add({
      imageId,
      site,
      vm,
      kind,
      file,
      sizeBytes: made.sizeBytes,
      sha256: made.sha256,
      createdAt: new Date().toISOString(),
    });
  };

  /** The newest data image whose file still hashes as recorded; damaged ones are skipped and logged. */
  const latestGoodDataImage = async (site: string, vm: string): Promise<ImageRecord | null> => {
    for (const img of images.list(site, vm, ImageKind.Data)) {
      heartbeat({ checking: img.imageId });
      if (await verify(img)) return img;
      log.warn(`kura: data image ${img.imageId} of ${vm} does not match its checksum; skipping it`);
    }
    return null;
  };

  const ref = (img: ImageRecord): ImageRef => ({
    imageId: img.imageId,
    kind: img.kind,
    file: img.file,
    sizeBytes: img.sizeBytes,
    sha256: img.sha256,
  });

  return {
    /** The hosts of the VM's site; NotFound for a VM the hypervisor does not know. */
    async vmProfile(input: { site: string; vm: string }): Promise<VmProfile> {
      return mapFailures(async () => {
        const { site, vm } = parseWith(VmInput, input, 'VM');
        await hv.describeVm(site, vm);
        return { site, vm, hosts: findSite(loaded.config, site).hosts.map((h) => h.name) };
      });
    },

    /**
     * Seed 001's image acquisition: snapshots ONLY the data volume into a new image, reads it back
     * to verify its checksum, records it, and deletes the oldest data images beyond `keep`.
     * Idempotent: an image id already recorded is returned as it is.
     */
    async backupDataVolume(input: {
      site: string;
      vm: string;
      imageId: string;
      keep: number;
    }): Promise<{ image: ImageRecord; pruned: string[] }> {
      return mapFailures(async () => {
        const { site, vm, imageId, keep } = parseWith(BackupInput, input, 'data backup');
        let image: ImageRecord;
        if (images.has(imageId)) image = images.get(imageId);
        else {
          const file = images.fileFor(site, vm, imageId);
          const taken = await hv.snapshotDataVolume(
            site,
            vm,
            file,
            (p) => heartbeat(p),
            Context.current().cancellationSignal,
          );
          const reread = await sha256File(file);
          if (reread !== taken.sha256) {
            await rm(file, { force: true });
            throw new ChecksumMismatchError(
              `the image of ${vm}'s data volume read back as ${reread} but was written as ${taken.sha256}; it was not kept`,
              { vm, imageId },
            );
          }
          image = images.add({
            imageId,
            site,
            vm,
            kind: ImageKind.Data,
            file,
            sizeBytes: taken.sizeBytes,
            sha256: taken.sha256,
            createdAt: new Date().toISOString(),
          });
        }
        const pruned: string[] = [];
        for (const old of images.list(site, vm, ImageKind.Data).slice(keep)) {
          images.remove(old.imageId);
          await rm(old.file, { force: true });
          pruned.push(old.imageId);
        }
        return { image, pruned };
      });
    },

    /** The startup-guarantee or software image of a VM, created (and verified) when missing. */
    async ensureBaseImage(input: { site: string; vm: string; kind: 'software' | 'guarantee' }): Promise<ImageRecord> {
      return mapFailures(async () => {
        const { site, vm, kind } = parseWith(BaseImageInput, input, 'base image');
        return baseImage(site, vm, kind);
      });
    },

    /** The newest data image that verifies, or null when the VM has none. */
    async latestDataImage(input: { site: string; vm: string }): Promise<ImageRecord | null> {
      return mapFailures(async () => {
        const { site, vm } = parseWith(VmInput, input, 'VM');
        return latestGoodDataImage(site, vm);
      });
    },

    async checkHealth(input: { site: string; vm: string }): Promise<VmHealth> {
      return mapFailures(async () => {
        const { site, vm } = parseWith(VmInput, input, 'VM');
        return hv.health(site, vm);
      });
    },

    /**
     * S12/S17: waits until the VM reports healthy or `timeoutMs` passes, checking every `everyMs`;
     * with `failAfter` > 0 it also ends once that many checks in a row report a definite failure
     * (the VM up and failing, not restarting), so the ladder need not wait out a VM already known
     * to be failing. Returns the last health seen, how long it waited, how the wait ended and the
     * checks it made. A retried attempt continues the wait (time and count) its predecessor reported.
     */
    async awaitHealthy(input: {
      site: string;
      vm: string;
      timeoutMs: number;
      everyMs: number;
      rung?: string;
      failAfter?: number;
    }): Promise<VmHealth & { waitedMs: number; end: HealthEnd; checks: number; failedChecks: number }> {
      return mapFailures(async () => {
        const { site, vm, timeoutMs, everyMs, failAfter } = parseWith(WaitInput, input, 'health wait');
        const prior = Context.current().info.heartbeatDetails as Partial<WaitBeat> | undefined;
        const t0 = Date.now() - (prior?.waitedMs ?? 0);
        let checks = prior?.checks ?? 0;
        let failedInRow = prior?.failedChecks ?? 0;
        const signal = Context.current().cancellationSignal;
        for (;;) {
          const h = await hv.health(site, vm);
          checks++;
          failedInRow = isDefiniteFailure(h) ? failedInRow + 1 : 0;
          const waitedMs = Date.now() - t0;
          const end: HealthEnd | undefined = h.healthy
            ? 'healthy'
            : failAfter > 0 && failedInRow >= failAfter
              ? 'failed-checks'
              : waitedMs >= timeoutMs
                ? 'timeout'
                : undefined;
          if (end) return { ...h, waitedMs, end, checks, failedChecks: failedInRow };
          // Sleep in slices of at most a second, heartbeating, so a long check interval never
          // looks like a dead worker to the heartbeat timeout.
          const until = Date.now() + Math.min(everyMs, Math.max(1, timeoutMs - waitedMs));
          while (Date.now() < until) {
            const beat: WaitBeat = { waitedMs: Date.now() - t0, state: h.state, checks, failedChecks: failedInRow };
            heartbeat(beat);
            await new Promise((r) => setTimeout(r, Math.min(1000, until - Date.now())));
            signal.throwIfAborted();
          }
        }
      });
    },

    /** S11: restarts the APL, the MW or the OS; carried out once per request id. */
    async restartVm(input: {
      site: string;
      vm: string;
      scope: RestartScope;
      request: string;
      rung: string;
      incident: string;
    }): Promise<{ tookMs: number }> {
      return mapFailures(async () => {
        const r = parseWith(RestartInput, input, 'restart');
        const t0 = Date.now();
        await hv.restart(r.site, r.vm, r.scope, { request: r.request, rung: r.rung, incident: r.incident });
        return { tookMs: Date.now() - t0 };
      });
    },

    /**
     * S15: the volume-creation request — a NEW volume from a stored image. Heartbeats its bytes; a
     * retried attempt continues after the bytes its predecessor reported.
     */
    async createDataVolume(input: {
      site: string;
      vm: string;
      imageId: string;
      request: string;
      rung: string;
      incident: string;
    }): Promise<{ volume: string; sizeBytes: number; tookMs: number }> {
      return mapFailures(async () => {
        const r = parseWith(CreateInput, input, 'volume creation');
        const t0 = Date.now();
        const img = images.get(r.imageId);
        const prior = Context.current().info.heartbeatDetails as { bytes?: number } | undefined;
        const made = await hv.createVolumeFromImage(
          r.site,
          r.vm,
          ref(img),
          { request: r.request, rung: r.rung, incident: r.incident },
          (p) => heartbeat(p),
          prior?.bytes ?? 0,
          Context.current().cancellationSignal,
        );
        return { ...made, tookMs: Date.now() - t0 };
      });
    },

    /** S16: swaps the data volume for the new one; the software volume is not touched. */
    async swapDataVolume(input: {
      site: string;
      vm: string;
      volume: string;
      imageId: string;
      request: string;
      rung: string;
      incident: string;
    }): Promise<{ retired: string; tookMs: number }> {
      return mapFailures(async () => {
        const r = parseWith(SwapInput, input, 'volume swap');
        const t0 = Date.now();
        const out = await hv.swapDataVolume(r.site, r.vm, r.volume, ref(images.get(r.imageId)), {
          request: r.request,
          rung: r.rung,
          incident: r.incident,
        });
        return { ...out, tookMs: Date.now() - t0 };
      });
    },

    /**
     * S18's maintenance: recreates the VM on `host` from its software image and its latest good
     * data image (the startup-guarantee image when it has none).
     */
    async rebuildVm(input: {
      site: string;
      vm: string;
      host: string;
      request: string;
      rung: string;
      incident: string;
    }): Promise<{ software: string; data: string; host: string; tookMs: number }> {
      return mapFailures(async () => {
        const r = parseWith(RebuildInput, input, 'rebuild');
        const t0 = Date.now();
        requireHost(findSite(loaded.config, r.site), r.host);
        const software = await baseImage(r.site, r.vm, 'software');
        const data = (await latestGoodDataImage(r.site, r.vm)) ?? (await baseImage(r.site, r.vm, 'guarantee'));
        await hv.rebuild(
          r.site,
          r.vm,
          r.host,
          { software: ref(software), data: ref(data) },
          { request: r.request, rung: r.rung, incident: r.incident },
        );
        return { software: software.imageId, data: data.imageId, host: r.host, tookMs: Date.now() - t0 };
      });
    },
  };
}
