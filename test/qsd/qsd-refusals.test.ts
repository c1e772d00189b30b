/**
 * What a qsd array refuses, with a typed error and nothing changed: unknown volumes, a split
 * without a pair or before the copy is in sync, a snapshot the array cannot take, a full free
 * pool; and kura.yaml's checks of the array's engine settings.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import { parseConfigText } from '../../src/config/load';
import { ByArrayDrivers } from '../../src/drivers/by-array';
import type { ArrayFunctions, PairInfo, StorageDriver } from '../../src/drivers/types';
import { QmpClient, QmpCommandError, QmpConnectionError } from '../../src/drivers/qsd/qmp';
import {
  ConfigInvalidError,
  DeviceFaultError,
  InvalidInputError,
  NoResourcesError,
  NotFoundError,
  type KuraError,
} from '../../src/domain/errors';
import { readArrayState } from '../../src/drivers/qsd/state';
import { MiB, qsdConfigText, qsdLab, type QsdLab } from '../support/qsd';

const vol1 = { site: 'main', array: 'qa', volume: 'vol-1' };
const vol2 = { site: 'main', array: 'qa', volume: 'vol-2' };

/** The error a promise rejects with, checked to be of `type` with a message matching `message`. */
async function refusal<E extends KuraError>(
  p: Promise<unknown>,
  type: new (...a: never[]) => E,
  message: RegExp,
): Promise<E> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(type);
  expect((err as E).message).toMatch(message);
  return err as E;
}

describe('a qsd array refuses bad requests and changes nothing', () => {
  let lab: QsdLab;
  beforeEach(() => {
    // Room in the free pool for one 4 MiB volume's replica or snapshot; a slow copy stays "copying".
    lab = qsdLab({ size: 4 * MiB, freePool: 4 * MiB, copyRate: 512 * 1024 });
  });
  afterEach(async () => {
    await lab.cleanup();
  });

  it('reports an unknown volume as NotFound', async () => {
    const nope = { ...vol1, volume: 'nope' };
    await refusal(lab.driver.createPair(nope), NotFoundError, /no volume main\/qa\/nope; array qa has vol-1, vol-2/);
    await refusal(lab.driver.describeVolume('main', 'qa', 'nope'), NotFoundError, /no volume main\/qa\/nope/);
    await refusal(lab.driver.createSnapshot(nope, 's'), NotFoundError, /no volume main\/qa\/nope/);
    await refusal(lab.driver.listPairs('main', 'qb'), NotFoundError, /no array qb in site main/);
  });

  it('refuses to split or resync a volume without a pair, leaving the array as it was', async () => {
    await refusal(lab.driver.splitPair(vol1), NotFoundError, /main\/qa\/vol-1 has no pair; create one first/);
    await refusal(lab.driver.resyncPair(vol1), NotFoundError, /has no pair/);
    await refusal(lab.driver.pairStatus(vol1), NotFoundError, /has no pair/);
    await expect(lab.driver.deletePair(vol1)).resolves.toBeUndefined();
    const a = lab.driver.array('main', 'qa');
    expect(await readArrayState(a.paths.stateFile)).toMatchObject({ pairs: {}, snapshots: {} });
    await expect(fs.readdir(a.paths.poolDir)).resolves.toEqual([]);
  });

  it('refuses to split a pair that is still copying, which keeps copying', async () => {
    await lab.driver.createPair(vol1);
    const err = await refusal(
      lab.driver.splitPair(vol1),
      InvalidInputError,
      /the pair of main\/qa\/vol-1 is copying \(\d+ of \d+ bytes copied\); split it once it is in sync/,
    );
    expect(err.retryable).toBe(false);
    await expect(lab.driver.pairStatus(vol1)).resolves.toMatchObject({ state: 'copying' } satisfies Partial<PairInfo>);
  });

  it('refuses a snapshot of a paired volume, a second pair beyond the free pool, and a bad snapshot name', async () => {
    await lab.driver.createPair(vol1);
    await refusal(
      lab.driver.createSnapshot(vol1, 's1'),
      InvalidInputError,
      /main\/qa\/vol-1 is paired \(copying\); a volume whose mirror runs cannot take a copy-before-write snapshot/,
    );
    await refusal(
      lab.driver.createPair(vol2),
      NoResourcesError,
      /the free pool of main\/qa \(4194304 bytes\) has 0 bytes left, too few for a replica for vol-2/,
    );
    await refusal(
      lab.driver.createSnapshot(vol2, 'bad name!'),
      InvalidInputError,
      /snapshot name "bad name!" must start/,
    );
    await refusal(lab.driver.createSnapshot(vol2, 's2'), NoResourcesError, /too few for a snapshot of vol-2/);
    const a = lab.driver.array('main', 'qa');
    await expect(fs.readdir(a.paths.snapshotsDir)).resolves.toEqual([]);
    await expect(fs.readdir(a.paths.poolDir)).resolves.toEqual(['replica-vol-1.img']);
    await expect(lab.driver.listSnapshots('main', 'qa')).resolves.toEqual([]);
  });

  it("refuses a replica beyond the free pool's count of replicas, as a lab array does", async () => {
    const few = qsdLab({ size: 1 * MiB, freePool: 64 * MiB, replicas: 1 });
    try {
      await few.driver.createPair(vol1);
      await refusal(
        few.driver.createPair(vol2),
        NoResourcesError,
        /the free pool of main\/qa holds 1 of its 1 replicas and snapshots, so it has none left for a replica for vol-2; .*raise the array's freePool\.replicas/,
      );
      await refusal(few.driver.createSnapshot(vol2, 's2'), NoResourcesError, /holds 1 of its 1 replicas/);
      const a = few.driver.array('main', 'qa');
      await expect(fs.readdir(a.paths.poolDir)).resolves.toEqual(['replica-vol-1.img']);
      await expect(fs.readdir(a.paths.snapshotsDir)).resolves.toEqual([]);
    } finally {
      await few.cleanup();
    }
  });

  it('refuses to run a lab array on the qsd driver', async () => {
    await refusal(lab.driver.listPairs('main', 'la'), InvalidInputError, /array main\/la runs on the lab driver/);
  });
});

describe('the per-array dispatcher', () => {
  let lab: QsdLab;
  beforeEach(() => {
    lab = qsdLab({ size: 4 * MiB });
  });
  afterEach(async () => {
    await lab.cleanup();
  });

  it("sends each call to the engine of the call's array", async () => {
    const calls: string[] = [];
    const labStorage: StorageDriver = {
      describeVolume: async (site, array, volume) => {
        calls.push(`describe ${array}/${volume}`);
        return { site, array, volume, sizeBytes: 1 };
      },
      checkAccess: async (_s, array, volume) => void calls.push(`access ${array}/${volume}`),
    };
    const labFunctions = {
      listPairs: async (_s: string, array: string) => {
        calls.push(`pairs ${array}`);
        return [];
      },
    } as unknown as ArrayFunctions;
    const arrays = new ByArrayDrivers(lab.loaded, lab.paths, { storage: labStorage, functions: labFunctions });
    try {
      await expect(arrays.describeVolume('main', 'la', 'lab-1')).resolves.toMatchObject({ sizeBytes: 1 });
      await expect(arrays.listPairs('main', 'la')).resolves.toEqual([]);
      await arrays.checkAccess('main', 'la', 'lab-1', 'srv');
      expect(calls).toEqual(['describe la/lab-1', 'pairs la', 'access la/lab-1']);

      await expect(arrays.describeVolume('main', 'qa', 'vol-1')).resolves.toEqual({
        site: 'main',
        array: 'qa',
        volume: 'vol-1',
        sizeBytes: 4 * MiB,
      });
      await expect(arrays.listPairs('main', 'qa')).resolves.toEqual([]);
      expect(calls).toHaveLength(3);
      expect(arrays.driverOf('main', 'qa')).toBe('qsd');
      await refusal(arrays.listPairs('main', 'zz'), NotFoundError, /no array zz in site main/);
    } finally {
      await arrays.qsd.stopAll();
    }
  });
});

describe("kura.yaml's array engine settings", () => {
  function issues(text: string): Record<string, string> {
    try {
      parseConfigText(text, '/etc/kura/kura.yaml');
    } catch (err) {
      if (err instanceof ConfigInvalidError)
        return Object.fromEntries(err.issues.map((i) => [i.path.replace(/ \(line \d+\)$/, ''), i.message]));
      throw err;
    }
    throw new Error('the configuration was accepted');
  }

  it("defaults an array to the lab engine, and reads a qsd array's free pool from the array, as a lab array's", () => {
    const loaded = parseConfigText(qsdConfigText(), '/etc/kura/kura.yaml');
    expect(loaded.config.sites[0]?.arrays.map((a) => a.driver)).toEqual(['lab', 'qsd']);
    expect(loaded.config.sites[0]?.arrays[1]?.freePool).toEqual({ size: 64 * MiB, replicas: 8, copyRate: 0 });
    expect(loaded.config.sites[0]?.arrays[1]?.qsd).toBeUndefined();
  });

  it('asks a qsd array for its free pool, and a lab array not to carry qsd settings', () => {
    const text = qsdConfigText()
      .replace(/ {8}freePool: \{[^}]*\}\n/, '')
      .replace('      - name: la\n', '      - name: la\n        qsd: { imageDir: /srv/la }\n');
    const found = issues(text);
    expect(found['sites[0].arrays[1].freePool']).toMatch(
      /array "qa" runs on qemu-storage-daemon \(driver: qsd\) and needs a free pool for its replicas and snapshots, e\.g\. freePool: \{ size: 256MiB \}/,
    );
    expect(found['sites[0].arrays[0].qsd']).toMatch(/applies only to arrays with driver: qsd/);
  });

  it('refuses a socket path a Unix socket cannot bind, and a free pool that is no size', () => {
    const text = qsdConfigText()
      .replace(/freePool: \{ size: \d+/, 'freePool: { size: plenty')
      .replace('        driver: qsd\n', `        driver: qsd\n        qsd: { socket: /run/${'x'.repeat(120)}.sock }\n`);
    const found = issues(text);
    expect(found['sites[0].arrays[1].qsd.socket']).toMatch(/holds at most 107 bytes/);
    expect(found['sites[0].arrays[1].freePool.size']).toMatch(/"plenty" is not a size/);
  });

  it('refuses the free pool in the qsd section, saying where it moved, at its line', () => {
    const text = qsdConfigText()
      .replace(/ {8}freePool: \{[^}]*\}\n/, '')
      .replace('        driver: qsd\n', '        driver: qsd\n        qsd: { freePool: 64MiB, copyRate: 1MiB }\n');
    const err = configError(text);
    expect(err.issues.map((i) => i.path)).toEqual([
      'sites[0].arrays[1].qsd.freePool (line 10)',
      'sites[0].arrays[1].qsd.copyRate (line 10)',
    ]);
    expect(err.issues[0]?.message).toMatch(
      /qsd\.freePool has moved to the array's freePool\.size, which every engine reads; write freePool: \{ size: …/,
    );
    expect(err.issues[1]?.message).toMatch(/qsd\.copyRate has moved to the array's freePool\.copyRate/);
  });

  it('refuses an array that names its free pool twice, at the second one', () => {
    const text = qsdConfigText().replace(
      '        driver: qsd\n',
      '        driver: qsd\n        qsd:\n          freePool: 1MiB\n',
    );
    const err = configError(text);
    expect(err.issues).toEqual([
      {
        path: 'sites[0].arrays[1].qsd.freePool (line 11)',
        message:
          'array "qa" names its free pool twice, as freePool and as qsd.freePool; keep freePool.size and remove qsd.freePool',
      },
    ]);
    expect(err.type).toBe('ConfigInvalid');
    expect(err.message).toMatch(/kura\.yaml: sites\[0\]\.arrays\[1\]\.qsd\.freePool \(line 11\): array "qa" names/);
  });

  function configError(text: string): ConfigInvalidError {
    try {
      parseConfigText(text, '/etc/kura/kura.yaml');
    } catch (err) {
      if (err instanceof ConfigInvalidError) return err;
      throw err;
    }
    throw new Error('the configuration was accepted');
  }
});

describe('the QMP client', () => {
  let lab: QsdLab;
  beforeEach(() => {
    lab = qsdLab({ size: 4 * MiB });
  });
  afterEach(async () => {
    await lab.cleanup();
  });

  it("turns the daemon's refusal into a QmpCommandError with QEMU's class and reason", async () => {
    const a = lab.driver.array('main', 'qa');
    const err = await refusal(
      a.session((s) => s.qmp.execute('blockdev-del', { 'node-name': 'no-such-node' })),
      QmpCommandError,
      /main\/qa: qemu-storage-daemon refused blockdev-del: .*no-such-node/,
    );
    expect(err).toBeInstanceOf(DeviceFaultError);
    expect(err).toMatchObject({ command: 'blockdev-del', errorClass: 'GenericError', device: 'main/qa' });
  });

  it('reports a socket nobody listens on as a QmpConnectionError', async () => {
    await refusal(
      QmpClient.connect(`${lab.home}/none.sock`, 'main/qa', 1_000),
      QmpConnectionError,
      /main\/qa: cannot reach qemu-storage-daemon's QMP socket .*none\.sock/,
    );
  });
});
