/**
 * A lab of two sites for remote-copy tests: the harness's site, and a disaster-recovery site
 * `<site>-dr` with the same array and volumes (no VMs), joined by one remote-copy group over two
 * data volumes — a database's data and WAL volumes. The group's name is the test's own, since its
 * workflow id `remote/<group>` is shared by every test file on the one dev server.
 */
import type { ConfigInput } from '../../src/domain/inventory';
import * as path from 'node:path';
import type { ResolvedRemoteGroup } from '../../src/config/remote';
import type { RemoteCopyHooks } from '../../src/datapath/remote-hooks';
import { Volume } from '../../src/datapath/volume';
import { DatapathConfigSchema } from '../../src/domain/inventory';
import { uniqueId, type TestLab } from '../support/harness';

/** A remote-copy group name no other test file uses. */
export function groupName(): string {
  return `db-${uniqueId()}`;
}
export const DATA = 'array-01/vm-001-data';
export const WAL = 'array-01/vm-002-data';

/** The harness `edit` that adds the second site and the group, its receiver on `receiverPort`. */
export function withRemoteSite(receiverPort: number, group: string): (cfg: ConfigInput) => void {
  return (cfg) => {
    const main = cfg.sites[0]!;
    const dr = JSON.parse(JSON.stringify(main)) as typeof main;
    dr.name = `${main.name}-dr`;
    dr.vms = [];
    dr.policies = [];
    cfg.sites.push(dr);
    (cfg as Record<string, unknown>).remoteCopy = {
      wan: { latency: '5ms' },
      batchEntries: 16,
      resendAfter: '300ms',
      groups: [{ name: group, main: main.name, remote: dr.name, volumes: [DATA, WAL], receiverPort }],
    };
  };
}

/**
 * Opens a volume of the group as the datapath does, each write journaled by the group's remote-copy
 * hook before it is acknowledged; pushed to `opened` for the test's cleanup.
 */
export async function openGroupVolume(
  lab: TestLab,
  group: ResolvedRemoteGroup,
  hooks: RemoteCopyHooks,
  name: string,
  opened: Volume[],
): Promise<Volume> {
  const v = await Volume.open({
    name,
    mainFile: group.volumes.find((x) => x.name === name)!.mainFile,
    stateDir: path.join(lab.dir, 'dp-state', name.replace('/', '-')),
    settings: DatapathConfigSchema.parse({}),
    onWrite: hooks.hookFor(name)!,
  });
  opened.push(v);
  return v;
}
