/**
 * The lab's real files: where each simulated volume and cartridge lives on disk, and how they are
 * created — volumes filled with content unique to each, cartridges holding only their label.
 */
import { createCipheriv } from 'node:crypto';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import type { KuraPaths } from '../config/paths';
import type { LoadedConfig } from '../config/load';
import { DeviceFaultError, NotFoundError } from '../domain/errors';
import { newSha256 } from '../datamover/sha256';

/** Size of the label block at the start of every cartridge; pieces are appended after it. */
export const LABEL_BYTES = 512;

/** Volumes are generated in blocks of this size: large enough that writing is the bottleneck. */
const FILL_BLOCK_BYTES = 4 * 1024 * 1024;

export const CartridgeLabelSchema = z.object({
  kind: z.literal('kura-label'),
  site: z.string(),
  library: z.string(),
  tape: z.string(),
  capacityBytes: z.number().int().positive(),
});
export type CartridgeLabel = z.infer<typeof CartridgeLabelSchema>;

/** `<lab>/<site>/arrays/<array>/<volume>.img` */
export function labVolumePath(paths: KuraPaths, site: string, array: string, volume: string): string {
  return path.join(paths.lab, site, 'arrays', array, `${volume}.img`);
}

/** `<lab>/<site>/libraries/<library>/<tape>.tape` */
export function labCartridgePath(paths: KuraPaths, site: string, library: string, tape: string): string {
  return path.join(paths.lab, site, 'libraries', library, `${tape}.tape`);
}

export interface CreateLabFilesOptions {
  /** Recreate files that already exist (cartridges lose everything written to them). */
  force?: boolean;
  /** Called as bytes are written; skipped files count as done at once. */
  onProgress?: (done: number, total: number) => void;
}

export interface CreatedLabFiles {
  /** Files created by this call (existing, valid ones are not counted). */
  volumes: number;
  cartridges: number;
  /** Bytes written. */
  bytes: number;
  /** Existing files left as they were. */
  skipped: number;
}

/**
 * Creates every volume and cartridge of every site of the configuration. Idempotent: a volume
 * file of the right size and a cartridge with the right label are left alone unless `force`.
 */
export async function createLabFiles(
  loaded: LoadedConfig,
  paths: KuraPaths,
  opts: CreateLabFilesOptions = {},
): Promise<CreatedLabFiles> {
  const volumes: { file: string; seed: string; size: number }[] = [];
  const cartridges: { file: string; label: CartridgeLabel }[] = [];
  for (const site of loaded.config.sites) {
    for (const array of site.arrays) {
      for (const v of array.volumes) {
        volumes.push({
          file: labVolumePath(paths, site.name, array.name, v.id),
          seed: `${site.name}/${array.name}/${v.id}`,
          size: v.size,
        });
      }
    }
    for (const lib of site.libraries) {
      for (const c of lib.cartridges) {
        cartridges.push({
          file: labCartridgePath(paths, site.name, lib.name, c.id),
          label: { kind: 'kura-label', site: site.name, library: lib.name, tape: c.id, capacityBytes: c.capacity },
        });
      }
    }
  }

  const total = volumes.reduce((n, v) => n + v.size, 0) + cartridges.length * LABEL_BYTES;
  let done = 0;
  const result: CreatedLabFiles = { volumes: 0, cartridges: 0, bytes: 0, skipped: 0 };
  const advance = (n: number) => {
    done += n;
    opts.onProgress?.(done, total);
  };
  opts.onProgress?.(0, total);

  for (const v of volumes) {
    if (!opts.force && (await sizeOf(v.file)) === v.size) {
      result.skipped++;
      advance(v.size);
      continue;
    }
    await writeVolume(v.file, v.seed, v.size, advance);
    result.volumes++;
    result.bytes += v.size;
  }

  for (const c of cartridges) {
    if (!opts.force && (await hasLabel(c.file, c.label))) {
      result.skipped++;
      advance(LABEL_BYTES);
      continue;
    }
    await writeAtomically(c.file, async (fh) => {
      await fh.write(labelBlock(c.label), 0, LABEL_BYTES, 0);
    });
    result.cartridges++;
    result.bytes += LABEL_BYTES;
    advance(LABEL_BYTES);
  }
  return result;
}

/**
 * Reads the label of a cartridge file. NotFoundError when the file is missing; DeviceFaultError
 * when its first block is not a Kura label (the cartridge is damaged or not a lab cartridge).
 */
export async function readCartridgeLabel(file: string): Promise<CartridgeLabel> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    if (isErrno(err, 'ENOENT'))
      throw new NotFoundError(`no cartridge file ${file}; create the lab's files with \`kura lab init\``, { file });
    throw err;
  }
  try {
    const block = Buffer.alloc(LABEL_BYTES);
    const { bytesRead } = await fh.read(block, 0, LABEL_BYTES, 0);
    const label = parseBlock(block.subarray(0, bytesRead), CartridgeLabelSchema);
    if (label === undefined) {
      throw new DeviceFaultError(
        path.basename(file, '.tape'),
        `cartridge file ${file} has no valid Kura label in its first ${LABEL_BYTES} bytes; recreate it with \`kura lab init --force\``,
      );
    }
    return label;
  } finally {
    await fh.close();
  }
}

/** The first 512 bytes of a cartridge: the label as JSON, padded with NULs. */
export function labelBlock(label: CartridgeLabel): Buffer {
  return jsonBlock(label, LABEL_BYTES);
}

/** JSON padded with NULs to exactly `size` bytes; RangeError when the JSON does not fit (callers check). */
export function jsonBlock(value: unknown, size: number): Buffer {
  const json = Buffer.from(JSON.stringify(value), 'utf8');
  if (json.length > size) throw new RangeError(`JSON of ${json.length} bytes does not fit a ${size}-byte block`);
  const block = Buffer.alloc(size);
  json.copy(block);
  return block;
}

/** Parses a NUL-padded JSON block; undefined when it is not JSON or does not match the schema. */
export function parseBlock<T>(block: Buffer, schema: z.ZodType<T>): T | undefined {
  const end = block.indexOf(0);
  const text = block.subarray(0, end === -1 ? block.length : end).toString('utf8');
  try {
    const parsed = schema.safeParse(JSON.parse(text) as unknown);
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Deterministic volume content: the AES-128-CTR keystream under a key derived from the seed.
 * It never repeats within a volume, looks incompressible (so no layer can cheat by compressing
 * or deduplicating), differs between volumes, and is generated at several GB/s.
 */
export function volumeKeystream(seed: string): (length: number) => Buffer {
  const digest = newSha256().update(seed, 'utf8').digest();
  const cipher = createCipheriv('aes-128-ctr', digest.subarray(0, 16), digest.subarray(16, 32));
  let zeros = Buffer.alloc(0);
  return (length: number) => {
    if (zeros.length < length) zeros = Buffer.alloc(length);
    return cipher.update(zeros.subarray(0, length));
  };
}

/**
 * Writes `size` bytes of the seed's volume content to `file`, atomically (see writeAtomically),
 * calling `advance` with the bytes of each block written.
 */
export async function writeVolume(
  file: string,
  seed: string,
  size: number,
  advance: (n: number) => void,
): Promise<void> {
  const next = volumeKeystream(seed);
  await writeAtomically(file, async (fh) => {
    for (let at = 0; at < size;) {
      const block = next(Math.min(FILL_BLOCK_BYTES, size - at));
      let written = 0;
      while (written < block.length) {
        const { bytesWritten } = await fh.write(block, written, block.length - written, at + written);
        written += bytesWritten;
      }
      at += block.length;
      advance(block.length);
    }
  });
}

/**
 * Writes a file under a temporary name and renames it into place, so an interrupted `lab init`
 * never leaves a file that looks complete but is not.
 */
async function writeAtomically(
  file: string,
  fill: (fh: Awaited<ReturnType<typeof open>>) => Promise<void>,
): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.partial-${process.pid}`;
  const fh = await open(tmp, 'w');
  try {
    await fill(fh);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  await rename(tmp, file);
}

/** A lab file's size in bytes; undefined when it does not exist (any other failure is thrown). */
export async function sizeOf(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).size;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

async function hasLabel(file: string, want: CartridgeLabel): Promise<boolean> {
  try {
    const got = await readCartridgeLabel(file);
    // Capacity is deliberately not compared: changing it in kura.yaml must not wipe a cartridge's
    // backups; the drivers take the capacity from the inventory anyway.
    return got.site === want.site && got.library === want.library && got.tape === want.tape;
  } catch {
    // Missing or damaged: either way the cartridge is (re)created.
    return false;
  }
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}
