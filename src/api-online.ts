/**
 * Starting an online backup (seed 002) from the client side: the workflow id `online/<volume>/<time>`,
 * its search attributes and summary, and the settings taken from kura.yaml's `datapath` section.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { cliUser, type Kura } from './api';
import { findSite, resolveTargetRef } from './config/targets';
import { compactTime } from './domain/catalog';
import { OnlineSettingsSchema, type OnlineSettings } from './domain/datapath';
import { parseWith } from './domain/validate';
import { JobKind } from './search-attributes';
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
export async function startOnlineBackup(
  kura: Kura,
  target: string,
  opts: OnlineJobOptions = {},
): Promise<WorkflowHandle<typeof onlineBackup>> {
  const { config } = kura.loaded;
  const site = findSite(config, opts.site);
  const { array, volume } = resolveTargetRef(site, target);
  const settings = parseWith(
    OnlineSettingsSchema,
    {
      ioTimeoutMs: config.datapath.ioTimeout,
      safetyFactor: config.datapath.safetyFactor,
      ...opts.settings,
    },
    'online backup settings',
  );
  const requestedAt = opts.requestedAt ?? new Date().toISOString();
  return kura.start<typeof onlineBackup>('onlineBackup', `online/${array}/${volume}/${compactTime(requestedAt)}`, {
    args: [
      {
        site: site.name,
        target,
        requestedBy: opts.requestedBy ?? cliUser(),
        requestedAt,
        settings: settings,
        deviceAttempts: opts.deviceAttempts ?? 5,
      },
    ],
    kind: JobKind.OnlineBackup,
    target,
    site: site.name,
    summary: `online backup of ${target} (${array}/${volume}, ${site.name})`,
  });
}
