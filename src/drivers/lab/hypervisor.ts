/**
 * The lab's hypervisor: the VMs of the inventory, on their hosts, each built from a software
 * volume and a data volume; power states live in the lab state (a VM never touched is running).
 */
import type { LoadedConfig } from '../../config/load';
import type { LabState } from '../../lab/state';
import { NotFoundError } from '../../domain/errors';
import type { HypervisorDriver, VmInfo } from '../types';
import { findSite } from './storage';

export class LabHypervisor implements HypervisorDriver {
  constructor(
    private readonly loaded: LoadedConfig,
    private readonly state: LabState,
  ) {}

  async describeVm(site: string, vm: string): Promise<VmInfo> {
    const s = findSite(this.loaded, site);
    const v = s.vms.find((x) => x.name === vm);
    if (!v) {
      const some = s.vms.slice(0, 3).map((x) => x.name).join(', ');
      throw new NotFoundError(`no VM "${vm}" in site ${site}${some ? ` (VMs include ${some})` : ''}`, { site, vm });
    }
    return { site, vm, host: v.host, state: this.state.vmState(site, vm), softwareVolume: v.softwareVolume, dataVolume: v.dataVolume };
  }

  async listVms(site: string): Promise<VmInfo[]> {
    const s = findSite(this.loaded, site);
    return Promise.all(s.vms.map((v) => this.describeVm(site, v.name)));
  }
}
