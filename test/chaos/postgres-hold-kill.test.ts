/**
 * Chaos: the worker process holding a PostgreSQL session in backup mode (a split-backup's
 * `postgres` hook) is killed, and started again. PostgreSQL aborts the backup with the session, so
 * no session stays in backup mode; the engine notices the hold's lost heartbeat, keeps no image
 * taken in the lost backup mode, enters backup mode anew and splits inside it: the replica it
 * backs up was split within the backup mode whose label the report carries, and restores
 * byte-identical.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import Database from 'better-sqlite3';
import * as path from 'node:path';
import { LabArrayFunctions } from '../../src/drivers/lab/array-functions';
import { LabState } from '../../src/lab/state';
import type { Kura } from '../../src/client';
import { connectKura, eventually, makeLab, sha256, startWorkerProcess, type TestLab } from '../support/harness';
import { loggedBackupAbort, PG_PASSWORD, startPostgres, type TestPostgres } from '../support/postgres';

let pg: TestPostgres;
let lab: TestLab;
let kura: Kura;
let close: () => Promise<void>;
const procs: ChildProcess[] = [];

beforeAll(async () => {
  pg = await startPostgres();
  // The worker processes inherit it through the lab's environment.
  process.env.KURA_TEST_PG_PASSWORD = PG_PASSWORD;
  lab = await makeLab({
    vms: 1,
    dataVolumeSize: 4 * 1024 * 1024,
    pieceSize: '1MiB',
    copyHeartbeatTimeout: '2s',
    streams: 1,
    chunks: 4,
    edit: (cfg) => {
      const site = cfg.sites[0]!;
      site.arrays[0]!.freePool = { size: '64MiB', replicas: 4, copyRate: '64MiB' };
      site.hooks = [
        {
          target: 'vm-001',
          kind: 'postgres',
          port: pg.port,
          user: 'postgres',
          passwordEnv: 'KURA_TEST_PG_PASSWORD',
          timeout: '10s',
          heartbeat: '2s',
        },
      ];
    },
  });
  ({ kura, close } = await connectKura(lab));
});

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await close?.();
  lab?.cleanup();
  await pg?.stop();
});

describe('the worker holding backup mode killed', () => {
  it('leaves no session in backup mode, and the engine splits again inside a new backup mode', async () => {
    const state = new LabState(lab.paths.labState);
    try {
      const arrays = new LabArrayFunctions(lab.loaded, lab.paths, state);
      const ref = { site: lab.site, array: 'array-01', volume: 'vm-001-data' };
      await arrays.createPair(ref);
      await eventually(async () => (await arrays.pairStatus(ref)).state === 'in-sync', 15_000);
      const source = await sha256(lab.dataVolume('vm-001'));

      const first = await startWorkerProcess(lab, procs);
      // Backup mode lasts only as long as the split, a few hundred milliseconds here: too short to
      // aim a kill at on a loaded machine. Holding the lab state's write lock keeps the split from
      // recording itself (reads go on), so the session waits in backup mode for the kill.
      const lock = new Database(lab.paths.labState);
      lock.exec('BEGIN IMMEDIATE');
      let handle: Awaited<ReturnType<Kura['startBackup']>>;
      try {
        handle = await kura.startBackup('vm-001', { method: 'split' });
        // Killed while its session is in backup mode: pg_backup_start has returned and the session idles.
        await eventually(async () => {
          const s = await pg.sessions();
          return s.length === 1 && s[0]!.state === 'idle' && s[0]!.query.includes('pg_backup_start');
        }, 30_000);
        const held = (await pg.sessions())[0]!;
        expect(held.application_name).toBe(`kura ${handle.workflowId} round 1`);
        first.kill('SIGKILL');
        await new Promise((r) => first.once('exit', r));
      } finally {
        lock.exec('ROLLBACK');
        lock.close();
      }

      // PostgreSQL ended the session and aborted its backup: nothing is left in backup mode.
      await eventually(async () => (await pg.sessions()).length === 0, 10_000);
      await eventually(() => Promise.resolve(loggedBackupAbort(pg)), 10_000);

      await startWorkerProcess(lab, procs);
      const report = await handle.result();
      const mode = report.backupMode!;
      expect(mode.rounds).toBe(2);
      expect(mode.label).toContain(`LABEL: ${handle.workflowId} round 2`);
      expect(report.changes?.length).toBeGreaterThanOrEqual(1);
      expect(report.changes?.at(-1)?.why).toMatch(/backup mode|session/);
      // The replica backed up was split inside the second backup mode, whose stop succeeded.
      const splitAt = Date.parse(report.source!.at!);
      expect(splitAt).toBeGreaterThanOrEqual(Date.parse(mode.enteredAt));
      expect(splitAt).toBeLessThanOrEqual(Date.parse(mode.leftAt));
      // A split made in the lost backup mode (when the kill came after it) was resynchronised before the next.
      const events = state
        .events({ device: 'array-01' })
        .filter((e) => e.event === 'pair-split' || e.event === 'pair-resync')
        .map((e) => e.event);
      const splits = events.filter((e) => e === 'pair-split').length;
      expect(splits === 1 || events.join(',').startsWith('pair-split,pair-resync,pair-split')).toBe(true);
      expect(await pg.sessions()).toEqual([]);

      const dest = path.join(lab.dir, 'restores', 'vm-001.img');
      await (await kura.startRestore(report.backupId, dest)).result();
      expect(await sha256(dest)).toBe(source);
    } finally {
      state.close();
    }
  });
});
