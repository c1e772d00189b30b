/**
 * What the running activities of a job report between the workflow's own updates: the bytes their
 * heartbeats carry, so a progress display moves while a piece is still being copied.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { decodePayload } from '../codec/data-converter';

/** Bytes reported by the heartbeat of the job's running activity, if any. */
export async function heartbeatBytes(handle: WorkflowHandle): Promise<number> {
  const d = await handle.describe();
  let bytes = 0;
  for (const a of d.raw.pendingActivities ?? []) {
    const payload = a.heartbeatDetails?.payloads?.[0];
    if (!payload) continue;
    try {
      // Encrypted like every payload: decoded with the handle's own client's data converter.
      const details = await decodePayload<{ bytes?: number }>(handle.client, payload);
      if (typeof details?.bytes === 'number') bytes += details.bytes;
    } catch {
      // Heartbeats of other activities carry other shapes, and a payload under a key this client
      // lacks cannot be read; neither adds bytes.
    }
  }
  return bytes;
}
