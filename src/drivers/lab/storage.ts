/**
 * The lab's storage arrays: each volume of the inventory is a real file of exactly the volume's
 * size under the lab directory.
 */
import type { LoadedConfig } from '../../config/load';
import type { KuraPaths } from '../../config/paths';
import { AccessDeniedError, NotFoundError } from '../../domain/errors';
import type { Site, Volume } from '../../domain/inventory';
import { labVolumePath, sizeOf } from '../../lab/files';
import { findSite as findConfiguredSite } from '../../config/targets';
import { checkCompanyAccess } from '../../domain/tenancy';
import type { StorageDriver, VolumeInfo } from '../types';

/** A site of the configuration (named: drivers never fall back to the first site), or NotFoundError. */
export function findSite(loaded: LoadedConfig, site: string): Site {
  return findConfiguredSite(loaded.config, site);
}

/** A volume of the inventory, or NotFoundError naming site/array/volume. */
export function findVolume(loaded: LoadedConfig, site: string, array: string, volume: string): Volume {
  const s = findSite(loaded, site);
  const found = s.arrays.find((a) => a.name === array)?.volumes.find((v) => v.id === volume);
  if (found === undefined) {
    throw new NotFoundError(
      `no volume ${site}/${array}/${volume} in the inventory (${loaded.file}); check the name against the arrays in that file, ` +
        'or add the volume to the array and run `kura lab init` to create its file',
      { site, array, volume },
    );
  }
  return found;
}

/**
 * Checks that the lab file of a volume exists with the inventory's size, and returns its path.
 * A missing or resized file means the lab was not (re)initialised after kura.yaml changed.
 */
export async function labVolumeFile(
  loaded: LoadedConfig,
  paths: KuraPaths,
  site: string,
  array: string,
  volume: string,
): Promise<{ file: string; sizeBytes: number }> {
  const v = findVolume(loaded, site, array, volume);
  const file = labVolumePath(paths, site, array, volume);
  const size = await sizeOf(file);
  if (size !== v.size) {
    throw new NotFoundError(
      size === undefined
        ? `the lab file of volume ${site}/${array}/${volume} (${file}) does not exist; run \`kura lab init\` to create the lab's files`
        : `the lab file of volume ${site}/${array}/${volume} (${file}) holds ${size} bytes but the inventory says ${v.size}; run \`kura lab init\` to recreate it`,
      { site, array, volume, file },
    );
  }
  return { file, sizeBytes: v.size };
}

/** StorageDriver over the lab's volume files. */
export class LabStorage implements StorageDriver {
  constructor(
    private readonly loaded: LoadedConfig,
    private readonly paths: KuraPaths,
  ) {}

  async describeVolume(site: string, array: string, volume: string): Promise<VolumeInfo> {
    const { sizeBytes } = await labVolumeFile(this.loaded, this.paths, site, array, volume);
    return { site, array, volume, sizeBytes };
  }

  async checkAccess(site: string, array: string, volume: string, server: string): Promise<void> {
    findVolume(this.loaded, site, array, volume);
    const s = findSite(this.loaded, site);
    // Companies first: a refusal then names both the requesting company and the LUN's owner.
    checkCompanyAccess(s, { array, volume, server });
    const masks = s.arrays.find((a) => a.name === array)?.lunMasks.filter((m) => m.volume === volume) ?? [];
    if (masks.length === 0) return;
    const wwn = s.servers.find((x) => x.name === server)?.wwn?.toLowerCase();
    if (wwn !== undefined && masks.some((m) => m.wwns.some((w) => w.toLowerCase() === wwn))) return;
    const luns = masks.map((m) => m.lun).join(', ');
    throw new AccessDeniedError(
      wwn === undefined
        ? `backup server ${server} has no WWN in site ${site}, so the LUN mask of ${array}/${volume} (LUN ${luns}) cannot let it in; give the server a wwn in kura.yaml`
        : `the LUN mask of ${array}/${volume} (LUN ${luns}) does not include backup server ${server} (${wwn}); add its WWN to the mask in kura.yaml or back up through another server`,
      { site, array, volume, server },
    );
  }
}
