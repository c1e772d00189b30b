/**
 * The contract of Kura's Nexus service `kura`: the operations other teams' workflows call across
 * namespaces, each with the zod schema of its input (the handler parses every input with it) and the
 * domain type of its output. Pure (no Node built-ins, no Temporal client), so a caller's workflow
 * imports it to build its Nexus client.
 */
import * as nexus from 'nexus-rpc';
import { z } from 'zod';
import { BackupIdSchema } from '../domain/catalog';
import { OnlineSettingsSchema, type OnlineBackupReport } from '../domain/datapath';
import { DEFAULT_INSTALLATION } from '../domain/installation';
import { NameSchema } from '../domain/inventory';
import { CopySettingsSchema, IsoTimeSchema, type BackupReport, type RestoreReport } from '../domain/jobs';
import type { ImageRecord, LadderResult } from '../domain/ladder';
import type { PoolTables } from '../domain/pool';

/** The service's name, as callers address it through an endpoint. */
export const KURA_NEXUS_SERVICE = 'kura';

/**
 * The endpoint `kura start` creates for the default installation, routed to its namespace and
 * control queue; another installation's is {@link kuraNexusEndpoint}.
 */
export const KURA_NEXUS_ENDPOINT = 'kura';

/**
 * The endpoint `kura start` creates for an installation: `kura` for the default one, `kura-<installation>`
 * for any other, so installations sharing a server each keep an endpoint routed to their own queue.
 */
export function kuraNexusEndpoint(installation: string): string {
  return installation === DEFAULT_INSTALLATION ? KURA_NEXUS_ENDPOINT : `${KURA_NEXUS_ENDPOINT}-${installation}`;
}

/**
 * Who asks, and when. The instant names the job (its workflow id), so a start the Nexus machinery
 * retries finds the job it started instead of running it twice; a calling workflow passes its own
 * clock's `new Date().toISOString()`, which replays the same.
 */
const RequestFields = {
  requestedBy: z.string().min(1),
  requestedAt: IsoTimeSchema,
  /** The site (default: the one of the target, or the first in kura.yaml). */
  site: NameSchema.optional(),
};

const copy = CopySettingsSchema.shape;

/** `backup`: the six-step SAN operation for a VM's data volume (or array/volume), to tape. */
export const NexusBackupInputSchema = z.object({
  /** A VM name (its data volume) or `array/volume`. */
  target: z.string().min(1),
  /** A policy of kura.yaml whose copy settings apply; otherwise the site's tuning. */
  policy: NameSchema.optional(),
  streams: copy.streams.unwrap().optional(),
  mode: copy.mode.unwrap().optional(),
  chunks: copy.chunks.unwrap().optional(),
  chunkSize: copy.chunkSize,
  /** `direct`: copy devices move the bytes where they can (docs/adr/029); otherwise the policy's or the tuning's. */
  streamKind: copy.streamKind,
  ...RequestFields,
});
export type NexusBackupInput = z.input<typeof NexusBackupInputSchema>;

/** `restore`: a backup read back, verified, and renamed into place below a restore root. */
export const NexusRestoreInputSchema = z.object({
  backupId: BackupIdSchema,
  /** Absolute path of the file to create; it must lie under a configured restore root. */
  destination: z.string().min(1),
  ...RequestFields,
});
export type NexusRestoreInput = z.input<typeof NexusRestoreInputSchema>;

/** `onlineBackup`: a backup through the datapath while the host keeps using the volume (seed 002). */
export const NexusOnlineBackupInputSchema = z.object({
  target: z.string().min(1),
  /** Overrides of kura.yaml's `datapath` settings. */
  settings: OnlineSettingsSchema.partial().optional(),
  ...RequestFields,
});
export type NexusOnlineBackupInput = z.input<typeof NexusOnlineBackupInputSchema>;

/** `reportVmFailure`: a failure of a VM, handed to its guardian; the answer is the ladder's outcome. */
export const NexusVmFailureInputSchema = z.object({
  vm: NameSchema,
  reason: z.string().min(1).max(2000),
  ...RequestFields,
});
export type NexusVmFailureInput = z.input<typeof NexusVmFailureInputSchema>;

/** `requestDataBackup`: a verified image of a VM's data volume now, kept by its guardian. */
export const NexusDataBackupInputSchema = z.object({
  vm: NameSchema,
  ...RequestFields,
});
export type NexusDataBackupInput = z.input<typeof NexusDataBackupInputSchema>;

/** `poolTables`: a site's resource pool, as its tables stand now. */
export const NexusPoolTablesInputSchema = z.object({ site: NameSchema.optional() });
export type NexusPoolTablesInput = z.input<typeof NexusPoolTablesInputSchema>;

/**
 * The `kura` service. Every operation but `poolTables` is asynchronous, backed by a workflow run:
 * cancelling the caller's operation cancels that run. Refusals arrive as typed failures: an input
 * its schema rejects as a `BAD_REQUEST` handler error, any other refusal (`NotFound`,
 * `AlreadyRunning`, `InRecovery`, …) as a failed operation; either way the cause chain holds an
 * `ApplicationFailure` whose type is one of Kura's `ErrorType`s, as a failed job's does.
 */
export const kuraNexusService = nexus.service(KURA_NEXUS_SERVICE, {
  /** Answers with the report of step 6 once the backup is on tape, verified and catalogued. */
  backup: nexus.operation<NexusBackupInput, BackupReport>(),
  restore: nexus.operation<NexusRestoreInput, RestoreReport>(),
  onlineBackup: nexus.operation<NexusOnlineBackupInput, OnlineBackupReport>(),
  /** Answers when the ladder the report joined or started has ended: recovered, resolved or rebuilt. */
  reportVmFailure: nexus.operation<NexusVmFailureInput, LadderResult>(),
  requestDataBackup: nexus.operation<NexusDataBackupInput, ImageRecord>(),
  /** Synchronous: a query of the pool's entity workflow. */
  poolTables: nexus.operation<NexusPoolTablesInput, PoolTables>(),
});
export type KuraNexusService = typeof kuraNexusService;
