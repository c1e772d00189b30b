/**
 * The lab arrays' function software over real files: a pair copies the volume in full, a split
 * freezes the replica at the split instant (catching up writes made after the copy), a resync
 * copies only the chunks that changed, snapshots keep their instant's image, the free pool
 * refuses what it cannot hold, and a pair's state survives a new process.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LoadedConfig } from '../../src/config/load';
import { kuraPaths, type KuraPaths } from '../../src/config/paths';
import { ConfigSchema, type ConfigInput } from '../../src/domain/inventory';
import { LabArrayFunctions, PAIR_CHUNK_BYTES } from '../../src/drivers/lab/array-functions';
import { createLabFiles, labVolumePath } from '../../src/lab/files';
import { hospitalPreset } from '../../src/lab/preset';
import { LabState } from '../../src/lab/state';

const MiB = 1024 * 1024;
const SITE = 'hospital';

interface Lab {
  loaded: LoadedConfig;
  paths: KuraPaths;
  state: LabState;
  arrays: LabArrayFunctions;
  dir: string;
  volume: string;
}

const labs: Lab[] = [];

/** Two VMs with 4 MiB data volumes; `edit` changes the array's free pool. */
async function makeLab(edit?: (cfg: ConfigInput) => void): Promise<Lab> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kura-array-'));
  const input = hospitalPreset({ vms: 2, hosts: 1, dataVolumeSize: 4 * MiB, softwareVolumeSize: MiB });
  edit?.(input);
  const config = ConfigSchema.parse(input);
  const loaded: LoadedConfig = { config, file: path.join(dir, 'kura.yaml'), dir };
  const paths = kuraPaths(loaded);
  await createLabFiles(loaded, paths);
  const state = new LabState(paths.labState);
  const lab = {
    loaded,
    paths,
    state,
    arrays: new LabArrayFunctions(loaded, paths, state),
    dir,
    volume: labVolumePath(paths, SITE, 'array-01', 'vm-001-data'),
  };
  labs.push(lab);
  return lab;
}

afterEach(async () => {
  for (const l of labs.splice(0)) {
    l.state.close();
    await rm(l.dir, { recursive: true, force: true });
  }
});

const ref = { site: SITE, array: 'array-01', volume: 'vm-001-data' };
const sha = async (file: string) =>
  createHash('sha256')
    .update(await readFile(file))
    .digest('hex');

async function writeAt(file: string, offset: number, text: string): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    await fh.write(Buffer.from(text), 0, text.length, offset);
  } finally {
    await fh.close();
  }
}

describe('lab pairs', () => {
  it('copies the whole volume into the replica and is in sync at once when the copy rate is unlimited', async () => {
    const lab = await makeLab();
    const pair = await lab.arrays.createPair(ref);
    expect(pair.state).toBe('in-sync');
    expect(pair.copiedBytes).toBe(4 * MiB);
    expect(await sha(pair.readPath)).toBe(await sha(lab.volume));
  });

  it('copies in steps at the free pool copy rate, each status moving it on', async () => {
    const lab = await makeLab((cfg) => {
      cfg.sites[0]!.arrays[0]!.freePool = { size: '64MiB', replicas: 4, copyRate: '4MiB' };
    });
    const first = await lab.arrays.createPair(ref);
    expect(first.state).toBe('copying');
    expect(first.copiedBytes).toBeLessThan(4 * MiB);
    await new Promise((r) => setTimeout(r, 1200));
    const later = await lab.arrays.pairStatus(ref);
    expect(later.state).toBe('in-sync');
    expect(await sha(later.readPath)).toBe(await sha(lab.volume));
  });

  it('split keeps the image of the split instant: writes before it are caught up, writes after it are not', async () => {
    const lab = await makeLab();
    await lab.arrays.createPair(ref);
    await writeAt(lab.volume, 5, 'before the split');
    const atSplit = await sha(lab.volume);
    const split = await lab.arrays.splitPair(ref);
    expect(split.state).toBe('split');
    expect(split.splitAt).toMatch(/^\d{4}-/);
    await writeAt(lab.volume, 3 * MiB + 7, 'after the split');
    expect(await sha(split.readPath)).toBe(atSplit);
    // Splitting again returns the split pair as it is.
    expect((await lab.arrays.splitPair(ref)).splitAt).toBe(split.splitAt);
  });

  it('resync copies only the chunks that changed since the split', async () => {
    const lab = await makeLab();
    await lab.arrays.createPair(ref);
    await lab.arrays.splitPair(ref);
    await writeAt(lab.volume, 2 * MiB + 100, 'one chunk changed');
    const resync = await lab.arrays.resyncPair(ref);
    expect(resync.state).toBe('in-sync');
    expect(resync.totalBytes).toBe(PAIR_CHUNK_BYTES);
    expect(await sha(resync.readPath)).toBe(await sha(lab.volume));
    const event = lab.state.events({ event: 'pair-resync' }).at(-1);
    expect(event?.detail.changedChunks).toBe(1);
  });

  it('refuses to split a pair that is still copying, naming its progress', async () => {
    const lab = await makeLab((cfg) => {
      cfg.sites[0]!.arrays[0]!.freePool = { size: '64MiB', replicas: 4, copyRate: '1MiB' };
    });
    await lab.arrays.createPair(ref);
    await expect(lab.arrays.splitPair(ref)).rejects.toMatchObject({
      type: 'InvalidInput',
      message: expect.stringMatching(/is copying .* only an in-sync pair can be split/),
    });
  });

  it('a volume without a pair is NotFound for status and split', async () => {
    const lab = await makeLab();
    await expect(lab.arrays.pairStatus(ref)).rejects.toMatchObject({
      type: 'NotFound',
      message: expect.stringMatching(/has no pair/),
    });
    await expect(lab.arrays.splitPair(ref)).rejects.toMatchObject({ type: 'NotFound' });
  });

  it('keeps a pair across a new process: another LabArrayFunctions over the same state carries on', async () => {
    const lab = await makeLab((cfg) => {
      cfg.sites[0]!.arrays[0]!.freePool = { size: '64MiB', replicas: 4, copyRate: '8MiB' };
    });
    await lab.arrays.createPair(ref);
    const other = new LabState(lab.paths.labState);
    try {
      await new Promise((r) => setTimeout(r, 700));
      const pair = await new LabArrayFunctions(lab.loaded, lab.paths, other).pairStatus(ref);
      expect(pair.state).toBe('in-sync');
      expect(await sha(pair.readPath)).toBe(await sha(lab.volume));
    } finally {
      other.close();
    }
  });

  it('deleting the pair removes its replica file and returns its room to the free pool', async () => {
    const lab = await makeLab((cfg) => {
      cfg.sites[0]!.arrays[0]!.freePool = { size: '4MiB', replicas: 1 };
    });
    const pair = await lab.arrays.createPair(ref);
    await expect(lab.arrays.createPair({ ...ref, volume: 'vm-002-data' })).rejects.toMatchObject({
      type: 'NoResources',
      message: expect.stringMatching(/free pool of array array-01 cannot hold/),
    });
    await lab.arrays.deletePair(ref);
    expect(existsSync(pair.readPath)).toBe(false);
    expect(await lab.arrays.listPairs(SITE, 'array-01')).toEqual([]);
    expect((await lab.arrays.createPair({ ...ref, volume: 'vm-002-data' })).state).toBe('in-sync');
  });

  it('an array without a free pool takes no pair', async () => {
    const lab = await makeLab((cfg) => {
      delete cfg.sites[0]!.arrays[0]!.freePool;
    });
    await expect(lab.arrays.createPair(ref)).rejects.toMatchObject({
      type: 'NoResources',
      message: expect.stringMatching(/has no free pool/),
    });
  });
});

describe('lab snapshots', () => {
  it("keeps the volume's image of its instant while the volume changes, until deleted", async () => {
    const lab = await makeLab();
    const before = await sha(lab.volume);
    const snap = await lab.arrays.createSnapshot(ref, 'nightly');
    await writeAt(lab.volume, 10, 'changed after the snapshot');
    expect(await sha(snap.readPath)).toBe(before);
    // Taking it again returns the same snapshot, not a new image.
    expect((await lab.arrays.createSnapshot(ref, 'nightly')).createdAt).toBe(snap.createdAt);
    expect((await lab.arrays.listSnapshots(SITE, 'array-01')).map((s) => s.name)).toEqual(['nightly']);
    await lab.arrays.deleteSnapshot(ref, 'nightly');
    expect(existsSync(snap.readPath)).toBe(false);
    expect(await lab.arrays.listSnapshots(SITE, 'array-01')).toEqual([]);
  });

  it('refuses a snapshot name that is not a plain name', async () => {
    const lab = await makeLab();
    await expect(lab.arrays.createSnapshot(ref, '../escape')).rejects.toMatchObject({ type: 'InvalidInput' });
  });
});
