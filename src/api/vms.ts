/**
 * The client side of VM protection: start each VM's guardian (one per VM), ask it for a data
 * backup, report a failure, find and render its ladder, and hand a waiting ladder a person's
 * decision (resolve, or rebuild on a substitute host). Inputs are checked against kura.yaml first,
 * so a wrong name is refused before anything is sent.
 */
import { WorkflowUpdateFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, TemporalFailure, TypedSearchAttributes, WorkflowNotFoundError } from '@temporalio/common';
import type { LoadedConfig } from '../config/load';
import { findSite, requireHost } from '../config/targets';
import { ErrorType, InvalidInputError, KuraError, NotFoundError, NotWaitingError } from '../domain/errors';
import { parseWith } from '../domain/validate';
import type { Site } from '../domain/inventory';
import {
  RebuildRequestSchema,
  ResolveRequestSchema,
  ladderPolicy,
  type GuardianView,
  type ImageRecord,
  type LadderView,
} from '../domain/ladder';
import {
  failureDetectedSignal,
  guardianQuery,
  ladderQuery,
  rebuildUpdate,
  requestDataBackupUpdate,
  resolveUpdate,
} from '../messages';
import { JobKind, KuraKind, KuraSite, KuraTarget, KuraVm } from '../search-attributes';
import { searchAttributeLabels } from '../codec/labels';
import type { vmGuardian } from '../workflows';
import { cliUser } from './environment';
import { CONTROL_TASK_QUEUE } from './task-queues';
import { guardianWorkflowId } from './workflow-ids';

/**
 * Starts the guardian of a VM unless it runs already (then returns the running one). The policy is
 * the `ladder` section of kura.yaml at start; a running guardian keeps the one it started with.
 */
export async function ensureGuardian(
  client: Client,
  loaded: LoadedConfig,
  site: Site,
  vm: string,
  taskQueue: string = CONTROL_TASK_QUEUE,
): Promise<WorkflowHandle<typeof vmGuardian>> {
  siteOfVm(loaded, vm, site.name);
  const policy = ladderPolicy(loaded.config.ladder, loaded.config.tuning.copyHeartbeatTimeout);
  const labels = searchAttributeLabels(loaded);
  return client.workflow.start<typeof vmGuardian>('vmGuardian', {
    workflowId: guardianWorkflowId(vm, loaded.config.installation),
    taskQueue,
    args: [{ site: site.name, vm, policy }],
    workflowIdConflictPolicy: 'USE_EXISTING',
    typedSearchAttributes: new TypedSearchAttributes([
      { key: KuraKind, value: JobKind.Guardian },
      { key: KuraTarget, value: labels.value(vm) },
      { key: KuraSite, value: labels.value(site.name) },
      { key: KuraVm, value: labels.value(vm) },
    ]),
    memo: labels.memo,
    staticSummary: `guardian of ${vm} (${site.name})`,
  });
}

/** Starts every VM's guardian of every site, a few at a time. */
export async function ensureGuardians(
  client: Client,
  loaded: LoadedConfig,
  taskQueue: string = CONTROL_TASK_QUEUE,
): Promise<number> {
  const all = loaded.config.sites.flatMap((s) => s.vms.map((v) => ({ site: s, vm: v.name })));
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(8, all.length) }, async () => {
      while (next < all.length) {
        const { site, vm } = all[next++] as { site: Site; vm: string };
        await ensureGuardian(client, loaded, site, vm, taskQueue);
      }
    }),
  );
  return all.length;
}

/**
 * The site of a VM: the named one, or the one that has the VM. NotFound for an unknown site, or a
 * VM the site (or no site) has.
 */
export function siteOfVm(loaded: LoadedConfig, vm: string, siteName?: string): Site {
  const sites = siteName === undefined ? loaded.config.sites : [findSite(loaded.config, siteName)];
  const site = sites.find((s) => s.vms.some((v) => v.name === vm));
  if (!site) {
    const some = sites.flatMap((s) => s.vms.slice(0, 3).map((v) => v.name));
    throw new NotFoundError(
      `no VM "${vm}"${siteName === undefined ? '' : ` in site ${siteName}`} in ${loaded.file}${some.length ? `; VMs include ${some.join(', ')}` : ''}`,
      { vm, site: siteName },
    );
  }
  return site;
}

/**
 * VM protection as the CLI and other services use it (`kura.vms`): each VM's guardian and its
 * recovery ladders, on the connection, kura.yaml and control queue of the `Kura` facade.
 */
export class KuraVms {
  constructor(
    readonly client: Client,
    readonly loaded: LoadedConfig,
    readonly taskQueue: string,
  ) {}

  /** The VM's site (the named one, or the one that has the VM); NotFound for an unknown VM. */
  siteOf(vm: string, siteName?: string): Site {
    return siteOfVm(this.loaded, vm, siteName);
  }

  /** The VM's guardian, started when it is not running. */
  async guardian(vm: string, siteName?: string): Promise<WorkflowHandle<typeof vmGuardian>> {
    return ensureGuardian(this.client, this.loaded, this.siteOf(vm, siteName), vm, this.taskQueue);
  }

  /**
   * Update `requestDataBackup`: an image of the data volume now, verified and kept (K most recent).
   * Calls with the same `updateId` get the one image, however often they are retried.
   */
  async backupData(
    vm: string,
    opts: { site?: string; requestedBy?: string; updateId?: string } = {},
  ): Promise<ImageRecord> {
    const handle = await this.guardian(vm, opts.site);
    return asKuraError(() =>
      handle.executeUpdate(requestDataBackupUpdate, {
        args: [{ requestedBy: opts.requestedBy ?? cliUser() }],
        ...(opts.updateId === undefined ? {} : { updateId: opts.updateId }),
      }),
    );
  }

  /** Signal `failureDetected`: the VM (or a monitor) reports a failure. */
  async reportFailure(vm: string, reason: string, opts: { site?: string } = {}): Promise<void> {
    if (reason.trim() === '') throw new InvalidInputError('a failure report needs a reason');
    const handle = await this.guardian(vm, opts.site);
    await handle.signal(failureDetectedSignal, { reason, at: new Date().toISOString() });
  }

  /** The guardian's state: the ladder running now and the last one. */
  async guardianView(vm: string, opts: { site?: string } = {}): Promise<GuardianView> {
    this.siteOf(vm, opts.site);
    try {
      return await this.client.workflow
        .getHandle(guardianWorkflowId(vm, this.loaded.config.installation))
        .query(guardianQuery);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError)
        throw new NotFoundError(
          `${vm} has no guardian yet; it starts with the worker, or with \`kura vm backup-data ${vm}\``,
          { vm },
        );
      throw err;
    }
  }

  /** The VM's current ladder, or else its last one; NotFound when it never had one. */
  async ladder(vm: string, opts: { site?: string } = {}): Promise<LadderView> {
    const g = await this.guardianView(vm, opts);
    const id = g.currentLadder ?? g.state.lastLadder;
    if (!id) throw new NotFoundError(`${vm} has had no recovery ladder yet`, { vm });
    return this.client.workflow.getHandle(id).query(ladderQuery);
  }

  /** Update `resolve` of the ladder waiting for a person. */
  async resolve(vm: string, note: string, opts: { site?: string; by?: string } = {}): Promise<LadderView> {
    const req = parseWith(ResolveRequestSchema, { note, by: opts.by ?? cliUser() }, 'resolve request');
    const id = await this.waitingLadder(vm, 'resolve', opts.site);
    return asKuraError(() => this.client.workflow.getHandle(id).executeUpdate(resolveUpdate, { args: [req] }));
  }

  /** Update `rebuild` of the ladder waiting for a person: the VM recreated on `host` from its images. */
  async rebuild(vm: string, host: string, opts: { site?: string; by?: string } = {}): Promise<LadderView> {
    const req = parseWith(RebuildRequestSchema, { host, by: opts.by ?? cliUser() }, 'rebuild request');
    requireHost(this.siteOf(vm, opts.site), host);
    const id = await this.waitingLadder(vm, 'rebuild', opts.site);
    return asKuraError(() => this.client.workflow.getHandle(id).executeUpdate(rebuildUpdate, { args: [req] }));
  }

  /** The ladder of a VM that waits for a person; NotWaiting when there is none. */
  private async waitingLadder(vm: string, what: string, site?: string): Promise<string> {
    const g = await this.guardianView(vm, { site }).catch((err: unknown) => {
      if (err instanceof NotFoundError)
        throw new NotWaitingError(
          `cannot ${what} ${vm}: no recovery ladder of it is waiting for a person (it has no guardian)`,
          { vm },
        );
      throw err;
    });
    if (!g.currentLadder)
      throw new NotWaitingError(
        `cannot ${what} ${vm}: no recovery ladder of it is running${g.state.lastLadder ? ` (the last one, ${g.state.lastLadder}, has ended)` : ''}`,
        { vm },
      );
    const view = await this.client.workflow.getHandle(g.currentLadder).query(ladderQuery);
    if (view.status !== 'waiting-for-human') {
      throw new NotWaitingError(
        `cannot ${what} ${vm}: its ladder ${view.workflowId} is ${view.status} at ${view.currentRung ?? 'its first rung'}, not waiting for a person`,
        { vm, ladder: view.workflowId },
      );
    }
    return g.currentLadder;
  }
}

/** Turns an Update's rejection or failure into the typed error inside it. */
async function asKuraError<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError) {
      let cur: unknown = err.cause;
      let app: ApplicationFailure | undefined;
      for (let i = 0; cur && i < 10; i++) {
        if (cur instanceof ApplicationFailure) {
          app = cur;
          break;
        }
        cur = cur instanceof TemporalFailure ? cur.cause : undefined;
      }
      if (app) {
        const types: readonly string[] = Object.values(ErrorType);
        if (types.includes(app.type ?? '')) throw new KuraError(app.type as ErrorType, app.message, { cause: err });
      }
    }
    throw err;
  }
}
