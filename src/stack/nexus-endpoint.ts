/**
 * Makes a Nexus endpoint route to a namespace and task queue: created when missing, its target
 * changed when it points elsewhere, left alone when it already routes there. The embedded stack
 * creates Kura's endpoint this way; tests create one per lab.
 */
import type { ConnectionLike } from '@temporalio/client';

export interface NexusEndpointTarget {
  /** The endpoint's name, as callers address it. */
  name: string;
  /** Where its operations are handled: the handler's namespace and task queue. */
  namespace: string;
  taskQueue: string;
}

/** What `ensureNexusEndpoint` did. */
export type EndpointChange = 'created' | 'updated' | 'unchanged';

/** Creates or retargets the endpoint; the Operator API's errors (no permission, say) are the caller's to handle. */
export async function ensureNexusEndpoint(
  connection: Pick<ConnectionLike, 'operatorService'>,
  target: NexusEndpointTarget,
): Promise<EndpointChange> {
  const spec = {
    name: target.name,
    target: { worker: { namespace: target.namespace, taskQueue: target.taskQueue } },
  };
  const { endpoints } = await connection.operatorService.listNexusEndpoints({ name: target.name, pageSize: 10 });
  const existing = endpoints?.find((e) => e.spec?.name === target.name);
  if (!existing) {
    await connection.operatorService.createNexusEndpoint({ spec });
    return 'created';
  }
  const worker = existing.spec?.target?.worker;
  if (worker?.namespace === target.namespace && worker.taskQueue === target.taskQueue) return 'unchanged';
  await connection.operatorService.updateNexusEndpoint({ id: existing.id, version: existing.version, spec });
  return 'updated';
}
