/**
 * What a job acts on, run on the `kura-control` queue: the volume a named target resolves to
 * (seed 003 step 2) and the targets and tuning of a fleet run.
 */
import { accessPlan } from '../domain/tenancy';
import { z } from 'zod';
import type { LoadedConfig } from '../config/load';
import type { Drivers } from '../drivers/types';
import { ByArrayDrivers } from '../drivers/by-array';
import type { CopySettings, JobTuning, ResolvedTarget } from '../domain/jobs';
import { copySettings, jobTuning, policyTargets } from '../config/tuning';
import { InvalidInputError, NotFoundError } from '../domain/errors';
import { findSite, resolveTargetOnHost, type VolumeOfDevice } from '../config/targets';
import { parseWith } from '../domain/validate';
import { mapFailures } from './failures';

const TargetInput = z.object({ site: z.string().min(1), target: z.string().min(1) });

/** Creates the target activities bound to one worker's configuration and storage driver. */
export function createTargetActivities(deps: { loaded: LoadedConfig; drivers: Pick<Drivers, 'storage'> }) {
  const { loaded, drivers } = deps;

  return {
    /** Seed 003 step 2: maps what the user named (a VM, array/volume, or host:/path) to the volume to copy. */
    async resolveTarget(input: { site: string; target: string }): Promise<ResolvedTarget> {
      return mapFailures(async () => {
        const { site: siteName, target } = parseWith(TargetInput, input, 'target');
        const site = findSite(loaded.config, siteName);
        // A host that discovers its mounts is asked here, on the worker that runs on it.
        const { array, volume } = await resolveTargetOnHost(site, target, volumeOfDevice(drivers.storage, siteName));
        const info = await drivers.storage.describeVolume(siteName, array, volume);
        const access = accessPlan(site, array, volume);
        return { site: siteName, target, array, volume, sizeBytes: info.sizeBytes, ...(access ? { access } : {}) };
      });
    },

    /** What a fleet run of a policy (or `all`) covers, and the tuning its jobs use. */
    async fleetSettings(input: {
      site: string;
      policy: string;
    }): Promise<{ targets: string[]; concurrency: number; tuning: JobTuning; copy: CopySettings }> {
      return mapFailures(async () => {
        const found = policyTargets(loaded.config, input.site, input.policy);
        if (!found) {
          const site = loaded.config.sites.find((s) => s.name === input.site);
          throw new NotFoundError(
            site
              ? `no policy "${input.policy}" in site ${input.site}; policies: ${['all', ...site.policies.map((p) => p.name)].join(', ')}`
              : `no site "${input.site}" in ${loaded.file}`,
          );
        }
        if (found.targets.length === 0)
          throw new InvalidInputError(`policy "${input.policy}" of site ${input.site} has no targets`);
        return {
          ...found,
          tuning: jobTuning(loaded.config),
          copy: copySettings(loaded.config, input.site, input.policy),
        };
      });
    },
  };
}

/**
 * Which volume a device or a loop device's back-file is, as the site's array engines answer: only a
 * qemu-storage-daemon array exports its volumes to hosts as files a loop device mounts.
 */
export function volumeOfDevice(drivers: unknown, site: string): VolumeOfDevice {
  return (file) => {
    const ref = drivers instanceof ByArrayDrivers ? drivers.qsd.volumeOfHostFile(site, file) : undefined;
    return ref && { array: ref.array, volume: ref.volume };
  };
}
