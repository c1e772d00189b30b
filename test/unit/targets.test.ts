/**
 * Seed 003 step 2 in the configuration: what a target names — a VM, array/volume, or a host's
 * file through the host's mounts — and the backup id a host's path gets.
 */
import { describe, expect, it } from 'vitest';
import { resolveTargetRef } from '../../src/config/targets';
import { backupIdFor, BackupIdSchema } from '../../src/domain/catalog';
import { ConfigSchema } from '../../src/domain/inventory';
import { hospitalPreset } from '../../src/lab/preset';

function site(mounts: { path: string; volume: string }[]) {
  const cfg = hospitalPreset({ vms: 2, hosts: 1 });
  cfg.sites[0]!.hosts![0]!.mounts = mounts;
  return ConfigSchema.parse(cfg).sites[0]!;
}

describe('host:/path targets', () => {
  const s = site([
    { path: '/srv', volume: 'array-01/vm-001-data' },
    { path: '/srv/db', volume: 'array-01/vm-002-data' },
  ]);

  it('resolve to the volume of the longest mount that holds the path', () => {
    expect(resolveTargetRef(s, 'host-01:/srv/db/base/1')).toMatchObject({ array: 'array-01', volume: 'vm-002-data' });
    expect(resolveTargetRef(s, 'host-01:/srv/dbx')).toMatchObject({ volume: 'vm-001-data' });
    expect(resolveTargetRef(s, 'host-01:/srv/db')).toMatchObject({ volume: 'vm-002-data' });
  });

  it('refuse a path no mount holds, naming the mounts', () => {
    expect(() => resolveTargetRef(s, 'host-01:/var/lib')).toThrow(
      /no mount of host host-01 holds \/var\/lib; its mounts: \/srv on array-01\/vm-001-data, \/srv\/db on array-01\/vm-002-data/,
    );
  });

  it('refuse an unknown host', () => {
    expect(() => resolveTargetRef(s, 'host-09:/srv')).toThrow(/no host "host-09" in site hospital; hosts: host-01/);
  });

  it('refuse a mount on a volume the site does not have, in the configuration', () => {
    const cfg = hospitalPreset({ vms: 1, hosts: 1 });
    cfg.sites[0]!.hosts![0]!.mounts = [{ path: '/x', volume: 'array-01/nope' }];
    const parsed = ConfigSchema.safeParse(cfg);
    expect(parsed.error?.issues.map((i) => [i.path.join('.'), i.message])).toEqual([
      ['sites.0.hosts.0.mounts.0.volume', 'no volume "array-01/nope" in this site\'s arrays'],
    ]);
  });

  it('name their backups host/path, a valid backup id', () => {
    const id = backupIdFor('host-01:/srv/db', '2026-11-22T02:00:00Z');
    expect(id).toBe('host-01/srv/db@20261122T020000Z');
    expect(BackupIdSchema.safeParse(id).success).toBe(true);
    expect(backupIdFor('vm-001', '2026-11-22T02:00:00Z')).toBe('vm-001@20261122T020000Z');
  });
});
