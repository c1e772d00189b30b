/**
 * The client's part for the deduplicated store (seed 000; docs/adr/032): start its jobs under
 * meaningful ids, and keep its Temporal Schedules — one per target class at the class's time, and
 * the copy's sync every `store.syncEvery` — in line with kura.yaml.
 */
import { ScheduleNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import { upsertSchedule } from './schedules';
import type { Workflow } from '@temporalio/common';
import type { LoadedConfig } from '../config/load';
import { ClassName, type ClassName as ClassNameT } from '../domain/classes';
import type { Retention } from '../domain/store';
import type {
  classBackup,
  storeBackup,
  storeGc,
  storePrune,
  storeSync,
  storeVerify,
  vmImageRestore,
} from '../workflows/store';
import { storeScheduleId, storeWorkflowId } from './workflow-ids';
import { StoreToTapeRequestSchema, type storeToTape } from '../workflows/store-to-tape';
import { copySettings, jobTuning } from '../config/tuning';
import { findSite } from '../config/targets';
import { parseWith } from '../domain/validate';
import { cliUser } from './environment';

/** What applying the store's schedules changed, by schedule id. */
export interface AppliedStoreSchedules {
  created: string[];
  updated: string[];
  deleted: string[];
}

export class KuraStore {
  constructor(
    private readonly client: Client,
    private readonly loaded: LoadedConfig,
    private readonly taskQueue: string,
  ) {}

  private get installation(): string {
    return this.loaded.config.installation;
  }

  private start<T extends Workflow>(
    workflow: string,
    op: string,
    subject: string,
    input: unknown,
  ): Promise<WorkflowHandle<T>> {
    const now = new Date().toISOString();
    return this.client.workflow.start(workflow, {
      taskQueue: this.taskQueue,
      workflowId: storeWorkflowId(op, subject, now, this.installation),
      args: [input],
    }) as Promise<WorkflowHandle<T>>;
  }

  /** Backs one volume (`array/volume`) of a site up into the store under a target name. */
  backup(input: {
    site: string;
    target: string;
    array: string;
    volume: string;
  }): Promise<WorkflowHandle<typeof storeBackup>> {
    return this.start('storeBackup', 'backup', input.target, input);
  }

  /** Backs every volume of one target class up into the store. */
  backupClass(className: ClassNameT): Promise<WorkflowHandle<typeof classBackup>> {
    return this.start('classBackup', 'class', className, { className });
  }

  /**
   * Recreates a VM from its whole image on a chosen host (under a new name if asked) and waits until
   * it reports healthy; the newest whole image unless `dataTime` names one.
   */
  restoreVm(input: {
    site: string;
    vm: string;
    host: string;
    name?: string;
    dataTime?: string;
  }): Promise<WorkflowHandle<typeof vmImageRestore>> {
    return this.start('vmImageRestore', 'vm-restore', input.vm, input);
  }

  verify(backupIds: string[], store: 'primary' | 'copy' = 'primary'): Promise<WorkflowHandle<typeof storeVerify>> {
    return this.start('storeVerify', 'verify', store, { backupIds, store });
  }

  prune(input: {
    site: string;
    targets: string[];
    retention: Partial<Retention>;
    dryRun?: boolean;
  }): Promise<WorkflowHandle<typeof storePrune>> {
    return this.start('storePrune', 'prune', input.site, input);
  }

  gc(input: { store?: 'primary' | 'copy'; graceMs?: number } = {}): Promise<WorkflowHandle<typeof storeGc>> {
    return this.start('storeGc', 'gc', input.store ?? 'primary', input);
  }

  sync(): Promise<WorkflowHandle<typeof storeSync>> {
    return this.start('storeSync', 'sync', 'copy', {});
  }

  /**
   * Copies store backups to tape through the streams (docs/adr/042): each ref a store backup's id,
   * or a target whose newest store backup at or before `at` is copied (a VM: its whole image). The
   * request is checked here (exit 2 on a bad one) and again by the workflow.
   */
  toTape(
    refs: string | string[],
    opts: {
      site?: string;
      at?: string;
      streams?: number;
      mode?: 'failover' | 'parallel';
      chunks?: number;
      chunkSize?: number;
      /** Take streams, mode and chunks from this policy of kura.yaml (of the site). */
      policy?: string;
      requestedAt?: string;
      requestedBy?: string;
    } = {},
  ): Promise<WorkflowHandle<typeof storeToTape>> {
    const list = Array.isArray(refs) ? refs : [refs];
    const requestedAt = opts.requestedAt ?? new Date().toISOString();
    const site = opts.site === undefined ? undefined : findSite(this.loaded.config, opts.site).name;
    const copy = copySettings(this.loaded.config, site ?? this.loaded.config.sites[0]?.name, opts.policy);
    const input = parseWith(
      StoreToTapeRequestSchema,
      {
        refs: list,
        ...(site === undefined ? {} : { site }),
        ...(opts.at === undefined ? {} : { at: opts.at }),
        streams: opts.streams ?? copy.streams,
        mode: opts.mode ?? copy.mode,
        chunks: opts.chunks ?? copy.chunks,
        ...(opts.chunkSize === undefined ? {} : { chunkSize: opts.chunkSize }),
        requestedBy: opts.requestedBy ?? cliUser(),
        requestedAt,
        tuning: jobTuning(this.loaded.config),
      },
      'store to-tape request',
    );
    return this.client.workflow.start('storeToTape', {
      taskQueue: this.taskQueue,
      workflowId: storeWorkflowId('to-tape', list.join('+'), requestedAt, this.installation),
      args: [input],
      staticSummary: `tape copy of ${list.join(', ')}`,
    }) as Promise<WorkflowHandle<typeof storeToTape>>;
  }

  /**
   * Makes the store's schedules match kura.yaml: `class-<class>` for each configured class at its
   * time and zone, and `sync` every `store.syncEvery`; overlapping runs are skipped, and the
   * schedule of a class no longer configured is deleted.
   */
  async applySchedules(): Promise<AppliedStoreSchedules> {
    const out: AppliedStoreSchedules = { created: [], updated: [], deleted: [] };
    const { classes, store } = this.loaded.config;
    const wanted: { id: string; spec: Parameters<typeof upsertSchedule>[2]; workflowType: string; args: unknown[] }[] =
      [];
    for (const c of Object.values(ClassName)) {
      const cls = classes[c];
      const id = storeScheduleId(`class-${c}`, this.installation);
      if (!cls) {
        await this.client.schedule
          .getHandle(id)
          .delete()
          .then(() => out.deleted.push(id))
          .catch((err: unknown) => {
            if (!(err instanceof ScheduleNotFoundError)) throw err;
          });
        continue;
      }
      const [hour, minute] = cls.schedule.split(':').map(Number) as [number, number];
      wanted.push({
        id,
        spec: { calendars: [{ hour, minute }], timezone: cls.timezone },
        workflowType: 'classBackup',
        args: [{ className: c }],
      });
    }
    wanted.push({
      id: storeScheduleId('sync', this.installation),
      spec: { intervals: [{ every: store.syncEvery }] },
      workflowType: 'storeSync',
      args: [{}],
    });
    for (const w of wanted) {
      const action = {
        type: 'startWorkflow' as const,
        workflowType: w.workflowType,
        workflowId: w.id.replace(/^kura\//, ''),
        taskQueue: this.taskQueue,
        args: w.args,
      };
      out[await upsertSchedule(this.client, w.id, w.spec, action)].push(w.id);
    }
    return out;
  }
}
