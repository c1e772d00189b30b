/**
 * The lab's guest freeze (docs/adr/037): a freeze waits for the guest's writes in flight and holds
 * new ones back; it gives up, thawed and typed, when a write never drains; it ends by itself at its
 * bound, so a lost caller never leaves the guest frozen.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfigText, type LoadedConfig } from '../../src/config/load';
import { hospitalPreset, renderConfigYaml } from '../../src/lab/preset';
import { LabState } from '../../src/lab/state';
import { LabHypervisor } from '../../src/drivers/lab/hypervisor';

let dir: string;
let state: LabState;
let loaded: LoadedConfig;
const site = 'hospital';

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kura-freeze-'));
  state = new LabState(path.join(dir, 'state.db'));
  loaded = parseConfigText(renderConfigYaml(hospitalPreset({ vms: 1, hosts: 2 })), path.join(dir, 'kura.yaml'));
});
afterEach(() => {
  state.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the lab guest's freeze", () => {
  it('holds new writes back until thawed', async () => {
    const hv = new LabHypervisor(loaded, state);
    await hv.freezeGuest(site, 'vm-001', { maxFreezeMs: 60_000, drainTimeoutMs: 100 });
    expect(await hv.guestFrozen(site, 'vm-001')).toBe(true);
    expect(state.guestBeginWrite(site, 'vm-001')).toBe(false);
    expect(await hv.thawGuest(site, 'vm-001')).toEqual({ wasFrozen: true });
    expect(state.guestBeginWrite(site, 'vm-001')).toBe(true);
    state.guestEndWrite(site, 'vm-001');
    expect(state.guestState(site, 'vm-001')).toEqual({ frozenUntil: null, inflight: 0 });
  });

  it('waits for a write in flight to end before it returns', async () => {
    const hv = new LabHypervisor(loaded, state);
    expect(state.guestBeginWrite(site, 'vm-001')).toBe(true);
    let ended = false;
    setTimeout(() => {
      ended = true;
      state.guestEndWrite(site, 'vm-001');
    }, 30);
    await hv.freezeGuest(site, 'vm-001', { maxFreezeMs: 60_000, drainTimeoutMs: 5_000 });
    expect(ended).toBe(true);
    expect(state.guestState(site, 'vm-001').inflight).toBe(0);
  });

  it('gives up, thawed and typed DeviceFault, when a write never drains', async () => {
    const hv = new LabHypervisor(loaded, state);
    expect(state.guestBeginWrite(site, 'vm-001')).toBe(true);
    const err = await hv
      .freezeGuest(site, 'vm-001', { maxFreezeMs: 60_000, drainTimeoutMs: 20 })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({
      type: 'DeviceFault',
      message: expect.stringMatching(
        /^the guest of vm-001 did not quiesce: 1 write\(s\) still in flight after 20 ms; it was thawed/,
      ),
    });
    expect(await hv.guestFrozen(site, 'vm-001')).toBe(false);
  });

  it('ends by itself at its bound', async () => {
    const hv = new LabHypervisor(loaded, state);
    const { thawBy } = await hv.freezeGuest(site, 'vm-001', { maxFreezeMs: 200, drainTimeoutMs: 20 });
    expect(state.guestBeginWrite(site, 'vm-001', new Date(Date.parse(thawBy) - 1))).toBe(false);
    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(thawBy) - Date.now()) + 10));
    expect(await hv.guestFrozen(site, 'vm-001')).toBe(false);
    expect(state.guestBeginWrite(site, 'vm-001')).toBe(true);
  });
});
