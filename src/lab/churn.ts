/**
 * Change in the lab's volumes, so incrementals have real work (`kura lab churn --percent p`): a
 * share of each class volume's blocks is overwritten with fresh bytes, and a client can be marked
 * busy (at a medical device) so its backups are skipped.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, open, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import { ClassName, classVolumes, type ClassVolume } from '../domain/classes';
import { InvalidInputError } from '../domain/errors';
import { labVolumePath } from './files';

/** What one churn changed, per volume: which blocks (of `blockSize`) were overwritten. */
export interface ChurnResult {
  percent: number;
  blockSize: number;
  volumes: { target: string; file: string; blocks: number[]; totalBlocks: number }[];
  bytes: number;
}

/**
 * Overwrites `percent` % of the blocks of every volume of every configured class (blocks of the
 * store's chunk size, chosen at random, at least one per volume when percent > 0).
 */
export async function churnVolumes(loaded: LoadedConfig, paths: KuraPaths, percent: number): Promise<ChurnResult> {
  if (!(percent >= 0 && percent <= 100))
    throw new InvalidInputError(`--percent must be between 0 and 100, not ${percent}`);
  const blockSize = loaded.config.store.chunkSize;
  const targets: ClassVolume[] = Object.values(ClassName).flatMap((c) => classVolumes(loaded.config, c));
  if (targets.length === 0)
    throw new InvalidInputError(
      `${loaded.file} has no target classes; add \`classes\` (vm, server, client) to it, or write it again with \`kura lab init --force\``,
    );
  const out: ChurnResult = { percent, blockSize, volumes: [], bytes: 0 };
  for (const t of targets) {
    const file = labVolumePath(paths, t.site, t.array, t.volume);
    const fh = await open(file, 'r+');
    try {
      const { size } = await fh.stat();
      const total = Math.ceil(size / blockSize);
      const want = percent === 0 ? 0 : Math.max(1, Math.round((total * percent) / 100));
      const chosen = new Set<number>();
      while (chosen.size < Math.min(want, total)) chosen.add(randomInt(total));
      const blocks = [...chosen].sort((a, b) => a - b);
      for (const b of blocks) {
        const length = Math.min(blockSize, size - b * blockSize);
        await fh.write(randomBytes(length), 0, length, b * blockSize);
        out.bytes += length;
      }
      await fh.sync();
      out.volumes.push({ target: t.target, file, blocks, totalBlocks: total });
    } finally {
      await fh.close();
    }
  }
  return out;
}

/** `<lab>/<site>/clients/<client>.busy`: present while the client is busy at its medical device. */
function busyPath(paths: KuraPaths, site: string, client: string): string {
  return path.join(paths.lab, site, 'clients', `${client}.busy`);
}

/** Marks a client busy (with what it is busy with), or no longer busy. */
export async function setClientBusy(
  paths: KuraPaths,
  site: string,
  client: string,
  reason: string | null,
): Promise<void> {
  const file = busyPath(paths, site, client);
  if (reason === null) return rm(file, { force: true });
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, reason);
}

/** What a client is busy with, or null when it is free to be backed up. */
export function clientBusy(paths: KuraPaths, site: string, client: string): string | null {
  const file = busyPath(paths, site, client);
  return existsSync(file) ? readFileSync(file, 'utf8').trim() || 'busy' : null;
}
