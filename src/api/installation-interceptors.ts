/**
 * The client interceptors that put an installation's header on every workflow a client starts
 * (directly, with a signal or an update, or through a schedule), so the worker that receives the
 * work can tell whether it is its own.
 */
import type { ClientInterceptors } from '@temporalio/client';
import { withInstallationHeader } from './installation-header';

/** The `interceptors` of a Temporal `Client` acting for one installation. */
export function installationClientInterceptors(installation: string): ClientInterceptors {
  return {
    workflow: [
      {
        startWithDetails: (input, next) =>
          next({ ...input, headers: withInstallationHeader(input.headers, installation) }),
        signalWithStart: (input, next) =>
          next({ ...input, headers: withInstallationHeader(input.headers, installation) }),
        startUpdateWithStart: (input, next) =>
          next({
            ...input,
            workflowStartHeaders: withInstallationHeader(input.workflowStartHeaders, installation),
          }),
      },
    ],
    schedule: [
      {
        // The header goes into the schedule's start action; updates of the schedule keep it.
        create: (input, next) => next({ ...input, headers: withInstallationHeader(input.headers, installation) }),
      },
    ],
  };
}
