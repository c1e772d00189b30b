/**
 * A lab of two sites for remote-copy tests: the harness's site, and a disaster-recovery site
 * `<site>-dr` with the same array and volumes (no VMs), joined by one remote-copy group `db` over
 * two data volumes — a database's data and WAL volumes.
 */
import type { ConfigInput } from '../../src/domain/inventory';

export const GROUP = 'db';
export const DATA = 'array-01/vm-001-data';
export const WAL = 'array-01/vm-002-data';

/** The harness `edit` that adds the second site and the group, its receiver on `receiverPort`. */
export function withRemoteSite(receiverPort: number): (cfg: ConfigInput) => void {
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
      groups: [{ name: GROUP, main: main.name, remote: dr.name, volumes: [DATA, WAL], receiverPort }],
    };
  };
}
