/**
 * The installation inside workflow code: the one of the task queue the workflow runs on (workflow
 * code cannot read kura.yaml), and the interceptors that refuse a workflow of another installation
 * and hand the installation on to every child workflow, continue-as-new and activity. The workers
 * bundle this module as a workflow interceptor module (docs/adr/027-installations.md).
 */
import { ApplicationFailure } from '@temporalio/common';
import { workflowInfo, type WorkflowInterceptors } from '@temporalio/workflow';
import { installationOfHeaders, withInstallationHeader } from '../api/installation-header';
import { installationOfTaskQueue } from '../api/task-queues';
import { ErrorType } from '../domain/errors';
import { wrongInstallationMessage } from '../domain/installation';

/** The installation of the running workflow: the one its task queue's name carries. */
export function ownInstallation(): string {
  return installationOfTaskQueue(workflowInfo().taskQueue);
}

/**
 * The interceptors of every Kura workflow. A start whose header names another installation than the
 * queue's fails at once with a non-retryable `WrongInstallation`, before the workflow's first line
 * (so before any activity, and any device, is touched). A start without the header (from before
 * installations, or from a plain Temporal client) is taken as the queue's own.
 */
export const interceptors = (): WorkflowInterceptors => ({
  inbound: [
    {
      async execute(input, next) {
        const info = workflowInfo();
        const mine = installationOfTaskQueue(info.taskQueue);
        const theirs = installationOfHeaders(input.headers);
        if (theirs !== undefined && theirs !== mine) {
          throw ApplicationFailure.create({
            type: ErrorType.WrongInstallation,
            message: wrongInstallationMessage(`workflow ${info.workflowId} (${info.workflowType})`, theirs, mine),
            nonRetryable: true,
          });
        }
        return next(input);
      },
    },
  ],
  outbound: [
    {
      scheduleActivity: (input, next) =>
        next({ ...input, headers: withInstallationHeader(input.headers, ownInstallation()) }),
      scheduleLocalActivity: (input, next) =>
        next({ ...input, headers: withInstallationHeader(input.headers, ownInstallation()) }),
      startChildWorkflowExecution: (input, next) =>
        next({ ...input, headers: withInstallationHeader(input.headers, ownInstallation()) }),
      continueAsNew: (input, next) =>
        next({ ...input, headers: withInstallationHeader(input.headers, ownInstallation()) }),
    },
  ],
});
