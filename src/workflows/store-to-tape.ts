/**
 * The long-term copy of store backups to tape (seed 000; docs/adr/042): each store backup a request
 * names is copied by the SAN operation of kind `backup` with the store backup as its source, so the
 * same streams carry it — two independent streams, chunk failover, pieces catalogued in the
 * catalog and on the cartridges, cartridges mounted through the pool — and the catalog records the
 * tape backup linked to the store backup it came from. A VM's whole image is its parts, each its own
 * tape backup.
 */
import { executeChild, workflowInfo, ApplicationFailure } from '@temporalio/workflow';
import { z } from 'zod';
import { backupIdFor } from '../domain/catalog';
import { ErrorType } from '../domain/errors';
import { CopyModeSchema, JobTuningSchema, type BackupReport } from '../domain/jobs';
import { operationWorkflowId } from '../api/workflow-ids';
import { acceptInput } from './failures';
import { ownInstallation } from './installation';
import { sanOperation } from './san-operation';
import { storeTapeActivities } from './store-proxies';

/** The request of `kura store to-tape`, and of a class run whose tape policy is due. */
export const StoreToTapeRequestSchema = z.object({
  /** The site; the one a backup id names, or the first that holds the target's store backups, when omitted. */
  site: z.string().min(1).optional(),
  /** Store backup ids, or targets (a VM: its whole image), each copied as it was at `at`. */
  refs: z.array(z.string().min(1)).min(1, 'name at least one store backup or target to copy to tape'),
  /** A target's newest store backup at or before this instant (ISO) is copied; now when omitted. */
  at: z.string().datetime({ offset: true }).optional(),
  streams: z.number().int().min(1).max(8).default(2),
  mode: CopyModeSchema.default('failover'),
  chunks: z.number().int().min(1).max(1000).default(10),
  chunkSize: z.number().int().min(4096).optional(),
  requestedBy: z.string().min(1),
  /** The request's instant: it names each tape backup (`<target>@<time>`). */
  requestedAt: z.string().datetime({ offset: true }),
  tuning: JobTuningSchema,
});
export type StoreToTapeRequest = z.input<typeof StoreToTapeRequestSchema>;

/** One store backup's copy on tape. */
export interface StoreTapeCopy {
  /** The store backup copied. */
  storeBackupId: string;
  target: string;
  /** The tape backup that holds the copy; `kura restore <backupId>` reads it back. */
  backupId: string;
  workflowId: string;
  sha256: string;
  sizeBytes: number;
  pieces: BackupReport['pieces'];
  streams: BackupReport['streams'];
}

export interface StoreToTapeReport {
  site: string;
  copies: StoreTapeCopy[];
}

/** Copies each store backup a request names to tape, one after another, and reports each tape backup. */
export async function storeToTape(input: StoreToTapeRequest): Promise<StoreToTapeReport> {
  const req = acceptInput(StoreToTapeRequestSchema, input, 'store to-tape request');
  const { workflowId } = workflowInfo();
  const tape = storeTapeActivities();

  // Every ref is resolved before any is copied: a bad one refuses the request and changes nothing.
  const planned: { site: string; backupId: string; target: string }[] = [];
  for (const ref of req.refs) {
    const plan = await tape.planStoreToTape({
      ref,
      ...(req.site === undefined ? {} : { site: req.site }),
      ...(req.at === undefined ? {} : { at: req.at }),
    });
    for (const part of plan.parts) {
      if (planned.some((p) => p.backupId === part.backupId)) continue;
      if (backupIdFor(part.target, req.requestedAt) === part.backupId)
        throw ApplicationFailure.nonRetryable(
          `a tape copy requested at ${req.requestedAt} would take the id of store backup ${part.backupId} itself; request it at another instant`,
          ErrorType.InvalidInput,
        );
      planned.push({ site: plan.site, ...part });
    }
  }

  // One at a time: the copies share the site's drives, and each holds its streams until it is on tape.
  const copies: StoreTapeCopy[] = [];
  for (const part of planned) {
    const report = await executeChild(sanOperation, {
      workflowId: operationWorkflowId('backup', part.target, req.requestedAt, ownInstallation()),
      args: [
        {
          kind: 'backup',
          site: part.site,
          target: part.target,
          requestedBy: `workflow:${workflowId}`,
          requestedAt: req.requestedAt,
          streams: req.streams,
          mode: req.mode,
          chunks: req.chunks,
          ...(req.chunkSize === undefined ? {} : { chunkSize: req.chunkSize }),
          tuning: req.tuning,
          fromStore: { backupId: part.backupId },
        },
      ],
      staticSummary: `tape copy of store backup ${part.backupId}`,
    });
    copies.push({
      storeBackupId: part.backupId,
      target: part.target,
      backupId: report.backupId,
      workflowId: report.workflowId,
      sha256: report.sha256,
      sizeBytes: report.sizeBytes,
      pieces: report.pieces,
      streams: report.streams,
    });
  }
  return { site: planned[0]?.site ?? req.site ?? '', copies };
}
