/**
 * Test helpers for the qemu-storage-daemon arrays: a configuration with one `driver: qsd` array of
 * small volumes under a short temporary home (Unix socket paths hold 107 bytes), and the hashes and
 * NBD writes a host would make.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { parseConfigText, type LoadedConfig } from '../../src/config/load';
import type { KuraPaths } from '../../src/config/paths';
import { QsdDriver } from '../../src/drivers/qsd/driver';

export const run = promisify(execFile);

export const MiB = 1024 * 1024;

export interface QsdLab {
  loaded: LoadedConfig;
  paths: KuraPaths;
  driver: QsdDriver;
  home: string;
  /** Stops every daemon and removes the home. */
  cleanup(): Promise<void>;
}

/** kura.yaml text with one lab array and one qsd array (`qa`) whose volumes are `vol-1`… of `size` bytes. */
export function qsdConfigText(
  opts: { volumes?: number; size?: number; freePool?: number; replicas?: number; copyRate?: number } = {},
): string {
  const n = opts.volumes ?? 2;
  const size = opts.size ?? 4 * MiB;
  const vols = Array.from({ length: n }, (_, i) => `          - { id: vol-${i + 1}, size: ${size} }`).join('\n');
  return `version: 1
sites:
  - name: main
    arrays:
      - name: la
        volumes:
          - { id: lab-1, size: 1MiB }
      - name: qa
        driver: qsd
        freePool: { size: ${opts.freePool ?? 64 * MiB}, replicas: ${opts.replicas ?? 8}, copyRate: ${opts.copyRate ?? 0} }
        volumes:
${vols}
    libraries:
      - name: lib
        drives: [{ id: drv-1 }]
        cartridges: [{ id: tape-1, capacity: 64MiB }]
    servers:
      - name: srv
`;
}

/** A fresh home with a QsdDriver over {@link qsdConfigText}. */
export function qsdLab(opts: Parameters<typeof qsdConfigText>[0] = {}): QsdLab {
  const home = mkdtempSync('/tmp/kq-');
  const loaded = parseConfigText(qsdConfigText(opts), path.join(home, 'kura.yaml'));
  const paths: KuraPaths = {
    home,
    lab: path.join(home, 'lab'),
    labState: path.join(home, 'lab', 'state.db'),
    catalog: path.join(home, 'catalog.db'),
    restoreRoots: [path.join(home, 'restores')],
  };
  const driver = new QsdDriver(loaded, paths);
  return {
    loaded,
    paths,
    driver,
    home,
    cleanup: async () => {
      await driver.stopAll();
      await fs.rm(home, { recursive: true, force: true });
    },
  };
}

export async function sha256(file: string): Promise<string> {
  return createHash('sha256')
    .update(await fs.readFile(file))
    .digest('hex');
}

/** Writes `length` bytes of `pattern` at `offset` of the NBD export, as a host does. */
export async function nbdWrite(uri: string, pattern: number, offset: number, length: number): Promise<void> {
  await run('qemu-io', ['-f', 'raw', '-c', `write -P ${pattern} ${offset} ${length}`, uri], { timeout: 60_000 });
}

/** The daemon's named block nodes (query-named-block-nodes). */
export async function nodeNames(lab: QsdLab, array = 'qa'): Promise<string[]> {
  return lab.driver
    .array('main', array)
    .session(async (s) =>
      (await s.qmp.execute<{ 'node-name': string }[]>('query-named-block-nodes', { flat: true })).map(
        (n) => n['node-name'],
      ),
    );
}

/** Mount points under a directory, from /proc/self/mountinfo. */
export async function mountsBelow(dir: string): Promise<string[]> {
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p.startsWith(`${dir}/`));
}
