/**
 * The workflows of the deduplicated store (seed 000; docs/adr/032): a backup of a volume into it,
 * and its operations — verify, prune by retention, garbage collection, and the sync of the copy in
 * another building. Each is one activity that heartbeats (the work is per chunk, on one disk), run
 * under a meaningful id `store/<op>/…` so the same operation cannot run twice at once.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  executeChild,
  patched,
  workflowInfo,
} from '@temporalio/workflow';
import { z } from 'zod';
import { backupIdFor } from '../domain/catalog';
import { ErrorType } from '../domain/errors';
import { RetentionSchema, StoreBackupRequestSchema, StoreNameSchema, type StoreBackupReport } from '../domain/store';
import { ClassName, ClassNameSchema, type ClassVolume } from '../domain/classes';
import { imageSnapshotName } from '../domain/vm-image';
import type { HeldVmImage } from '../activities/store';
import { acceptInput } from './failures';
import { storeToTape, type StoreToTapeReport } from './store-to-tape';
import { storeActivities, storeTapeActivities } from './store-proxies';
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
  /** A VM's guest is frozen at most this long for its image (it thaws by itself past it). */
  maxFreezeMs: z.number().int().min(1).default(10_000),
  /** How long the guest's writes in flight get to drain before the freeze gives up. */
  drainTimeoutMs: z.number().int().min(1).default(5_000),
});

/**
 * From this patch on, a VM's two volumes are taken at one instant (docs/adr/037): the guest frozen
 * around a snapshot of both, the image read from the snapshots, the VM's definition kept with it.
 */
export const VM_IMAGE_CONSISTENT_PATCH = 'vm-image-consistent';

const VmImageRestoreRequestSchema = z.object({
  site: z.string().min(1),
  vm: z.string().min(1),
  /** The host the VM is recreated on. */
  host: z.string().min(1),
  /** The name the VM is recreated under (its own when omitted); needs an image that holds its definition. */
  name: z.string().min(1).optional(),
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
  /** The name it runs under now (`vm` unless the request renamed it). */
  name: string;
  /** Where its definition came from: the image, or kura.yaml for an image taken before images kept one. */
  definitionFrom: 'image' | 'kura.yaml';
  note: string | null;
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
  /** The class's tape policy (docs/adr/042): the store backups copied to tape by this run, or why not. */
  toTape?: { copies: StoreToTapeReport['copies']; error: string | null };
}

/**
 * Marks the class runs that end by copying their due backups to tape under the class's tape policy
 * (`classes.<class>.toTape`, docs/adr/042); earlier runs ended with their backups.
 */
export const CLASS_TO_TAPE_PATCH = 'class-to-tape';

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
  if (req.className === ClassName.Vm && patched(VM_IMAGE_CONSISTENT_PATCH)) {
    const vms = byVm(plan.take);
    let nextVm = 0;
    const vmLane = async () => {
      while (nextVm < vms.length) {
        const v = vms[nextVm++]!;
        try {
          backups.push(...(await backUpVmImage(v, dataTime, workflowId, req)));
        } catch (err) {
          failed.push(`${v.vm}: ${causeMessage(err)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(req.concurrency, vms.length) }, vmLane));
    backups.sort((a, b) => (a.target < b.target ? -1 : 1));
    if (failed.length > 0)
      throw ApplicationFailure.nonRetryable(
        `${failed.length} of ${vms.length} whole-VM image(s) of class ${req.className} failed: ${failed.join('; ')}`,
        ErrorType.DeviceFault,
        { backups, skipped: plan.skipped },
      );
    return withTapeCopies({ className: req.className, dataTime, backups, skipped: plan.skipped }, workflowId);
  }
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
  return withTapeCopies({ className: req.className, dataTime, backups, skipped: plan.skipped }, workflowId);
}

/**
 * The class's tape policy after a run whose backups all succeeded: the backups whose target has no
 * tape copy younger than the policy's period are copied to tape as one child. A copy that fails does
 * not fail the run (its backups are in the store): the report says why, and people are told.
 */
async function withTapeCopies(report: ClassBackupReport, workflowId: string): Promise<ClassBackupReport> {
  if (!patched(CLASS_TO_TAPE_PATCH)) return report;
  const due = await storeTapeActivities().storeToTapeDue({
    className: report.className as ClassName,
    at: report.dataTime,
    backupIds: report.backups.map((b) => b.backupId),
  });
  if (!due.policy || due.due.length === 0) return report;
  try {
    const copied = await executeChild(storeToTape, {
      workflowId: `${workflowId}/to-tape`,
      args: [
        {
          // A VM's image goes whole (its volumes and its definition): named by the VM, at the run's instant.
          refs:
            report.className === ClassName.Vm
              ? [...new Set(due.due.map((d) => d.target.split('/')[0] as string))]
              : due.due.map((d) => d.backupId),
          at: report.dataTime,
          streams: due.policy.streams,
          mode: due.policy.mode,
          requestedBy: `workflow:${workflowId}`,
          // The copies' own instant, which names them: never the backups' data time, which names those.
          requestedAt: new Date().toISOString(),
          tuning: due.tuning,
        },
      ],
      staticSummary: `tape copies of ${due.due.length} store backup(s) of class ${report.className}`,
    });
    return { ...report, toTape: { copies: copied.copies, error: null } };
  } catch (err) {
    const error = causeMessage(err);
    await controlActivities()
      .notify({
        subject: `the tape copies of class ${report.className}'s backups failed`,
        detail: { workflowId, backups: due.due.map((d) => d.backupId), error },
      })
      .catch(() => undefined);
    return { ...report, toTape: { copies: [], error } };
  }
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
    ...(req.name === undefined ? {} : { name: req.name }),
    request: workflowId,
  });
  // Results of runs before images kept a definition carry no name: the VM kept its own.
  const name = restored.name ?? req.vm;
  const health = await vmActivities({ activityHeartbeatMs: 30_000 }, req.healthTimeoutMs).awaitHealthy({
    site: req.site,
    vm: name,
    timeoutMs: req.healthTimeoutMs,
    everyMs: req.healthEveryMs,
  });
  const report: VmImageRestoreReport = {
    vm: req.vm,
    name,
    definitionFrom: restored.definitionFrom ?? 'kura.yaml',
    note: restored.note ?? null,
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
      `${name} was recreated on ${restored.host} from its image of ${restored.dataTime} but did not report healthy within ${req.healthTimeoutMs} ms (${health.detail}); look at it on the host, or restore an earlier image`,
      ErrorType.DeviceFault,
      report,
    );
  return report;
}

/** One VM of a class's plan with its software and data volume. */
interface VmOfPlan {
  vm: string;
  site: string;
  software: ClassVolume;
  data: ClassVolume;
}

/** The plan's volumes grouped by VM (targets `<vm>/software` and `<vm>/data`), in plan order. */
function byVm(take: ClassVolume[]): VmOfPlan[] {
  const out: VmOfPlan[] = [];
  for (const v of take) {
    const slash = v.target.lastIndexOf('/');
    const vm = v.target.slice(0, slash);
    const part = v.target.slice(slash + 1);
    let entry = out.find((x) => x.vm === vm && x.site === v.site);
    if (!entry) {
      entry = { vm, site: v.site, software: v, data: v };
      out.push(entry);
    }
    if (part === 'software') entry.software = v;
    else entry.data = v;
  }
  return out;
}

/** The message of an activity's failure, not the wrapper's "Activity task failed". */
function causeMessage(err: unknown): string {
  if (err instanceof ActivityFailure && err.cause) return err.cause.message;
  return (err as Error).message;
}

/**
 * A VM's whole image at one instant (docs/adr/037): hold it (guest frozen around a snapshot of both
 * volumes, or frozen for the read when the array has no room for snapshots), read both volumes into
 * the store from what holds the instant, check it still held, keep the VM's definition with it.
 * Whatever happens the guest is thawed and the snapshots deleted, in a scope that cancellation does
 * not reach; on a failure the volume backups already written are discarded, so no half image stays.
 */
async function backUpVmImage(
  v: VmOfPlan,
  dataTime: string,
  workflowId: string,
  req: { heartbeatMs: number; maxFreezeMs: number; drainTimeoutMs: number },
): Promise<ClassBackupReport['backups']> {
  const store = storeActivities(req.heartbeatMs);
  const parts = {
    software: { array: v.software.array, volume: v.software.volume, readPath: null },
    data: { array: v.data.array, volume: v.data.volume, readPath: null },
  };
  const hold = {
    site: v.site,
    vm: v.vm,
    snapshot: imageSnapshotName(dataTime),
    parts,
    consistency: 'snapshot' as const,
  };
  const ids = { software: backupIdFor(v.software.target, dataTime), data: backupIdFor(v.data.target, dataTime) };
  const out: ClassBackupReport['backups'] = [];
  let failure: unknown;
  try {
    const held: HeldVmImage = await store.takeVmImage({
      site: v.site,
      vm: v.vm,
      dataTime,
      maxFreezeMs: req.maxFreezeMs,
      drainTimeoutMs: req.drainTimeoutMs,
    });
    for (const part of ['software', 'data'] as const) {
      const vol = v[part];
      const readPath = held.parts[part].readPath;
      const r = await store.storeBackupVolume({
        site: vol.site,
        target: vol.target,
        array: vol.array,
        volume: vol.volume,
        backupId: ids[part],
        job: `${workflowId}#${vol.target}`,
        dataTime,
        ...(readPath === null ? {} : { readPath }),
      });
      out.push({ ...r, target: vol.target });
    }
    const check = await store.checkVmImageHeld({
      site: v.site,
      vm: v.vm,
      consistency: held.consistency,
      snapshot: held.snapshot,
      parts: held.parts,
      frozenAt: held.frozenAt,
    });
    await store.recordVmImage({
      site: v.site,
      vm: v.vm,
      dataTime,
      softwareBackupId: ids.software,
      dataBackupId: ids.data,
      consistency: held.consistency,
      frozenMs: check.heldMs ?? held.frozenMs,
      definition: held.definition,
    });
  } catch (err) {
    failure = err;
  }
  await CancellationScope.nonCancellable(async () => {
    await store.releaseVmImage(hold);
    if (failure !== undefined)
      await store.discardVmImageBackups({
        site: v.site,
        vm: v.vm,
        dataTime,
        backupIds: [ids.software, ids.data],
      });
  });
  if (failure !== undefined) throw failure;
  return out;
}
