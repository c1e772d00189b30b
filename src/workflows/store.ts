/**
 * The workflows of the deduplicated store (seed 000; docs/adr/032): a backup of a volume into it,
 * and its operations — verify, prune by retention, garbage collection, and the sync of the copy in
 * another building. Each is one activity that heartbeats (the work is per chunk, on one disk), run
 * under a meaningful id `store/<op>/…` so the same operation cannot run twice at once.
 */
import { ApplicationFailure, workflowInfo } from '@temporalio/workflow';
import { z } from 'zod';
import { backupIdFor } from '../domain/catalog';
import { ErrorType } from '../domain/errors';
import { RetentionSchema, StoreBackupRequestSchema, StoreNameSchema, type StoreBackupReport } from '../domain/store';
import { ClassNameSchema } from '../domain/classes';
import { acceptInput } from './failures';
import { storeActivities } from './store-proxies';
import { controlActivities } from './proxies';
import { vmActivities } from './vm-proxies';

const VerifyRequestSchema = z.object({
  backupIds: z.array(z.string().min(1)).min(1, 'name at least one backup to verify'),
  store: StoreNameSchema.default('primary'),
});
const PruneRequestSchema = z.object({
  site: z.string().min(1),
  targets: z.array(z.string().min(1)).min(1, 'name at least one target to prune'),
  retention: RetentionSchema,
  dryRun: z.boolean().default(false),
});
const GcRequestSchema = z.object({
  store: StoreNameSchema.default('primary'),
  /** The grace period (ms); kura.yaml's `store.gcGrace` when omitted. */
  graceMs: z.number().int().min(0).optional(),
});
const SyncRequestSchema = z.object({ maxLagMs: z.number().int().min(0).optional() });
const ClassBackupRequestSchema = z.object({
  className: ClassNameSchema,
  /** Data time of every backup of the run (ISO); the workflow's start time when omitted. */
  dataTime: z.string().optional(),
  /** Volumes backed up at once. */
  concurrency: z.number().int().min(1).max(32).default(4),
  heartbeatMs: z.number().int().min(1000).default(60_000),
});

const VmImageRestoreRequestSchema = z.object({
  site: z.string().min(1),
  vm: z.string().min(1),
  /** The host the VM is recreated on. */
  host: z.string().min(1),
  /** The instant of the image; the newest whole image when omitted. */
  dataTime: z.string().optional(),
  /** How long the VM gets to report healthy once started, and how often it is asked. */
  healthTimeoutMs: z
    .number()
    .int()
    .min(0)
    .default(5 * 60_000),
  healthEveryMs: z.number().int().min(1).default(1_000),
});

/** What a VM's restore from its whole image did, and whether it reports healthy. */
export interface VmImageRestoreReport {
  vm: string;
  host: string;
  dataTime: string;
  software: string;
  data: string;
  healthy: boolean;
  health: string;
  /** From the restore's start to the VM reporting healthy. */
  tookMs: number;
  fallbacks: { chunk: number; digest: string; from: string; reason: string }[];
}

/** What a class's backup run did: each backup, and each target it skipped and why. */
export interface ClassBackupReport {
  className: string;
  dataTime: string;
  backups: (StoreBackupReport & { target: string })[];
  skipped: { target: string; reason: string }[];
}

/** Backs one volume up into the first store and records it in the catalog. */
export async function storeBackup(input: z.input<typeof StoreBackupRequestSchema>): Promise<StoreBackupReport> {
  const req = acceptInput(StoreBackupRequestSchema, input, 'store backup request');
  const { workflowId, startTime } = workflowInfo();
  const dataTime = req.dataTime ?? startTime.toISOString();
  return storeActivities(req.heartbeatMs).storeBackupVolume({
    site: req.site,
    target: req.target,
    array: req.array,
    volume: req.volume,
    backupId: backupIdFor(req.target, dataTime),
    job: workflowId,
    dataTime,
  });
}

/**
 * Verifies store backups: every chunk each references is read and re-hashed; a backup with a missing
 * or damaged chunk is marked bad in the catalog. Fails, naming them, when any is bad.
 */
export async function storeVerify(input: z.input<typeof VerifyRequestSchema>) {
  const req = acceptInput(VerifyRequestSchema, input, 'store verify request');
  const store = storeActivities();
  const results = [];
  for (const backupId of req.backupIds) results.push(await store.verifyStoreBackup({ backupId, store: req.store }));
  const bad = results.filter((r) => !r.good);
  if (bad.length > 0)
    throw ApplicationFailure.nonRetryable(
      `${bad.length} of ${results.length} backup(s) in the ${req.store} store are bad: ${bad
        .map((b) => `${b.backupId} (${b.bad.map((c) => c.reason).join('; ')})`)
        .join(', ')}; restores of them fall back to the other store — sync it, or back the targets up again`,
      ErrorType.ChecksumMismatch,
      results,
    );
  return results;
}

/** Prunes each target's store backups by the retention; the chunks go at the next garbage collection. */
export async function storePrune(input: z.input<typeof PruneRequestSchema>) {
  const req = acceptInput(PruneRequestSchema, input, 'store prune request');
  const store = storeActivities();
  const out: Record<string, { kept: string[]; removed: string[] }> = {};
  for (const target of req.targets)
    out[target] = await store.pruneStore({ site: req.site, target, retention: req.retention, dryRun: req.dryRun });
  return out;
}

/** Garbage collection of one store: mark every chunk an index names, then sweep with the grace period. */
export async function storeGc(input: z.input<typeof GcRequestSchema>) {
  const req = acceptInput(GcRequestSchema, input, 'store garbage collection request');
  return storeActivities().gcStore(req);
}

/**
 * Syncs the copy in another building from the first store, and reports its lag; past the policy
 * (`store.maxLag`) people are told, with the backups the copy still lacks.
 */
export async function storeSync(input: z.input<typeof SyncRequestSchema>) {
  const req = acceptInput(SyncRequestSchema, input, 'store sync request');
  const result = await storeActivities().syncStore(req);
  if (result.lag.alert)
    await controlActivities().notify({
      subject: `the store's copy in another building lags ${Math.round(result.lag.lagMs / 60_000)} min behind, past the policy of ${Math.round(result.lag.maxLagMs / 60_000)} min`,
      detail: { workflowId: workflowInfo().workflowId, behind: result.lag.behind, lastSyncAt: result.lag.lastSyncAt },
    });
  return result;
}

/**
 * Backs up every volume of one target class into the store, a few at a time, all with one data
 * time; a client outside its window or busy is skipped and reported, not failed. The run fails
 * only when a backup fails, naming it, after the others have finished.
 */
export async function classBackup(input: z.input<typeof ClassBackupRequestSchema>): Promise<ClassBackupReport> {
  const req = acceptInput(ClassBackupRequestSchema, input, 'class backup request');
  const { workflowId, startTime } = workflowInfo();
  const dataTime = req.dataTime ?? startTime.toISOString();
  const store = storeActivities(req.heartbeatMs);
  const plan = await store.planClassBackup({ className: req.className, at: dataTime });
  const backups: ClassBackupReport['backups'] = [];
  const failed: string[] = [];
  let next = 0;
  const lane = async () => {
    while (next < plan.take.length) {
      const v = plan.take[next++]!;
      try {
        const r = await store.storeBackupVolume({
          site: v.site,
          target: v.target,
          array: v.array,
          volume: v.volume,
          backupId: backupIdFor(v.target, dataTime),
          job: `${workflowId}#${v.target}`,
          dataTime,
        });
        backups.push({ ...r, target: v.target });
      } catch (err) {
        failed.push(`${v.target}: ${(err as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(req.concurrency, plan.take.length) }, lane));
  backups.sort((a, b) => (a.target < b.target ? -1 : 1));
  if (failed.length > 0)
    throw ApplicationFailure.nonRetryable(
      `${failed.length} of ${plan.take.length} backup(s) of class ${req.className} failed: ${failed.join('; ')}`,
      ErrorType.DeviceFault,
      { backups, skipped: plan.skipped },
    );
  return { className: req.className, dataTime, backups, skipped: plan.skipped };
}

/**
 * Restore of a VM from its whole image, in one step (seed 000): the software and data volumes of
 * one instant from the store, the VM recreated on the chosen host and started, then the wait until
 * it reports healthy. Fails, typed DeviceFault, when it does not within the timeout.
 */
export async function vmImageRestore(
  input: z.input<typeof VmImageRestoreRequestSchema>,
): Promise<VmImageRestoreReport> {
  const req = acceptInput(VmImageRestoreRequestSchema, input, 'VM image restore request');
  const { workflowId } = workflowInfo();
  const started = Date.now();
  const restored = await storeActivities().restoreVmImage({
    site: req.site,
    vm: req.vm,
    host: req.host,
    ...(req.dataTime === undefined ? {} : { dataTime: req.dataTime }),
    request: workflowId,
  });
  const health = await vmActivities({ activityHeartbeatMs: 30_000 }, req.healthTimeoutMs).awaitHealthy({
    site: req.site,
    vm: req.vm,
    timeoutMs: req.healthTimeoutMs,
    everyMs: req.healthEveryMs,
  });
  const report: VmImageRestoreReport = {
    vm: req.vm,
    host: restored.host,
    dataTime: restored.dataTime,
    software: restored.software,
    data: restored.data,
    healthy: health.healthy,
    health: health.detail,
    tookMs: Date.now() - started,
    fallbacks: restored.fallbacks,
  };
  if (!health.healthy)
    throw ApplicationFailure.nonRetryable(
      `${req.vm} was recreated on ${restored.host} from its image of ${restored.dataTime} but did not report healthy within ${req.healthTimeoutMs} ms (${health.detail}); look at it on the host, or restore an earlier image`,
      ErrorType.DeviceFault,
      report,
    );
  return report;
}
