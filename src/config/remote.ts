/**
 * Resolves a remote-copy group of kura.yaml to what its activities and the datapath open: the
 * volumes' files at both sites, the main site's journal, the remote site's replica and the lab
 * WAN's faults file. A name that is not there is reported with what is.
 */
import * as path from 'node:path';
import type { LoadedConfig } from './load';
import type { KuraPaths } from './paths';
import { findSite } from './targets';
import { InvalidInputError, NotFoundError } from '../domain/errors';
import type { RemoteGroup } from '../domain/remote';
import { labVolumePath } from '../lab/files';
import { wanFaultsFile } from '../lab/wan';

export interface ResolvedRemoteGroup {
  group: RemoteGroup;
  /** Per volume: its name in the group (`array/volume` at the main site), and its files at each site. */
  volumes: { name: string; mainFile: string; remoteFile: string; sizeBytes: number }[];
  journalFile: string;
  replicaFile: string;
  faultsFile: string;
}

/** The group of that name, resolved; NotFound names the groups there are. */
export function resolveRemoteGroup(loaded: LoadedConfig, paths: KuraPaths, name: string): ResolvedRemoteGroup {
  const groups = loaded.config.remoteCopy.groups;
  const group = groups.find((g) => g.name === name);
  if (!group)
    throw new NotFoundError(
      `no remote-copy group "${name}" in ${loaded.file}; groups: ${groups.map((g) => g.name).join(', ') || 'none (add remoteCopy.groups)'}`,
      { group: name },
    );
  const main = findSite(loaded.config, group.main);
  const remote = findSite(loaded.config, group.remote);
  const volumeOf = (site: typeof main, ref: string, side: string) => {
    const [array = '', volume = ''] = ref.split('/');
    const v = site.arrays.find((a) => a.name === array)?.volumes.find((x) => x.id === volume);
    if (!v)
      throw new NotFoundError(
        `remote-copy group ${name} names ${side} volume "${ref}", which is no volume of site ${site.name} in ${loaded.file}`,
        { group: name, volume: ref },
      );
    return { file: labVolumePath(paths, site.name, array, volume), sizeBytes: v.size };
  };
  const volumes = group.volumes.map((v) => {
    const m = volumeOf(main, v.main, 'main');
    const r = volumeOf(remote, v.remote, 'remote');
    if (m.sizeBytes !== r.sizeBytes)
      throw new InvalidInputError(
        `remote-copy group ${name}: ${v.main} at ${main.name} holds ${m.sizeBytes} bytes but ${v.remote} at ${remote.name} holds ${r.sizeBytes}; make them the same size`,
      );
    return { name: v.main, mainFile: m.file, remoteFile: r.file, sizeBytes: m.sizeBytes };
  });
  return {
    group,
    volumes,
    journalFile: path.join(paths.home, 'remote', main.name, group.name, 'journal.db'),
    replicaFile: path.join(paths.home, 'remote', remote.name, group.name, 'replica.db'),
    faultsFile: wanFaultsFile(paths.lab),
  };
}
