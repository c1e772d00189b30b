import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, truncate, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import type { LoadedConfig } from '../../src/config/load';
import { kuraPaths, type KuraPaths } from '../../src/config/paths';
import { DeviceFaultError, NotFoundError } from '../../src/domain/errors';
import { ConfigSchema } from '../../src/domain/inventory';
import { LABEL_BYTES, createLabFiles, labCartridgePath, labVolumePath, readCartridgeLabel } from '../../src/lab/files';
import { hospitalPreset } from '../../src/lab/preset';

const KiB = 1024;
const MiB = 1024 * KiB;
const dirs: string[] = [];

async function lab(dataVolumeSize = 3 * MiB + 123): Promise<{ loaded: LoadedConfig; paths: KuraPaths }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kura-files-'));
  dirs.push(dir);
  const config = ConfigSchema.parse(
    hospitalPreset({
      vms: 2,
      hosts: 1,
      dataVolumeSize,
      softwareVolumeSize: 256 * KiB,
      cartridgesPerLibrary: 2,
      cartridgeCapacity: 64 * MiB,
    }),
  );
  const loaded: LoadedConfig = { config, file: path.join(dir, 'kura.yaml'), dir };
  return { loaded, paths: kuraPaths(loaded) };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

describe('lab file paths', () => {
  it('places volumes under arrays and cartridges under libraries, per site', () => {
    const paths = { lab: '/k/lab' } as KuraPaths;
    expect(labVolumePath(paths, 'hospital', 'array-01', 'vm-001-data')).toBe(
      '/k/lab/hospital/arrays/array-01/vm-001-data.img',
    );
    expect(labCartridgePath(paths, 'hospital', 'lib-02', 'L2T007')).toBe(
      '/k/lab/hospital/libraries/lib-02/L2T007.tape',
    );
  });
});

describe('createLabFiles', () => {
  it('creates every volume at exactly its inventory size and every cartridge as a 512-byte label', async () => {
    const { loaded, paths } = await lab();
    const made = await createLabFiles(loaded, paths);
    expect(made).toEqual({
      volumes: 4,
      cartridges: 4,
      bytes: 2 * (3 * MiB + 123) + 2 * 256 * KiB + 4 * LABEL_BYTES,
      skipped: 0,
    });
    expect((await stat(labVolumePath(paths, 'hospital', 'array-01', 'vm-001-data'))).size).toBe(3 * MiB + 123);
    expect((await stat(labVolumePath(paths, 'hospital', 'array-01', 'vm-002-sw'))).size).toBe(256 * KiB);
    const tape = labCartridgePath(paths, 'hospital', 'lib-02', 'L2T002');
    expect((await stat(tape)).size).toBe(LABEL_BYTES);
    expect(await readCartridgeLabel(tape)).toEqual({
      kind: 'kura-label',
      site: 'hospital',
      library: 'lib-02',
      tape: 'L2T002',
      capacityBytes: 64 * MiB,
    });
    const block = await readFile(tape);
    expect(JSON.parse(block.subarray(0, block.indexOf(0)).toString('utf8'))).toMatchObject({
      kind: 'kura-label',
      tape: 'L2T002',
    });
    expect(block.subarray(block.indexOf(0)).every((b) => b === 0)).toBe(true);
  });

  it('fills the same volume with the same bytes in two separate labs, and different volumes differently', async () => {
    const a = await lab();
    const b = await lab();
    await createLabFiles(a.loaded, a.paths);
    await createLabFiles(b.loaded, b.paths);
    const read = (p: KuraPaths, v: string) => readFile(labVolumePath(p, 'hospital', 'array-01', v));
    expect(sha(await read(a.paths, 'vm-001-data'))).toBe(sha(await read(b.paths, 'vm-001-data')));
    const hashes = await Promise.all(
      ['vm-001-sw', 'vm-001-data', 'vm-002-sw', 'vm-002-data'].map(async (v) => sha(await read(a.paths, v))),
    );
    expect(new Set(hashes).size).toBe(4);
  });

  it('writes content that neither repeats nor compresses', async () => {
    const { loaded, paths } = await lab(4 * MiB);
    await createLabFiles(loaded, paths);
    const data = await readFile(labVolumePath(paths, 'hospital', 'array-01', 'vm-001-data'));
    const blocks = new Set<string>();
    for (let at = 0; at < data.length; at += 64 * KiB) blocks.add(sha(data.subarray(at, at + 64 * KiB)));
    expect(blocks.size).toBe(data.length / (64 * KiB));
    expect(deflateRawSync(data.subarray(0, MiB)).length).toBeGreaterThan(MiB * 0.99);
  });

  it('leaves valid existing files alone on a second run, and reports them as kept', async () => {
    const { loaded, paths } = await lab();
    await createLabFiles(loaded, paths);
    const tape = labCartridgePath(paths, 'hospital', 'lib-01', 'L1T001');
    await appendFile(tape, Buffer.alloc(1000, 7)); // data a backup wrote after the label
    const before = (await stat(labVolumePath(paths, 'hospital', 'array-01', 'vm-001-data'))).mtimeMs;
    const again = await createLabFiles(loaded, paths);
    expect(again).toEqual({ volumes: 0, cartridges: 0, bytes: 0, skipped: 8 });
    expect((await stat(tape)).size).toBe(LABEL_BYTES + 1000);
    expect((await stat(labVolumePath(paths, 'hospital', 'array-01', 'vm-001-data'))).mtimeMs).toBe(before);
  });

  it('recreates a volume whose size is wrong, with its original content', async () => {
    const { loaded, paths } = await lab();
    await createLabFiles(loaded, paths);
    const file = labVolumePath(paths, 'hospital', 'array-01', 'vm-002-data');
    const original = sha(await readFile(file));
    await truncate(file, 1000);
    const again = await createLabFiles(loaded, paths);
    expect(again.volumes).toBe(1);
    expect(sha(await readFile(file))).toBe(original);
  });

  it('with force recreates everything, cutting cartridges back to their label', async () => {
    const { loaded, paths } = await lab();
    await createLabFiles(loaded, paths);
    const tape = labCartridgePath(paths, 'hospital', 'lib-01', 'L1T002');
    await appendFile(tape, Buffer.alloc(4096, 1));
    const forced = await createLabFiles(loaded, paths, { force: true });
    expect(forced.volumes).toBe(4);
    expect(forced.cartridges).toBe(4);
    expect((await stat(tape)).size).toBe(LABEL_BYTES);
  });

  it('reports progress in bytes up to the total', async () => {
    const { loaded, paths } = await lab();
    const seen: [number, number][] = [];
    await createLabFiles(loaded, paths, { onProgress: (done, total) => seen.push([done, total]) });
    const total = 2 * (3 * MiB + 123) + 2 * 256 * KiB + 4 * LABEL_BYTES;
    expect(seen[0]).toEqual([0, total]);
    expect(seen.at(-1)).toEqual([total, total]);
    expect(seen.every(([d], i) => i === 0 || d >= (seen[i - 1]?.[0] ?? 0))).toBe(true);
  });
});

describe('readCartridgeLabel', () => {
  it('throws NotFoundError telling to run kura lab init when the cartridge file is missing', async () => {
    const { paths } = await lab();
    const missing = labCartridgePath(paths, 'hospital', 'lib-01', 'L1T001');
    await expect(readCartridgeLabel(missing)).rejects.toThrow(NotFoundError);
    await expect(readCartridgeLabel(missing)).rejects.toThrow(
      /no cartridge file .*L1T001\.tape; create the lab's files with `kura lab init`/,
    );
  });

  it('throws DeviceFaultError when the first block is not a Kura label', async () => {
    const { loaded, paths } = await lab();
    await createLabFiles(loaded, paths);
    const tape = labCartridgePath(paths, 'hospital', 'lib-01', 'L1T001');
    await writeFile(tape, Buffer.alloc(LABEL_BYTES, 0x41));
    const err = await readCartridgeLabel(tape).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeviceFaultError);
    expect((err as DeviceFaultError).device).toBe('L1T001');
    expect((err as Error).message).toMatch(/has no valid Kura label .* `kura lab init --force`/);
  });
});
