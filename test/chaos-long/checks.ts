/**
 * What every server-kill scenario checks afterwards: restores equal their sources, and neither the
 * pool nor the lab's SAN holds anything for a job that has ended.
 */
import * as path from 'node:path';
import { expect } from 'vitest';
import type { Kura } from '../../src/client';
import { LabState } from '../../src/lab/state';
import { sha256, type TestLab } from '../support/harness';
import { acrossOutage } from '../support/private-server';

/** Restores every backup into `dir` (four at once) and expects each to equal its source's SHA-256. */
export async function restoreAllEqual(
  kura: Kura,
  backups: { backupId: string; sha256: string }[],
  dir: string,
): Promise<void> {
  const queue = [...backups];
  const one = async () => {
    for (let b = queue.shift(); b; b = queue.shift()) {
      const dest = path.join(dir, `${b.backupId.replace(/[^A-Za-z0-9._-]/g, '_')}.img`);
      await acrossOutage(async () => (await kura.startRestore(b.backupId, dest)).result());
      expect(await sha256(dest), `restore of ${b.backupId}`).toBe(b.sha256);
    }
  };
  await Promise.all([one(), one(), one(), one()]);
}

/** Every device row of the site's pool that still has a holder. */
export async function heldRows(kura: Kura, site: string): Promise<{ name: string; holders: unknown[] }[]> {
  const t = await acrossOutage(() => kura.pool.tables(site));
  return [...t.servers, ...t.libraries, ...t.drives, ...t.tapes, ...t.switches, ...t.copyDevices]
    .filter((r) => r.holders.length > 0)
    .map((r) => ({ name: r.name, holders: r.holders }));
}

/**
 * What the lab's SAN still holds for a job after every job ended: zones, snapshots, and replica
 * pairs left split (a split-backup resynchronises its pair when it ends). All empty when nothing leaked.
 */
export function labHolds(lab: TestLab): { zones: string[]; snapshots: string[]; splitPairs: string[] } {
  const state = new LabState(lab.paths.labState);
  try {
    return {
      zones: state.zones(lab.site).map((z) => z.name),
      snapshots: state.snapshots(lab.site).map((s) => `${s.array}/${s.volume}@${s.name}`),
      splitPairs: state
        .pairs(lab.site)
        .filter((p) => p.state === 'split')
        .map((p) => `${p.array}/${p.volume}`),
    };
  } finally {
    state.close();
  }
}
