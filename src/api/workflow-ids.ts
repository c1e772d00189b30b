/**
 * Every workflow id and schedule id Kura uses, built in one place. Ids are meaningful and stable:
 * starting the same job twice is rejected by Temporal instead of running twice, so the client, the
 * workflows that start children, the CLI and the tests must all spell them the same way. Pure (no
 * Node built-ins, no Temporal client), so workflow code imports it too.
 */
import { compactTime } from '../domain/catalog';
import type { OperationKind as AnyOperationKind } from '../domain/jobs';

/** Every schedule id of Kura starts so, whatever the installation. */
const SCHEDULE_PREFIX = 'kura/';

/** The kinds of SAN operation a `sanOperation` or `replicaRefresh` workflow runs (a restore has its own id). */
export type OperationKind = Exclude<AnyOperationKind, 'restore'>;

/** A SAN operation (`sanOperation`): `op/<kind>/<target>/<time>`; the target may be `array/volume`. */
export function operationWorkflowId(kind: OperationKind, target: string, requestedAt: string): string {
  return `op/${kind}/${target}/${compactTime(requestedAt)}`;
}

/** A backup of one target, requested at this instant: `op/backup/<target>/<time>`. */
export function backupWorkflowId(target: string, requestedAt: string): string {
  return operationWorkflowId('backup', target, requestedAt);
}

/** A replica-refresh of one target, requested at this instant: `op/replica-refresh/<target>/<time>`. */
export function replicaRefreshWorkflowId(target: string, requestedAt: string): string {
  return operationWorkflowId('replica-refresh', target, requestedAt);
}

/** A listing of a site's pairs and snapshots: `san/<site>/<time>`. */
export function sanListingWorkflowId(site: string, requestedAt: string): string {
  return `san/${site}/${compactTime(requestedAt)}`;
}

/** A restore of one backup, requested at this instant: `restore/<backup>/<time>`. */
export function restoreWorkflowId(backupId: string, requestedAt: string): string {
  return `restore/${backupId}/${compactTime(requestedAt)}`;
}

/** An online backup of one volume (seed 002): `online/<array>/<volume>/<time>`. */
export function onlineBackupWorkflowId(array: string, volume: string, requestedAt: string): string {
  return `online/${array}/${volume}/${compactTime(requestedAt)}`;
}

/** A fleet run of a policy started by hand: `fleet/<policy>/<time>`. */
export function fleetWorkflowId(policy: string, requestedAt: string): string {
  return `fleet/${policy}/${compactTime(requestedAt)}`;
}

/**
 * The fleet run a policy's schedule starts: `fleet/<policy>`, to which Temporal appends the
 * scheduled time (`fleet/<policy>-<time>`), so two nights never share an id.
 */
export function scheduledFleetWorkflowId(policy: string): string {
  return `fleet/${policy}`;
}

/** A rebuild of a site's catalog from its cartridges: `catalog-rebuild/<site>/<time>`. */
export function catalogRebuildWorkflowId(site: string, requestedAt: string): string {
  return `catalog-rebuild/${site}/${compactTime(requestedAt)}`;
}

/** The guardian of a VM (seed 001), one per VM for its whole life: `vm/<vm>`. */
export function guardianWorkflowId(vm: string): string {
  return `vm/${vm}`;
}

/** The recovery ladder of one incident of a VM: `ladder/<vm>/<incident>`. */
export function ladderWorkflowId(vm: string, incident: string): string {
  return `ladder/${vm}/${incident}`;
}

/**
 * A failure of a VM reported through Kura's Nexus service, waiting for the outcome of the ladder it
 * joined or started: `vm-report/<vm>/<time>`.
 */
export function vmFailureReportWorkflowId(vm: string, requestedAt: string): string {
  return `vm-report/${vm}/${compactTime(requestedAt)}`;
}

/** A data-volume image of a VM requested through Kura's Nexus service: `vm-backup/<vm>/<time>`. */
export function vmDataBackupWorkflowId(vm: string, requestedAt: string): string {
  return `vm-backup/${vm}/${compactTime(requestedAt)}`;
}

/** The resource pool of a site (seed 004), one per site: `pool/<site>`. */
export function poolWorkflowId(site: string): string {
  return `pool/${site}`;
}

/** The Temporal Schedule that runs a policy every night: `kura/<site>/<policy>`. */
export function scheduleIdFor(site: string, policy: string): string {
  return `${SCHEDULE_PREFIX}${site}/${policy}`;
}

/** Whether a schedule is one of Kura's (of any installation on the namespace). */
export function isKuraScheduleId(scheduleId: string): boolean {
  return scheduleId.startsWith(SCHEDULE_PREFIX);
}

/**
 * The site and policy of one of Kura's schedule ids (the inverse of `scheduleIdFor`); undefined for
 * any other id. Site names hold no `/`, so the site ends at the first one after the prefix.
 */
export function parseScheduleId(scheduleId: string): { site: string; policy: string } | undefined {
  if (!isKuraScheduleId(scheduleId)) return undefined;
  const rest = scheduleId.slice(SCHEDULE_PREFIX.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) return undefined;
  return { site: rest.slice(0, slash), policy: rest.slice(slash + 1) };
}
