/**
 * Serverless direct copy without a server (docs/adr/029): the pool's choice of copy devices for
 * direct streams, the copy devices' task queues, the policy field that asks for them, and the lab
 * copy device's segment commands writing the very pieces a backup server writes.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LoadedConfig } from '../../src/config/load';
import { kuraPaths } from '../../src/config/paths';
import { copySettings } from '../../src/config/tuning';
import { DeviceFaultError, InvalidInputError } from '../../src/domain/errors';
import { ConfigSchema, SiteSchema, type ConfigInput, type Site } from '../../src/domain/inventory';
import { ReserveRequestSchema, type ReserveRequest } from '../../src/domain/pool';
import { allocate, mark, tablesFromSite } from '../../src/domain/pool-tables';
import { parseWith } from '../../src/domain/validate';
import { NexusBackupInputSchema } from '../../src/api/nexus-service';
import { copyDeviceTaskQueue, installationTaskQueue, serverTaskQueue } from '../../src/api/task-queues';
import { LabCopyDevice } from '../../src/drivers/lab/copy';
import type { CopyToTapeRequest, SegmentCommand } from '../../src/drivers/types';
import { LABEL_BYTES, createLabFiles, labCartridgePath } from '../../src/lab/files';
import { hospitalPreset } from '../../src/lab/preset';
import { LabState } from '../../src/lab/state';

const MiB = 1024 * 1024;

/** The hospital's two paths, each with its copy device on its switch; `cpd-3` sits on no path to a library. */
function site(copyDevices: { name: string; segmentCopy?: boolean }[] = [{ name: 'cpd-1' }, { name: 'cpd-2' }]): Site {
  const cabled = (end: string) => !end.startsWith('cpd-') || copyDevices.some((c) => c.name === end);
  return SiteSchema.parse({
    name: 'lab',
    arrays: [{ name: 'arr-1' }],
    libraries: [1, 2].map((l) => ({
      name: `lib-${l}`,
      drives: [{ id: `lib-${l}-drv-1` }],
      cartridges: [{ id: `lib-${l}-tape-1`, capacity: '64MiB' }],
    })),
    switches: [{ name: 'sw-1' }, { name: 'sw-2' }, { name: 'sw-3' }],
    servers: [{ name: 'srv-1' }, { name: 'srv-2' }],
    copyDevices,
    links: [
      ['arr-1', 'sw-1'],
      ['arr-1', 'sw-2'],
      ['srv-1', 'sw-1'],
      ['srv-2', 'sw-2'],
      ['lib-1', 'sw-1'],
      ['lib-2', 'sw-2'],
      ['cpd-1', 'sw-1'],
      ['cpd-2', 'sw-2'],
      ['arr-1', 'sw-3'],
      ['cpd-3', 'sw-3'],
    ].filter(([a, b]) => cabled(a!) && cabled(b!)),
  });
}

const request = (r: Partial<ReserveRequest>) =>
  ReserveRequestSchema.parse({ job: 'job-a', array: 'arr-1', streams: 2, ...r });

function copyDevicesOf(result: ReturnType<typeof allocate>): (string | undefined)[] {
  if (!result.ok) throw new Error(`expected a grant, got: ${result.missing}`);
  return result.grant.streams.map((s) => s.copyDevice);
}

describe('the pool: copy devices for direct streams', () => {
  it('gives each direct stream a copy device cabled to the array and to its library', () => {
    expect(copyDevicesOf(allocate(tablesFromSite(site()), request({ direct: 2 })))).toEqual(['cpd-1', 'cpd-2']);
  });

  it('gives none when the request asks for no direct stream, as before copy devices carried streams', () => {
    const result = allocate(tablesFromSite(site()), request({}));
    expect(copyDevicesOf(result)).toEqual([undefined, undefined]);
    if (result.ok) expect(result.tables.copyDevices.every((d) => d.holders.length === 0)).toBe(true);
  });

  it('makes only the first streams direct when fewer are asked for', () => {
    expect(copyDevicesOf(allocate(tablesFromSite(site()), request({ direct: 1 })))).toEqual(['cpd-1', undefined]);
  });

  it('leaves a stream LAN-free when its copy device cannot run segment commands, is unavailable, or is busy', () => {
    const incapable = tablesFromSite(site([{ name: 'cpd-1', segmentCopy: false }, { name: 'cpd-2' }]));
    expect(incapable.copyDevices[0]?.segmentCopy).toBe(false);
    expect(copyDevicesOf(allocate(incapable, request({ direct: 2 })))).toEqual([undefined, 'cpd-2']);

    const marked = mark(tablesFromSite(site()), { device: 'cpd-2', state: 'unavailable', reason: 'laser failed' });
    if (!marked.ok) throw new Error(marked.error);
    expect(copyDevicesOf(allocate(marked.tables, request({ direct: 2 })))).toEqual(['cpd-1', undefined]);

    const first = allocate(tablesFromSite(site([{ name: 'cpd-1' }])), request({ job: 'job-a', streams: 1, direct: 1 }));
    if (!first.ok) throw new Error(first.missing);
    // cpd-1 is busy with job-a; job-b's stream (the other path) has no copy device left to reach it.
    expect(copyDevicesOf(allocate(first.tables, request({ job: 'job-b', streams: 1, direct: 1 })))).toEqual([
      undefined,
    ]);
  });

  it('never gives a copy device with no path to the stream library', () => {
    expect(copyDevicesOf(allocate(tablesFromSite(site([{ name: 'cpd-3' }])), request({ direct: 2 })))).toEqual([
      undefined,
      undefined,
    ]);
  });

  it('holds the copy device for the job, so the grant read back names it', () => {
    const result = allocate(tablesFromSite(site()), request({ direct: 2 }));
    if (!result.ok) throw new Error(result.missing);
    expect(result.tables.copyDevices.map((d) => [d.name, d.state, d.holders])).toEqual([
      ['cpd-1', 'in-use', [{ job: 'job-a', stream: 0 }]],
      ['cpd-2', 'in-use', [{ job: 'job-a', stream: 1 }]],
    ]);
    expect(copyDevicesOf(allocate(result.tables, request({ direct: 2 })))).toEqual(['cpd-1', 'cpd-2']);
  });
});

describe('copy device task queues', () => {
  it('sit beside the control and server queues, of the same installation', () => {
    expect(copyDeviceTaskQueue('cpd-01')).toBe('kura-copy-cpd-01');
    expect(copyDeviceTaskQueue('cpd-01', 't-1-kura-control')).toBe('t-1-kura-copy-cpd-01');
    const control = installationTaskQueue('kura-control', '3f9c2a71');
    expect(copyDeviceTaskQueue('cpd-01', control)).toBe('kura-copy-cpd-01@3f9c2a71');
    expect(copyDeviceTaskQueue('x', control)).not.toBe(serverTaskQueue('x', control));
  });
});

describe('the stream kind in kura.yaml', () => {
  const config = (edit: (cfg: ConfigInput) => void) => {
    const cfg = hospitalPreset({ vms: 1 });
    edit(cfg);
    return cfg;
  };

  it('a policy asks for direct streams; tuning.streamKind is the default, LAN-free unless set', () => {
    const parsed = parseWith(
      ConfigSchema,
      config((cfg) => {
        cfg.sites[0]!.policies = [{ name: 'direct-nightly', targets: ['*'], nightly: '02:00', streamKind: 'direct' }];
      }),
      'kura.yaml',
    );
    expect(copySettings(parsed, 'hospital', 'direct-nightly').streamKind).toBe('direct');
    expect(copySettings(parsed, 'hospital').streamKind).toBeUndefined();
    const tuned = parseWith(
      ConfigSchema,
      config((cfg) => {
        cfg.tuning = { streamKind: 'direct' };
      }),
      'kura.yaml',
    );
    expect(copySettings(tuned, 'hospital').streamKind).toBe('direct');
  });

  it("the Nexus service's backup takes the stream kind too, and refuses one it does not know", () => {
    const asked = { target: 'vm-001', requestedBy: 'workflow:ehr', requestedAt: '2026-11-29T02:00:00.000Z' };
    expect(parseWith(NexusBackupInputSchema, { ...asked, streamKind: 'direct' }, 'backup').streamKind).toBe('direct');
    expect(() => parseWith(NexusBackupInputSchema, { ...asked, streamKind: 'xcopy' }, 'backup')).toThrow(
      /^invalid backup: streamKind: /,
    );
  });

  it('refuses a stream kind it does not know, naming the field', () => {
    expect(() =>
      parseWith(
        ConfigSchema,
        config((cfg) => {
          cfg.sites[0]!.policies = [
            { name: 'p', targets: ['*'], nightly: '02:00', streamKind: 'serverless' as 'direct' },
          ];
        }),
        'kura.yaml',
      ),
    ).toThrow(/invalid kura\.yaml: sites\[0\]\.policies\[0\]\.streamKind: .*"lan-free"/);
  });
});

describe('LabCopyDevice: segment commands', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  async function lab(copyDevices?: { name: string; segmentCopy: boolean }[]) {
    const dir = await mkdtemp(path.join(tmpdir(), 'kura-direct-'));
    dirs.push(dir);
    const input = hospitalPreset({ vms: 1, hosts: 1, dataVolumeSize: 2 * MiB, cartridgesPerLibrary: 1 });
    if (copyDevices) input.sites[0]!.copyDevices = copyDevices;
    const loaded: LoadedConfig = { config: ConfigSchema.parse(input), file: path.join(dir, 'kura.yaml'), dir };
    const paths = kuraPaths(loaded);
    await createLabFiles(loaded, paths);
    const state = new LabState(paths.labState);
    state.setDriveContents('hospital', 'lib-01-drv-1', 'L1T001');
    const copy = new LabCopyDevice(loaded, paths, state, { chunkBytes: 256 * 1024 });
    return { copy, state, tape: labCartridgePath(paths, 'hospital', 'lib-01', 'L1T001'), close: () => state.close() };
  }

  const header = { backupId: 'vm-001@20261129T020000Z', target: 'vm-001', job: 'job-1', copy: 0, piece: 0 };
  const dataTime = '2026-11-29T02:00:00.000Z';
  const segment = (over: Partial<SegmentCommand> = {}): SegmentCommand => ({
    site: 'hospital',
    copyDevice: 'cpd-01',
    devices: ['cpd-01', 'fcsw-01', 'lib-01', 'lib-01-drv-1', 'L1T001'],
    source: { array: 'array-01', volume: 'vm-001-data', volumeSize: 2 * MiB },
    target: { site: 'hospital', library: 'lib-01', drive: 'lib-01-drv-1', tape: 'L1T001' },
    sourceAddress: MiB,
    targetAddress: LABEL_BYTES,
    length: MiB,
    header: { ...header, offset: MiB, sizeBytes: MiB, dataTime },
    resumeBytes: 0,
    ...over,
  });

  it('writes the same piece, byte for byte, as a backup server copying the same range', async () => {
    const l = await lab();
    try {
      const viaServer: CopyToTapeRequest = {
        site: 'hospital',
        devices: ['bks-01', 'fcsw-01', 'lib-01', 'lib-01-drv-1', 'L1T001'],
        source: { array: 'array-01', volume: 'vm-001-data', offset: MiB, length: MiB, volumeSize: 2 * MiB },
        target: { site: 'hospital', library: 'lib-01', drive: 'lib-01-drv-1', tape: 'L1T001', position: LABEL_BYTES },
        header: { ...header, offset: MiB, sizeBytes: MiB, dataTime },
        resumeBytes: 0,
      };
      const a = await l.copy.copyToTape(viaServer, () => undefined);
      const byServer = await readFile(l.tape);
      // Writing at the same position replaces the piece, as on a tape: the copy device's stands alone.
      const b = await l.copy.executeSegment(segment(), () => undefined);
      expect(b).toEqual(a);
      expect((await readFile(l.tape)).equals(byServer)).toBe(true);
      const starts = l.state.events({ event: 'copy-start' }).map((e) => e.detail.copyDevice ?? 'server');
      expect(starts).toEqual(['server', 'cpd-01']);
    } finally {
      l.close();
    }
  });

  it('a fault injected on the copy device fails its segment with a DeviceFault naming it', async () => {
    const l = await lab();
    try {
      l.state.addFault({ device: 'cpd-01', kind: 'fail', after: { percent: 75 }, once: false });
      const err = await l.copy.executeSegment(segment(), () => undefined).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DeviceFaultError);
      expect((err as DeviceFaultError).message).toMatch(/^lab fault on cpd-01: injected failure/);
      expect((err as DeviceFaultError).details).toMatchObject({ device: 'cpd-01' });
    } finally {
      l.close();
    }
  });

  it('refuses a copy device that cannot run segment commands, and one missing from its own devices', async () => {
    const l = await lab([
      { name: 'cpd-01', segmentCopy: false },
      { name: 'cpd-02', segmentCopy: true },
    ]);
    try {
      const err = await l.copy.executeSegment(segment(), () => undefined).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidInputError);
      expect((err as Error).message).toBe(
        'site hospital has no copy device cpd-01 able to run segment commands; copy through a backup server (LAN-free) instead',
      );
      const missing = await l.copy
        .executeSegment(segment({ devices: ['fcsw-01', 'lib-01-drv-1'] }), () => undefined)
        .catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(InvalidInputError);
      expect((missing as Error).message).toMatch(/lists devices fcsw-01, lib-01-drv-1, which do not include it/);
    } finally {
      l.close();
    }
  });
});
