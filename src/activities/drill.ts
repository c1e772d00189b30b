/**
 * Activities of restore drills (seed 000; docs/adr/035), on the `kura-control` queue: the targets a
 * drill may take, an isolated lab host made for it, a target's store backups restored into that host
 * with each chunk checked against the index's digest and the index against the catalog's, a VM
 * started there and waited on until healthy, the host removed, and the drill recorded.
 */
import { mkdir, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { Context } from '@temporalio/activity';
import { z } from 'zod';
import type { Catalog } from '../catalog/store';
import { DrillLog } from '../catalog/drills';
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import { sha256File } from '../datamover/files';
import { ClassName, ClassNameSchema, classVolumes } from '../domain/classes';
import { DrillRecordSchema, type DrillCandidate, type DrillRecord } from '../domain/drill';
import { ChecksumMismatchError, NotFoundError } from '../domain/errors';
import { StoreName, type StoreFallback } from '../domain/store';
import { parseWith } from '../domain/validate';
import { LabDrillHosts } from '../drivers/lab/drill-host';
import { ChunkStore } from '../store/chunk-store';
import { indexDigest } from '../store/ingest';
import { storeRoots } from '../store/lag';
import { readBackup } from '../store/read';
import { mapFailures } from './failures';

const PlanInput = z.object({ classes: z.array(ClassNameSchema).min(1).optional() });
const HostInput = z.object({ site: z.string().min(1), host: z.string().min(1) });
const RestoreInput = z.object({
  host: z.string().min(1),
  className: ClassNameSchema,
  target: z.string().min(1),
  backupIds: z.array(z.string().min(1)).min(1),
});
const HealthInput = z.object({
  host: z.string().min(1),
  vm: z.string().min(1),
  timeoutMs: z.number().int().min(0),
  everyMs: z.number().int().min(1),
});

/** What a target's restore into a drill host did. */
export interface DrillRestore {
  /** `primary`, or `copy` when any chunk or index came from the copy. */
  store: string;
  fallbacks: StoreFallback[];
  /** Whether a VM was started (servers and clients have no start in the lab: their check is the data). */
  started: boolean;
  bytes: number;
}

/** Creates the drill activities over one configuration's stores, catalog and lab. */
export function createDrillActivities(deps: { loaded: LoadedConfig; paths: KuraPaths; catalog: Catalog }) {
  const { loaded, paths, catalog } = deps;
  const roots = storeRoots(paths.home, loaded.config.store);
  const stores = [
    { name: StoreName.Primary, store: new ChunkStore(roots.primary) },
    { name: StoreName.Copy, store: new ChunkStore(roots.copy) },
  ];
  const hosts = new LabDrillHosts(loaded, paths);
  const withLog = <T>(fn: (log: DrillLog) => T): T => {
    const log = new DrillLog(paths.catalog);
    try {
      return fn(log);
    } finally {
      log.close();
    }
  };

  return {
    /**
     * Every target a drill may take, per configured class, with the newest store backup(s) a
     * restore of it takes: a VM's software and data volume of one instant, a server's or client's
     * one volume. A target without one is listed with the reason, so a drill fails it visibly.
     */
    async planDrill(input: z.input<typeof PlanInput>): Promise<DrillCandidate[]> {
      return mapFailures(async () => {
        const r = parseWith(PlanInput, input, 'drill plan');
        const cfg = loaded.config;
        const classes = (r.classes ?? Object.values(ClassName)).filter((c) => cfg.classes[c] !== undefined);
        const out: DrillCandidate[] = [];
        const newest = (site: string, target: string) => catalog.listStoreBackups({ site, target });
        for (const className of classes) {
          if (className === ClassName.Vm) {
            for (const site of cfg.sites)
              for (const vm of site.vms) {
                const software = newest(site.name, `${vm.name}/software`);
                const data = newest(site.name, `${vm.name}/data`);
                const s = software.find((b) => data.some((d) => d.dataTime === b.dataTime));
                const d = s && data.find((x) => x.dataTime === s.dataTime);
                out.push({
                  className,
                  site: site.name,
                  target: vm.name,
                  backupIds: s && d ? [s.backupId, d.backupId] : [`${vm.name}/software`],
                  ...(s && d ? { dataTime: s.dataTime } : {}),
                  ...(s && d ? {} : { missing: `no whole image of ${vm.name} in the store` }),
                });
              }
            continue;
          }
          for (const v of classVolumes(cfg, className)) {
            const b = newest(v.site, v.target)[0];
            out.push({
              className,
              site: v.site,
              target: v.target,
              backupIds: [b?.backupId ?? v.target],
              ...(b ? {} : { missing: `no backup of ${v.target} in the store` }),
            });
          }
        }
        return out;
      });
    },

    /** Creates a drill's isolated host in a site (see LabDrillHosts.create). */
    async createDrillHost(input: z.input<typeof HostInput>): Promise<{ host: string }> {
      return mapFailures(async () => {
        const r = parseWith(HostInput, input, 'drill host');
        return { host: (await hosts.create(r.site, r.host)).host };
      });
    },

    /**
     * Restores a target's store backups into the drill host, each read chunk by chunk from the first
     * store with fallback to the copy and each chunk checked against its digest, then the index's
     * digest and the whole image's against the catalog's; a VM is then started there. Drills since
     * the definition patch bring a VM back with `restoreVmImage` instead (docs/adr/043); this path
     * stays for servers, clients, and the VMs of drills begun before it.
     */
    async restoreForDrill(input: z.input<typeof RestoreInput>): Promise<DrillRestore> {
      return mapFailures(async () => {
        const r = parseWith(RestoreInput, input, 'drill restore');
        const ctx = Context.current();
        const dir = path.join(hosts.dirOf(r.host), encodeURIComponent(r.target));
        await rm(dir, { recursive: true, force: true });
        await mkdir(dir, { recursive: true });
        const fallbacks: StoreFallback[] = [];
        const volumes: { file: string; sha256: string }[] = [];
        let fromCopy = false;
        let bytes = 0;
        for (const backupId of r.backupIds) {
          const b = catalog.backup(backupId);
          const recorded = catalog.piecesOf(backupId)[0]?.sha256;
          const file = path.join(dir, `${encodeURIComponent(backupId)}.img`);
          const read = await readBackup({
            stores,
            backupId,
            destination: { path: file, offset: 0 },
            onProgress: (p) => ctx.heartbeat({ backupId, bytes: p.bytes, total: p.total }),
          });
          fallbacks.push(...read.fallbacks);
          fromCopy ||= read.indexFrom === StoreName.Copy || read.fallbacks.length > 0;
          if (indexDigest(read.index) !== recorded)
            throw new ChecksumMismatchError(
              `${backupId}: the store's index is not the one the catalog recorded; the backup cannot be trusted`,
              { backupId },
            );
          const sha256 = await sha256File(file);
          if (b.sha256 !== null && sha256 !== b.sha256)
            throw new ChecksumMismatchError(
              `${backupId}: the restored image hashes to ${sha256}, but the catalog recorded ${b.sha256}`,
              { backupId },
            );
          volumes.push({ file, sha256 });
          bytes += read.index.sizeBytes;
        }
        const started = r.className === ClassName.Vm;
        if (started) await hosts.start(r.host, r.target, volumes);
        return { store: fromCopy ? StoreName.Copy : StoreName.Primary, fallbacks, started, bytes };
      });
    },

    /** Asks a VM on a drill host for its health until it is healthy or `timeoutMs` has passed. */
    async awaitDrillHealthy(input: z.input<typeof HealthInput>): Promise<{ healthy: boolean; detail: string }> {
      return mapFailures(async () => {
        const r = parseWith(HealthInput, input, 'drill health');
        const ctx = Context.current();
        const deadline = Date.now() + r.timeoutMs;
        for (;;) {
          const h = await hosts.health(r.host, r.vm);
          ctx.heartbeat(h.state);
          if (h.healthy || Date.now() >= deadline) return { healthy: h.healthy, detail: h.detail };
          await new Promise((res) => setTimeout(res, Math.min(r.everyMs, Math.max(1, deadline - Date.now()))));
        }
      });
    },

    /** Removes a drill host and everything restored into it; whether it was there. Idempotent. */
    async removeDrillHost(input: { host: string }): Promise<{ removed: boolean }> {
      return mapFailures(async () => ({
        removed: await hosts.remove(parseWith(HostInput.pick({ host: true }), input, 'drill host').host),
      }));
    },

    /** Records a drill's targets in the catalog (idempotent). */
    async recordDrill(input: { records: DrillRecord[] }): Promise<void> {
      return mapFailures(async () => {
        const records = parseWith(z.array(DrillRecordSchema), input.records, 'drill records');
        withLog((log) => records.forEach((rec) => log.record(rec)));
      });
    },

    /** A drill's recorded targets; NotFound for a drill never recorded. */
    async drillRecords(input: { drillId: string }): Promise<DrillRecord[]> {
      return mapFailures(async () => {
        const rows = withLog((log) => log.list({ drillId: input.drillId }));
        if (rows.length === 0) throw new NotFoundError(`no drill "${input.drillId}" in the catalog`);
        return rows;
      });
    },
  };
}
