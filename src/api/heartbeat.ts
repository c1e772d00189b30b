/**
 * What the running activities of a job report between the workflow's own updates: the bytes their
 * heartbeats carry, so a progress display moves while a piece is still being copied.
 */
import { defaultPayloadConverter } from '@temporalio/common';
import type { WorkflowHandle } from '@temporalio/client';

/** Bytes reported by the heartbeat of the job's running activity, if any. */
export async function heartbeatBytes(handle: WorkflowHandle): Promise<number> {
  const d = await handle.describe();
  let bytes = 0;
  for (const a of d.raw.pendingActivities ?? []) {
    const payload = a.heartbeatDetails?.payloads?.[0];
    if (!payload) continue;
    try {
      const details = defaultPayloadConverter.fromPayload<{ bytes?: number }>(payload);
      if (typeof details?.bytes === 'number') bytes += details.bytes;
    } catch {
      // Heartbeats of other activities carry other shapes; they add no bytes.
    }
  }
  return bytes;
}
