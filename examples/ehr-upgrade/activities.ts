/**
 * The EHR team's own activities: the upgrade and the health check. Here they act on Kura's lab estate
 * (its VMs live in a lab state file), standing in for the team's real installer and monitoring; an
 * upgrade told to `break` leaves the VM with a fault that a restart at that depth cures.
 */
import type { LoadedConfig } from '../../src/config/load';
import { kuraPaths } from '../../src/config/paths';
import type { CureDepth } from '../../src/domain/ladder';
import { LabHypervisor } from '../../src/drivers/lab/hypervisor';
import { LabState } from '../../src/lab/state';

export interface UpgradeOptions {
  /** The installation whose lab holds the VMs. */
  loaded: LoadedConfig;
  /** Versions whose installation breaks the VM, and the depth of the fault each leaves. */
  breaks?: Record<string, CureDepth>;
}

/** Creates the upgrade and health-check activities on the lab of one installation. */
export function createUpgradeActivities(opts: UpgradeOptions) {
  const site = opts.loaded.config.sites[0]?.name ?? '';
  const withLab = async <T>(fn: (state: LabState) => Promise<T>): Promise<T> => {
    const state = new LabState(kuraPaths(opts.loaded).labState);
    try {
      return await fn(state);
    } finally {
      state.close();
    }
  };
  return {
    /** Installs a version on the VM; the lab records it, and a breaking version leaves its fault. */
    async upgradeVm(input: { vm: string; version: string }): Promise<void> {
      await withLab(async (state) => {
        state.recordEvent(input.vm, 'upgrade', { version: input.version });
        const fault = opts.breaks?.[input.version];
        if (fault) state.setVmFault(site, input.vm, fault);
      });
    },
    /** The VM's health as the team's monitoring sees it. */
    async checkHealth(input: { vm: string }): Promise<{ healthy: boolean; detail: string }> {
      return withLab(async (state) => {
        const h = await new LabHypervisor(opts.loaded, state).health(site, input.vm);
        return { healthy: h.healthy, detail: h.detail };
      });
    },
  };
}

export type UpgradeActivities = ReturnType<typeof createUpgradeActivities>;
