/**
 * The opening and closing that the workflow tests share: a lab of real files, Kura's workers and a
 * client on it, and the lab's own state (faults, zones, drives) where a test opens it; and the
 * lab's volumes and kura.yaml written and hashed the way the tests change and check them.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { stringify as stringifyYaml } from 'yaml';
import type { Kura } from '../../src/client';
import { loadConfig, type LoadedConfig } from '../../src/config/load';
import { ClassName, classVolumes } from '../../src/domain/classes';
import { labVolumePath } from '../../src/lab/files';
import type { LabState } from '../../src/lab/state';
import type { KuraWorkers } from '../../src/worker';
import { connectKura, makeLab, sha256, startWorkers, type LabOptions, type TestLab } from './harness';

/** A lab with Kura's workers running on it and a client bound to both. */
export interface WorkflowLab {
  lab: TestLab;
  workers: KuraWorkers;
  kura: Kura;
  client: Client;
  /** Closes the client's connection. */
  close(): Promise<void>;
}

/** Makes a lab with `opts`, starts Kura's workers on it and connects a client. */
export async function openWorkflowLab(opts: LabOptions): Promise<WorkflowLab> {
  const lab = await makeLab(opts);
  const workers = await startWorkers(lab);
  const { kura, client, close } = await connectKura(lab);
  return { lab, workers, kura, client, close };
}

/**
 * Closes what `openWorkflowLab` opened, and the lab's state where the test opened it, whatever part
 * of them was opened (a failed opening leaves the rest undefined), and removes the lab. The faults
 * go first, so that no copy still running on the workers being shut down waits on one.
 */
export async function closeWorkflowLab(w: Partial<WorkflowLab> & { state?: LabState }): Promise<void> {
  w.state?.clearFaults();
  await w.close?.();
  await w.workers?.shutdown();
  w.state?.close();
  w.lab?.cleanup();
}

/** Overwrites `length` bytes of a volume file at `offset` with random ones. */
export function writeRandom(file: string, offset: number, length: number): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, randomBytes(length), 0, length, offset);
  } finally {
    closeSync(fd);
  }
}

/** The SHA-256 of every volume of every class of the lab (seed 000), by target. */
export async function classVolumeDigests(lab: TestLab): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const v of Object.values(ClassName).flatMap((c) => classVolumes(lab.loaded.config, c)))
    out.set(v.target, await sha256(labVolumePath(lab.paths, v.site, v.array, v.volume)));
  return out;
}

/** Writes `doc` as another kura.yaml of the lab, named `name`, and loads it. */
export function writeLabConfig(lab: TestLab, name: string, doc: unknown): LoadedConfig {
  const file = path.join(lab.dir, name);
  writeFileSync(file, stringifyYaml(doc));
  return loadConfig(file);
}
