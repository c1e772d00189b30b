/**
 * The spine of a backup against a real Temporal server and real lab files: request → six steps →
 * catalog → restore, byte for byte; and the refusals that must change nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, writeFileSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { Catalog } from '../../src/catalog/store';
import { LabState } from '../../src/lab/state';
import { tablesQuery } from '../../src/messages';
import type { BackupReport, RestoreReport } from '../../src/domain/jobs';
import { jobTuning } from '../../src/config/tuning';
import {
  connectKura,
  failureOf,
  makeLab,
  sha256,
  startWorkers,
  treeFingerprint,
  type TestLab,
} from '../support/harness';
import type { KuraWorkers } from '../../src/worker';
import { backupWorkflowId, poolWorkflowId, type Kura } from '../../src/client';
import type { Client } from '@temporalio/client';

let lab: TestLab;
let workers: KuraWorkers;
let kura: Kura;
let client: Client;
let close: () => Promise<void>;

beforeAll(async () => {
  // 4 MiB data volumes in 1 MiB pieces: every backup spans four pieces on tape.
  // One stream and four chunks: the single-stream path; the stream tests cover the others.
  lab = await makeLab({ vms: 4, dataVolumeSize: 4 * 1024 * 1024, pieceSize: '1MiB', streams: 1, chunks: 4 });
  workers = await startWorkers(lab);
  ({ kura, client, close } = await connectKura(lab));
});

afterAll(async () => {
  await close?.();
  await workers?.shutdown();
  lab?.cleanup();
});

async function poolHolders(): Promise<string[]> {
  const tables = await client.workflow.getHandle(poolWorkflowId(lab.site)).query(tablesQuery);
  return [...tables.servers, ...tables.drives, ...tables.tapes, ...tables.switches, ...tables.libraries].flatMap((r) =>
    r.holders.map((h) => `${r.name}:${h.job}`),
  );
}

describe('a backup carried from request to restore', () => {
  it('restores a backed-up volume byte-identical, from every piece the catalog lists', async () => {
    const source = await sha256(lab.dataVolume('vm-001'));
    const handle = await kura.startBackup('vm-001');
    const report: BackupReport = await handle.result();

    expect(report.pieces).toHaveLength(4);
    expect(report.sizeBytes).toBe(4 * 1024 * 1024);
    const catalog = new Catalog(lab.paths.catalog);
    const backup = catalog.backup(report.backupId);
    const pieces = catalog.piecesOf(report.backupId);
    catalog.close();
    expect(backup.status).toBe('complete');
    // Read back after writing: the whole image's SHA-256 is the volume's.
    expect(backup.sha256).toBe(source);
    expect(report.sha256).toBe(source);
    expect(pieces.map((p) => p.piece)).toEqual([0, 1, 2, 3]);
    expect(pieces.map((p) => p.offset)).toEqual([0, 1, 2, 3].map((i) => i * 1024 * 1024));
    // Pieces follow each other on the cartridge: header (512 B) + data.
    expect(pieces[1]!.position).toBe(pieces[0]!.position + 512 + 1024 * 1024);

    const dest = path.join(lab.dir, 'restores', 'vm-001.img');
    const restored: RestoreReport = await (await kura.startRestore(report.backupId, dest)).result();
    expect(restored.destination).toBe(dest);
    expect(await sha256(dest)).toBe(source);
    expect(restored.sha256).toBe(source);
    expect(existsSync(`${dest}.kura-partial`)).toBe(false);
    expect(await poolHolders()).toEqual([]);
  });

  it('shows the six steps and every planned step done in the plan query', async () => {
    const handle = await kura.startBackup('vm-002');
    await handle.result();
    const { planQuery } = await import('../../src/messages');
    const plan = await handle.query(planQuery);
    expect(plan.phase).toBe('done');
    expect(plan.steps.map((s) => s.id)).toEqual([
      'reserve',
      'load:0',
      'copy:0',
      'copy:1',
      'copy:2',
      'copy:3',
      'verify',
      'record',
      'tape-catalog',
      'unload',
      'release',
    ]);
    expect(plan.steps.every((s) => s.status === 'done')).toBe(true);
  });

  it('refuses to start the same request twice', async () => {
    const at = new Date().toISOString();
    const first = await kura.startBackup('vm-003', { requestedAt: at });
    await expect(kura.startBackup('vm-003', { requestedAt: at })).rejects.toMatchObject({ type: 'AlreadyRunning' });
    await first.result();
  });
});

describe('refusals change nothing', () => {
  it('fails an unknown target with NotFound before touching any device', async () => {
    const before = treeFingerprint(lab.paths.lab);
    // The client refuses at once…
    await expect(kura.startBackup('vm-999')).rejects.toMatchObject({ type: 'NotFound' });
    // …and the workflow refuses too when started by another service.
    const err = await client.workflow
      .execute('sanOperation', {
        taskQueue: lab.taskQueue,
        workflowId: backupWorkflowId('vm-999', new Date().toISOString()),
        args: [
          {
            kind: 'backup',
            site: lab.site,
            target: 'vm-999',
            requestedBy: 'test',
            requestedAt: new Date().toISOString(),
            tuning: jobTuning(lab.loaded.config),
          },
        ],
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(failureOf(err)).toMatchObject({ type: 'NotFound' });
    expect(failureOf(err).message).toMatch(/unknown target "vm-999"/);
    expect(treeFingerprint(lab.paths.lab)).toBe(before);
    const catalog = new Catalog(lab.paths.catalog);
    expect(catalog.listBackups({ target: 'vm-999' })).toEqual([]);
    catalog.close();
  });

  it('fails a restore of an unknown backup id with NotFound and writes nothing', async () => {
    const dest = path.join(lab.dir, 'restores', 'never.img');
    const err = await (await kura.startRestore('vm-001@20200101T000000Z', dest)).result().catch((e: unknown) => e);
    expect(failureOf(err)).toMatchObject({ type: 'NotFound' });
    expect(failureOf(err).message).toMatch(/no backup "vm-001@20200101T000000Z"/);
    expect(existsSync(dest)).toBe(false);
  });

  it('fails a restore outside the restore roots with AccessDenied and writes nothing', async () => {
    const report: BackupReport = await (await kura.startBackup('vm-004')).result();
    const outside = path.join(lab.dir, 'elsewhere', 'x.img');
    const err = await (await kura.startRestore(report.backupId, outside)).result().catch((e: unknown) => e);
    expect(failureOf(err)).toMatchObject({ type: 'AccessDenied' });
    expect(failureOf(err).message).toMatch(/outside the restore roots/);
    expect(existsSync(path.dirname(outside))).toBe(false);

    // A path that climbs out with ../ is outside too.
    const climbing = path.join(lab.dir, 'restores', '..', 'escape.img');
    const err2 = await (await kura.startRestore(report.backupId, climbing)).result().catch((e: unknown) => e);
    expect(failureOf(err2)).toMatchObject({ type: 'AccessDenied' });
    expect(existsSync(path.join(lab.dir, 'escape.img'))).toBe(false);
  });

  it('refuses to overwrite an existing file and leaves it untouched', async () => {
    const report: BackupReport = await (
      await kura.startBackup('vm-002', { requestedAt: new Date(Date.now() + 1000).toISOString() })
    ).result();
    const dest = path.join(lab.dir, 'restores', 'precious.img');
    writeFileSync(dest, 'do not touch');
    const err = await (await kura.startRestore(report.backupId, dest)).result().catch((e: unknown) => e);
    expect(failureOf(err)).toMatchObject({ type: 'DestinationExists' });
    expect(readFileSync(dest, 'utf8')).toBe('do not touch');
  });
});

describe('a device that keeps failing', () => {
  it('fails the backup with DeviceFault after its attempts, records it failed, and releases every device', async () => {
    const state = new LabState(lab.paths.labState);
    const drives = lab.loaded.config.sites[0]!.libraries.flatMap((l) => l.drives.map((d) => d.id));
    for (const d of drives) state.addFault({ device: d, kind: 'fail', after: { percent: 50 }, once: false });
    const since = state.events().at(-1)?.seq ?? 0;
    try {
      const handle = await kura.startBackup('vm-003', {
        requestedAt: new Date(Date.now() + 2000).toISOString(),
        tuning: { deviceAttempts: 2 },
      });
      const err = await handle.result().catch((e: unknown) => e);
      expect(failureOf(err)).toMatchObject({ type: 'DeviceFault' });
      expect(failureOf(err).message).toMatch(/failed at copy:2.*injected failure at volume byte 2097152/);
      const catalog = new Catalog(lab.paths.catalog);
      const rows = catalog.listBackups({ target: 'vm-003' }).filter((b) => b.job === handle.workflowId);
      catalog.close();
      expect(rows.map((r) => r.status)).toEqual(['failed']);
      expect(rows[0]!.pieces).toBe(0);
      expect(await poolHolders()).toEqual([]);
      // The cartridge this job mounted was unloaded again, and no drive holds a cartridge.
      const mounts = state.events({ since }).filter((e) => e.event === 'load' || e.event === 'unload');
      expect(mounts.map((e) => e.event)).toEqual(['load', 'unload']);
      expect(mounts[1]!.detail.tape).toBe(mounts[0]!.detail.tape);
      expect(drives.map((d) => state.driveContents(lab.site, d))).toEqual(drives.map(() => null));
    } finally {
      state.clearFaults();
      state.close();
    }
  });
});

describe('a restore whose drive fails mid-read', () => {
  it('fails with DeviceFault, leaves nothing at the destination, and releases every device', async () => {
    const report: BackupReport = await (
      await kura.startBackup('vm-001', { requestedAt: new Date(Date.now() + 4000).toISOString() })
    ).result();
    const state = new LabState(lab.paths.labState);
    const drives = lab.loaded.config.sites[0]!.libraries.flatMap((l) => l.drives.map((d) => d.id));
    for (const d of drives) state.addFault({ device: d, kind: 'fail', after: { percent: 60 }, once: false });
    try {
      const dest = path.join(lab.dir, 'restores', 'half', 'vm-001.img');
      const err = await (
        await kura.startRestore(report.backupId, dest, { tuning: { deviceAttempts: 1 } })
      )
        .result()
        .catch((e: unknown) => e);
      expect(failureOf(err)).toMatchObject({ type: 'DeviceFault' });
      expect(failureOf(err).message).toMatch(/failed at read:2: .*injected failure at volume byte 2516582/);
      // Pieces 0 and 1 had been written to the partial file; it is gone, and so is the destination.
      expect(existsSync(dest)).toBe(false);
      expect(readdirSync(path.dirname(dest)).filter((f) => f.includes('kura-partial'))).toEqual([]);
      expect(await poolHolders()).toEqual([]);
      expect(drives.map((d) => state.driveContents(lab.site, d))).toEqual(drives.map(() => null));
    } finally {
      state.clearFaults();
      state.close();
    }
  });
});

describe('a cancelled backup', () => {
  it('stops the copy, unloads and releases everything, and records the backup failed', async () => {
    const state = new LabState(lab.paths.labState);
    for (const server of ['bks-01', 'bks-02'])
      state.addFault({ device: server, kind: 'slow', after: { bytes: 0 }, rateBytesPerSec: 256 * 1024, once: false });
    try {
      const handle = await kura.startBackup('vm-004', { requestedAt: new Date(Date.now() + 3000).toISOString() });
      // Wait until the copy is running, then cancel the whole job.
      const { planQuery } = await import('../../src/messages');
      for (let i = 0; i < 100; i++) {
        const plan = await handle.query(planQuery).catch(() => undefined);
        if (plan?.steps.some((s) => s.id.startsWith('copy:') && s.status === 'running')) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const unloadsBefore = state.events({ event: 'unload' }).length;
      await handle.cancel();
      const err = await handle.result().catch((e: unknown) => e);
      expect((err as Error).name).toBe('WorkflowFailedError');
      expect(((err as { cause?: Error }).cause as Error).name).toBe('CancelledFailure');
      expect(await poolHolders()).toEqual([]);
      expect(state.events({ event: 'unload' }).length).toBe(unloadsBefore + 1);
      const catalog = new Catalog(lab.paths.catalog);
      const row = catalog.listBackups({ target: 'vm-004' }).find((b) => b.job === handle.workflowId);
      catalog.close();
      expect(row?.status).toBe('failed');
      expect(row?.error).toMatch(/^Cancelled/);
    } finally {
      state.clearFaults();
      state.close();
    }
  });
});

describe('a fleet run', () => {
  it('backs up every VM, at most the window at once, and reports each one', async () => {
    const handle = await kura.startFleet('all', { concurrency: 2 });
    const report = await handle.result();
    expect(report.targets.filter((t) => t.error).map((t) => t.error)).toEqual([]);
    expect(report.succeeded).toBe(4);
    expect(report.failed).toBe(0);
    expect(report.bytes).toBe(4 * 4 * 1024 * 1024);
    expect(report.targets.map((t) => t.target).sort()).toEqual(['vm-001', 'vm-002', 'vm-003', 'vm-004']);
    const catalog = new Catalog(lab.paths.catalog);
    for (const t of report.targets) expect(catalog.backup(t.backupId!).status).toBe('complete');
    catalog.close();
    // The window held: never more than two children overlapped.
    const spans = await Promise.all(
      report.targets.map(async (t) => {
        const d = await client.workflow.getHandle(t.workflowId!).describe();
        return [d.startTime.getTime(), d.closeTime!.getTime()] as const;
      }),
    );
    const maxOverlap = Math.max(...spans.map(([s]) => spans.filter(([s2, e2]) => s2 <= s && e2 > s).length));
    expect(maxOverlap).toBeLessThanOrEqual(2);
  });
});
