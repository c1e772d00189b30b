/** The lab's hypervisor and FC fabric drivers: VMs of the inventory with power states; zones on the switches. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfigText, type LoadedConfig } from '../../src/config/load';
import { hospitalPreset, renderConfigYaml } from '../../src/lab/preset';
import { LabState } from '../../src/lab/state';
import { LabHypervisor } from '../../src/drivers/lab/hypervisor';
import { LabFabric } from '../../src/drivers/lab/fabric';
import { AccessDeniedError, InvalidInputError, NotFoundError } from '../../src/domain/errors';

let dir: string;
let state: LabState;
let loaded: LoadedConfig;

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kura-hvfab-'));
  state = new LabState(path.join(dir, 'state.db'));
  loaded = parseConfigText(renderConfigYaml(hospitalPreset({ vms: 3, hosts: 2 })), path.join(dir, 'kura.yaml'));
});
afterEach(() => {
  state.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the lab hypervisor', () => {
  it('describes each VM with its host, its two volumes and its power state', async () => {
    const hv = new LabHypervisor(loaded, state);
    expect(await hv.describeVm('hospital', 'vm-002')).toEqual({
      site: 'hospital',
      vm: 'vm-002',
      host: loaded.config.sites[0]!.vms[1]!.host,
      state: 'running',
      softwareVolume: 'array-01/vm-002-sw',
      dataVolume: 'array-01/vm-002-data',
    });
    state.setVmState('hospital', 'vm-002', 'stopped');
    expect((await hv.listVms('hospital')).map((v) => `${v.vm}:${v.state}`)).toEqual([
      'vm-001:running',
      'vm-002:stopped',
      'vm-003:running',
    ]);
  });

  it('names an unknown VM and an unknown site', async () => {
    const hv = new LabHypervisor(loaded, state);
    await expect(hv.describeVm('hospital', 'vm-404')).rejects.toThrow(NotFoundError);
    await expect(hv.describeVm('hospital', 'vm-404')).rejects.toThrow(
      /no VM "vm-404" in site hospital \(VMs include vm-001/,
    );
    await expect(hv.listVms('mars')).rejects.toThrow(/no site "mars"/);
  });
});

describe('the lab fabric', () => {
  it('sets a zone once however often it is asked, and removes it', async () => {
    const fab = new LabFabric(loaded, state);
    const zone = { name: 'job-1-s0', members: ['bks-01', 'fcsw-01', 'array-01', 'lib-01'] };
    await fab.createZone('hospital', zone);
    await fab.createZone('hospital', zone);
    expect(await fab.listZones('hospital')).toEqual([
      { name: 'job-1-s0', members: ['array-01', 'bks-01', 'fcsw-01', 'lib-01'] },
    ]);
    await fab.checkZoned('hospital', ['bks-01', 'array-01']);
    await fab.deleteZone('hospital', 'job-1-s0');
    await fab.deleteZone('hospital', 'job-1-s0');
    expect(await fab.listZones('hospital')).toEqual([]);
  });

  it('denies access between members no zone holds together', async () => {
    const fab = new LabFabric(loaded, state);
    await fab.createZone('hospital', { name: 'a', members: ['bks-01', 'fcsw-01', 'lib-01'] });
    await expect(fab.checkZoned('hospital', ['bks-01', 'array-01'])).rejects.toThrow(AccessDeniedError);
    await expect(fab.checkZoned('hospital', ['bks-01', 'array-01'])).rejects.toThrow(
      /no zone .* holds bks-01, array-01 together/,
    );
  });

  it('refuses a zone naming something that is not on the fabric, and changes nothing', async () => {
    const fab = new LabFabric(loaded, state);
    await expect(fab.createZone('hospital', { name: 'z', members: ['bks-01', 'host-01'] })).rejects.toThrow(
      /names host-01, which is not on the fabric/,
    );
    await expect(fab.createZone('hospital', { name: 'bad name', members: ['bks-01', 'lib-01'] })).rejects.toThrow(
      InvalidInputError,
    );
    expect(await fab.listZones('hospital')).toEqual([]);
  });
});
