/**
 * Kura's public client: what the CLI and other services import. The `Kura` facade and its parts
 * (VM protection, the resource pools), their option types, the builders of every workflow id and
 * task queue, the search attributes, the signals, queries and updates of the workflows, and the
 * contract of Kura's Nexus service. The parts live in `src/api/`; this module only names them.
 */
export { Kura, type CatalogRebuildOptions, type JobOptions, type JobStart, type OnlineJobOptions } from './api/kura';
export {
  KURA_NEXUS_ENDPOINT,
  KURA_NEXUS_SERVICE,
  NexusBackupInputSchema,
  NexusDataBackupInputSchema,
  NexusOnlineBackupInputSchema,
  NexusPoolTablesInputSchema,
  NexusRestoreInputSchema,
  NexusVmFailureInputSchema,
  kuraNexusService,
  type KuraNexusService,
  type NexusBackupInput,
  type NexusDataBackupInput,
  type NexusOnlineBackupInput,
  type NexusPoolTablesInput,
  type NexusRestoreInput,
  type NexusVmFailureInput,
} from './api/nexus-service';
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
  restoreWorkflowId,
  scheduleIdFor,
  scheduledFleetWorkflowId,
  vmDataBackupWorkflowId,
  vmFailureReportWorkflowId,
  type OperationKind,
} from './api/workflow-ids';
export { CONTROL_TASK_QUEUE, serverTaskQueue } from './api/task-queues';
export { JobKind, KuraKind, KuraRung, KuraSite, KuraTarget, KuraVm } from './search-attributes';
export {
  catalogRebuildProgressQuery,
  failureDetectedSignal,
  fleetProgressQuery,
  guardianQuery,
  ladderEndedSignal,
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
