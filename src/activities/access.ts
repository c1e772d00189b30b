/**
 * Who may read a volume's data, on the `kura-control` queue: on a SAN shared by companies, the
 * owner's servers that its LUN masks admit and its zones join (docs/adr/031). A restore asks it
 * which servers may read a backup back; a backup gets the same plan with its target in step 2
 * (`resolveTarget`). The copy activities check again where the device is touched.
 */
import { z } from 'zod';
import type { LoadedConfig } from '../config/load';
import { findSite } from '../config/targets';
import { AccessDeniedError } from '../domain/errors';
import { NameSchema } from '../domain/inventory';
import { describeLun, lunOwner, serversFor } from '../domain/tenancy';
import { parseWith } from '../domain/validate';
import type { Drivers } from '../drivers/types';
import { mapFailures } from './failures';

const AccessInput = z.object({
  site: NameSchema,
  array: NameSchema,
  volume: NameSchema,
  /** The backup server that asks for the copy; unset: any server the volume admits. */
  server: NameSchema.optional(),
});

/** The servers a copy of the volume may run on, and the company owning it (null: none). */
export interface SanAccess {
  servers: string[] | null;
  owner: string | null;
}

/** Creates the access-planning activity bound to one configuration and its storage driver. */
export function createAccessActivities(deps: { loaded: LoadedConfig; drivers: Pick<Drivers, 'storage'> }) {
  const { loaded, drivers } = deps;

  return {
    /**
     * Plans who may copy a volume: with a requesting server, AccessDenied unless its company owns
     * the LUN, a zone of that company joins them, and the LUN mask admits it; without one, the
     * owner's servers that may (AccessDenied when there is none), or null for a volume no company
     * owns (the copy activities then check each stream's server). Reads the configuration only.
     */
    async planSanAccess(input: z.input<typeof AccessInput>): Promise<SanAccess> {
      return mapFailures(async () => {
        const req = parseWith(AccessInput, input, 'access request');
        const site = findSite(loaded.config, req.site);
        const owner = lunOwner(site, req.array, req.volume)?.company ?? null;
        if (req.server !== undefined) {
          if (!site.servers.some((s) => s.name === req.server))
            throw new AccessDeniedError(
              `${req.server} is not a backup server of site ${site.name}; name one of ${site.servers.map((s) => s.name).join(', ')}`,
              { site: site.name, server: req.server },
            );
          await drivers.storage.checkAccess(site.name, req.array, req.volume, req.server);
          return { servers: [req.server], owner };
        }
        const servers = serversFor(site, req.array, req.volume) ?? null;
        const lun = lunOwner(site, req.array, req.volume);
        if (servers !== null && servers.length === 0 && lun)
          throw new AccessDeniedError(
            `no backup server of company ${lun.company} may read ${describeLun(lun)}; give the company a server whose WWN its mask and one of its zones hold`,
            { site: site.name, array: req.array, volume: req.volume, owner },
          );
        return { servers, owner };
      });
    },
  };
}
