/**
 * Kura's client API: start backups, restores and fleet runs with meaningful workflow ids, search
 * attributes and summaries, and keep each policy's Temporal Schedule in line with kura.yaml.
 * The CLI is a thin layer over this; other services can use it (or start the workflows exported
 * from `src/workflows` as children) directly.
 */
import {
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  WorkflowExecutionAlreadyStartedError,
  type Client,
  type WorkflowHandle,
} from '@temporalio/client';
import { TypedSearchAttributes, type Workflow } from '@temporalio/common';
import type { LoadedConfig } from './config/load';
import { copySettings, jobTuning } from './config/tuning';
import { findSite, resolveTargetRef } from './config/targets';
import { compactTime, BackupIdSchema } from './domain/catalog';
import { ErrorType, KuraError } from './domain/errors';
import { parseWith } from './domain/validate';
import type { CopySettings, JobTuning } from './domain/jobs';
import { CONTROL_TASK_QUEUE, JobKind, KuraKind, KuraSite, KuraTarget } from './search-attributes';
import type { fleetProtection, restore, sanOperation } from './workflows';

export interface JobOptions {
  site?: string;
  requestedBy?: string;
  /** The request's instant (names the job); now when omitted. */
  requestedAt?: string;
  tuning?: Partial<JobTuning>;
}

export class Kura {
  readonly taskQueue: string;

  constructor(
    readonly client: Client,
    readonly loaded: LoadedConfig,
    taskQueue?: string,
  ) {
    this.taskQueue = taskQueue ?? process.env.KURA_TASK_QUEUE ?? CONTROL_TASK_QUEUE;
  }

  private tuning(over?: Partial<JobTuning>): JobTuning {
    return { ...jobTuning(this.loaded.config), ...over };
  }

  /**
   * Starts a backup of a VM's data volume (or array/volume); fails fast on an unknown target.
   * Streams, mode and chunks default to kura.yaml's `tuning` (a policy's, when `policy` is named).
   */
  async startBackup(
    target: string,
    opts: JobOptions & Partial<CopySettings> & { policy?: string } = {},
  ): Promise<WorkflowHandle<typeof sanOperation>> {
    const site = findSite(this.loaded.config, opts.site);
    resolveTargetRef(site, target);
    const requestedAt = opts.requestedAt ?? new Date().toISOString();
    const workflowId = `op/backup/${target}/${compactTime(requestedAt)}`;
    return this.start<typeof sanOperation>('sanOperation', workflowId, {
      args: [
        {
          kind: 'backup',
          site: site.name,
          target,
          requestedBy: opts.requestedBy ?? cliUser(),
          requestedAt,
          ...this.copy(site.name, opts),
          tuning: this.tuning(opts.tuning),
        },
      ],
      kind: JobKind.Backup,
      target,
      site: site.name,
      summary: `backup of ${target} (${site.name})`,
    });
  }

  private copy(site: string, opts: Partial<CopySettings> & { policy?: string }): CopySettings {
    const base = copySettings(this.loaded.config, site, opts.policy);
    const out: CopySettings = {
      streams: opts.streams ?? base.streams,
      mode: opts.mode ?? base.mode,
      chunks: opts.chunks ?? base.chunks,
    };
    if (opts.chunkSize !== undefined) out.chunkSize = opts.chunkSize;
    return out;
  }

  /** Starts a restore of a backup into a new file. */
  async startRestore(
    backupId: string,
    destination: string,
    opts: JobOptions = {},
  ): Promise<WorkflowHandle<typeof restore>> {
    parseWith(BackupIdSchema, backupId, 'backup id');
    const requestedAt = opts.requestedAt ?? new Date().toISOString();
    const workflowId = `restore/${backupId}/${compactTime(requestedAt)}`;
    const target = backupId.slice(0, backupId.lastIndexOf('@'));
    const site = findSite(this.loaded.config, opts.site);
    return this.start<typeof restore>('restore', workflowId, {
      args: [
        {
          backupId,
          destination,
          requestedBy: opts.requestedBy ?? cliUser(),
          requestedAt,
          tuning: this.tuning(opts.tuning),
        },
      ],
      kind: JobKind.Restore,
      target,
      site: site.name,
      summary: `restore of ${backupId} to ${destination}`,
    });
  }

  /** Starts a fleet run: every target of a policy (`all`: every VM), `concurrency` at once. */
  async startFleet(
    policy: string,
    opts: JobOptions & { concurrency?: number; targets?: string[] } = {},
  ): Promise<WorkflowHandle<typeof fleetProtection>> {
    const site = findSite(this.loaded.config, opts.site);
    const requestedAt = opts.requestedAt ?? new Date().toISOString();
    const workflowId = `fleet/${policy}/${compactTime(requestedAt)}`;
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
   * Starts a job's workflow with its id, search attributes, memo and summary; a job already started
   * under that id is `AlreadyRunning`. The start methods here and in `api-online.ts` share it.
   */
  async start<W extends Workflow>(
    workflowType: string,
    workflowId: string,
    o: { args: unknown[]; kind: JobKind; target: string; site: string; summary: string },
  ): Promise<WorkflowHandle<W>> {
    try {
      return (await this.client.workflow.start(workflowType, {
        taskQueue: this.taskQueue,
        workflowId,
        args: o.args,
        typedSearchAttributes: new TypedSearchAttributes([
          { key: KuraKind, value: o.kind },
          { key: KuraTarget, value: o.target },
          { key: KuraSite, value: o.site },
        ]),
        memo: { requestedBy: (o.args[0] as { requestedBy?: string }).requestedBy },
        staticSummary: o.summary,
      })) as WorkflowHandle<W>;
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        throw new KuraError(
          ErrorType.AlreadyRunning,
          `${workflowId} was already started; watch it in the Temporal UI or wait a second and ask again`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  /**
   * Makes the Temporal Schedules match the policies of kura.yaml: one schedule per policy
   * (`kura/<site>/<policy>`) firing a fleet run at its nightly time, overlapping runs skipped;
   * schedules of removed policies of these sites are deleted.
   */
  async applySchedules(): Promise<{ created: string[]; updated: string[]; deleted: string[] }> {
    const out = { created: [] as string[], updated: [] as string[], deleted: [] as string[] };
    const wanted = new Set<string>();
    for (const site of this.loaded.config.sites) {
      for (const policy of site.policies) {
        const scheduleId = scheduleIdFor(site.name, policy.name);
        wanted.add(scheduleId);
        const [hour, minute] = policy.nightly.split(':').map(Number) as [number, number];
        const spec = { calendars: [{ hour, minute }], timezone: policy.timezone };
        const action = {
          type: 'startWorkflow' as const,
          workflowType: 'fleetProtection',
          workflowId: `fleet/${policy.name}`,
          taskQueue: this.taskQueue,
          args: [{ site: site.name, policy: policy.name, requestedBy: `schedule:${scheduleId}`, done: [] }],
          typedSearchAttributes: new TypedSearchAttributes([
            { key: KuraKind, value: JobKind.Fleet },
            { key: KuraTarget, value: policy.name },
            { key: KuraSite, value: site.name },
          ]),
        };
        const handle = this.client.schedule.getHandle(scheduleId);
        try {
          await handle.describe();
          await handle.update((prev) => ({
            ...prev,
            spec,
            action,
            policies: { ...prev.policies, overlap: ScheduleOverlapPolicy.SKIP },
          }));
          out.updated.push(scheduleId);
        } catch (err) {
          if (!(err instanceof ScheduleNotFoundError)) throw err;
          await this.client.schedule.create({
            scheduleId,
            spec,
            action,
            policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 hour' },
          });
          out.created.push(scheduleId);
        }
      }
    }
    for await (const s of this.client.schedule.list()) {
      const ours = this.loaded.config.sites.some((site) => s.scheduleId.startsWith(`kura/${site.name}/`));
      if (ours && !wanted.has(s.scheduleId)) {
        await this.client.schedule.getHandle(s.scheduleId).delete();
        out.deleted.push(s.scheduleId);
      }
    }
    return out;
  }
}

/** The schedule that runs a policy every night. */
export function scheduleIdFor(site: string, policy: string): string {
  return `kura/${site}/${policy}`;
}

/** Who asks when a person runs the CLI: `cli:<user>`. */
export function cliUser(): string {
  return `cli:${process.env.USER ?? process.env.LOGNAME ?? 'unknown'}`;
}
