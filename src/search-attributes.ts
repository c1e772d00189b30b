/**
 * Typed search attribute keys every Kura workflow sets, so the Temporal UI can list runs by kind,
 * target and site (e.g. `KuraKind = "backup" AND KuraSite = "hospital"`).
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const KuraKind = defineSearchAttributeKey('KuraKind', SearchAttributeType.KEYWORD);
export const KuraTarget = defineSearchAttributeKey('KuraTarget', SearchAttributeType.KEYWORD);
export const KuraSite = defineSearchAttributeKey('KuraSite', SearchAttributeType.KEYWORD);
/** The VM a guardian or a recovery ladder belongs to. */
export const KuraVm = defineSearchAttributeKey('KuraVm', SearchAttributeType.KEYWORD);
/** The rung a recovery is on now (empty when none), so the UI lists every VM in recovery. */
export const KuraRung = defineSearchAttributeKey('KuraRung', SearchAttributeType.KEYWORD);

/** Values of KuraKind. */
export const JobKind = {
  Pool: 'pool',
  Backup: 'backup',
  Restore: 'restore',
  Fleet: 'fleet',
  OnlineBackup: 'online-backup',
  Guardian: 'guardian',
  Ladder: 'ladder',
  CatalogRebuild: 'catalog-rebuild',
} as const;
export type JobKind = (typeof JobKind)[keyof typeof JobKind];

/** Task queue of the control plane: workflows and control activities ($KURA_TASK_QUEUE overrides). */
export const CONTROL_TASK_QUEUE = 'kura-control';

/**
 * Task queue of one backup server, where the copy activities that run on that server wait:
 * `kura-server-<name>` beside `kura-control` (a control queue `x-kura-control` gives `x-kura-server-<name>`).
 */
export function serverTaskQueue(server: string, controlQueue: string = CONTROL_TASK_QUEUE): string {
  const base = controlQueue.endsWith('control') ? controlQueue.slice(0, -'control'.length) : `${controlQueue}-`;
  return `${base}server-${server}`;
}
