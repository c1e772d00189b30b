/**
 * Seven rounds of churn and backup over all three classes of seed 000 (VMs, a file server, special
 * clients) into the deduplicated store: the store grows by about the changed data, not by the
 * estate's size, and every round's backup of every target restores byte-identical to the volume as
 * it was in that round. A busy client is skipped and reported, and caught up in the next round.
 */
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import type { Kura } from '../../src/client';
import { ClassName, classVolumes } from '../../src/domain/classes';
import { ChunkStore } from '../../src/store/chunk-store';
import { readBackup } from '../../src/store/read';
import { churnVolumes, setClientBusy } from '../../src/lab/churn';
import { labVolumePath } from '../../src/lab/files';
import type { KuraWorkers } from '../../src/worker';
import type { ClassBackupReport, vmImageRestore } from '../../src/workflows/store';
import { sha256, uniqueId, type TestLab } from '../support/harness';
import { classVolumeDigests, closeWorkflowLab, openWorkflowLab } from '../support/workflow-lab';

const KiB = 1024;
const MiB = 1024 * KiB;
let lab: TestLab;
let kura: Kura;
let client: Client;
let workers: KuraWorkers;
let close: () => Promise<void>;

beforeAll(async () => {
  ({ lab, workers, kura, client, close } = await openWorkflowLab({
    vms: 2,
    dataVolumeSize: 2 * MiB,
    softwareVolumeSize: 1 * MiB,
    fileServers: 1,
    fileServerVolumeSize: 4 * MiB,
    clients: 2,
    clientVolumeSize: 1 * MiB,
    edit: (cfg) => {
      cfg.store = { chunkSize: '64KiB' };
      cfg.lab = { osReboot: '300ms' };
    },
  }));
});

afterAll(() => closeWorkflowLab({ lab, workers, close }));

describe('seven rounds of churn and backup over all classes', () => {
  it('grow the store by about the changed data, restore every round byte-identical, and bring a VM back healthy from its whole image', async () => {
    const cfg = lab.loaded.config;
    const volumes = Object.values(ClassName).flatMap((c) => classVolumes(cfg, c));
    expect(volumes.map((v) => v.target)).toEqual([
      'vm-001/software',
      'vm-001/data',
      'vm-002/software',
      'vm-002/data',
      'fs-01',
      'cl-01',
      'cl-02',
    ]);
    const estate = 2 * 3 * MiB + 4 * MiB + 2 * MiB;
    const store = new ChunkStore(path.join(lab.paths.home, 'store', 'primary'));
    /** Per round: each target's backup id and the volume's digest when it was taken. */
    const rounds: { backupId: string; sha256: string; target: string }[][] = [];
    const lines: string[] = [];
    let changedTotal = 0;
    let grownTotal = 0;

    for (let round = 1; round <= 7; round++) {
      const churn = round === 1 ? { bytes: 0 } : await churnVolumes(lab.loaded, lab.paths, 10);
      // In round 4 the first client is busy at its medical device.
      if (round === 4) await setClientBusy(lab.paths, lab.site, 'cl-01', 'CT scan in progress');
      const digests = await classVolumeDigests(lab);
      const before = (await store.usage()).bytes;
      const dataTime = `2026-11-0${round}T12:30:00.000Z`;
      const reports: ClassBackupReport[] = [];
      for (const className of Object.values(ClassName))
        reports.push(
          await client.workflow.execute('classBackup', {
            taskQueue: lab.taskQueue,
            workflowId: `store/class/${className}/${uniqueId()}`,
            args: [{ className, dataTime }],
          }),
        );
      if (round === 4) await setClientBusy(lab.paths, lab.site, 'cl-01', null);
      const grown = (await store.usage()).bytes - before;
      const taken = reports.flatMap((r) => r.backups);
      const skipped = reports.flatMap((r) => r.skipped);
      if (round === 4) expect(skipped).toEqual([{ target: 'cl-01', reason: 'busy: CT scan in progress' }]);
      else expect(skipped).toEqual([]);
      rounds.push(taken.map((b) => ({ backupId: b.backupId, sha256: digests.get(b.target) ?? '', target: b.target })));
      if (round > 1) {
        changedTotal += churn.bytes;
        grownTotal += grown;
        // Never more than the changed data plus a tag byte per chunk (lab volumes do not compress).
        expect(grown).toBeLessThan(estate / 4);
      } else {
        expect(grown).toBeGreaterThanOrEqual(estate);
      }
      const changedChunks = taken.reduce((n, b) => n + b.changedChunks, 0);
      lines.push(
        `round ${round}: changed ${(churn.bytes / KiB).toFixed(0)} KiB, store grew ${(grown / KiB).toFixed(0)} KiB, ` +
          `${changedChunks} chunk(s) differ from the last index, ${taken.length} backups, ${skipped.length} skipped`,
      );
    }
    const ratio = grownTotal / changedTotal;
    lines.push(
      `rounds 2–7: store grew ${(grownTotal / KiB).toFixed(0)} KiB for ${(changedTotal / KiB).toFixed(0)} KiB changed ` +
        `(ratio ${ratio.toFixed(3)}); estate ${(estate / KiB).toFixed(0)} KiB × 7 rounds = ${((7 * estate) / KiB).toFixed(0)} KiB without dedup`,
    );
    console.log(lines.join('\n'));
    // The busy client's changes of round 4 were caught up in round 5: the totals still match.
    expect(ratio).toBeGreaterThan(0.95);
    expect(ratio).toBeLessThan(1.05);

    // Every round's backup of every target reads back as it was, chunk by chunk from the store.
    mkdirSync(path.join(lab.dir, 'restores'), { recursive: true });
    for (const [i, taken] of rounds.entries()) {
      for (const b of taken) {
        const out = path.join(lab.dir, 'restores', `${b.backupId.replace(/[/@]/g, '_')}.img`);
        await readBackup({
          stores: [{ name: 'primary', store }],
          backupId: b.backupId,
          destination: { path: out, offset: 0 },
        });
        expect(await sha256(out), `${b.backupId}`).toBe(b.sha256);
      }
      // Through the restore workflow too, in rounds 1, 4 and 7 (each a different target).
      if (i % 3 !== 0) continue;
      const pick = taken[i % taken.length]!;
      const dest = path.join(lab.dir, 'restores', `round-${i + 1}.img`);
      const restored = await (await kura.startRestore(pick.backupId, dest)).result();
      expect(await sha256(dest)).toBe(pick.sha256);
      expect(restored.sha256).toBe(pick.sha256);
    }

    // A VM restored from its whole image of round 3, on the other host, reports healthy with both
    // volumes as they were then.
    const round3 = rounds[2]!;
    const report = await client.workflow.execute<typeof vmImageRestore>('vmImageRestore', {
      taskQueue: lab.taskQueue,
      workflowId: `store/vm-restore/vm-001/${uniqueId()}`,
      args: [
        { site: lab.site, vm: 'vm-001', host: 'host-02', dataTime: '2026-11-03T12:30:00.000Z', healthEveryMs: 50 },
      ],
    });
    console.log(`vm-001 restored from its whole image of round 3 and healthy in ${report.tookMs} ms`);
    expect(report).toMatchObject({ vm: 'vm-001', host: 'host-02', healthy: true, fallbacks: [] });
    for (const part of ['software', 'data'] as const) {
      const v = volumes.find((x) => x.target === `vm-001/${part}`)!;
      expect(await sha256(labVolumePath(lab.paths, v.site, v.array, v.volume))).toBe(
        round3.find((b) => b.target === `vm-001/${part}`)!.sha256,
      );
    }
  });
});
