/**
 * Kura's public client: what the CLI and other services import. The `Kura` facade and its parts
 * (VM protection, the resource pools), the data converter its Temporal clients need, their option types, the builders of every workflow id and
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
  kuraNexusEndpoint,
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
export { KuraStatus, RUNNING_KINDS, type StatusOptions } from './api/status';
export {
  applySchedules,
  listSchedules,
  policyScheduleId,
  type AppliedSchedules,
  type ScheduleRow,
} from './api/schedules';
export {
  applyNightSchedules,
  computeNightPlan,
  nightPlanRequest,
  type AppliedNightSchedules,
  type DriveLeftOut,
  type NightPlanResult,
} from './api/night';
export { cliUser, controlTaskQueue } from './api/environment';
export { installationClientInterceptors } from './api/installation-interceptors';
export { INSTALLATION_HEADER } from './api/installation-header';
export { DEFAULT_INSTALLATION, InstallationSchema } from './domain/installation';
export {
  backupWorkflowId,
  catalogRebuildWorkflowId,
  fleetWorkflowId,
  guardianWorkflowId,
  inInstallation,
  isKuraScheduleId,
  ladderWorkflowId,
  nightJobScheduleId,
  onlineBackupWorkflowId,
  operationWorkflowId,
  parseScheduleId,
  poolWorkflowId,
  replicaRefreshWorkflowId,
  restoreWorkflowId,
  scheduleIdFor,
  scheduledFleetWorkflowId,
  scheduledNightJobWorkflowId,
  vmDataBackupWorkflowId,
  vmFailureReportWorkflowId,
  type OperationKind,
} from './api/workflow-ids';
export { CONTROL_TASK_QUEUE, installationOfTaskQueue, installationTaskQueue, serverTaskQueue } from './api/task-queues';
export { copyDeviceTaskQueue } from './api/task-queues';
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

// The workflows as types, for typed starts and handles (`client.workflow.start<typeof sanOperation>`)
// and child workflows: type-only, because a workflow's code runs only inside a worker's sandbox.
export type {
  catalogRebuild,
  fleetProtection,
  onlineBackup,
  recoveryLadder,
  resourcePool,
  restore,
  sanOperation,
  vmGuardian,
} from './workflows';
// What each workflow, signal, query and update takes and returns.
export type {
  BackupReport,
  BackupRequest,
  CopyMode,
  CopySettings,
  JobTuning,
  PlanView,
  Progress,
  RestoreReport,
  RestoreRequest,
} from './domain/jobs';
export type { FleetProgress, FleetReport, FleetRequest, FleetTarget } from './domain/fleet';
export type { OnlineBackupReport, OnlineBackupRequest, OnlineProgress, OnlineSettings } from './domain/datapath';
export type { CatalogRebuildProgress, CatalogRebuildReport, CatalogRebuildRequest } from './domain/catalog-rebuild';
export type {
  DataBackupRequest,
  FailureReport,
  GuardianInput,
  GuardianView,
  ImageRecord,
  LadderInput,
  LadderResult,
  LadderView,
  RebuildRequest,
  ResolveRequest,
  Rung,
} from './domain/ladder';
export type { DeviceRow, Grant, MarkRequest, PoolTables, ReleaseRequest, ReserveRequest } from './domain/pool';
export type { ResourcePoolInput } from './workflows/resource-pool';
export type { BackupRecord, PieceRecord, StreamRecord } from './domain/catalog';
// The configuration the facade is bound to, read and validated as the CLI reads it.
export { configPath, loadConfig, parseConfigText, type LoadedConfig } from './config/load';
export type { Config, ConfigInput } from './domain/inventory';
// The data converter every Client and Worker talking to Kura needs: payloads are encrypted with the
// installation's key file (docs/security.md), failures' messages travel encoded.
export {
  kuraDataConverter,
  kuraPayloadCodecs,
  WORKFLOW_BUNDLE_CONVERTERS,
  type KeySource,
} from './codec/data-converter';
// The failure types a caller may meet, and the errors the client throws before anything starts.
export {
  ConfigInvalidError,
  ErrorType,
  InvalidInputError,
  KeyFileInvalidError,
  KeyUnavailableError,
  KuraError,
  NotFoundError,
  NON_RETRYABLE_ERROR_TYPES,
} from './domain/errors';
export { KuraRemote } from './api/remote';
