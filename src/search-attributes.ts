/**
 * Typed search attribute keys every Kura workflow sets, so the Temporal UI can list runs by kind,
 * target and site (e.g. `KuraKind = "backup" AND KuraSite = "hospital"`). Search attributes are
 * not encrypted (the server filters on them): KuraKind and KuraRung hold Kura's own vocabulary,
 * while KuraTarget, KuraSite and KuraVm name things of the estate — with kura.yaml's
 * `security.hashSearchAttributes` these hold a keyed hash of the name instead (docs/security.md).
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const KuraKind = defineSearchAttributeKey('KuraKind', SearchAttributeType.KEYWORD);
export const KuraTarget = defineSearchAttributeKey('KuraTarget', SearchAttributeType.KEYWORD);
export const KuraSite = defineSearchAttributeKey('KuraSite', SearchAttributeType.KEYWORD);
/** The VM a guardian or a recovery ladder belongs to. */
export const KuraVm = defineSearchAttributeKey('KuraVm', SearchAttributeType.KEYWORD);
/** The rung a recovery is on now (empty when none), so the UI lists every VM in recovery. */
export const KuraRung = defineSearchAttributeKey('KuraRung', SearchAttributeType.KEYWORD);
/** A remote-copy group's lag: seconds since the oldest write the remote site has not applied, and its bytes. */
export const KuraLagSeconds = defineSearchAttributeKey('KuraLagSeconds', SearchAttributeType.DOUBLE);
export const KuraLagBytes = defineSearchAttributeKey('KuraLagBytes', SearchAttributeType.INT);

/** Every search attribute Kura registers: the embedded server, the compose stack and the README name these. */
export const KURA_SEARCH_ATTRIBUTES = [
  KuraKind,
  KuraTarget,
  KuraSite,
  KuraVm,
  KuraRung,
  KuraLagSeconds,
  KuraLagBytes,
] as const;

/** The attributes whose values name things of the estate, and are hashed when kura.yaml asks for it. */
export const NAMING_ATTRIBUTES = [KuraTarget, KuraSite, KuraVm] as const;

/**
 * The memo field carrying the key of the search attribute hash (hex) to a workflow, which hashes
 * the values it sets itself with it. Memos are encrypted payloads; without this field, values stay names.
 */
export const LABEL_KEY_MEMO = 'kuraLabelKey';

/**
 * The name `temporal operator search-attribute create --type` and the dev server give a key's type:
 * the SDK's `KEYWORD_LIST` is `KeywordList`, `KEYWORD` is `Keyword`, and so on.
 */
export function searchAttributeTypeName(key: (typeof KURA_SEARCH_ATTRIBUTES)[number]): string {
  return key.type
    .split('_')
    .map((word) => word.charAt(0) + word.slice(1).toLowerCase())
    .join('');
}

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
  /** A failure report waiting for its ladder's outcome (a Nexus caller's). */
  VmReport: 'vm-report',
  /** A data-volume image asked of a guardian (a Nexus caller's). */
  VmDataBackup: 'vm-backup',
  ReplicaRefresh: 'replica-refresh',
  RemoteCopy: 'remote-copy',
} as const;
export type JobKind = (typeof JobKind)[keyof typeof JobKind];
