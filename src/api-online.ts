/**
 * Starting an online backup (seed 002) from the client side: the workflow id `online/<volume>/<time>`,
 * its search attributes and summary, and the settings taken from kura.yaml's `datapath` section.
 */
import { WorkflowExecutionAlreadyStartedError, type WorkflowHandle } from '@temporalio/client';
import { TypedSearchAttributes } from '@temporalio/common';
import type { Kura } from './api';
import { findSite, resolveTargetRef } from './config/targets';
import { compactTime } from './domain/catalog';
import { OnlineSettingsSchema, type OnlineSettings } from './domain/datapath';
import { ErrorType, InvalidInputError, KuraError, formatPath } from './domain/errors';
import { JobKind, KuraKind, KuraSite, KuraTarget } from './searchAttributes';
import type { onlineBackup } from './workflows';

export interface OnlineJobOptions {
  site?: string;
  requestedBy?: string;
  requestedAt?: string;
  /** Overrides of the settings kura.yaml gives (tests use milliseconds). */
  settings?: Partial<OnlineSettings>;
  deviceAttempts?: number;
}

/** Starts an online backup of a VM's data volume (or array/volume); fails fast on an unknown target. */
export async function startOnlineBackup(kura: Kura, target: string, opts: OnlineJobOptions = {}): Promise<WorkflowHandle<typeof onlineBackup>> {
  const { config } = kura.loaded;
  const site = findSite(config, opts.site);
  const { array, volume } = resolveTargetRef(site, target);
  const parsed = OnlineSettingsSchema.safeParse({ ioTimeoutMs: config.datapath.ioTimeout, safetyFactor: config.datapath.safetyFactor, ...opts.settings });
  if (!parsed.success) throw new InvalidInputError(`invalid online backup settings: ${parsed.error.issues.map((i) => `${formatPath(i.path)}: ${i.message}`).join('; ')}`);
  const requestedAt = opts.requestedAt ?? new Date().toISOString();
  const workflowId = `online/${array}/${volume}/${compactTime(requestedAt)}`;
  try {
    return await kura.client.workflow.start<typeof onlineBackup>('onlineBackup', {
      taskQueue: kura.taskQueue,
      workflowId,
      args: [{ site: site.name, target, requestedBy: opts.requestedBy ?? cliUser(), requestedAt, settings: parsed.data, deviceAttempts: opts.deviceAttempts ?? 5 }],
      typedSearchAttributes: new TypedSearchAttributes([
        { key: KuraKind, value: JobKind.OnlineBackup },
        { key: KuraTarget, value: target },
        { key: KuraSite, value: site.name },
      ]),
      memo: { requestedBy: opts.requestedBy ?? cliUser() },
      staticSummary: `online backup of ${target} (${array}/${volume}, ${site.name})`,
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      throw new KuraError(ErrorType.AlreadyRunning, `${workflowId} was already started; watch it in the Temporal UI or wait a second and ask again`, { cause: err });
    }
    throw err;
  }
}

function cliUser(): string {
  return `cli:${process.env.USER ?? process.env.LOGNAME ?? 'unknown'}`;
}
