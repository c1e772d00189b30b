/**
 * The `Kura` facade: one object, bound to a Temporal client, kura.yaml and the control task queue,
 * that starts backups, restores, online backups and fleet runs with meaningful workflow ids, search
 * attributes and summaries, keeps each policy's Temporal Schedule in line with kura.yaml, and
 * exposes VM protection (`kura.vms`) and the resource pools (`kura.pool`). The CLI is a thin layer
 * over it; other services use it too (or start the workflows of `src/workflows` as children).
 */
import {
  WorkflowExecutionAlreadyStartedError,
  type Client,
  type WorkflowHandle,
  type WorkflowStartOptions,
} from '@temporalio/client';
import { TypedSearchAttributes, type Workflow } from '@temporalio/common';
import type { LoadedConfig } from '../config/load';
import { copySettings, jobTuning } from '../config/tuning';
import { checkTargetRef, findSite, resolveTargetRef } from '../config/targets';
import { BackupIdSchema } from '../domain/catalog';
import { OnlineSettingsSchema, type OnlineSettings } from '../domain/datapath';
import { ErrorType, KuraError, NotFoundError } from '../domain/errors';
import { parseWith } from '../domain/validate';
import { StoreNameSchema, type StoreName } from '../domain/store';
import {
  kindOfMethod,
  RestoreVolumeSchema,
  type BackupMethod,
  type CopySettings,
  type JobTuning,
  type PlanView,
  type RestoreVolume,
} from '../domain/jobs';
import { planQuery } from '../messages';
import { JobKind, KuraKind, KuraSite, KuraTarget } from '../search-attributes';
import { searchAttributeLabels } from '../codec/labels';
import type {
  catalogRebuild,
  fleetProtection,
  onlineBackup,
  replicaRefresh,
  restore,
  sanListing,
  sanOperation,
} from '../workflows';
import { cliUser, controlTaskQueue } from './environment';
import { KuraPool } from './pool';
import { KuraStatus } from './status';
import { applyNightSchedules, computeNightPlan, type AppliedNightSchedules, type NightPlanResult } from './night';
import { applySchedules, listSchedules, policyScheduleId, type AppliedSchedules, type ScheduleRow } from './schedules';
import { KuraVms } from './vms';
import {
  catalogRebuildWorkflowId,
  operationWorkflowId,
  replicaRefreshWorkflowId,
  sanListingWorkflowId,
  fleetWorkflowId,
  onlineBackupWorkflowId,
  restoreWorkflowId,
} from './workflow-ids';

export interface JobOptions {
  site?: string;
  requestedBy?: string;
  /** The request's instant (names the job); now when omitted. */
  requestedAt?: string;
  tuning?: Partial<JobTuning>;
}

/** A restore's options: for a backup in the deduplicated store, also the store to read first. */
export interface RestoreOptions extends JobOptions {
  fromStore?: StoreName;
}

export interface OnlineJobOptions {
  site?: string;
  requestedBy?: string;
  requestedAt?: string;
  /** Overrides of the settings kura.yaml gives (tests use milliseconds). */
  settings?: Partial<OnlineSettings>;
  deviceAttempts?: number;
}

export interface CatalogRebuildOptions {
  /** The site (default: the first in the configuration). */
  site?: string;
  /** Merge the rebuilt catalog into this file on the control worker's host (absolute). */
  out?: string;
  requestedBy?: string;
  /** The request's instant (names the job); now when omitted. */
  requestedAt?: string;
  tuning?: Partial<JobTuning>;
}

/**
 * A job's workflow start as the facade makes it: the workflow type and the client's start options
 * (id, task queue, input, search attributes, memo, summary). `Kura` starts it with its client; Kura's
 * Nexus handler starts the same with the Nexus operation's links and callback.
 */
export interface JobStart<W extends Workflow = Workflow> {
  workflowType: string;
  options: WorkflowStartOptions<W>;
}

/** Kura's client: the jobs, schedules, guardians and pools of one installation, as the CLI and services use them. */
export class Kura {
  /** The control task queue every job of this installation runs on. */
  readonly taskQueue: string;
  /** kura.yaml's installation: part of the task queue and of every workflow id this client starts. */
  readonly installation: string;
  /** VM protection: guardians, data-volume images, recovery ladders. */
  readonly vms: KuraVms;
  /** The resource pools of the sites: their tables, devices marked (un)available. */
  readonly pool: KuraPool;
  /** The operator's page: what runs, the last night, RPO breaches, devices out, ladders waiting. */
  readonly status: KuraStatus;

  /** `taskQueue` defaults to $KURA_TASK_QUEUE, else `kura-control`; either gets kura.yaml's installation. */
  constructor(
    readonly client: Client,
    readonly loaded: LoadedConfig,
    taskQueue?: string,
  ) {
    this.installation = loaded.config.installation;
    this.taskQueue = controlTaskQueue(taskQueue, this.installation);
    this.vms = new KuraVms(client, loaded, this.taskQueue);
    this.pool = new KuraPool(client, loaded, this.taskQueue);
    this.status = new KuraStatus(client, loaded, this.taskQueue, this.pool);
  }

  private tuning(over?: Partial<JobTuning>): JobTuning {
    return { ...jobTuning(this.loaded.config), ...over };
  }

  /**
   * Starts a backup of a VM's data volume (or array/volume); fails fast on an unknown target.
   * Streams, mode and chunks default to kura.yaml's `tuning` (a policy's, when `policy` is named).
   * `method` picks the kind: `direct` (the volume itself), `split` (its pair's replica, split),
   * `snapshot` (a snapshot taken at once); `pairWaitMs` bounds a split's wait for its pair.
   */
  async startBackup(
    target: string,
    opts: JobOptions &
      Partial<CopySettings> & { policy?: string; method?: BackupMethod; pairWaitMs?: number; server?: string } = {},
  ): Promise<WorkflowHandle<typeof sanOperation>> {
    return this.launch(this.backupJob(target, opts));
  }

  /** The start of a backup as `startBackup` makes it, without starting it; fails fast on an unknown target. */
  backupJob(
    target: string,
    opts: JobOptions &
      Partial<CopySettings> & { policy?: string; method?: BackupMethod; pairWaitMs?: number; server?: string } = {},
  ): JobStart<typeof sanOperation> {
    const site = findSite(this.loaded.config, opts.site);
    checkTargetRef(site, target);
    if (opts.server !== undefined && !site.servers.some((s) => s.name === opts.server))
      throw new NotFoundError(
        `no backup server "${opts.server}" in site ${site.name}; name one of ${site.servers.map((s) => s.name).join(', ')}`,
        { site: site.name, server: opts.server },
      );
    const requestedAt = opts.requestedAt ?? new Date().toISOString();
    const kind = kindOfMethod(opts.method ?? 'direct');
    const workflowId = operationWorkflowId(kind, target, requestedAt, this.installation);
    return this.job<typeof sanOperation>('sanOperation', workflowId, {
      args: [
        {
          kind,
          site: site.name,
          target,
          requestedBy: opts.requestedBy ?? cliUser(),
          requestedAt,
          ...this.copy(site.name, opts),
          ...(opts.pairWaitMs === undefined ? {} : { pairWaitMs: opts.pairWaitMs }),
          ...(opts.server === undefined ? {} : { server: opts.server }),
          tuning: this.tuning(opts.tuning),
        },
      ],
      kind: JobKind.Backup,
      target,
      site: site.name,
      summary: `${kind} of ${target} (${site.name})`,
    });
  }

  /**
   * Starts a replica-refresh: the target's replica brought up to date (paired from the array's free
   * pool when it has none) and split, kept as a point-in-time copy.
   */
  async startReplicaRefresh(
    target: string,
    opts: JobOptions & { pairWaitMs?: number } = {},
  ): Promise<WorkflowHandle<typeof replicaRefresh>> {
    const site = findSite(this.loaded.config, opts.site);
    checkTargetRef(site, target);
    const requestedAt = opts.requestedAt ?? new Date().toISOString();
    const workflowId = replicaRefreshWorkflowId(target, requestedAt, this.installation);
    return this.start<typeof replicaRefresh>('replicaRefresh', workflowId, {
      args: [
        {
          kind: 'replica-refresh',
          site: site.name,
          target,
          requestedBy: opts.requestedBy ?? cliUser(),
          requestedAt,
          ...(opts.pairWaitMs === undefined ? {} : { pairWaitMs: opts.pairWaitMs }),
          tuning: this.tuning(opts.tuning),
        },
      ],
      kind: JobKind.ReplicaRefresh,
      target,
      site: site.name,
      summary: `replica-refresh of ${target} (${site.name})`,
    });
  }

  /** The pairs and snapshots of a site's arrays (default: the first site), as the arrays report them now. */
  async sanListing(opts: { site?: string } = {}): Promise<Awaited<ReturnType<typeof sanListing>>> {
    const site = findSite(this.loaded.config, opts.site);
    return this.client.workflow.execute<typeof sanListing>('sanListing', {
      taskQueue: this.taskQueue,
      workflowId: sanListingWorkflowId(site.name, new Date().toISOString(), this.installation),
      args: [{ site: site.name }],
      staticSummary: `pairs and snapshots of ${site.name}`,
    });
  }

  /** The plan of an operation (any kind, restores too) as it stands: its steps and every re-plan. */
  async plan(workflowId: string): Promise<PlanView> {
    return this.client.workflow.getHandle(workflowId).query(planQuery);
  }

  private copy(site: string, opts: Partial<CopySettings> & { policy?: string }): CopySettings {
    const base = copySettings(this.loaded.config, site, opts.policy);
    const out: CopySettings = {
      streams: opts.streams ?? base.streams,
      mode: opts.mode ?? base.mode,
      chunks: opts.chunks ?? base.chunks,
    };
    const streamKind = opts.streamKind ?? base.streamKind;
    // Left out when LAN-free, so a backup's input is what it was before direct streams.
    if (streamKind !== undefined && streamKind !== 'lan-free') out.streamKind = streamKind;
    if (opts.chunkSize !== undefined) out.chunkSize = opts.chunkSize;
    return out;
  }

  /**
   * Starts a restore of a backup into a new file, or into a new volume `{ array, volume }` that the
   * array (driver: qsd) creates from its free pool and serves to hosts once the image is verified.
   */
  async startRestore(
    backupId: string,
    destination: string | RestoreVolume,
    opts: RestoreOptions = {},
  ): Promise<WorkflowHandle<typeof restore>> {
    return this.launch(this.restoreJob(backupId, destination, opts));
  }

  /** The start of a restore as `startRestore` makes it, without starting it. */
  restoreJob(
    backupId: string,
    destination: string | RestoreVolume,
    opts: RestoreOptions = {},
  ): JobStart<typeof restore> {
    parseWith(BackupIdSchema, backupId, 'backup id');
    const requestedAt = opts.requestedAt ?? new Date().toISOString();
    const target = backupId.slice(0, backupId.lastIndexOf('@'));
    const site = findSite(this.loaded.config, opts.site);
    const workflowId = restoreWorkflowId(backupId, requestedAt, this.installation);
    return this.job<typeof restore>('restore', workflowId, {
      args: [
        {
          backupId,
          ...(typeof destination === 'string'
            ? { destination }
            : { toVolume: parseWith(RestoreVolumeSchema, destination, 'restore volume') }),
          ...(opts.fromStore === undefined ? {} : { fromStore: parseWith(StoreNameSchema, opts.fromStore, 'store') }),
          requestedBy: opts.requestedBy ?? cliUser(),
          requestedAt,
          tuning: this.tuning(opts.tuning),
        },
      ],
      kind: JobKind.Restore,
      target,
      site: site.name,
      summary: `restore of ${backupId} to ${typeof destination === 'string' ? destination : `a new volume ${destination.array}/${destination.volume}`}`,
    });
  }

  /**
   * Starts an online backup (seed 002) of a VM's data volume (or array/volume) through the
   * datapath; fails fast on an unknown target. Its settings come from kura.yaml's `datapath`.
   */
  async startOnlineBackup(target: string, opts: OnlineJobOptions = {}): Promise<WorkflowHandle<typeof onlineBackup>> {
    return this.launch(this.onlineBackupJob(target, opts));
  }

  /** The start of an online backup as `startOnlineBackup` makes it, without starting it. */
  onlineBackupJob(target: string, opts: OnlineJobOptions = {}): JobStart<typeof onlineBackup> {
    const { config } = this.loaded;
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
    const workflowId = onlineBackupWorkflowId(array, volume, requestedAt, this.installation);
    return this.job<typeof onlineBackup>('onlineBackup', workflowId, {
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

  /** Starts a fleet run: every target of a policy (`all`: every VM), `concurrency` at once. */
  async startFleet(
    policy: string,
    opts: JobOptions & { concurrency?: number; targets?: string[] } = {},
  ): Promise<WorkflowHandle<typeof fleetProtection>> {
    const site = findSite(this.loaded.config, opts.site);
    const requestedAt = opts.requestedAt ?? new Date().toISOString();
    const workflowId = fleetWorkflowId(policy, requestedAt, this.installation);
    return this.start<typeof fleetProtection>('fleetProtection', workflowId, {
      args: [
        {
          site: site.name,
          policy,
          requestedBy: opts.requestedBy ?? cliUser(),
          requestedAt,
          concurrency: opts.concurrency,
          targets: opts.targets,
          tuning: opts.tuning ? this.tuning(opts.tuning) : undefined,
          done: [],
        },
      ],
      kind: JobKind.Fleet,
      target: policy,
      site: site.name,
      summary: `fleet backup "${policy}" of ${site.name}`,
    });
  }

  /**
   * Starts the `catalogRebuild` workflow of a site: every cartridge read in a drive the pool
   * grants, compared with the catalog; an unknown site is refused before anything starts.
   */
  async startCatalogRebuild(opts: CatalogRebuildOptions = {}): Promise<WorkflowHandle<typeof catalogRebuild>> {
    const site = findSite(this.loaded.config, opts.site);
    const requestedAt = opts.requestedAt ?? new Date().toISOString();
    const workflowId = catalogRebuildWorkflowId(site.name, requestedAt, this.installation);
    return this.start<typeof catalogRebuild>('catalogRebuild', workflowId, {
      args: [
        {
          site: site.name,
          requestedBy: opts.requestedBy ?? cliUser(),
          requestedAt,
          tuning: this.tuning(opts.tuning),
          ...(opts.out === undefined ? {} : { out: opts.out }),
        },
      ],
      kind: JobKind.CatalogRebuild,
      target: 'catalog',
      site: site.name,
      summary: `catalog rebuild from the cartridges of ${site.name}`,
    });
  }

  /**
   * Makes the Temporal Schedules match the policies of kura.yaml: one schedule per policy
   * (`kura/<site>/<policy>`) firing a fleet run at its nightly time, overlapping runs skipped;
   * schedules of removed policies of these sites are deleted.
   */
  async applySchedules(): Promise<AppliedSchedules> {
    return applySchedules(this.client, this.loaded, this.taskQueue);
  }

  /**
   * The night plan of a site (default the first) for the night opening on `date` (default today in
   * the window's zone): a start time and drive for every job of its policies, fitted to the window
   * on the drives the pool has not marked unavailable, and the jobs that do not fit with the reason.
   */
  async nightPlan(opts: { site?: string; date?: string } = {}): Promise<NightPlanResult> {
    return computeNightPlan(this.loaded, opts, this.pool);
  }

  /**
   * Plans the night and installs one Temporal Schedule per job at its computed time, in place of
   * the policies' fixed nightly times; refuses (NoResources) while a job does not fit, unless
   * `skipUnfit`. Idempotent.
   */
  async applyNightPlan(
    opts: { site?: string; date?: string; skipUnfit?: boolean } = {},
  ): Promise<NightPlanResult & { applied: AppliedNightSchedules }> {
    const result = await this.nightPlan(opts);
    const applied = await applyNightSchedules(this.client, this.loaded, result.site, result.plan, this.taskQueue, opts);
    return { ...result, applied };
  }

  /** This installation's schedules on the namespace, with their next and last runs. */
  async listSchedules(): Promise<ScheduleRow[]> {
    return listSchedules(this.client, this.installation);
  }

  /** Runs a policy's schedule now (in the named site, default the first); returns the schedule's id. */
  async triggerSchedule(policy: string, opts: { site?: string } = {}): Promise<string> {
    const id = policyScheduleId(this.loaded, policy, opts.site);
    await this.client.schedule.getHandle(id).trigger();
    return id;
  }

  /** A job's workflow start: its id, search attributes, memo and summary, on the control queue. */
  private job<W extends Workflow>(
    workflowType: string,
    workflowId: string,
    o: { args: unknown[]; kind: JobKind; target: string; site: string; summary: string },
  ): JobStart<W> {
    const labels = searchAttributeLabels(this.loaded);
    const options = {
      taskQueue: this.taskQueue,
      workflowId,
      args: o.args,
      typedSearchAttributes: new TypedSearchAttributes([
        { key: KuraKind, value: o.kind },
        { key: KuraTarget, value: labels.value(o.target) },
        { key: KuraSite, value: labels.value(o.site) },
      ]),
      memo: { requestedBy: (o.args[0] as { requestedBy?: string }).requestedBy, ...labels.memo },
      staticSummary: o.summary,
    };
    // The input was typed by the caller of `job`; the client checks it against W no further than before.
    return { workflowType, options: options as unknown as WorkflowStartOptions<W> };
  }

  /** Starts a job's workflow with its id, search attributes, memo and summary. */
  private async start<W extends Workflow>(
    workflowType: string,
    workflowId: string,
    o: { args: unknown[]; kind: JobKind; target: string; site: string; summary: string },
  ): Promise<WorkflowHandle<W>> {
    return this.launch(this.job<W>(workflowType, workflowId, o));
  }

  /** Starts a job; a job already started under its id is `AlreadyRunning`. */
  private async launch<W extends Workflow>(job: JobStart<W>): Promise<WorkflowHandle<W>> {
    try {
      return (await this.client.workflow.start(job.workflowType, job.options)) as WorkflowHandle<W>;
    } catch (err) {
      throw alreadyRunning(err, job.options.workflowId);
    }
  }
}

/** A start refused because the id is taken becomes `AlreadyRunning`; any other error stays as it is. */
export function alreadyRunning(err: unknown, workflowId: string): unknown {
  if (err instanceof WorkflowExecutionAlreadyStartedError) {
    return new KuraError(
      ErrorType.AlreadyRunning,
      `${workflowId} was already started; watch it in the Temporal UI or wait a second and ask again`,
      { cause: err },
    );
  }
  return err;
}
