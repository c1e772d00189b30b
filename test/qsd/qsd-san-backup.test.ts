/**
 * The SAN engine on a qemu-storage-daemon array, through Kura's workers and a real Temporal server:
 * a split-backup copies the split replica, a snapshot-backup the copy-before-write snapshot and a
 * plain backup the volume's image, each to tape and back byte-identical to the image of its
 * instant; the copy device reads only the images the array's engine names, never another file.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Kura } from '../../src/client';
import { InvalidInputError } from '../../src/domain/errors';
import { labDrivers } from '../../src/drivers';
import { LabState } from '../../src/lab/state';
import type { KuraWorkers } from '../../src/worker';
import { connectKura, sha256, startWorkers } from '../support/harness';
import { run } from '../support/qsd';
import { makeQsdLab, QSD_ARRAY, type QsdTestLab } from '../support/qsd-site';

const MiB = 1024 * 1024;

let lab: QsdTestLab;
let workers: KuraWorkers;
let kura: Kura;
let close: () => Promise<void>;

beforeAll(async () => {
  lab = await makeQsdLab({ vms: 2, dataVolumeSize: 8 * MiB, pieceSize: '1MiB', streams: 1, chunks: 4 });
  workers = await startWorkers(lab);
  ({ kura, close } = await connectKura(lab));
});

afterAll(async () => {
  await close?.();
  await workers?.shutdown();
  await lab?.cleanupQsd();
});

/** Writes fresh random bytes over the first `bytes` of the volume through its NBD export, as a host does. */
async function hostWrites(vm: string, bytes: number): Promise<void> {
  const file = path.join(lab.dir, `${vm}-${randomBytes(4).toString('hex')}.bin`);
  await fs.writeFile(file, randomBytes(bytes));
  // Any call of the array starts its daemon, whose NBD server the host reaches.
  await lab.qsd.describeVolume(lab.site, QSD_ARRAY, `${vm}-data`);
  try {
    await run('qemu-io', ['-f', 'raw', '-c', `write -s ${file} 0 ${bytes}`, lab.array().nbdUri(`${vm}-data`)], {
      timeout: 60_000,
    });
  } finally {
    await fs.rm(file, { force: true });
  }
}

async function restoreTo(backupId: string, name: string): Promise<string> {
  const dest = path.join(lab.dir, 'restores', name);
  const restored = await (await kura.startRestore(backupId, dest)).result();
  expect(restored.destination).toBe(dest);
  return dest;
}

describe('backups of a volume on a qemu-storage-daemon array', () => {
  it("copies the split replica to tape, and it restores byte-identical to the volume's image at the split", async () => {
    const a = lab.array();
    await hostWrites('vm-001', 8 * MiB);
    await lab.qsd.createPair(lab.ref('vm-001'));
    expect((await a.waitPair('vm-001-data', 'in-sync', 30_000)).state).toBe('in-sync');
    const atSplit = await sha256(a.imagePath('vm-001-data'));

    const report = await (await kura.startBackup('vm-001', { method: 'split' })).result();
    expect(report).toMatchObject({ array: QSD_ARRAY, volume: 'vm-001-data', kind: 'split-backup' });
    expect(report.source?.from).toBe('replica');
    expect(report.sha256).toBe(atSplit);
    expect(await sha256(await restoreTo(report.backupId, 'split.img'))).toBe(atSplit);
    // The engine resynchronised the pair after the copy.
    expect((await lab.qsd.pairStatus(lab.ref('vm-001'))).state).toBe('in-sync');
    await lab.qsd.deletePair(lab.ref('vm-001'));
  });

  it("copies a copy-before-write snapshot to tape, and it restores byte-identical to the volume's image at the snapshot", async () => {
    const a = lab.array();
    await hostWrites('vm-001', 8 * MiB);
    const atSnapshot = await sha256(a.imagePath('vm-001-data'));

    const report = await (await kura.startBackup('vm-001', { method: 'snapshot' })).result();
    expect(report.source?.from).toBe('snapshot');
    expect(report.sha256).toBe(atSnapshot);
    expect(await sha256(await restoreTo(report.backupId, 'snapshot.img'))).toBe(atSnapshot);
    // The snapshot's copy-before-write space went back to the free pool.
    await expect(lab.qsd.listSnapshots(lab.site, QSD_ARRAY)).resolves.toEqual([]);
  });

  it("copies a plain backup from the volume's own image", async () => {
    await hostWrites('vm-002', 8 * MiB);
    const now = await sha256(lab.array().imagePath('vm-002-data'));
    const report = await (await kura.startBackup('vm-002', { method: 'direct' })).result();
    expect(report.source?.from).toBe('volume');
    expect(report.sha256).toBe(now);
    expect(await sha256(await restoreTo(report.backupId, 'direct.img'))).toBe(now);
  });
});

describe("the copy device on a qemu-storage-daemon array's images", () => {
  it('refuses a readPath the engine does not hold as a split replica or snapshot of the volume', async () => {
    const state = new LabState(lab.paths.labState);
    try {
      const drivers = labDrivers(lab.loaded, lab.paths, state);
      const a = lab.array();
      const ref = lab.ref('vm-002');
      const other = a.imagePath('vm-001-data');
      const err = await drivers.copy
        .copyToTape(
          {
            site: lab.site,
            devices: [],
            source: {
              array: QSD_ARRAY,
              volume: ref.volume,
              offset: 0,
              length: MiB,
              volumeSize: 8 * MiB,
              readPath: other,
            },
            target: { site: lab.site, library: 'lib-01', drive: 'lib-01-drv-1', tape: 'L1T001', position: 512 },
            header: {
              backupId: 'vm-002@20260101T000000Z',
              target: 'vm-002',
              job: 'op/backup/vm-002/test',
              copy: 1,
              piece: 0,
              offset: 0,
              sizeBytes: MiB,
              dataTime: new Date().toISOString(),
            },
            resumeBytes: 0,
          },
          () => undefined,
        )
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidInputError);
      expect((err as Error).message).toBe(
        `${other} is not an image of ${lab.site}/${QSD_ARRAY}/vm-002-data: the copy reads only the volume's split replica or its snapshots (it has none now); plan the copy again`,
      );
      // A snapshot of another volume is not an image of this one.
      const snap = await lab.qsd.createSnapshot(lab.ref('vm-001'), 'elsewhere');
      try {
        await expect(lab.qsd.imageFile(ref, snap.readPath)).rejects.toThrow(
          `${snap.readPath} is not an image of ${lab.site}/${QSD_ARRAY}/vm-002-data`,
        );
        await expect(lab.qsd.imageFile(lab.ref('vm-001'), snap.readPath)).resolves.toEqual({
          file: snap.readPath,
          sizeBytes: 8 * MiB,
        });
      } finally {
        await lab.qsd.deleteSnapshot(lab.ref('vm-001'), 'elsewhere');
      }
      // Once deleted, it is no image any more.
      await expect(lab.qsd.imageFile(lab.ref('vm-001'), snap.readPath)).rejects.toBeInstanceOf(InvalidInputError);
    } finally {
      state.close();
    }
  });
});
