/**
 * What the datapath does with a host write to a volume of a remote-copy group (docs/adr/028): at
 * the group's main site the write is journaled with the group's next seq before it reaches main
 * storage (refused once the group has failed over); at its remote site it is refused while the
 * remote copy is the secondary, and tracked by block once a failover made it the primary.
 */
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import { resolveRemoteGroup } from '../config/remote';
import { Replica } from '../remote/replica';
import { GroupJournal } from './group-journal';

export interface RemoteCopyHooks {
  /** The hook of one volume the datapath serves at `site` (`array/volume`), if a group holds it. */
  hookFor(volume: string): ((offset: number, length: number, data: Buffer | null) => void) | undefined;
  close(): void;
}

/** Opens the journals and replicas of the groups with volumes at `site`. */
export function remoteCopyHooks(loaded: LoadedConfig, paths: KuraPaths, site: string): RemoteCopyHooks {
  const hooks = new Map<string, (offset: number, length: number, data: Buffer | null) => void>();
  const closers: (() => void)[] = [];
  for (const g of loaded.config.remoteCopy.groups) {
    if (g.main !== site && g.remote !== site) continue;
    const r = resolveRemoteGroup(loaded, paths, g.name);
    if (g.main === site) {
      const journal = new GroupJournal(g.name, r.journalFile);
      closers.push(() => journal.close());
      for (const v of r.volumes)
        hooks.set(v.name, (offset, length, data) => {
          if (data) journal.append(v.name, offset, data);
          else journal.appendZeroes(v.name, offset, length);
        });
    } else {
      const replica = new Replica(
        g.name,
        r.replicaFile,
        Object.fromEntries(r.volumes.map((v) => [v.name, v.remoteFile])),
      );
      closers.push(() => replica.close());
      for (const [i, v] of g.volumes.entries()) {
        const name = r.volumes[i]?.name ?? v.main;
        hooks.set(v.remote, (offset, length) => replica.trackHostWrite(name, offset, length));
      }
    }
  }
  return {
    hookFor: (volume) => hooks.get(volume),
    close: () => {
      for (const c of closers.splice(0)) c();
    },
  };
}
