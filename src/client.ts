/**
 * Kura's public client: what the CLI and other services import. The `Kura` facade and its parts
 * (VM protection, the resource pools), their option types, the builders of every workflow id and
 * task queue, the search attributes, and the signals, queries and updates of the workflows. The
 * parts live in `src/api/`; this module only names them.
 */
export { Kura, type CatalogRebuildOptions, type JobOptions, type OnlineJobOptions } from './api/kura';
export { KuraVms, ensureGuardian, ensureGuardians, siteOfVm } from './api/vms';
export { KuraPool, ensurePool } from './api/pool';
export {
  applySchedules,
  listSchedules,
  policyScheduleId,
  type AppliedSchedules,
  type ScheduleRow,
} from './api/schedules';
export { cliUser, controlTaskQueue } from './api/environment';
export {
  backupWorkflowId,
  catalogRebuildWorkflowId,
  fleetWorkflowId,
  guardianWorkflowId,
  isKuraScheduleId,
  ladderWorkflowId,
  onlineBackupWorkflowId,
  operationWorkflowId,
  parseScheduleId,
  poolWorkflowId,
  replicaRefreshWorkflowId,
  restoreWorkflowId,
  scheduleIdFor,
  scheduledFleetWorkflowId,
  type OperationKind,
} from './api/workflow-ids';
export { CONTROL_TASK_QUEUE, serverTaskQueue } from './api/task-queues';
export { JobKind, KuraKind, KuraRung, KuraSite, KuraTarget, KuraVm } from './search-attributes';
export {
  catalogRebuildProgressQuery,
  failureDetectedSignal,
  fleetProgressQuery,
  guardianQuery,
  ladderQuery,
  markDeviceSignal,
  onlineProgressQuery,
  planQuery,
  progressQuery,
  rebuildUpdate,
  releaseUpdate,
  requestDataBackupUpdate,
  reserveStreamsUpdate,
  resolveUpdate,
  syncInventorySignal,
  tablesQuery,
} from './messages';
