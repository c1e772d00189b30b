/**
 * The client's part for async remote copy: start a group's `remoteCopy` workflow, read its
 * status (role, lag), fail it over to the remote site and back. Errors keep their types: a group
 * not in kura.yaml is NotFound, a failover of a group already failed over is NotWaiting.
 */
import {
  WorkflowUpdateFailedError,
  type Client,
  type WorkflowHandle,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import { TypedSearchAttributes } from '@temporalio/common';
import type { LoadedConfig } from '../config/load';
import { NotFoundError, KuraError, ErrorType } from '../domain/errors';
import type { FailbackReport, FailoverReport, RemoteCopyInput, RemoteStatus } from '../domain/remote';
import { remoteFailbackUpdate, remoteFailoverUpdate, remoteStatusQuery } from '../messages';
import { JobKind, KuraKind, KuraSite, KuraTarget } from '../search-attributes';
import { searchAttributeLabels } from '../codec/labels';
import type { remoteCopy } from '../workflows/remote-copy';
import { alreadyRunning } from './kura';
import { remoteCopyWorkflowId } from './workflow-ids';

export class KuraRemote {
  constructor(
    private readonly client: Client,
    private readonly loaded: LoadedConfig,
    private readonly taskQueue: string,
  ) {}

  /** The workflow id of a group's remote copy. */
  workflowId(group: string): string {
    return remoteCopyWorkflowId(group, this.loaded.config.installation);
  }

  /** Starts shipping a group (set-up first); AlreadyRunning when it ships already. */
  async start(
    group: string,
    opts: Omit<RemoteCopyInput, 'group' | 'state'> = {},
  ): Promise<WorkflowHandleWithFirstExecutionRunId<typeof remoteCopy>> {
    const g = this.group(group);
    const labels = searchAttributeLabels(this.loaded);
    const workflowId = this.workflowId(group);
    try {
      return await this.client.workflow.start<typeof remoteCopy>('remoteCopy', {
        taskQueue: this.taskQueue,
        workflowId,
        args: [{ ...opts, group, mainSite: g.main, remoteSite: g.remote }],
        typedSearchAttributes: new TypedSearchAttributes([
          { key: KuraKind, value: JobKind.RemoteCopy },
          { key: KuraTarget, value: labels.value(group) },
          { key: KuraSite, value: labels.value(g.main) },
        ]),
        memo: { ...labels.memo },
        staticSummary: `async remote copy of ${group}: ${g.main} → ${g.remote}`,
      });
    } catch (err) {
      throw alreadyRunning(err, workflowId);
    }
  }

  /** The group's role, rounds, lag and last failover. */
  async status(group: string): Promise<RemoteStatus> {
    this.group(group);
    return this.handle(group).query(remoteStatusQuery);
  }

  /** Makes the remote copy the primary; the report names the writes and bytes lost. */
  async failover(group: string, reason = ''): Promise<FailoverReport> {
    this.group(group);
    return this.update(() => this.handle(group).executeUpdate(remoteFailoverUpdate, { args: [{ reason }] }));
  }

  /** Returns to the main site, resynchronising only the blocks that differ. */
  async failback(group: string, reason = ''): Promise<FailbackReport> {
    this.group(group);
    return this.update(() => this.handle(group).executeUpdate(remoteFailbackUpdate, { args: [{ reason }] }));
  }

  private handle(group: string): WorkflowHandle<typeof remoteCopy> {
    return this.client.workflow.getHandle(this.workflowId(group));
  }

  private group(name: string) {
    const g = this.loaded.config.remoteCopy.groups.find((x) => x.name === name);
    if (!g)
      throw new NotFoundError(
        `no remote-copy group "${name}" in ${this.loaded.file}; groups: ${this.loaded.config.remoteCopy.groups.map((x) => x.name).join(', ') || 'none'}`,
        { group: name },
      );
    return g;
  }

  /** An update refused by its validator keeps its type (NotWaiting, InvalidInput) and message. */
  private async update<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) {
        const cause = err.cause as { type?: string; message?: string } | undefined;
        const type = Object.values(ErrorType).find((t) => t === cause?.type) ?? ErrorType.DeviceFault;
        throw new KuraError(type, cause?.message ?? err.message, { cause: err });
      }
      throw err;
    }
  }
}
