/**
 * Restore drills (seed 000; docs/adr/035, 043): a sample of targets with every class represented is
 * restored from the store into an isolated lab host made for the drill — a VM recreated there from
 * its image's definition by the restore's own activity — each started (a VM) and checked, its
 * recovery time measured from the request to healthy; the host and all on it are removed whatever
 * happened, the drill is recorded in the catalog, and people are told of any failure. Also the
 * nightly estate report.
 */
import {
  ApplicationFailure,
  CancellationScope,
  patched,
  proxyActivities,
  workflowInfo,
  type RetryPolicy,
} from '@temporalio/workflow';
import { z } from 'zod';
import type { createDrillActivities } from '../activities/drill';
import type { createReportActivities } from '../activities/report';
import {
  DrillOutcome,
  DrillRequestSchema,
  drillHostName,
  pickSample,
  type DrillCandidate,
  type DrillRecord,
} from '../domain/drill';
import { ClassName } from '../domain/classes';
import { ErrorType, NON_RETRYABLE_ERROR_TYPES } from '../domain/errors';
import { StoreName } from '../domain/store';
import { acceptInput } from './failures';
import { controlActivities } from './proxies';
import { storeActivities } from './store-proxies';

type DrillActivities = ReturnType<typeof createDrillActivities>;
type ReportActivities = ReturnType<typeof createReportActivities>;

const retry: RetryPolicy = {
  maximumAttempts: 3,
  initialInterval: '1s',
  backoffCoefficient: 2,
  nonRetryableErrorTypes: [...NON_RETRYABLE_ERROR_TYPES],
};

/**
 * From this patch on, a drill brings a VM back as `vmImageRestore` does (docs/adr/043): the same
 * activity reads its whole image and creates it from the image's definition, on the drill's host.
 * Earlier runs restored its two volumes with `restoreForDrill` and started them from kura.yaml.
 */
export const DRILL_VM_FROM_DEFINITION_PATCH = 'drill-vm-from-definition';

/** How a drill brought a VM back: the image's instant, where its definition came from, its volumes. */
export interface DrillVmRestore {
  target: string;
  /** The name it ran under on the drill host. */
  name: string;
  dataTime: string;
  /** The image's definition, or kura.yaml for an image taken before images kept one. */
  definitionFrom: 'image' | 'kura.yaml';
  note: string | null;
  /** Its software and data volume as created (`<array>/<volume>`), named as the definition names them. */
  volumes: { software: string; data: string };
}

/** What a drill did: each target with its outcome and recovery time, and the hosts it removed. */
export interface DrillReport {
  drillId: string;
  targets: DrillRecord[];
  hostsRemoved: string[];
  failed: number;
  /** Each VM brought back from its whole image (runs before the definition patch have none). */
  vms: DrillVmRestore[];
}

const KNOWN_TYPES = new Set<string>(Object.values(ErrorType));

/** The typed reason of a failed activity or of a failure of our own. */
function reasonOf(err: unknown): { type: string; message: string } {
  let e: unknown = err;
  while (e instanceof Error) {
    if (e instanceof ApplicationFailure && e.type && KNOWN_TYPES.has(e.type))
      return { type: e.type, message: e.message };
    e = (e as { cause?: unknown }).cause;
  }
  return { type: ErrorType.DeviceFault, message: err instanceof Error ? err.message : String(err) };
}

/**
 * Runs one restore drill. Fails, typed by the first failed target's reason and carrying the report,
 * when any target failed; succeeds with the report when every target came back healthy.
 */
export async function restoreDrill(input: z.input<typeof DrillRequestSchema>): Promise<DrillReport> {
  const req = acceptInput(DrillRequestSchema, input, 'drill request');
  const drillId = workflowInfo().workflowId;
  const a = proxyActivities<DrillActivities>({
    startToCloseTimeout: '30 minutes',
    heartbeatTimeout: '1 minute',
    retry,
  });
  const health = proxyActivities<DrillActivities>({
    startToCloseTimeout: req.healthTimeoutMs + 60_000,
    heartbeatTimeout: '1 minute',
    retry,
  });
  const candidates = await a.planDrill(req.classes ? { classes: req.classes } : {});
  if (candidates.length === 0)
    throw ApplicationFailure.nonRetryable(
      'kura.yaml configures no target class with targets (`classes`); there is nothing to drill',
      ErrorType.NotFound,
    );
  // The workflow's own deterministic random: successive drills walk the estate.
  const sample = pickSample(candidates, req.perClass, Math.floor(Math.random() * 1_000_000));
  const host = drillHostName(drillId);
  const sites = [...new Set(sample.map((c) => c.site))];
  const created: string[] = [];
  const records: DrillRecord[] = [];
  const removed: string[] = [];
  const vms: DrillVmRestore[] = [];

  /** A VM brought back as `vmImageRestore` brings it back, on the drill's host of its own. */
  const restoreVm = async (c: DrillCandidate) => {
    const r = await storeActivities().restoreVmImage({
      site: c.site,
      vm: c.target,
      host,
      isolated: true,
      request: `${drillId}/${c.target}`,
      ...(c.dataTime === undefined ? {} : { dataTime: c.dataTime }),
    });
    vms.push({
      target: c.target,
      name: r.name,
      dataTime: r.dataTime,
      definitionFrom: r.definitionFrom,
      note: r.note,
      volumes: r.volumes,
    });
    return { name: r.name, started: true, store: r.fallbacks.length > 0 ? StoreName.Copy : StoreName.Primary };
  };

  const drillOne = async (c: DrillCandidate): Promise<void> => {
    const startedAt = new Date(Date.now()).toISOString();
    const t0 = Date.now();
    const base = { drillId, target: c.target, className: c.className, site: c.site, host, startedAt };
    try {
      if (c.missing !== undefined) throw ApplicationFailure.nonRetryable(c.missing, ErrorType.NotFound);
      const restored =
        c.className === ClassName.Vm && patched(DRILL_VM_FROM_DEFINITION_PATCH)
          ? await restoreVm(c)
          : {
              ...(await a.restoreForDrill({
                host,
                className: c.className,
                target: c.target,
                backupIds: c.backupIds,
              })),
              name: c.target,
            };
      if (restored.started) {
        const h = await health.awaitDrillHealthy({
          host,
          vm: restored.name,
          timeoutMs: req.healthTimeoutMs,
          everyMs: req.healthEveryMs,
        });
        if (!h.healthy)
          throw ApplicationFailure.nonRetryable(
            `${c.target} did not report healthy on ${host} within ${req.healthTimeoutMs} ms: ${h.detail}`,
            ErrorType.DeviceFault,
          );
      }
      records.push({
        ...base,
        backupId: c.backupIds.at(-1) ?? null,
        store: restored.store,
        endedAt: new Date(Date.now()).toISOString(),
        rtoMs: Date.now() - t0,
        outcome: DrillOutcome.Healthy,
        errorType: null,
        error: null,
      });
    } catch (err) {
      const reason = reasonOf(err);
      records.push({
        ...base,
        backupId: c.missing === undefined ? (c.backupIds.at(-1) ?? null) : null,
        store: null,
        endedAt: new Date(Date.now()).toISOString(),
        rtoMs: null,
        outcome: DrillOutcome.Failed,
        errorType: reason.type,
        error: reason.message,
      });
    }
  };

  try {
    for (const site of sites) {
      // Remembered before the call: a host half made by a failed attempt is removed too.
      created.push(site);
      await a.createDrillHost({ site, host });
    }
    let next = 0;
    const lane = async () => {
      while (next < sample.length) await drillOne(sample[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(3, sample.length) }, lane));
  } finally {
    // Compensation: whatever happened, even on cancellation, the drill's host goes.
    await CancellationScope.nonCancellable(async () => {
      if (created.length > 0 && (await a.removeDrillHost({ host })).removed) removed.push(host);
    });
  }
  records.sort((x, y) => (x.className + x.target < y.className + y.target ? -1 : 1));
  await a.recordDrill({ records });
  const failed = records.filter((r) => r.outcome === DrillOutcome.Failed);
  vms.sort((x, y) => (x.target < y.target ? -1 : 1));
  const report: DrillReport = { drillId, targets: records, hostsRemoved: removed, failed: failed.length, vms };
  if (failed.length > 0) {
    if (req.alert)
      await controlActivities().notify({
        subject: `restore drill ${drillId}: ${failed.length} of ${records.length} target(s) did not come back: ${failed
          .map((f) => `${f.target} (${f.errorType}: ${f.error})`)
          .join('; ')}`,
        detail: {
          drillId,
          failed: failed.map((f) => ({
            target: f.target,
            className: f.className,
            errorType: f.errorType,
            error: f.error,
          })),
        },
      });
    const first = failed[0]!;
    throw ApplicationFailure.nonRetryable(
      `${failed.length} of ${records.length} target(s) of drill ${drillId} failed: ${failed
        .map((f) => `${f.target}: ${f.error}`)
        .join('; ')}; \`kura drill show ${drillId}\` has the details`,
      first.errorType ?? ErrorType.DeviceFault,
      report,
    );
  }
  return report;
}

const ReportRequestSchema = z.object({
  /** Where the page is written; `<home>/reports/estate-<date>.html` when omitted. */
  out: z.string().min(1).optional(),
});

/** Writes the estate report (docs/adr/035), first recording the copy's lag so the report plots it. */
export async function estateReport(
  input: z.input<typeof ReportRequestSchema>,
): Promise<{ file: string; bytes: number }> {
  const req = acceptInput(ReportRequestSchema, input, 'estate report request');
  const r = proxyActivities<ReportActivities>({ startToCloseTimeout: '10 minutes', retry });
  return r.writeEstateReport({ ...req, at: new Date(Date.now()).toISOString() });
}
