/**
 * Which files the copy device may read of a lab array's volume: the volume itself, the replica of
 * its split pair and its snapshots, as the lab state records them now — nothing else, even a file of
 * the same size in the same array directory.
 */
import { copyFile } from 'node:fs/promises';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../src/domain/errors';
import { LabArrayFunctions } from '../../src/drivers/lab/array-functions';
import { LabVolumeImages } from '../../src/drivers/lab/copy';
import { LabState } from '../../src/lab/state';
import { makeLab, type TestLab } from '../support/harness';

let lab: TestLab;
let state: LabState;
let images: LabVolumeImages;
let arrays: LabArrayFunctions;
const SIZE = 2 * 1024 * 1024;

beforeEach(async () => {
  lab = await makeLab({ vms: 2, dataVolumeSize: SIZE });
  state = new LabState(lab.paths.labState);
  images = new LabVolumeImages(lab.loaded, lab.paths, state);
  arrays = new LabArrayFunctions(lab.loaded, lab.paths, state);
});

afterEach(() => {
  state.close();
  lab.cleanup();
});

const ref = (vm: string) => ({ site: lab.site, array: 'array-01', volume: `${vm}-data` });

describe("the lab's images of a volume", () => {
  it('are the volume itself, the replica of its split pair and its snapshots', async () => {
    await expect(images.imageFile(ref('vm-001'))).resolves.toEqual({
      file: lab.dataVolume('vm-001'),
      sizeBytes: SIZE,
    });
    await arrays.createPair(ref('vm-001'));
    const split = await arrays.splitPair(ref('vm-001'));
    await expect(images.imageFile(ref('vm-001'), split.readPath)).resolves.toEqual({
      file: split.readPath,
      sizeBytes: SIZE,
    });
    const snap = await arrays.createSnapshot(ref('vm-002'), 'nightly');
    await expect(images.imageFile(ref('vm-002'), snap.readPath)).resolves.toEqual({
      file: snap.readPath,
      sizeBytes: SIZE,
    });
  });

  it("refuse any other file: another volume's image or snapshot, a copy beside them, a replica not split", async () => {
    const snap = await arrays.createSnapshot(ref('vm-002'), 'nightly');
    const copy = path.join(path.dirname(lab.dataVolume('vm-001')), 'copy.img');
    await copyFile(lab.dataVolume('vm-001'), copy);
    const pair = await arrays.createPair(ref('vm-001'));
    for (const file of [lab.dataVolume('vm-002'), snap.readPath, copy, pair.readPath]) {
      const err = await images.imageFile(ref('vm-001'), file).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidInputError);
      expect((err as Error).message).toBe(
        `readPath ${file} is not an image of array-01/vm-001-data: the copy reads only the volume's split replica or its snapshots (it has none now); plan the copy again`,
      );
    }
  });
});
