/**
 * Refuses, in the worker, an activity of another installation: the activity's header (set by the
 * workflow that scheduled it) must name the installation the worker serves. The check runs before
 * the activity's own code, so a refused activity has touched no device.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { installationOfHeaders } from '../api/installation-header';
import { ErrorType } from '../domain/errors';
import { wrongInstallationMessage } from '../domain/installation';

/**
 * The interceptor factory a Worker of `installation` takes first in `interceptors.activity`. An
 * activity without the header (scheduled before installations existed) is taken as the worker's own.
 */
export function installationCheck(installation: string): ActivityInterceptorsFactory {
  return (ctx) => ({
    inbound: {
      async execute(input, next) {
        const theirs = installationOfHeaders(input.headers);
        if (theirs !== undefined && theirs !== installation) {
          const { activityType, workflowExecution } = ctx.info;
          throw ApplicationFailure.create({
            type: ErrorType.WrongInstallation,
            message: wrongInstallationMessage(
              `activity ${activityType} of workflow ${workflowExecution?.workflowId ?? '(none)'}`,
              theirs,
              installation,
            ),
            nonRetryable: true,
          });
        }
        return next(input);
      },
    },
  });
}
