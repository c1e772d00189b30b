/**
 * The backup's end steps through a lost workflow task (docs/adr/047): a lab whose backups copy in
 * failover mode over two streams with the second standing by, a worker that dies at a chosen
 * activity of the last task, and the checks of everything the backup's end must leave behind.
 */
import { expect } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { Catalog } from '../../src/catalog/store';
import { LabState } from '../../src/lab/state';
import { LabTapeLibrary } from '../../src/drivers/lab/tape';
import { tablesQuery } from '../../src/messages';
import { poolWorkflowId, type Kura } from '../../src/client';
import type { BackupMethod, BackupReport } from '../../src/domain/jobs';
import type { sanOperation } from '../../src/workflows';
import { connectKura, makeLab, sha256, startWorkerProcess, startWorkers, type TestLab } from './harness';
import { startDyingWorkerProcess } from './dying-worker';
import type { DeathPoint } from './dying-worker-main';

const MiB = 1024 * 1024;

export interface TapeEndLab {
  lab: TestLab;
  kura: Kura;
  client: Client;
  procs: ChildProcess[];
  close(): Promise<void>;
}

/**
 * A lab whose backups copy four 1 MiB chunks in failover mode over two streams: stream 0 takes
 * them all, stream 1 stands by, so its cartridge holds nothing of the backup and is erased at the
 * end. The VMs named in `paired` get a pair first (a split-backup needs one).
 */
export async function tapeEndLab(paired: string[]): Promise<TapeEndLab> {
  const lab = await makeLab({
    vms: 3,
    dataVolumeSize: 4 * MiB,
    pieceSize: '1MiB',
    streams: 2,
    mode: 'failover',
    chunks: 4,
  });
  const { kura, client, close } = await connectKura(lab);
  const procs: ChildProcess[] = [];
  if (paired.length > 0) {
    const workers = await startWorkers(lab);
    try {
      for (const vm of paired) await (await kura.startReplicaRefresh(vm)).result();
    } finally {
      await workers.shutdown();
    }
  }
  return {
    lab,
    kura,
    client,
    procs,
    close: async () => {
      for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
      await close();
      lab.cleanup();
    },
  };
}

/**
 * Starts a backup of `vm` on a worker that dies at `death`, waits until it died, and starts a worker
 * that lives. The backup is started as `kura backup` starts it, but with a 3 s workflow task
 * timeout instead of 10 s: the lost task goes to the next worker that much sooner.
 */
export async function backupThroughKill(
  t: TapeEndLab,
  vm: string,
  method: BackupMethod,
  death: DeathPoint,
): Promise<{ handle: Awaited<ReturnType<Kura['startBackup']>>; living: ChildProcess; since: number }> {
  const state = new LabState(t.lab.paths.labState);
  const since = state.events().at(-1)?.seq ?? 0;
  state.close();
  const dying = await startDyingWorkerProcess(t.lab, t.procs, death);
  const died = new Promise((r) => dying.once('exit', r));
  const job = t.kura.backupJob(vm, { method });
  const handle = await t.client.workflow.start<typeof sanOperation>(job.workflowType, {
    ...job.options,
    workflowTaskTimeout: '3s',
  });
  await died;
  expect(dying.signalCode).toBe('SIGKILL');
  const living = await startWorkerProcess(t.lab, t.procs);
  return { handle, living, since };
}

/** Nothing is left held: no drive of `drives` holds a cartridge, no zone is on the fabric, no device is reserved. */
export async function expectNothingHeld(t: TapeEndLab, drives: string[]): Promise<void> {
  const state = new LabState(t.lab.paths.labState);
  try {
    expect(drives.map((d) => state.driveContents(t.lab.site, d))).toEqual(drives.map(() => null));
    expect(state.zones(t.lab.site)).toEqual([]);
  } finally {
    state.close();
  }
  const tables = await t.client.workflow.getHandle(poolWorkflowId(t.lab.site)).query(tablesQuery);
  expect(
    [...tables.servers, ...tables.drives, ...tables.tapes, ...tables.switches].filter((r) => r.holders.length > 0),
  ).toEqual([]);
}

/**
 * A backup of `vm` through a worker killed at `death` completes: all four chunks on stream 0, its
 * catalog rows on that stream's cartridge exactly once (and nobody told they are missing), nothing
 * of it on the standby cartridge, nothing held, and a byte-identical restore.
 */
export async function expectCompleteThroughKill(
  t: TapeEndLab,
  vm: string,
  method: BackupMethod,
  death: DeathPoint,
): Promise<void> {
  const source = await sha256(t.lab.dataVolume(vm));
  const { handle, living, since } = await backupThroughKill(t, vm, method, death);
  const report: BackupReport = await handle.result();

  const catalog = new Catalog(t.lab.paths.catalog);
  const { status, pieces, streams, feed } = (() => {
    try {
      return {
        status: catalog.backup(report.backupId).status,
        pieces: catalog.piecesOf(report.backupId),
        streams: catalog.streamsOf(report.backupId),
        feed: catalog.events({ limit: 1000 }),
      };
    } finally {
      catalog.close();
    }
  })();
  expect(status).toBe('complete');
  expect(pieces.map((p) => [p.piece, p.stream])).toEqual([0, 1, 2, 3].map((n) => [n, 0]));
  expect(streams.map((s) => s.outcome)).toEqual(['complete', 'standby']);
  expect(feed.filter((e) => e.subject.startsWith(`catalog rows of ${report.backupId}`))).toEqual([]);

  const state = new LabState(t.lab.paths.labState);
  try {
    const tapes = new LabTapeLibrary(t.lab.loaded, t.lab.paths, state);
    const [full, standby] = streams as [(typeof streams)[0], (typeof streams)[0]];
    const rows = (await tapes.readCatalog(t.lab.site, full.library, full.tape)).filter(
      (e) => e.backup.backupId === report.backupId,
    );
    expect(rows.map((e) => e.pieces.map((p) => p.piece))).toEqual([[0, 1, 2, 3]]);
    const onStandby = await tapes.readCatalog(t.lab.site, standby.library, standby.tape);
    expect(onStandby.filter((e) => e.backup.backupId === report.backupId)).toEqual([]);
    const written = state
      .events({ event: 'copy-start' })
      .filter((e) => e.seq > since && e.detail.backupId === report.backupId);
    expect(new Set(written.map((e) => e.detail.tape))).toEqual(new Set([full.tape]));
  } finally {
    state.close();
  }
  await expectNothingHeld(
    t,
    streams.map((s) => s.drive),
  );

  const dest = path.join(t.lab.dir, 'restores', `${vm}.img`);
  await (await t.kura.startRestore(report.backupId, dest)).result();
  expect(await sha256(dest)).toBe(source);
  living.kill('SIGTERM');
  await new Promise((r) => living.once('exit', r));
}
