import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load';
import { ConfigSchema, DEFAULT_RPO_MS } from '../../src/domain/inventory';
import { InvalidInputError } from '../../src/domain/errors';
import { hospitalPreset, idcPreset, presetByName, presetNames, renderConfigYaml } from '../../src/lab/preset';

describe('the hospital preset', () => {
  const config = ConfigSchema.parse(hospitalPreset());
  const site = config.sites[0]!;

  it('passes the configuration schema as one site named hospital', () => {
    expect(config.sites.map((s) => s.name)).toEqual(['hospital']);
    expect(config.home).toBe('.kura');
    expect(config.restoreRoots).toEqual(['restores']);
  });

  it('has 77 VMs, vm-001 to vm-077, spread over 8 hosts', () => {
    expect(site.vms).toHaveLength(77);
    expect(site.vms[0]?.name).toBe('vm-001');
    expect(site.vms[76]?.name).toBe('vm-077');
    expect(site.hosts.map((h) => h.name)).toEqual([
      'host-01',
      'host-02',
      'host-03',
      'host-04',
      'host-05',
      'host-06',
      'host-07',
      'host-08',
    ]);
    expect(new Set(site.vms.map((v) => v.host)).size).toBe(8);
  });

  it('gives every VM a 4 MiB software and an 8 MiB data volume that exist on array-01', () => {
    const array = site.arrays[0]!;
    const sizes = new Map(array.volumes.map((v) => [`${array.name}/${v.id}`, v.size]));
    for (const vm of site.vms) {
      expect(vm.softwareVolume).toBe(`array-01/${vm.name}-sw`);
      expect(vm.dataVolume).toBe(`array-01/${vm.name}-data`);
      expect(sizes.get(vm.softwareVolume)).toBe(4 * 1024 * 1024);
      expect(sizes.get(vm.dataVolume)).toBe(8 * 1024 * 1024);
    }
    expect(array.volumes).toHaveLength(154);
  });

  it('masks every volume to exactly the two backup servers', () => {
    const array = site.arrays[0]!;
    const serverWwns = site.servers.map((s) => s.wwn).sort();
    expect(array.ports).toHaveLength(2);
    expect(array.lunMasks.map((m) => m.volume).sort()).toEqual(array.volumes.map((v) => v.id).sort());
    for (const m of array.lunMasks) expect([...m.wwns].sort()).toEqual(serverWwns);
    expect(new Set(array.lunMasks.map((m) => m.lun)).size).toBe(array.lunMasks.length);
  });

  it('has two libraries of four drives and twenty 4 GiB cartridges each', () => {
    expect(site.libraries.map((l) => l.name)).toEqual(['lib-01', 'lib-02']);
    expect(site.libraries.map((l) => l.drives.map((d) => d.id))).toEqual([
      ['lib-01-drv-1', 'lib-01-drv-2', 'lib-01-drv-3', 'lib-01-drv-4'],
      ['lib-02-drv-1', 'lib-02-drv-2', 'lib-02-drv-3', 'lib-02-drv-4'],
    ]);
    for (const [i, lib] of site.libraries.entries()) {
      expect(lib.cartridges).toHaveLength(20);
      expect(lib.cartridges[0]?.id).toBe(`L${i + 1}T001`);
      expect(lib.cartridges[19]?.id).toBe(`L${i + 1}T020`);
      for (const c of lib.cartridges) expect(c.capacity).toBe(4 * 1024 ** 3);
    }
  });

  it('cables two independent paths, one per switch, sharing only the array', () => {
    const peers = (sw: string) =>
      site.links
        .filter((l) => l.includes(sw))
        .map((l) => (l[0] === sw ? l[1] : l[0]))
        .sort();
    expect(peers('fcsw-01')).toEqual(['array-01', 'bks-01', 'cpd-01', 'lib-01']);
    expect(peers('fcsw-02')).toEqual(['array-01', 'bks-02', 'cpd-02', 'lib-02']);
    expect(site.links).toHaveLength(8);
    // Four jobs at once, each with one stream through each server.
    expect(site.servers.map((s) => [s.name, s.capacity])).toEqual([
      ['bks-01', 4],
      ['bks-02', 4],
    ]);
    expect(site.switches.map((s) => [s.name, s.capacity])).toEqual([
      ['fcsw-01', 4],
      ['fcsw-02', 4],
    ]);
    expect(site.copyDevices.map((c) => c.name)).toEqual(['cpd-01', 'cpd-02']);
  });

  it('protects every VM with the nightly-data policy at 02:00, four at a time, within the default RPO', () => {
    expect(site.policies).toEqual([
      { name: 'nightly-data', targets: ['*'], nightly: '02:00', timezone: 'UTC', concurrency: 4, rpo: DEFAULT_RPO_MS },
    ]);
    expect(DEFAULT_RPO_MS).toBe(26 * 3_600_000);
  });

  it('follows its options: VM count, sizes, cartridges and site name', () => {
    const small = ConfigSchema.parse(
      hospitalPreset({
        vms: 3,
        hosts: 2,
        dataVolumeSize: 1000,
        softwareVolumeSize: 500,
        cartridgeCapacity: 1 << 20,
        cartridgesPerLibrary: 2,
        site: 'clinic',
      }),
    );
    const s = small.sites[0]!;
    expect(s.name).toBe('clinic');
    expect(s.vms.map((v) => `${v.name}@${v.host}`)).toEqual(['vm-001@host-01', 'vm-002@host-02', 'vm-003@host-01']);
    expect(s.arrays[0]?.volumes.map((v) => v.size)).toEqual([500, 1000, 500, 1000, 500, 1000]);
    expect(s.libraries.flatMap((l) => l.cartridges.map((c) => `${c.id}:${c.capacity}`))).toEqual([
      'L1T001:1048576',
      'L1T002:1048576',
      'L2T001:1048576',
      'L2T002:1048576',
    ]);
  });

  it('names VMs with four digits once there are more than 999', () => {
    const big = ConfigSchema.parse(hospitalPreset({ vms: 1000 }));
    expect(big.sites[0]?.vms[999]?.name).toBe('vm-1000');
    expect(big.sites[0]?.vms[0]?.name).toBe('vm-0001');
  });

  it('refuses a VM count of zero with InvalidInputError naming the option', () => {
    expect(() => hospitalPreset({ vms: 0 })).toThrow(InvalidInputError);
    expect(() => hospitalPreset({ vms: 0 })).toThrow(/preset option vms must be a whole number of at least 1, not 0/);
  });

  it('is found by name, and an unknown name lists the presets there are', () => {
    expect(Object.values(presetNames)).toEqual(['hospital', 'idc']);
    expect(presetByName('hospital')).toEqual(hospitalPreset());
    expect(presetByName('idc')).toEqual(idcPreset());
    expect(() => presetByName('telco')).toThrow(/there is no preset "telco"; choose one of: hospital, idc/);
  });
});

describe('renderConfigYaml', () => {
  it('round-trips the hospital preset through the configuration loader unchanged', () => {
    const input = hospitalPreset();
    const loaded = parseConfigText(renderConfigYaml(input), '/tmp/kura-preset-test/kura.yaml');
    expect(loaded.config).toEqual(ConfigSchema.parse(input));
    expect(loaded.dir).toBe('/tmp/kura-preset-test');
  });

  it('opens with a comment explaining the file and writes sizes with units', () => {
    const text = renderConfigYaml(hospitalPreset({ vms: 1 }));
    expect(text.startsWith('# Kura configuration (kura.yaml)')).toBe(true);
    expect(text).toContain('{id: vm-001-data, size: 8MiB}');
    expect(text).toContain('{id: L1T001, capacity: 4GiB}');
    expect(text).toContain('- [bks-01, fcsw-01]');
    expect(text).not.toMatch(/[&*]a\d/); // no YAML anchors or aliases
  });
});
