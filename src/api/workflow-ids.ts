/**
 * Every workflow id and schedule id Kura uses, built in one place. Ids are meaningful and stable:
 * starting the same job twice is rejected by Temporal instead of running twice, so the client, the
 * workflows that start children, the CLI and the tests must all spell them the same way. Pure (no
 * Node built-ins, no Temporal client), so workflow code imports it too.
 *
 * Every id is of one installation: `<installation>/<id>` (`3f9c2a71/pool/hospital`), so two estates
 * on one namespace with the same site and VM names never meet on an id. The default installation's
 * ids are those of before installations existed (`pool/hospital`), so what runs keeps its ids.
 */
import { compactTime } from '../domain/catalog';
import { DEFAULT_INSTALLATION } from '../domain/installation';
import type { OperationKind as AnyOperationKind } from '../domain/jobs';

/** Every schedule id of Kura starts so, whatever the installation. */
const SCHEDULE_PREFIX = 'kura/';

/** The kinds of SAN operation a `sanOperation` or `replicaRefresh` workflow runs (a restore has its own id). */
export type OperationKind = Exclude<AnyOperationKind, 'restore'>;

/** A SAN operation (`sanOperation`): `op/<kind>/<target>/<time>`; the target may be `array/volume`. */
export function operationWorkflowId(
  kind: OperationKind,
  target: string,
  requestedAt: string,
  installation: string = DEFAULT_INSTALLATION,
): string {
  return inInstallation(`op/${kind}/${target}/${compactTime(requestedAt)}`, installation);
}

/** A backup of one target, requested at this instant: `op/backup/<target>/<time>`. */
export function backupWorkflowId(
  target: string,
  requestedAt: string,
  installation: string = DEFAULT_INSTALLATION,
): string {
  return operationWorkflowId('backup', target, requestedAt, installation);
}

/** A replica-refresh of one target, requested at this instant: `op/replica-refresh/<target>/<time>`. */
export function replicaRefreshWorkflowId(
  target: string,
  requestedAt: string,
  installation: string = DEFAULT_INSTALLATION,
): string {
  return operationWorkflowId('replica-refresh', target, requestedAt, installation);
}

/** A listing of a site's pairs and snapshots: `san/<site>/<time>`. */
export function sanListingWorkflowId(
  site: string,
  requestedAt: string,
  installation: string = DEFAULT_INSTALLATION,
): string {
  return inInstallation(`san/${site}/${compactTime(requestedAt)}`, installation);
}

/** A restore of one backup, requested at this instant: `restore/<backup>/<time>`. */
export function restoreWorkflowId(
  backupId: string,
  requestedAt: string,
  installation: string = DEFAULT_INSTALLATION,
): string {
  return inInstallation(`restore/${backupId}/${compactTime(requestedAt)}`, installation);
}

/** An online backup of one volume (seed 002): `online/<array>/<volume>/<time>`. */
export function onlineBackupWorkflowId(
  array: string,
  volume: string,
  requestedAt: string,
  installation: string = DEFAULT_INSTALLATION,
): string {
  return inInstallation(`online/${array}/${volume}/${compactTime(requestedAt)}`, installation);
}

/** A fleet run of a policy started by hand: `fleet/<policy>/<time>`. */
export function fleetWorkflowId(
  policy: string,
  requestedAt: string,
  installation: string = DEFAULT_INSTALLATION,
): string {
  return inInstallation(`fleet/${policy}/${compactTime(requestedAt)}`, installation);
}

/**
 * The fleet run a policy's schedule starts: `fleet/<policy>`, to which Temporal appends the
 * scheduled time (`fleet/<policy>-<time>`), so two nights never share an id.
 */
export function scheduledFleetWorkflowId(policy: string, installation: string = DEFAULT_INSTALLATION): string {
  return inInstallation(`fleet/${policy}`, installation);
}

/** A rebuild of a site's catalog from its cartridges: `catalog-rebuild/<site>/<time>`. */
export function catalogRebuildWorkflowId(
  site: string,
  requestedAt: string,
  installation: string = DEFAULT_INSTALLATION,
): string {
  return inInstallation(`catalog-rebuild/${site}/${compactTime(requestedAt)}`, installation);
}

/** The guardian of a VM (seed 001), one per VM for its whole life: `vm/<vm>`. */
export function guardianWorkflowId(vm: string, installation: string = DEFAULT_INSTALLATION): string {
  return inInstallation(`vm/${vm}`, installation);
}

/** The recovery ladder of one incident of a VM: `ladder/<vm>/<incident>`. */
export function ladderWorkflowId(vm: string, incident: string, installation: string = DEFAULT_INSTALLATION): string {
  return inInstallation(`ladder/${vm}/${incident}`, installation);
}

/**
 * A failure of a VM reported through Kura's Nexus service, waiting for the outcome of the ladder it
 * joined or started: `vm-report/<vm>/<time>`.
 */
export function vmFailureReportWorkflowId(
  vm: string,
  requestedAt: string,
  installation: string = DEFAULT_INSTALLATION,
): string {
  return inInstallation(`vm-report/${vm}/${compactTime(requestedAt)}`, installation);
}

/** A data-volume image of a VM requested through Kura's Nexus service: `vm-backup/<vm>/<time>`. */
export function vmDataBackupWorkflowId(
  vm: string,
  requestedAt: string,
  installation: string = DEFAULT_INSTALLATION,
): string {
  return inInstallation(`vm-backup/${vm}/${compactTime(requestedAt)}`, installation);
}

/** The resource pool of a site (seed 004), one per site: `pool/<site>`. */
export function poolWorkflowId(site: string, installation: string = DEFAULT_INSTALLATION): string {
  return inInstallation(`pool/${site}`, installation);
}

/**
 * The Temporal Schedule that runs a policy every night: `kura/<site>/<policy>`, and
 * `kura/<installation>/<site>/<policy>` for an installation other than the default one.
 */
export function scheduleIdFor(site: string, policy: string, installation: string = DEFAULT_INSTALLATION): string {
  return installation === DEFAULT_INSTALLATION
    ? `${SCHEDULE_PREFIX}${site}/${policy}`
    : `${SCHEDULE_PREFIX}${installation}/${site}/${policy}`;
}

/**
 * The Temporal Schedule of one job of the night plan (`kura plan apply`): `kura/<site>/<policy>+<target>`,
 * the installation in front as for a policy's; the target is URI-encoded, for it may hold `/` or `:`.
 */
export function nightJobScheduleId(
  site: string,
  policy: string,
  target: string,
  installation: string = DEFAULT_INSTALLATION,
): string {
  return scheduleIdFor(site, `${policy}+${encodeURIComponent(target)}`, installation);
}

/**
 * The fleet run of one target a night-plan schedule starts: `fleet/<policy>/<target>`, to which
 * Temporal appends the scheduled time.
 */
export function scheduledNightJobWorkflowId(
  policy: string,
  target: string,
  installation: string = DEFAULT_INSTALLATION,
): string {
  return inInstallation(`fleet/${policy}/${target}`, installation);
}

/** Whether a schedule is one of Kura's (of any installation on the namespace). */
export function isKuraScheduleId(scheduleId: string): boolean {
  return scheduleId.startsWith(SCHEDULE_PREFIX);
}

/**
 * The installation, site and policy of one of Kura's schedule ids (the inverse of `scheduleIdFor`);
 * undefined for any other id. Installations, sites and policies hold no `/`, so two parts after the
 * prefix are the default installation's site and policy, three add the installation in front.
 */
export function parseScheduleId(
  scheduleId: string,
): { installation: string; site: string; policy: string; target?: string } | undefined {
  if (!isKuraScheduleId(scheduleId)) return undefined;
  const parts = scheduleId.slice(SCHEDULE_PREFIX.length).split('/');
  if (parts.some((p) => p === '')) return undefined;
  if (parts.length !== 2 && parts.length !== 3) return undefined;
  const [installation, site, last] =
    parts.length === 2 ? [DEFAULT_INSTALLATION, parts[0]!, parts[1]!] : [parts[0]!, parts[1]!, parts[2]!];
  // A night-plan job's schedule: `<policy>+<target>` (policy names hold no `+`).
  const plus = last.indexOf('+');
  if (plus < 0) return { installation, site, policy: last };
  return { installation, site, policy: last.slice(0, plus), target: decodeURIComponent(last.slice(plus + 1)) };
}

/** A workflow id of an installation: `<installation>/<id>`, or the id itself for the default installation. */
export function inInstallation(id: string, installation: string): string {
  return installation === DEFAULT_INSTALLATION ? id : `${installation}/${id}`;
}

/** The async remote copy of one group (seed 003, Fig. 10), one per group: `remote/<group>`. */
export function remoteCopyWorkflowId(group: string, installation: string = DEFAULT_INSTALLATION): string {
  return inInstallation(`remote/${group}`, installation);
}

/**
 * A SAN operation on a remote-copy group (set-up, failover, failback), requested at this instant:
 * `op/<kind>/<group>/<time>`, beside the engine's other operations.
 */
export function remoteOperationWorkflowId(
  kind: 'remote-setup' | 'remote-failover' | 'remote-failback',
  group: string,
  requestedAt: string,
  installation: string = DEFAULT_INSTALLATION,
): string {
  return inInstallation(`op/${kind}/${group}/${compactTime(requestedAt)}`, installation);
}

/** A job of the deduplicated store: `store/<op>/<subject>/<time>` (op: backup, class, verify, prune, gc, sync). */
export function storeWorkflowId(
  op: string,
  subject: string,
  requestedAt: string,
  installation: string = DEFAULT_INSTALLATION,
): string {
  return inInstallation(`store/${op}/${subject}/${compactTime(requestedAt)}`, installation);
}

/** The schedule of a store job: `kura/store/<job>` (`kura/<installation>/store/<job>`), job `class-vm`, `sync`, … */
export function storeScheduleId(job: string, installation: string = DEFAULT_INSTALLATION): string {
  return installation === DEFAULT_INSTALLATION
    ? `${SCHEDULE_PREFIX}store/${job}`
    : `${SCHEDULE_PREFIX}${installation}/store/${job}`;
}
