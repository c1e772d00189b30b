/**
 * Chaos: the worker process is killed (SIGKILL) while a replica-refresh waits for its pair's
 * background copy, and started again. The array's copy lives in the lab state, not in the worker:
 * the new worker's wait carries on where it stood, the pair comes in sync once, the refresh splits
 * it, and a split-backup of the replica restores byte-identical.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { LabState } from '../../src/lab/state';
import type { ReplicaReport } from '../../src/domain/jobs';
import {
  connectKura,
  eventually,
  makeLab,
  sha256,
  startWorkerProcess as startWorkerProcessOf,
  type TestLab,
} from '../support/harness';
import type { Kura } from '../../src/client';

const MiB = 1024 * 1024;

let lab: TestLab;
let kura: Kura;
let close: () => Promise<void>;
const procs: ChildProcess[] = [];

beforeAll(async () => {
  lab = await makeLab({
    vms: 1,
    dataVolumeSize: 4 * MiB,
    pieceSize: '1MiB',
    copyHeartbeatTimeout: '2s',
    streams: 1,
    chunks: 4,
    // 1 MiB/s: the pair's full copy takes four seconds, time to kill the worker in the middle.
    edit: (cfg) => {
      cfg.sites[0]!.arrays[0]!.freePool = { size: '64MiB', replicas: 4, copyRate: '1MiB' };
    },
  });
  ({ kura, close } = await connectKura(lab));
});

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await close?.();
  lab?.cleanup();
});

describe('the worker killed while a pair copies', () => {
  it('carries on with the copy, splits once, and the replica backs up byte-identical', async () => {
    const state = new LabState(lab.paths.labState);
    try {
      const source = await sha256(lab.dataVolume('vm-001'));
      const first = await startWorkerProcessOf(lab, procs);
      const handle = await kura.startReplicaRefresh('vm-001');
      const pair = () => state.pair(lab.site, 'array-01', 'vm-001-data');
      // Killed once the copy is under way but far from done.
      await eventually(async () => (pair()?.copiedBytes ?? 0) >= MiB, 20_000);
      first.kill('SIGKILL');
      await new Promise((r) => first.once('exit', r));
      expect(pair()?.state).toBe('copying');

      await startWorkerProcessOf(lab, procs);
      const report: ReplicaReport = await handle.result();
      expect(report.copiedBytes).toBe(4 * MiB);
      expect(await sha256(report.readPath)).toBe(source);
      const events = (name: string) => state.events({ device: 'array-01', event: name }).length;
      expect(events('pair-created')).toBe(1);
      expect(events('pair-in-sync')).toBe(1);
      expect(events('pair-split')).toBe(1);

      const backup = await (await kura.startBackup('vm-001', { method: 'split' })).result();
      expect(backup.source?.from).toBe('replica');
      const dest = path.join(lab.dir, 'restores', 'vm-001.img');
      await (await kura.startRestore(backup.backupId, dest)).result();
      expect(await sha256(dest)).toBe(source);
    } finally {
      state.close();
    }
  });
});
