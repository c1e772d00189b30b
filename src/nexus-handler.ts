/**
 * The handler of Kura's Nexus service `kura` (the contract is src/api/nexus-service.ts), registered on
 * the control worker: each operation parses its input with its schema, starts the job the `Kura`
 * facade would start (same id, queue, search attributes and summary) with the Nexus operation's links
 * and callback, and turns Kura's refusals into typed Nexus failures.
 */
import type { Client } from '@temporalio/client';
import { ApplicationFailure, type Workflow, type WorkflowResultType } from '@temporalio/common';
import { WorkflowRunOperationHandler, startWorkflow, type WorkflowHandle } from '@temporalio/nexus';
import * as nexus from 'nexus-rpc';
import type { LoadedConfig } from './config/load';
import { findSite } from './config/targets';
import { ErrorType, KuraError } from './domain/errors';
import { parseWith } from './domain/validate';
import { Kura, alreadyRunning, type JobStart } from './api/kura';
import {
  NexusBackupInputSchema,
  NexusDataBackupInputSchema,
  NexusOnlineBackupInputSchema,
  NexusPoolTablesInputSchema,
  NexusRestoreInputSchema,
  NexusVmFailureInputSchema,
  kuraNexusService,
} from './api/nexus-service';
import { vmDataBackupWorkflowId, vmFailureReportWorkflowId } from './api/workflow-ids';
import type { vmDataBackup, vmFailureReport } from './workflows';

/** What the handler needs from the worker: its client, kura.yaml and the control queue. */
export interface KuraNexusDeps {
  client: Client;
  loaded: LoadedConfig;
  taskQueue: string;
}

/** Creates the handler of the `kura` service, bound to one installation's configuration and control queue. */
export function createKuraNexusHandler(deps: KuraNexusDeps): nexus.ServiceHandler<typeof kuraNexusService.operations> {
  const kura = new Kura(deps.client, deps.loaded, deps.taskQueue);

  return nexus.serviceHandler(kuraNexusService, {
    backup: new WorkflowRunOperationHandler(
      refusing(async (ctx, raw) => {
        const { target, site, policy, requestedBy, requestedAt, ...copy } = parseWith(
          NexusBackupInputSchema,
          raw,
          'backup request',
        );
        return startJob(ctx, kura.backupJob(target, { site, policy, requestedBy, requestedAt, ...copy }));
      }),
    ),

    restore: new WorkflowRunOperationHandler(
      refusing(async (ctx, raw) => {
        const { backupId, destination, site, requestedBy, requestedAt } = parseWith(
          NexusRestoreInputSchema,
          raw,
          'restore request',
        );
        return startJob(ctx, kura.restoreJob(backupId, destination, { site, requestedBy, requestedAt }));
      }),
    ),

    onlineBackup: new WorkflowRunOperationHandler(
      refusing(async (ctx, raw) => {
        const { target, site, settings, requestedBy, requestedAt } = parseWith(
          NexusOnlineBackupInputSchema,
          raw,
          'online backup request',
        );
        return startJob(ctx, kura.onlineBackupJob(target, { site, settings, requestedBy, requestedAt }));
      }),
    ),

    reportVmFailure: new WorkflowRunOperationHandler(
      refusing(async (ctx, raw) => {
        const req = parseWith(NexusVmFailureInputSchema, raw, 'VM failure report');
        const site = kura.vms.siteOf(req.vm, req.site).name;
        // The report is a signal to the guardian: it must run before the report is sent.
        await kura.vms.guardian(req.vm, site);
        return startJob<typeof vmFailureReport>(ctx, {
          workflowType: 'vmFailureReport',
          options: {
            taskQueue: deps.taskQueue,
            workflowId: vmFailureReportWorkflowId(req.vm, req.requestedAt, deps.loaded.config.installation),
            args: [
              { site, vm: req.vm, reason: req.reason, requestedBy: req.requestedBy, requestedAt: req.requestedAt },
            ],
            staticSummary: `failure of ${req.vm} reported by ${req.requestedBy}: ${req.reason}`,
          },
        });
      }),
    ),

    requestDataBackup: new WorkflowRunOperationHandler(
      refusing(async (ctx, raw) => {
        const req = parseWith(NexusDataBackupInputSchema, raw, 'data backup request');
        const site = kura.vms.siteOf(req.vm, req.site).name;
        return startJob<typeof vmDataBackup>(ctx, {
          workflowType: 'vmDataBackup',
          options: {
            taskQueue: deps.taskQueue,
            workflowId: vmDataBackupWorkflowId(req.vm, req.requestedAt, deps.loaded.config.installation),
            args: [{ site, vm: req.vm, requestedBy: req.requestedBy, requestedAt: req.requestedAt }],
            staticSummary: `data backup of ${req.vm} requested by ${req.requestedBy}`,
          },
        });
      }),
    ),

    poolTables: refusing(async (_ctx, raw) => {
      const req = parseWith(NexusPoolTablesInputSchema, raw, 'pool tables request');
      return kura.pool.tables(findSite(deps.loaded.config, req.site).name);
    }),
  });
}

/**
 * Starts a job's workflow as the backing run of the Nexus operation. A retried start carries the
 * same request id and finds its run; another request for the same job is `AlreadyRunning`.
 */
async function startJob<W extends Workflow>(
  ctx: nexus.StartOperationContext,
  job: JobStart<W>,
): Promise<WorkflowHandle<WorkflowResultType<W>>> {
  try {
    return await startWorkflow<W>(ctx, job.workflowType, job.options);
  } catch (err) {
    throw asNexusError(alreadyRunning(err, job.options.workflowId));
  }
}

/** Runs an operation's start, turning Kura's refusals into typed Nexus failures. */
function refusing<I, O>(
  start: (ctx: nexus.StartOperationContext, input: I) => Promise<O>,
): (ctx: nexus.StartOperationContext, input: I) => Promise<O> {
  return async (ctx, input) => {
    try {
      return await start(ctx, input);
    } catch (err) {
      throw asNexusError(err);
    }
  };
}

/**
 * A Kura error as the Nexus failure that tells the caller what to do: an input its schema rejects is
 * a `BAD_REQUEST` (never retried), a refusal no retry can cure fails the operation, and a service
 * that does not answer is `UNAVAILABLE` (the caller's server retries the start). Each carries an
 * ApplicationFailure of the error's type, so the caller reads the type as from a failed job.
 */
export function asNexusError(err: unknown): unknown {
  if (!(err instanceof KuraError)) return err;
  const failure = ApplicationFailure.create({
    message: err.message,
    type: err.type,
    nonRetryable: !err.retryable,
    details: [{ ...err.details, issues: err.issues }],
  });
  if (err.type === ErrorType.InvalidInput)
    return new nexus.HandlerError('BAD_REQUEST', err.message, { cause: failure, retryableOverride: false });
  if (err.retryable) return new nexus.HandlerError('UNAVAILABLE', err.message, { cause: failure });
  return new nexus.OperationError('failed', err.message, { cause: failure });
}
