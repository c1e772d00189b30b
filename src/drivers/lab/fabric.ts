/**
 * The lab's FC fabric: zones set on the site's switches, kept in the lab state. A zone may only
 * name things that are cabled to the fabric (arrays, servers, libraries, copy devices, switches).
 */
import type { LoadedConfig } from '../../config/load';
import type { LabState } from '../../lab/state';
import { AccessDeniedError, InvalidInputError, NotFoundError } from '../../domain/errors';
import { NAME_PATTERN } from '../../domain/inventory';
import type { FabricDriver, Zone } from '../types';
import { findSite } from './storage';

export class LabFabric implements FabricDriver {
  constructor(
    private readonly loaded: LoadedConfig,
    private readonly state: LabState,
  ) {}

  async createZone(site: string, zone: Zone): Promise<void> {
    if (!NAME_PATTERN.test(zone.name))
      throw new InvalidInputError(
        `zone name "${zone.name}" must start with a letter or digit and hold only letters, digits, ".", "_" or "-"`,
      );
    if (zone.members.length < 2)
      throw new InvalidInputError(`zone ${zone.name} needs at least two members, not ${zone.members.length}`);
    const known = this.fabricMembers(site);
    const unknown = zone.members.filter((m) => !known.has(m));
    if (unknown.length)
      throw new NotFoundError(
        `zone ${zone.name} names ${unknown.join(', ')}, which ${unknown.length === 1 ? 'is' : 'are'} not on the fabric of site ${site}`,
        { zone: zone.name, unknown },
      );
    this.state.setZone(site, zone.name, [...new Set(zone.members)].sort());
    this.state.recordEvent(zone.name, 'zone-set', { site, members: zone.members });
  }

  async deleteZone(site: string, name: string): Promise<void> {
    findSite(this.loaded, site);
    if (this.state.deleteZone(site, name)) this.state.recordEvent(name, 'zone-deleted', { site });
  }

  async listZones(site: string): Promise<Zone[]> {
    findSite(this.loaded, site);
    return this.state.zones(site);
  }

  async checkZoned(site: string, members: string[]): Promise<void> {
    const zones = await this.listZones(site);
    if (!zones.some((z) => members.every((m) => z.members.includes(m)))) {
      throw new AccessDeniedError(
        `no zone on the fabric of site ${site} holds ${members.join(', ')} together; the path must be zoned before data crosses it`,
        { site, members },
      );
    }
  }

  /** Names cabled to the fabric: everything that appears in a link. */
  private fabricMembers(site: string): Set<string> {
    return new Set(findSite(this.loaded, site).links.flat());
  }
}
