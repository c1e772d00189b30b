/**
 * The libvirt driver against real `virsh` and `qemu-img`: libvirt's built-in test hypervisor,
 * loaded from a node file whose domain has real disk files, and real QEMU images. What the test
 * hypervisor supports is exercised for real (state, disks, reboot, define); what it does not
 * (the guest agent, hot-plugging disks) must fail with a DeviceFault quoting libvirt.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfigText, type LoadedConfig } from '../../src/config/load';
import { hospitalPreset, renderConfigYaml } from '../../src/lab/preset';
import { LibvirtHypervisor, domainXml } from '../../src/drivers/libvirt/hypervisor';
import { execRunner, type Runner } from '../../src/drivers/libvirt/run';
import { hypervisorDriver } from '../../src/drivers';
import { kuraPaths } from '../../src/config/paths';
import { LabState } from '../../src/lab/state';
import { LabHypervisor } from '../../src/drivers/lab/hypervisor';
import { sha256File } from '../../src/datamover/files';
import { volumeKeystream } from '../../src/lab/files';
import { virshSession, type VirshSession } from '../support/virsh-session';

let dir: string;
let loaded: LoadedConfig;
let uri: string;
const calls: string[][] = [];
const recording: Runner = (file, args) => {
  calls.push([file, ...args]);
  return execRunner(file, args);
};
const req = (request: string) => ({ request, rung: 'test', incident: 'i1' });

function writeRandom(file: string, size: number, seed: string): void {
  writeFileSync(file, volumeKeystream(seed)(size));
}

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kura-libvirt-'));
  loaded = parseConfigText(
    renderConfigYaml(hospitalPreset({ vms: 1, hosts: 2, site: 'lv' })),
    path.join(dir, 'kura.yaml'),
  );
  writeRandom(path.join(dir, 'sw.img'), 1024 * 1024, 'sw');
  writeRandom(path.join(dir, 'data.img'), 1024 * 1024, 'data');
  // libvirt's test hypervisor, loaded from a node file: one running domain with two real disks.
  const node = `<node><domain type='test'><name>vm-001</name><memory>1048576</memory><os><type>hvm</type></os><devices>
    <disk type='file' device='disk'><source file='${dir}/sw.img'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><source file='${dir}/data.img'/><target dev='vdb' bus='virtio'/></disk>
  </devices></domain></node>`;
  writeFileSync(path.join(dir, 'node.xml'), node);
  uri = `test://${path.join(dir, 'node.xml')}`;
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function driver(extra: Partial<ConstructorParameters<typeof LibvirtHypervisor>[1]> = {}): LibvirtHypervisor {
  return new LibvirtHypervisor(loaded, {
    uri,
    stateDir: path.join(dir, 'state'),
    baseImageDir: dir,
    healthCheck: 'state',
    run: recording,
    ...extra,
  });
}

describe('the libvirt hypervisor driver', () => {
  it("describes a VM from libvirt's state and lists its software and data disks", async () => {
    const d = driver();
    expect(await d.describeVm('lv', 'vm-001')).toMatchObject({ vm: 'vm-001', host: 'host-01', state: 'running' });
    expect(await d.disks('vm-001')).toEqual({ vda: path.join(dir, 'sw.img'), vdb: path.join(dir, 'data.img') });
    await expect(d.describeVm('lv', 'vm-404')).rejects.toMatchObject({ type: 'NotFound' });
  });

  it('checks health by state, or through the guest agent, which the test hypervisor lacks', async () => {
    expect(await driver().health('lv', 'vm-001')).toMatchObject({ healthy: true, state: 'running' });
    const agent = await driver({ healthCheck: 'agent' }).health('lv', 'vm-001');
    expect(agent.healthy).toBe(false);
    expect(agent.detail).toMatch(/not supported/);
  });

  it('reboots the OS with virsh reboot, once per request', async () => {
    const d = driver();
    calls.length = 0;
    await d.restart('lv', 'vm-001', 'os', req('r-os-1'));
    await d.restart('lv', 'vm-001', 'os', req('r-os-1'));
    expect(calls).toEqual([['virsh', '-c', uri, 'reboot', 'vm-001']]);
  });

  it('restarts APL and MW through the guest agent, and says a real host is needed when there is none', async () => {
    calls.length = 0;
    const err = await driver({ units: { apl: 'callctl.service', mw: 'sipmw.service' } })
      .restart('lv', 'vm-001', 'apl', req('r-apl-1'))
      .catch((e: unknown) => e);
    expect(err).toMatchObject({
      type: 'DeviceFault',
      message: expect.stringMatching(/guest agent \(needs a real host with qemu-guest-agent\) failed: .*not supported/),
    });
    const sent = calls[0]!;
    expect(sent.slice(0, 5)).toEqual(['virsh', '-c', uri, 'qemu-agent-command', 'vm-001']);
    expect(JSON.parse(sent[5]!)).toEqual({
      execute: 'guest-exec',
      arguments: { path: '/usr/bin/systemctl', arg: ['restart', 'callctl.service'], 'capture-output': true },
    });
  });

  it('images only the data disk with qemu-img, byte for byte', async () => {
    const dest = path.join(dir, 'images', 'vm-001-data.img');
    const out = await driver().snapshotDataVolume('lv', 'vm-001', dest, () => undefined);
    expect(out).toEqual({ sizeBytes: 1024 * 1024, sha256: await sha256File(path.join(dir, 'data.img')) });
  });

  it('creates a new volume from an image at once, as a qcow2 overlay that reads as the image', async () => {
    const image = path.join(dir, 'image.img');
    writeRandom(image, 4 * 1024 * 1024, 'image');
    const sha = await sha256File(image);
    const ref = { imageId: 'vm-001@x', kind: 'data' as const, file: image, sizeBytes: 4 * 1024 * 1024, sha256: sha };
    const { volume } = await driver().createVolumeFromImage('lv', 'vm-001', ref, req('r-create-1'), () => undefined);
    const info = JSON.parse(
      execFileSync('qemu-img', ['info', '--output=json', volume], { encoding: 'utf8' }),
    ) as Record<string, unknown>;
    expect(info.format).toBe('qcow2');
    expect(info['backing-filename']).toBe(image);
    // The overlay holds no data of its own: creating it did not copy the image.
    expect(statSync(volume).size).toBeLessThan(1024 * 1024);
    const flat = path.join(dir, 'flat.img');
    execFileSync('qemu-img', ['convert', '-O', 'raw', volume, flat]);
    expect(await sha256File(flat)).toBe(sha);
    // A damaged image is refused before any volume is made from it.
    await expect(
      driver().createVolumeFromImage(
        'lv',
        'vm-001',
        { ...ref, sha256: '0'.repeat(64) },
        req('r-create-2'),
        () => undefined,
      ),
    ).rejects.toMatchObject({
      type: 'ChecksumMismatch',
      message: `image vm-001@x at ${image} does not hash as recorded; it is not used`,
    });
    expect(readdirSync(path.dirname(volume))).toEqual([path.basename(volume)]);
  });

  it('swaps the data disk by detach and attach, which the test hypervisor refuses', async () => {
    calls.length = 0;
    const err = await driver()
      .swapDataVolume(
        'lv',
        'vm-001',
        '/new.qcow2',
        { imageId: 'i', kind: 'data', file: '/i', sizeBytes: 1, sha256: '0'.repeat(64) },
        req('r-swap-1'),
      )
      .catch((e: unknown) => e);
    expect(err).toMatchObject({
      type: 'DeviceFault',
      message: expect.stringMatching(
        /detaching the data volume of vm-001 \(needs a real host\) failed: .*not supported/,
      ),
    });
    expect(calls.at(-1)).toEqual(['virsh', '-c', uri, 'detach-disk', 'vm-001', 'vdb', '--live', '--config']);
  });

  it("freezes and thaws the guest's file systems through virsh, bounded, and describes the VM for its image", async () => {
    const d = driver();
    calls.length = 0;
    const frozen = await d.freezeGuest('lv', 'vm-001', { maxFreezeMs: 60_000, drainTimeoutMs: 1000 });
    expect(Date.parse(frozen.thawBy) - Date.parse(frozen.frozenAt)).toBe(60_000);
    expect(await d.guestFrozen('lv', 'vm-001')).toBe(true);
    expect(await d.thawGuest('lv', 'vm-001')).toEqual({ wasFrozen: true });
    expect(await d.guestFrozen('lv', 'vm-001')).toBe(false);
    expect(calls).toEqual([
      ['virsh', '-c', uri, 'domfsfreeze', 'vm-001'],
      ['virsh', '-c', uri, 'domfsthaw', 'vm-001'],
    ]);
    // Past its bound a freeze no longer counts as holding the image, whatever libvirt says.
    await d.freezeGuest('lv', 'vm-001', { maxFreezeMs: 1, drainTimeoutMs: 1 });
    await new Promise((r) => setTimeout(r, 5));
    expect(await d.guestFrozen('lv', 'vm-001')).toBe(false);
    expect(await d.thawGuest('lv', 'vm-001')).toEqual({ wasFrozen: false });

    expect(await d.describeDefinition('lv', 'vm-001')).toMatchObject({
      kind: 'kura-vm-definition',
      name: 'vm-001',
      host: 'host-01',
      driver: 'libvirt',
      memoryBytes: 1024 * 1024 * 1024,
      volumes: [
        { role: 'software', array: 'array-01', volume: 'vm-001-sw', sizeBytes: 1024 * 1024 },
        { role: 'data', array: 'array-01', volume: 'vm-001-data', sizeBytes: 1024 * 1024 },
      ],
      health: { check: 'state' },
    });
  });

  it('writes domain XML for a rebuild that libvirt accepts', () => {
    const xml = domainXml(
      'vm-001-rebuilt',
      path.join(dir, 'sw.img'),
      path.join(dir, 'data.img'),
      { software: 'vda', data: 'vdb' },
      'test',
    );
    writeFileSync(path.join(dir, 'rebuilt.xml'), xml);
    const out = execFileSync('virsh', ['-c', 'test:///default', 'define', path.join(dir, 'rebuilt.xml')], {
      encoding: 'utf8',
    });
    expect(out).toMatch(/Domain 'vm-001-rebuilt' defined/);
  });

  it('refuses a rebuild on a host the site does not have', async () => {
    const img = { imageId: 'i', kind: 'software' as const, file: '/i', sizeBytes: 1, sha256: '0'.repeat(64) };
    await expect(
      driver().rebuild('lv', 'vm-001', 'host-99', { software: img, data: { ...img, kind: 'data' } }, req('r-rb')),
    ).rejects.toMatchObject({
      type: 'NotFound',
      message: expect.stringContaining('no host "host-99"'),
    });
  });

  it("is the workers' hypervisor driver when kura.yaml's hypervisor section names libvirt", async () => {
    const text = renderConfigYaml({
      ...hospitalPreset({ vms: 1, hosts: 2, site: 'lv' }),
      hypervisor: { driver: 'libvirt', uri, healthCheck: 'state' },
    } as never);
    const withLibvirt = parseConfigText(text, path.join(dir, 'kura.yaml'));
    const state = new LabState(path.join(dir, 'state.db'));
    try {
      const hv = hypervisorDriver(withLibvirt, kuraPaths(withLibvirt), state);
      expect(hv).toBeInstanceOf(LibvirtHypervisor);
      expect(await hv.health('lv', 'vm-001')).toMatchObject({ healthy: true, detail: 'vm-001 is running' });
      expect(hypervisorDriver(loaded, kuraPaths(loaded), state)).toBeInstanceOf(LabHypervisor);
      expect(() =>
        parseConfigText(
          renderConfigYaml({
            ...hospitalPreset({ vms: 1 }),
            hypervisor: { driver: 'libvirt', uri, hostUri: 'qemu+ssh://x/system' },
          } as never),
          '/x/kura.yaml',
        ),
      ).toThrow(/hypervisor\.hostUri.*must contain \{host\}/);
    } finally {
      state.close();
    }
  });
});

describe('the libvirt hypervisor driver recreating a VM from its definition', () => {
  let session: VirshSession;
  beforeAll(() => {
    session = virshSession(uri);
  });
  afterAll(async () => {
    await session?.close();
  });
  /** The driver on one libvirt connection (see test/support/virsh-session.ts); both hosts are that hypervisor. */
  const onSession = () =>
    driver({ run: session.run, hostUri: () => uri, domainType: 'test', stateDir: path.join(dir, 'def-state') });
  const virsh = async (...args: string[]) => (await session.run('virsh', ['-c', uri, ...args])).stdout;
  const images = () => ({
    software: {
      imageId: 'vm-001/software@x',
      kind: 'software' as const,
      file: path.join(dir, 'sw.img'),
      sizeBytes: 1024 * 1024,
      sha256: '0'.repeat(64),
    },
    data: {
      imageId: 'vm-001/data@x',
      kind: 'data' as const,
      file: path.join(dir, 'data.img'),
      sizeBytes: 1024 * 1024,
      sha256: '0'.repeat(64),
    },
  });

  it("defines a domain of the definition's vCPUs, memory and two disks by role, starts it, and removes it", async () => {
    const d = onSession();
    const def = { ...(await d.describeDefinition('lv', 'vm-001')), vcpus: 3, memoryBytes: 512 * 1024 * 1024 };
    const made = await d.createFromDefinition(def, { name: 'vm-101', host: 'host-02' }, images(), req('r-def-1'));

    const info = await virsh('dominfo', 'vm-101');
    expect(info).toMatch(/^State:\s+running$/m);
    expect(info).toMatch(/^CPU\(s\):\s+3$/m);
    expect(info).toMatch(/^Max memory:\s+524288 KiB$/m);
    // The software disk on the software target, the data disk on the data target, each over its image.
    expect(await d.disks('vm-101')).toEqual({ vda: made.softwareVolume, vdb: made.dataVolume });
    for (const [volume, image] of [
      [made.softwareVolume, 'sw.img'],
      [made.dataVolume, 'data.img'],
    ] as const) {
      const qinfo = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', volume], { encoding: 'utf8' })) as {
        'backing-filename': string;
      };
      expect(qinfo['backing-filename']).toBe(path.join(dir, image));
    }
    expect(await virsh('dumpxml', 'vm-101')).toMatch(/<kura:definition [^>]*from="vm-001"/);
    // Known from then on without kura.yaml naming it.
    expect(await d.health('lv', 'vm-101')).toMatchObject({ healthy: true, detail: 'vm-101 is running' });

    // Once per request: a retried activity defines and starts nothing again.
    calls.length = 0;
    await d.createFromDefinition(def, { name: 'vm-101', host: 'host-02' }, images(), req('r-def-1'));
    expect(calls).toEqual([]);

    expect(await d.removeCreated({ name: 'vm-101', host: 'host-02' })).toEqual({ removed: true });
    await expect(virsh('domstate', 'vm-101')).rejects.toThrow(/failed to get domain 'vm-101'/);
    expect(existsSync(path.dirname(made.softwareVolume))).toBe(false);
    expect(await d.removeCreated({ name: 'vm-101', host: 'host-02' })).toEqual({ removed: false });
    // The production domain the definition came from was never touched.
    expect((await virsh('domstate', 'vm-001')).trim()).toBe('running');
  });

  it('refuses images that are not of the definition, and a host the site does not have, before defining anything', async () => {
    const d = onSession();
    const def = await d.describeDefinition('lv', 'vm-001');
    calls.length = 0;
    const small = { ...images(), data: { ...images().data, sizeBytes: 4096 } };
    await expect(
      d.createFromDefinition(def, { name: 'vm-102', host: 'host-01' }, small, req('r-def-2')),
    ).rejects.toMatchObject({
      type: 'InvalidInput',
      message: expect.stringContaining(
        "the data image vm-001/data@x is 4096 bytes but vm-001's definition says 1048576",
      ),
    });
    await expect(
      d.createFromDefinition(def, { name: 'vm-102', host: 'host-99' }, images(), req('r-def-3')),
    ).rejects.toMatchObject({ type: 'NotFound', message: expect.stringContaining('no host "host-99"') });
    expect(calls.filter((c) => c.includes('define'))).toEqual([]);
  });
});
