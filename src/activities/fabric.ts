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
const ProbeInput = z.object({ site: z.string().min(1), devices: z.array(z.string().min(1)).min(1) });

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

    /** Asks a stream's devices which of them is at fault, after a copy over them stopped answering. */
    async probeStream(input: { site: string; devices: string[] }): Promise<DeviceHealth[]> {
      return mapFailures(async () => {
        const p = parseWith(ProbeInput, input, 'devices to probe');
        return drivers.copy.probe(p.site, p.devices);
      });
    },
  };
}
