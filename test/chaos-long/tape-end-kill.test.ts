/**
 * Chaos, the longer cases of test/chaos/tape-end-kill.test.ts (docs/adr/047): the worker killed
 * right after a complete backup released its devices, and killed inside a failed backup's undo
 * right after both drives were unloaded. Each lost workflow task runs its local activities again
 * from its start on the next worker; nothing may act on a drive the job no longer holds, the
 * complete backup completes, and the failed one leaves both cartridges cut back to where it began.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { statSync } from 'node:fs';
import { Catalog } from '../../src/catalog/store';
import { LabState } from '../../src/lab/state';
import { labCartridgePath } from '../../src/lab/files';
import { failureOf } from '../support/harness';
import {
  backupThroughKill,
  expectCompleteThroughKill,
  expectNothingHeld,
  tapeEndLab,
  type TapeEndLab,
} from '../support/tape-end';

let t: TapeEndLab;

beforeAll(async () => {
  t = await tapeEndLab(['vm-002']);
});

afterAll(async () => {
  await t?.close();
});

describe('the worker killed at a backup’s end', () => {
  it('completes the split-backup when killed after its devices were released', async () => {
    await expectCompleteThroughKill(t, 'vm-002', 'split', { activity: 'releaseStreams', count: 1 });
  });

  it('undoes a failed backup when killed after its undo unloaded both drives, cutting both cartridges back', async () => {
    const state = new LabState(t.lab.paths.labState);
    try {
      // Stream 0 fails in chunk 1 and stream 1, taking over, in chunk 2: each cartridge holds a chunk.
      for (const server of ['bks-01', 'bks-02'])
        state.addFault({ device: server, kind: 'fail', after: { percent: 30 }, once: false });
      const { handle, living, since } = await backupThroughKill(t, 'vm-003', 'direct', {
        activity: 'unloadTape',
        count: 2,
      });
      const err = await handle.result().then(
        () => undefined,
        (e: unknown) => e,
      );
      const failure = failureOf(err);
      expect(failure.type).toBe('DeviceFault');
      expect(failure.message).toMatch(/^backup of vm-003 failed at copy:\d+: all 2 streams failed: /);

      // Mounted by the job, then mounted again by the erase of the undo's lost task, after its unload.
      const mounts = state.events({ event: 'load' }).filter((e) => e.seq > since);
      const loads = mounts.filter((e, i) => mounts.findIndex((m) => m.detail.tape === e.detail.tape) === i);
      expect(loads).toHaveLength(2);
      expect(mounts).toHaveLength(4);
      // Each cartridge ends where the job began writing on it, though its erase ran twice.
      for (const l of loads) {
        const file = labCartridgePath(t.lab.paths, t.lab.site, String(l.detail.library), String(l.detail.tape));
        expect(statSync(file).size).toBe(Number(l.detail.endOfData));
      }
      const erased = state.events({ event: 'erased' }).filter((e) => e.seq > since);
      expect(new Set(erased.map((e) => e.detail.tape))).toEqual(new Set(loads.map((l) => l.detail.tape)));
      const catalog = new Catalog(t.lab.paths.catalog);
      try {
        const failed = catalog.listBackups({ target: 'vm-003' });
        expect(failed.map((b) => b.status)).toEqual(['failed']);
      } finally {
        catalog.close();
      }
      await expectNothingHeld(
        t,
        loads.map((l) => l.device),
      );
      living.kill('SIGTERM');
      await new Promise((r) => living.once('exit', r));
    } finally {
      state.clearFaults();
      state.close();
    }
  });
});
