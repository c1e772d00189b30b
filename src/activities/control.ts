/**
 * Control activities, run on the `kura-control` queue: resolve targets, move cartridges, keep the
 * catalog, guard restore destinations and notify people. Each validates its input, calls a driver
 * or the catalog, and is idempotent when retried.
 */
import { createHash } from 'node:crypto';
import { constants as fsConstants, createReadStream, existsSync, statSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { Context, log } from '@temporalio/activity';
import { z } from 'zod';
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import type { Catalog } from '../catalog/store';
import type { Drivers } from '../drivers/types';
import type { CopySettings, JobTuning, ResolvedTarget } from '../domain/jobs';
import { copySettings, jobTuning, policyTargets } from '../config/tuning';
import {
  NewBackupSchema,
  PieceRecordSchema,
  StreamRecordSchema,
  TapeCatalogEntrySchema,
  type BackupRecord,
  type NewBackup,
  type PieceRecord,
  type StreamRecord,
  type TapeCatalogEntry,
} from '../domain/catalog';
import type { DeviceHealth } from '../drivers/types';
import { ChecksumMismatchError, DestinationExistsError, InvalidInputError, NotFoundError } from '../domain/errors';
import { checkRestoreDestination, findSite, resolveTargetRef } from '../config/targets';
import { parseWith } from '../domain/validate';
import { mapFailures } from './failures';

export interface ControlDeps {
  loaded: LoadedConfig;
  paths: KuraPaths;
  drivers: Drivers;
  catalog: Catalog;
}

const TargetInput = z.object({ site: z.string().min(1), target: z.string().min(1) });
const TapeAddressInput = z.object({ site: z.string(), library: z.string(), drive: z.string(), tape: z.string() });
const CompleteInput = z.object({
  backupId: z.string(),
  endedAt: z.string(),
  sha256: z.string().nullable(),
  pieces: z.array(PieceRecordSchema),
  streams: z.array(StreamRecordSchema).default([]),
});
const FailInput = z.object({
  backupId: z.string(),
  error: z.string(),
  endedAt: z.string(),
  streams: z.array(StreamRecordSchema).default([]),
});
const ZoneInput = z.object({
  site: z.string().min(1),
  name: z.string().min(1),
  members: z.array(z.string().min(1)).min(2),
});
const UnzoneInput = z.object({ site: z.string().min(1), name: z.string().min(1) });
const TapeAtInput = z.object({ ...TapeAddressInput.shape, position: z.number().int().min(0) });
const WriteCatalogInput = z.object({ at: TapeAtInput, entry: TapeCatalogEntrySchema });
const DiskPieceInput = z.object({
  image: z.string().min(1),
  position: z.number().int().min(0),
  sizeBytes: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  destination: z.object({ path: z.string().min(1), offset: z.number().int().min(0) }),
});
const ProbeInput = z.object({ site: z.string().min(1), devices: z.array(z.string().min(1)).min(1) });
const RestorePaths = z.object({ destination: z.string().min(1), job: z.string().min(1) });

/** Creates the control activities bound to one worker's configuration, drivers and catalog. */
export function createControlActivities(deps: ControlDeps) {
  const { loaded, drivers, catalog, paths } = deps;

  return {
    /** Seed 003 step 2: maps what the user named (a VM, or array/volume) to the volume to copy. */
    async resolveTarget(input: { site: string; target: string }): Promise<ResolvedTarget> {
      return mapFailures(async () => {
        const { site: siteName, target } = parseWith(TargetInput, input, 'target');
        const site = findSite(loaded.config, siteName);
        const { array, volume } = resolveTargetRef(site, target);
        const info = await drivers.storage.describeVolume(siteName, array, volume);
        return { site: siteName, target, array, volume, sizeBytes: info.sizeBytes };
      });
    },

    /** Seed 003 Fig. 8: the backup manager mounts a cartridge in a drive; returns the append point. */
    async loadTape(input: {
      site: string;
      library: string;
      drive: string;
      tape: string;
    }): Promise<{ endOfData: number; capacityBytes: number }> {
      return mapFailures(() => drivers.tape.load(parseWith(TapeAddressInput, input, 'tape address')));
    },

    async unloadTape(input: { site: string; library: string; drive: string; tape: string }): Promise<void> {
      return mapFailures(() => drivers.tape.unload(parseWith(TapeAddressInput, input, 'tape address')));
    },

    /** Records a running backup in the catalog (idempotent). */
    async beginBackup(input: NewBackup): Promise<BackupRecord> {
      return mapFailures(async () => catalog.beginBackup(parseWith(NewBackupSchema, input, 'backup record')));
    },

    /** Records every piece and marks the backup complete, in one transaction. */
    async completeBackup(input: {
      backupId: string;
      endedAt: string;
      sha256: string | null;
      pieces: PieceRecord[];
      streams?: StreamRecord[];
    }): Promise<BackupRecord> {
      return mapFailures(async () => {
        const c = parseWith(CompleteInput, input, 'completed backup');
        return catalog.completeBackup(c.backupId, c);
      });
    },

    /** Marks a backup failed with the reason and what became of each of its streams. */
    async failBackup(input: {
      backupId: string;
      error: string;
      endedAt: string;
      streams?: StreamRecord[];
    }): Promise<void> {
      return mapFailures(async () => {
        const f = parseWith(FailInput, input, 'failed backup');
        catalog.failBackup(f.backupId, f.error, f.endedAt, f.streams);
      });
    },

    /** Zones a stream's path on the FC switches (seed 004): idempotent, like the fabric's createZone. */
    async zoneStream(input: { site: string; name: string; members: string[] }): Promise<void> {
      return mapFailures(async () => {
        const z = parseWith(ZoneInput, input, 'zone');
        await drivers.fabric.createZone(z.site, { name: z.name, members: z.members });
      });
    },

    /** Removes a stream's zone; removing one that is gone is fine. */
    async unzoneStream(input: { site: string; name: string }): Promise<void> {
      return mapFailures(async () => {
        const z = parseWith(UnzoneInput, input, 'zone');
        await drivers.fabric.deleteZone(z.site, z.name);
      });
    },

    /** Seed 004 step 1170: writes the job's catalog rows of one cartridge onto it, after its data. */
    async writeTapeCatalog(input: {
      at: { site: string; library: string; drive: string; tape: string; position: number };
      entry: TapeCatalogEntry;
    }): Promise<{ nextPosition: number }> {
      return mapFailures(async () => {
        const w = parseWith(WriteCatalogInput, input, 'tape catalog');
        return drivers.tape.writeCatalog(w.at, w.entry);
      });
    },

    /** Ends a cartridge's recorded data where a failed job began writing, so nothing it left remains. */
    async eraseTape(input: {
      site: string;
      library: string;
      drive: string;
      tape: string;
      position: number;
    }): Promise<void> {
      return mapFailures(async () => drivers.tape.eraseFrom(parseWith(TapeAtInput, input, 'tape position')));
    },

    /**
     * Restores a piece kept on disk backup storage (an online backup's image, library `disk`): copies
     * it into the restore file and checks its SHA-256. The image path is relative to Kura's home and
     * must stay inside it. A retry simply copies again.
     */
    async readDiskPiece(input: {
      image: string;
      position: number;
      sizeBytes: number;
      sha256: string;
      destination: { path: string; offset: number };
    }): Promise<{ sha256: string; bytes: number }> {
      return mapFailures(async () => {
        const r = parseWith(DiskPieceInput, input, 'disk piece');
        const file = path.resolve(paths.home, r.image);
        if (path.relative(paths.home, file).startsWith('..'))
          throw new InvalidInputError(`disk piece ${r.image} lies outside Kura's home ${paths.home}`);
        if (!existsSync(file))
          throw new NotFoundError(`the image ${file} of this backup is gone from disk backup storage`);
        await mkdir(path.dirname(r.destination.path), { recursive: true });
        const src = await open(file, 'r');
        // O_CREAT without O_TRUNC: other pieces of the same restore may already be in the file.
        const dst = await open(r.destination.path, fsConstants.O_RDWR | fsConstants.O_CREAT);
        const hash = createHash('sha256');
        try {
          const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
          for (let done = 0; done < r.sizeBytes;) {
            const want = Math.min(buf.length, r.sizeBytes - done);
            const { bytesRead } = await src.read(buf, 0, want, r.position + done);
            if (bytesRead !== want)
              throw new ChecksumMismatchError(
                `the image ${file} ends after ${r.position + done + bytesRead} bytes, before the ${r.sizeBytes} the catalog recorded`,
              );
            hash.update(buf.subarray(0, want));
            await dst.write(buf, 0, want, r.destination.offset + done);
            done += want;
            Context.current().heartbeat({ bytes: done });
          }
          await dst.sync();
        } finally {
          await src.close();
          await dst.close();
        }
        const sha256 = hash.digest('hex');
        if (sha256 !== r.sha256)
          throw new ChecksumMismatchError(
            `the image ${file} hashes to ${sha256} but the catalog recorded ${r.sha256}; disk backup storage did not keep it`,
          );
        return { sha256, bytes: r.sizeBytes };
      });
    },

    /** Asks a stream's devices which of them is at fault, after a copy over them stopped answering. */
    async probeStream(input: { site: string; devices: string[] }): Promise<DeviceHealth[]> {
      return mapFailures(async () => {
        const p = parseWith(ProbeInput, input, 'devices to probe');
        return drivers.copy.probe(p.site, p.devices);
      });
    },

    /** A complete backup, its pieces and streams; NotFound for an unknown id, InvalidInput when not complete. */
    async findBackup(input: {
      backupId: string;
    }): Promise<{ backup: BackupRecord; pieces: PieceRecord[]; streams: StreamRecord[] }> {
      return mapFailures(async () => {
        const backup = catalog.backup(input.backupId);
        if (backup.status !== 'complete') {
          throw new InvalidInputError(
            `backup ${backup.backupId} is ${backup.status}${backup.error ? ` (${backup.error})` : ''}; only complete backups can be restored — \`kura catalog list --target ${backup.target}\` shows the others`,
          );
        }
        return { backup, pieces: catalog.piecesOf(backup.backupId), streams: catalog.streamsOf(backup.backupId) };
      });
    },

    /**
     * Checks a restore destination before anything is written (see checkRestoreDestination) and
     * names the partial file the pieces are written to until the restore is verified.
     */
    async prepareRestore(input: {
      destination: string;
      job: string;
    }): Promise<{ destination: string; partial: string }> {
      return mapFailures(async () => {
        const { destination, job } = parseWith(RestorePaths, input, 'restore destination');
        const abs = checkRestoreDestination(destination, paths.restoreRoots, loaded.file);
        return { destination: abs, partial: partialPath(abs, job) };
      });
    },

    /**
     * Verifies the restored file (size, and whole-image SHA-256 when the catalog has one), makes it
     * durable and moves it into place. Idempotent: a retry after the move checks the destination.
     */
    async finishRestore(input: {
      destination: string;
      partial: string;
      sizeBytes: number;
      sha256: string | null;
    }): Promise<{ sha256: string; sizeBytes: number }> {
      return mapFailures(async () => {
        const source = existsSync(input.partial) ? input.partial : input.destination;
        if (!existsSync(source))
          throw new NotFoundError(`the restored data at ${input.partial} is gone; run the restore again`);
        const size = statSync(source).size;
        if (size !== input.sizeBytes) {
          throw new ChecksumMismatchError(
            `restored ${size} bytes but the backup holds ${input.sizeBytes}; the restore is incomplete and was not moved into place`,
          );
        }
        const sha256 = await sha256File(source, (bytes) => Context.current().heartbeat({ bytes }));
        if (input.sha256 && sha256 !== input.sha256) {
          throw new ChecksumMismatchError(
            `restored image hashes to ${sha256} but the catalog recorded ${input.sha256}; the restore was not moved into place`,
          );
        }
        if (source === input.partial) {
          if (existsSync(input.destination)) {
            throw new DestinationExistsError(
              `restore destination ${input.destination} appeared while restoring; the restored data stays at ${input.partial}`,
            );
          }
          const fh = await open(input.partial, 'r+');
          await fh.sync();
          await fh.close();
          await rename(input.partial, input.destination);
          const dir = await open(path.dirname(input.destination), 'r');
          await dir.sync().catch(() => undefined);
          await dir.close();
        }
        return { sha256, sizeBytes: size };
      });
    },

    /** Removes a partial restore after a failure, so nothing half-done is left behind. */
    async discardRestore(input: { partial: string }): Promise<void> {
      await rm(input.partial, { force: true });
    },

    /** What a fleet run of a policy (or `all`) covers, and the tuning its jobs use. */
    async fleetSettings(input: {
      site: string;
      policy: string;
    }): Promise<{ targets: string[]; concurrency: number; tuning: JobTuning; copy: CopySettings }> {
      return mapFailures(async () => {
        const found = policyTargets(loaded.config, input.site, input.policy);
        if (!found) {
          const site = loaded.config.sites.find((s) => s.name === input.site);
          throw new NotFoundError(
            site
              ? `no policy "${input.policy}" in site ${input.site}; policies: ${['all', ...site.policies.map((p) => p.name)].join(', ')}`
              : `no site "${input.site}" in ${loaded.file}`,
          );
        }
        if (found.targets.length === 0)
          throw new InvalidInputError(`policy "${input.policy}" of site ${input.site} has no targets`);
        return {
          ...found,
          tuning: jobTuning(loaded.config),
          copy: copySettings(loaded.config, input.site, input.policy),
        };
      });
    },

    /** Tells people a job failed or needs them: a log line, and a webhook post when configured. */
    async notify(input: { subject: string; detail: Record<string, unknown> }): Promise<{ delivered: boolean }> {
      log.warn(`kura: ${input.subject}`, input.detail);
      const url = loaded.config.notify.webhook;
      if (!url) return { delivered: false };
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ subject: input.subject, ...input.detail }),
          signal: AbortSignal.timeout(10_000),
        });
        return { delivered: res.ok };
      } catch (err) {
        log.warn(`kura: webhook ${url} did not take the notification`, { error: String(err) });
        return { delivered: false };
      }
    },
  };
}

export type ControlActivities = ReturnType<typeof createControlActivities>;

/** The partial file of one restore job, beside the destination so the final rename is atomic. */
export function partialPath(destination: string, job: string): string {
  const tag = createHash('sha256').update(job).digest('hex').slice(0, 12);
  return `${destination}.kura-partial-${tag}`;
}

/** SHA-256 of a whole file, reporting progress. */
export async function sha256File(file: string, onProgress?: (bytes: number) => void): Promise<string> {
  const hash = createHash('sha256');
  let bytes = 0;
  let last = Date.now();
  for await (const chunk of createReadStream(file, { highWaterMark: 4 * 1024 * 1024 })) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
    if (onProgress && Date.now() - last > 500) {
      onProgress(bytes);
      last = Date.now();
    }
  }
  return hash.digest('hex');
}
