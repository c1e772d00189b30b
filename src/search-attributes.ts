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
} as const;
export type JobKind = (typeof JobKind)[keyof typeof JobKind];
