/**
 * Activities that ask a VM's guardian for something on behalf of a workflow (a workflow cannot send
 * an Update itself): a data-volume image for a request that came through Kura's Nexus service.
 */
import { Context } from '@temporalio/activity';
import { z } from 'zod';
import type { KuraVms } from '../api/vms';
import { NameSchema } from '../domain/inventory';
import type { ImageRecord } from '../domain/ladder';
import { parseWith } from '../domain/validate';
import { mapFailures } from './failures';

const GuardianBackupInputSchema = z.object({
  site: NameSchema,
  vm: NameSchema,
  requestedBy: z.string().min(1),
  /** The same on every attempt, so a retried activity joins the Update it sent before. */
  updateId: z.string().min(1),
});
export type GuardianBackupInput = z.input<typeof GuardianBackupInputSchema>;

/** Creates the guardian request activities on the worker's client, kura.yaml and control queue. */
export function createGuardianRequestActivities(deps: { vms: KuraVms; heartbeatMs?: number }) {
  const heartbeatMs = deps.heartbeatMs ?? 2000;
  return {
    /**
     * Update `requestDataBackup` of the VM's guardian, heartbeating while the image is taken so the
     * calling workflow's cancellation reaches it (the image itself is the guardian's to finish).
     */
    async requestGuardianDataBackup(input: GuardianBackupInput): Promise<ImageRecord> {
      return mapFailures(async () => {
        const req = parseWith(GuardianBackupInputSchema, input, 'guardian data backup request');
        const ctx = Context.current();
        ctx.heartbeat();
        const beat = setInterval(() => ctx.heartbeat(), heartbeatMs);
        try {
          return await deps.vms.client.withAbortSignal(ctx.cancellationSignal, () =>
            deps.vms.backupData(req.vm, { site: req.site, requestedBy: req.requestedBy, updateId: req.updateId }),
          );
        } finally {
          clearInterval(beat);
        }
      });
    },
  };
}
