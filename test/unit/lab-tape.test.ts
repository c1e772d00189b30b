import { appendFile, mkdtemp, open, rm, truncate, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LoadedConfig } from '../../src/config/load';
import { kuraPaths, type KuraPaths } from '../../src/config/paths';
import type { KuraError } from '../../src/domain/errors';
import { AccessDeniedError, DeviceFaultError, InvalidInputError, NotFoundError } from '../../src/domain/errors';
import { ConfigSchema } from '../../src/domain/inventory';
import { labDrivers } from '../../src/drivers';
import type { Drivers, TapeAddress } from '../../src/drivers/types';
import { LABEL_BYTES, createLabFiles, labCartridgePath, labVolumePath } from '../../src/lab/files';
import { hospitalPreset } from '../../src/lab/preset';
import { LabState } from '../../src/lab/state';

const MiB = 1024 * 1024;

interface Lab {
  dir: string;
  paths: KuraPaths;
  state: LabState;
  drivers: Drivers;
}
const labs: Lab[] = [];

async function makeLab(): Promise<Lab> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kura-tape-'));
  const config = ConfigSchema.parse(
    hospitalPreset({
      vms: 2,
      hosts: 1,
      dataVolumeSize: MiB,
      softwareVolumeSize: MiB / 2,
      cartridgesPerLibrary: 3,
      cartridgeCapacity: 32 * MiB,
      drivesPerLibrary: 2,
    }),
  );
  const loaded: LoadedConfig = { config, file: path.join(dir, 'kura.yaml'), dir };
  const paths = kuraPaths(loaded);
  await createLabFiles(loaded, paths);
  const state = new LabState(paths.labState);
  const lab = { dir, paths, state, drivers: labDrivers(loaded, paths, state) };
  labs.push(lab);
  return lab;
}

afterEach(async () => {
  for (const lab of labs.splice(0)) {
    lab.state.close();
    await rm(lab.dir, { recursive: true, force: true });
  }
});

const at = (drive: string, tape: string, library = 'lib-01'): TapeAddress => ({
  site: 'hospital',
  library,
  drive,
  tape,
});

async function failure<T extends KuraError>(promise: Promise<unknown>, type: new (...args: never[]) => T): Promise<T> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(type);
  return err as T;
}

describe('LabStorage', () => {
  it('describes a volume with its inventory size', async () => {
    const lab = await makeLab();
    expect(await lab.drivers.storage.describeVolume('hospital', 'array-01', 'vm-002-data')).toEqual({
      site: 'hospital',
      array: 'array-01',
      volume: 'vm-002-data',
      sizeBytes: MiB,
    });
  });

  it('throws NotFoundError naming site/array/volume for a volume not in the inventory', async () => {
    const lab = await makeLab();
    const err = await failure(lab.drivers.storage.describeVolume('hospital', 'array-01', 'vm-009-data'), NotFoundError);
    expect(err.message).toMatch(/^no volume hospital\/array-01\/vm-009-data in the inventory .*run `kura lab init`/);
    await failure(lab.drivers.storage.describeVolume('clinic', 'array-01', 'vm-001-data'), NotFoundError);
  });

  it('throws NotFoundError telling to run kura lab init when the file is missing or of the wrong size', async () => {
    const lab = await makeLab();
    const file = labVolumePath(lab.paths, 'hospital', 'array-01', 'vm-001-data');
    await truncate(file, 10);
    const short = await failure(
      lab.drivers.storage.describeVolume('hospital', 'array-01', 'vm-001-data'),
      NotFoundError,
    );
    expect(short.message).toMatch(/holds 10 bytes but the inventory says 1048576; run `kura lab init` to recreate it$/);
    await unlink(file);
    const gone = await failure(
      lab.drivers.storage.describeVolume('hospital', 'array-01', 'vm-001-data'),
      NotFoundError,
    );
    expect(gone.message).toMatch(/does not exist; run `kura lab init` to create the lab's files$/);
  });
});

describe('LabTapeLibrary', () => {
  it('loads a fresh cartridge at the end of its label with the inventory capacity, and records the load', async () => {
    const lab = await makeLab();
    expect(await lab.drivers.tape.load(at('lib-01-drv-1', 'L1T002'))).toEqual({
      endOfData: LABEL_BYTES,
      capacityBytes: 32 * MiB,
    });
    expect(lab.state.driveContents('hospital', 'lib-01-drv-1')).toBe('L1T002');
    expect(lab.state.events({ device: 'lib-01-drv-1' }).map((e) => [e.event, e.detail.tape])).toEqual([
      ['load', 'L1T002'],
    ]);
  });

  it('reports the end of recorded data as the cartridge file size', async () => {
    const lab = await makeLab();
    await appendFile(labCartridgePath(lab.paths, 'hospital', 'lib-02', 'L2T001'), Buffer.alloc(5000));
    expect((await lab.drivers.tape.load(at('lib-02-drv-2', 'L2T001', 'lib-02'))).endOfData).toBe(LABEL_BYTES + 5000);
  });

  it('is idempotent: loading the cartridge already in the drive answers the same and records nothing new', async () => {
    const lab = await makeLab();
    const first = await lab.drivers.tape.load(at('lib-01-drv-1', 'L1T001'));
    expect(await lab.drivers.tape.load(at('lib-01-drv-1', 'L1T001'))).toEqual(first);
    expect(lab.state.events({ event: 'load' })).toHaveLength(1);
  });

  it('refuses with DeviceFaultError to load into a drive holding another cartridge, until it is unloaded', async () => {
    const lab = await makeLab();
    await lab.drivers.tape.load(at('lib-01-drv-1', 'L1T001'));
    const err = await failure(lab.drivers.tape.load(at('lib-01-drv-1', 'L1T002')), DeviceFaultError);
    expect(err.device).toBe('lib-01-drv-1');
    expect(err.message).toBe(
      'drive lib-01-drv-1 of library lib-01 already holds tape L1T001; unload it before loading L1T002',
    );
    await lab.drivers.tape.unload(at('lib-01-drv-1', 'L1T001'));
    await lab.drivers.tape.unload(at('lib-01-drv-1', 'L1T001'));
    expect((await lab.drivers.tape.load(at('lib-01-drv-1', 'L1T002'))).endOfData).toBe(LABEL_BYTES);
    expect(lab.state.events({ device: 'lib-01-drv-1' }).map((e) => e.event)).toEqual(['load', 'unload', 'load']);
  });

  it('refuses with DeviceFaultError to load a cartridge that sits in another drive', async () => {
    const lab = await makeLab();
    await lab.drivers.tape.load(at('lib-01-drv-1', 'L1T001'));
    const err = await failure(lab.drivers.tape.load(at('lib-01-drv-2', 'L1T001')), DeviceFaultError);
    expect(err.message).toBe(
      'tape L1T001 is loaded in drive lib-01-drv-1, not lib-01-drv-2; unload it from lib-01-drv-1 first',
    );
  });

  it('throws NotFoundError for an unknown library, drive or tape, and InvalidInputError for a tape of another library', async () => {
    const lab = await makeLab();
    expect((await failure(lab.drivers.tape.load(at('lib-01-drv-1', 'L1T001', 'lib-09')), NotFoundError)).message).toBe(
      'no tape library "lib-09" in site hospital; libraries: lib-01, lib-02',
    );
    expect((await failure(lab.drivers.tape.load(at('lib-02-drv-1', 'L1T001')), NotFoundError)).message).toBe(
      'no drive "lib-02-drv-1" in library lib-01 of site hospital; its drives are lib-01-drv-1, lib-01-drv-2',
    );
    expect((await failure(lab.drivers.tape.load(at('lib-01-drv-1', 'L9T001')), NotFoundError)).message).toBe(
      'no tape "L9T001" in library lib-01 of site hospital; its cartridges are L1T001, L1T002, L1T003',
    );
    expect((await failure(lab.drivers.tape.load(at('lib-01-drv-1', 'L2T001')), InvalidInputError)).message).toBe(
      'tape L2T001 belongs to library lib-02, not lib-01; address it through lib-02 (site hospital)',
    );
    expect(lab.state.driveContents('hospital', 'lib-01-drv-1')).toBeNull();
  });

  it('throws NotFoundError telling to run kura lab init when the cartridge file is missing', async () => {
    const lab = await makeLab();
    await unlink(labCartridgePath(lab.paths, 'hospital', 'lib-01', 'L1T003'));
    const err = await failure(lab.drivers.tape.load(at('lib-01-drv-1', 'L1T003')), NotFoundError);
    expect(err.message).toMatch(
      /^the cartridge file of tape L1T003 in library lib-01 \(.*L1T003\.tape\) does not exist; run `kura lab init`/,
    );
  });

  it('fails the load with DeviceFaultError on a fail fault from byte 0 of the library, drive or tape, and records it', async () => {
    const lab = await makeLab();
    for (const device of ['lib-01', 'lib-01-drv-2', 'L1T003']) {
      lab.state.addFault({ device, kind: 'fail', after: { bytes: 0 }, once: true });
      const err = await failure(lab.drivers.tape.load(at('lib-01-drv-2', 'L1T003')), DeviceFaultError);
      expect(err.device).toBe(device);
      expect(err.message).toBe(
        `lab fault on ${device}: injected failure while loading tape L1T003 into drive lib-01-drv-2`,
      );
    }
    expect(lab.state.events({ event: 'fault-fail' }).map((e) => e.device)).toEqual([
      'lib-01',
      'lib-01-drv-2',
      'L1T003',
    ]);
    expect(lab.state.listFaults()).toEqual([]);
    expect((await lab.drivers.tape.load(at('lib-01-drv-2', 'L1T003'))).endOfData).toBe(LABEL_BYTES);
  });

  it('leaves faults placed later in the volume to the copy: the load succeeds', async () => {
    const lab = await makeLab();
    lab.state.addFault({ device: 'lib-01-drv-1', kind: 'fail', after: { percent: 50 } });
    lab.state.addFault({ device: 'L1T001', kind: 'hang', after: { bytes: 0 } });
    expect((await lab.drivers.tape.load(at('lib-01-drv-1', 'L1T001'))).endOfData).toBe(LABEL_BYTES);
    expect(lab.state.listFaults().map((f) => f.triggered)).toEqual([0, 0]);
  });
});

describe('LabStorage: LUN security', () => {
  it('admits a server the mask lists and refuses another with AccessDeniedError naming both', async () => {
    const lab = await makeLab();
    await lab.drivers.storage.checkAccess('hospital', 'array-01', 'vm-001-data', 'bks-02');
    const dir = await mkdtemp(path.join(tmpdir(), 'kura-lun-'));
    const config = ConfigSchema.parse(
      hospitalPreset({ vms: 1, hosts: 1, dataVolumeSize: MiB, softwareVolumeSize: MiB / 2 }),
    );
    config.sites[0]!.arrays[0]!.lunMasks.find((m) => m.volume === 'vm-001-data')!.wwns = ['21:00:00:24:ff:4b:00:02'];
    const drivers = labDrivers(
      { config, file: path.join(dir, 'kura.yaml'), dir },
      kuraPaths({ config, file: path.join(dir, 'kura.yaml'), dir }),
      lab.state,
    );
    const err = await failure(
      drivers.storage.checkAccess('hospital', 'array-01', 'vm-001-data', 'bks-01'),
      AccessDeniedError,
    );
    expect(err.message).toMatch(
      /the LUN mask of array-01\/vm-001-data \(LUN \d+\) does not include backup server bks-01 \(21:00:00:24:ff:4b:00:01\)/,
    );
    await rm(dir, { recursive: true, force: true });
  });
});

describe('LabTapeLibrary: the catalog on the cartridge', () => {
  const at2 = { ...at('lib-01-drv-1', 'L1T001') };
  const t = '2026-11-22T02:00:00.000Z';
  const entry = (backupId: string) => ({
    backup: {
      backupId,
      job: 'j',
      site: 'hospital',
      target: 'vm-001',
      array: 'array-01',
      volume: 'vm-001-data',
      status: 'complete' as const,
      startedAt: t,
      endedAt: t,
      dataTime: t,
      sizeBytes: 10,
      sha256: 'a'.repeat(64),
      pieces: 0,
      error: null,
    },
    pieces: [],
    streams: [],
  });

  it('writes a catalog block after the data, ends the data there, and reads every block back in order', async () => {
    const lab = await makeLab();
    await lab.drivers.tape.load(at2);
    const file = labCartridgePath(lab.paths, 'hospital', 'lib-01', 'L1T001');
    await appendFile(file, Buffer.alloc(4096, 7)); // a failed job's leftovers past the append point
    const first = await lab.drivers.tape.writeCatalog(
      { ...at2, position: LABEL_BYTES },
      entry('vm-001@20261122T020000Z'),
    );
    expect(first.nextPosition).toBeGreaterThan(LABEL_BYTES + 512);
    const again = await lab.drivers.tape.writeCatalog(
      { ...at2, position: LABEL_BYTES },
      entry('vm-001@20261122T020000Z'),
    );
    expect(again).toEqual(first);
    const second = await lab.drivers.tape.writeCatalog(
      { ...at2, position: first.nextPosition },
      entry('vm-001@20261122T030000Z'),
    );
    const read = await lab.drivers.tape.readCatalog('hospital', 'lib-01', 'L1T001');
    expect(read.map((e) => e.backup.backupId)).toEqual(['vm-001@20261122T020000Z', 'vm-001@20261122T030000Z']);
    await lab.drivers.tape.eraseFrom({ ...at2, position: first.nextPosition });
    expect((await lab.drivers.tape.readCatalog('hospital', 'lib-01', 'L1T001')).length).toBe(1);
    expect(second.nextPosition).toBeGreaterThan(first.nextPosition);
  });

  it('refuses to write a cartridge that is not in the drive, changing nothing', async () => {
    const lab = await makeLab();
    const err = await failure(
      lab.drivers.tape.writeCatalog({ ...at2, position: LABEL_BYTES }, entry('vm-001@20261122T020000Z')),
      DeviceFaultError,
    );
    expect(err.message).toMatch(
      /cartridge L1T001 is not in drive lib-01-drv-1 \(the drive is empty\); load it first — nothing was written/,
    );
    expect(await lab.drivers.tape.readCatalog('hospital', 'lib-01', 'L1T001')).toEqual([]);
  });

  it('reads the catalog through a drive only when the cartridge sits in that drive', async () => {
    const lab = await makeLab();
    await lab.drivers.tape.load(at2);
    await lab.drivers.tape.writeCatalog({ ...at2, position: LABEL_BYTES }, entry('vm-001@20261122T020000Z'));
    const read = await lab.drivers.tape.readCatalog('hospital', 'lib-01', 'L1T001', 'lib-01-drv-1');
    expect(read.map((e) => e.backup.backupId)).toEqual(['vm-001@20261122T020000Z']);
    const other = await failure(
      lab.drivers.tape.readCatalog('hospital', 'lib-01', 'L1T001', 'lib-01-drv-2'),
      DeviceFaultError,
    );
    expect(other.message).toBe(
      'cartridge L1T001 is not in drive lib-01-drv-2 (the drive is empty); load it first — nothing was read',
    );
    await lab.drivers.tape.unload(at2);
    const unloaded = await failure(
      lab.drivers.tape.readCatalog('hospital', 'lib-01', 'L1T001', 'lib-01-drv-1'),
      DeviceFaultError,
    );
    expect(unloaded.message).toMatch(/^cartridge L1T001 is not in drive lib-01-drv-1 \(the drive is empty\)/);
    await failure(lab.drivers.tape.readCatalog('hospital', 'lib-01', 'L1T001', 'lib-01-drv-9'), NotFoundError);
  });

  it('reports a damaged catalog block as a DeviceFault naming the position', async () => {
    const lab = await makeLab();
    await lab.drivers.tape.load(at2);
    await lab.drivers.tape.writeCatalog({ ...at2, position: LABEL_BYTES }, entry('vm-001@20261122T020000Z'));
    const file = labCartridgePath(lab.paths, 'hospital', 'lib-01', 'L1T001');
    const fh = await open(file, 'r+');
    await fh.write(Buffer.from('X'), 0, 1, LABEL_BYTES + 512 + 5);
    await fh.close();
    const err = await failure(lab.drivers.tape.readCatalog('hospital', 'lib-01', 'L1T001'), DeviceFaultError);
    expect(err.message).toMatch(
      new RegExp(`the catalog block at position ${LABEL_BYTES} of cartridge L1T001 does not match its checksum`),
    );
  });
});
