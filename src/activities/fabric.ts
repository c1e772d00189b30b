/**
 * Fabric activities, run on the `kura-control` queue: a stream's path is zoned on the FC
 * switches while it is reserved, and its devices are probed when a copy over them stopped.
 */
import { z } from 'zod';
import type { DeviceHealth, Drivers } from '../drivers/types';
import { parseWith } from '../domain/validate';
import { mapFailures } from './failures';

const ZoneInput = z.object({
  site: z.string().min(1),
  name: z.string().min(1),
  members: z.array(z.string().min(1)).min(2),
});
const UnzoneInput = z.object({ site: z.string().min(1), name: z.string().min(1) });
/**
 * How long a probed device may take to answer: a status or label read answers in milliseconds, so
 * a device silent this long is hung, while a loaded machine still answers well within it.
 */
export const PROBE_TIMEOUT_MS = 5000;
const ProbeInput = z.object({
  site: z.string().min(1),
  devices: z.array(z.string().min(1)).min(1),
  timeoutMs: z.number().int().min(100).max(60_000).optional(),
});

/** Creates the fabric activities bound to one worker's fabric and copy device drivers. */
export function createFabricActivities(deps: { drivers: Pick<Drivers, 'fabric' | 'copy'> }) {
  const { drivers } = deps;

  return {
    /** Zones a stream's path on the FC switches (seed 004): idempotent, like the fabric's createZone. */
    async zoneStream(input: { site: string; name: string; members: string[] }): Promise<void> {
      return mapFailures(async () => {
        const z = parseWith(ZoneInput, input, 'zone');
        await drivers.fabric.createZone(z.site, { name: z.name, members: z.members });
      });
    },

    /** Removes a stream's zone; removing one that is gone is fine. */
    async unzoneStream(input: { site: string; name: string }): Promise<void> {
      return mapFailures(async () => {
        const z = parseWith(UnzoneInput, input, 'zone');
        await drivers.fabric.deleteZone(z.site, z.name);
      });
    },

    /**
     * Probes a stream's devices after a copy over them stopped answering: each answers a small real
     * request through its driver or not, within `timeoutMs` (PROBE_TIMEOUT_MS unless given); the ones that failed or did not
     * answer are returned, none when all answered (then the copy's worker, not a device, was lost).
     */
    async probeStream(input: { site: string; devices: string[]; timeoutMs?: number }): Promise<DeviceHealth[]> {
      return mapFailures(async () => {
        const p = parseWith(ProbeInput, input, 'devices to probe');
        return drivers.copy.probe(p.site, p.devices, { timeoutMs: p.timeoutMs ?? PROBE_TIMEOUT_MS });
      });
    },
  };
}
