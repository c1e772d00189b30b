/**
 * What a backup costs in Temporal (docs/adr/020-fleet-cost.md, docs/adr/045): only the steps that
 * wait or move data — one copy run per stream that writes its chunks and reads them back, and a
 * reservation the pool cannot grant at once — are activities of their own; the run signals each
 * chunk but its last as it lands; the resolve, the reservation granted at once, the other control
 * steps run as local activities inside the workflow's tasks, and the release as an activity whose
 * scheduling ends the task before it (docs/adr/053). The backup still
 * restores byte for byte, the catalog holds exactly one row per piece and nothing stays held. The
 * record of the backup's start, the zoning and the mount are asked for together (docs/adr/049); a
 * stream's catalog rows, unload and unzoning are one step, `closeStream`, which when retried after
 * it did its work, or when it fails for good, still leaves the rows on the cartridge once and
 * nothing held (docs/adr/057). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { Catalog } from '../../src/catalog/store';
import { LabState } from '../../src/lab/state';
import { LabTapeLibrary } from '../../src/drivers/lab/tape';
import { tablesQuery } from '../../src/messages';
import type { BackupReport } from '../../src/domain/jobs';
import { connectKura, makeLab, sha256, startWorkers, type TestLab } from '../support/harness';
import type { KuraWorkers } from '../../src/worker';
import { poolWorkflowId, type Kura } from '../../src/client';

const MiB = 1024 * 1024;

let lab: TestLab;
let workers: KuraWorkers;
let kura: Kura;
let client: Client;
let close: () => Promise<void>;

/** The control steps each backup has started so far, by its workflow id. */
const started = new Map<string, Set<string>>();
/** What each backup had started of its other first steps while its stream was being zoned. */
const besideZoning = new Map<string, string[]>();
const STEPS_BESIDE_ZONING = ['beginBackup', 'loadTape'];

/**
 * Holds each zoning until the backup's start record and its mount have started too, for at most
 * five seconds: steps asked for together are all under way by then; steps asked for one after the
 * other are not, since the mount waits for the zoning's end.
 */
const zoningWaits: ActivityInterceptorsFactory = (ctx) => ({
  inbound: {
    async execute(input, next) {
      const job = ctx.info.workflowExecution?.workflowId ?? '';
      const steps = started.get(job) ?? new Set<string>();
      started.set(job, steps.add(ctx.info.activityType));
      if (ctx.info.activityType === 'zoneStream') {
        for (let waited = 0; waited < 5000 && !STEPS_BESIDE_ZONING.every((s) => steps.has(s)); waited += 20)
          await new Promise((resolve) => setTimeout(resolve, 20));
        besideZoning.set(
          job,
          STEPS_BESIDE_ZONING.filter((s) => steps.has(s)),
        );
      }
      return next(input);
    },
  },
});

/**
 * How `closeStream` fails, for the backups of the target it names: `lost` fails its first attempt
 * after its work is done (as a reply lost would); `always` fails every attempt before doing anything.
 */
const closeFault: { target?: string; mode?: 'lost' | 'always' } = {};
/** The attempts of `closeStream` each backup made, by its workflow id. */
const closeAttempts = new Map<string, number>();

const closeStreamFaults: ActivityInterceptorsFactory = (ctx) => ({
  inbound: {
    async execute(input, next) {
      if (ctx.info.activityType !== 'closeStream') return next(input);
      const job = ctx.info.workflowExecution?.workflowId ?? '';
      closeAttempts.set(job, (closeAttempts.get(job) ?? 0) + 1);
      const faulty = closeFault.target !== undefined && job.includes(`/${closeFault.target}/`);
      if (faulty && closeFault.mode === 'always') throw new Error('closeStream refused by the test');
      const result = await next(input);
      if (faulty && closeFault.mode === 'lost' && ctx.info.attempt === 1)
        throw new Error('closeStream lost its reply in the test');
      return result;
    },
  },
});

beforeAll(async () => {
  // One stream in two chunks: one copy run signalling its first chunk, one of each control step.
  lab = await makeLab({ vms: 3, dataVolumeSize: 2 * MiB, streams: 1, chunks: 2 });
  workers = await startWorkers(lab, lab.loaded, { activityInterceptors: [zoningWaits, closeStreamFaults] });
  ({ kura, client, close } = await connectKura(lab));
});

afterAll(async () => {
  await close?.();
  await workers?.shutdown();
  lab?.cleanup();
});

describe('the cost of a backup in its history', () => {
  it('schedules only one copy run per stream as an activity when the pool grants at once, and still restores byte-identical', async () => {
    const source = await sha256(lab.dataVolume('vm-001'));
    const handle = await kura.startBackup('vm-001');
    const report: BackupReport = await handle.result();

    const history = await client.workflow.getHandle(handle.workflowId).fetchHistory();
    const events = history.events ?? [];
    const scheduled = events.flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
    // The release is an activity: scheduling it ends the task that recorded the backup and unloaded
    // its cartridges, with no timer (docs/adr/047, docs/adr/053).
    expect(scheduled).toEqual(['copyRun', 'releaseStreams']);
    // Chunk 0 lands by signal; chunk 1, the run's last, with the run's result.
    const signals = events.flatMap((e) => e.workflowExecutionSignaledEventAttributes?.signalName ?? []);
    expect(signals).toEqual(['chunk-landed']);
    // resolve, reserve at once, record start, zone, mount, record, and the stream's close: its tape
    // catalog, unmount and unzoning in one step (docs/adr/057)
    const local = events.filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_local_activity');
    expect(local).toHaveLength(7);
    const steps = started.get(handle.workflowId) ?? new Set<string>();
    expect(steps.has('closeStream')).toBe(true);
    expect(['writeTapeCatalog', 'eraseTape', 'unloadTape', 'unzoneStream'].filter((s) => steps.has(s))).toEqual([]);
    expect(closeAttempts.get(handle.workflowId)).toBe(1);
    // One patch marker, which stands for every earlier change of the backup's path: each marker is
    // two events, itself and its search-attribute upsert (docs/adr/057).
    const patches = events.flatMap((e) =>
      e.markerRecordedEventAttributes?.markerName === 'core_patch' ? [e.markerRecordedEventAttributes] : [],
    );
    expect(patches).toHaveLength(1);
    expect(events.filter((e) => e.upsertWorkflowSearchAttributesEventAttributes)).toHaveLength(2);
    // The start record and the mount were under way while the stream was being zoned.
    expect(besideZoning.get(handle.workflowId)).toEqual(STEPS_BESIDE_ZONING);
    // No timer: the release's scheduling ends the task, so the steps needing the drives are
    // recorded before the job gives them up (docs/adr/047): the unload's marker is recorded by the
    // task that schedules the release, before it, and no local step follows.
    expect(events.filter((e) => e.timerStartedEventAttributes)).toHaveLength(0);
    const markers = events.flatMap((e, i) =>
      e.markerRecordedEventAttributes?.markerName === 'core_local_activity' ? [i] : [],
    );
    const lastLocal = markers[markers.length - 1] ?? -1;
    const release = events.findIndex(
      (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'releaseStreams',
    );
    expect(lastLocal).toBeGreaterThan(0);
    expect(release).toBeGreaterThan(lastLocal);
    expect(events.slice(release + 1).some((e) => e.markerRecordedEventAttributes)).toBe(false);

    const catalog = new Catalog(lab.paths.catalog);
    const backup = catalog.backup(report.backupId);
    const pieces = catalog.piecesOf(report.backupId);
    catalog.close();
    expect(backup.status).toBe('complete');
    expect(pieces.map((p) => [p.copy, p.piece])).toEqual([
      [0, 0],
      [0, 1],
    ]);

    const tables = await client.workflow.getHandle(poolWorkflowId(lab.site)).query(tablesQuery);
    const held = [...tables.servers, ...tables.drives, ...tables.tapes, ...tables.switches].filter(
      (r) => r.holders.length > 0,
    );
    expect(held).toEqual([]);

    const dest = path.join(lab.dir, 'restores', 'vm-001.img');
    await (await kura.startRestore(report.backupId, dest)).result();
    expect(await sha256(dest)).toBe(source);
  });

  it('waits in the queue of the pool through the reservation activity when no drive is free at once, and completes once one is', async () => {
    const tables = await kura.pool.tables(lab.site);
    const drives = tables.drives.map((d) => d.name);
    for (const device of drives) await kura.pool.mark(lab.site, { device, state: 'unavailable', reason: 'cleaning' });
    const handle = await kura.startBackup('vm-001', { requestedAt: new Date(Date.now() + 1).toISOString() });
    try {
      // The local attempt is refused at once; the job then waits in the queue as an activity.
      await waitFor(async () => {
        const h = await client.workflow.getHandle(handle.workflowId).fetchHistory();
        return (h.events ?? []).some(
          (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'reserveStreams',
        );
      });
    } finally {
      for (const device of drives) await kura.pool.mark(lab.site, { device, state: 'available' });
    }
    const report: BackupReport = await handle.result();

    const events = (await client.workflow.getHandle(handle.workflowId).fetchHistory()).events ?? [];
    const scheduled = events.flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
    expect(scheduled).toEqual(['reserveStreams', 'copyRun', 'releaseStreams']);
    const catalog = new Catalog(lab.paths.catalog);
    expect(catalog.backup(report.backupId).status).toBe('complete');
    catalog.close();
    const after = await kura.pool.tables(lab.site);
    expect(after.drives.filter((r) => r.holders.length > 0)).toEqual([]);
  });
});

describe('the close of a stream', () => {
  it('retried after its work was done, writes the rows once, unloads and unzones, and the backup completes', async () => {
    closeFault.target = 'vm-002';
    closeFault.mode = 'lost';
    try {
      const handle = await kura.startBackup('vm-002');
      const report: BackupReport = await handle.result();
      expect(closeAttempts.get(handle.workflowId)).toBe(2);
      // The retry found the cartridge unloaded by the first attempt and loaded it again for its rows.
      const steps = started.get(handle.workflowId) ?? new Set<string>();
      expect(['writeTapeCatalog', 'unloadTape', 'unzoneStream'].filter((s) => steps.has(s))).toEqual([]);
      await expectClosed(report);
    } finally {
      delete closeFault.target;
    }
  });

  it('failing for good, is done again one step at a time and the backup completes as before', async () => {
    closeFault.target = 'vm-003';
    closeFault.mode = 'always';
    try {
      const handle = await kura.startBackup('vm-003');
      const report: BackupReport = await handle.result();
      // Every attempt of the one step, then the steps of before, one after another.
      expect(closeAttempts.get(handle.workflowId)).toBe(3);
      const steps = started.get(handle.workflowId) ?? new Set<string>();
      expect(['writeTapeCatalog', 'unloadTape', 'unzoneStream'].filter((s) => steps.has(s))).toEqual([
        'writeTapeCatalog',
        'unloadTape',
        'unzoneStream',
      ]);
      await expectClosed(report);
    } finally {
      delete closeFault.target;
    }
  });
});

/**
 * A complete backup's end as it must be: recorded complete, its rows on its cartridge exactly once
 * and nobody told they are missing, the cartridge out of its drive, no zone, nothing held in the pool.
 */
async function expectClosed(report: BackupReport): Promise<void> {
  const catalog = new Catalog(lab.paths.catalog);
  const status = catalog.backup(report.backupId).status;
  const streams = catalog.streamsOf(report.backupId);
  const feed = catalog.events({ limit: 1000 });
  catalog.close();
  expect(status).toBe('complete');
  expect(feed.filter((e) => e.subject.startsWith(`catalog rows of ${report.backupId}`))).toEqual([]);
  const [stream] = streams;
  expect(stream).toBeDefined();
  const state = new LabState(lab.paths.labState);
  try {
    const rows = await new LabTapeLibrary(lab.loaded, lab.paths, state).readCatalog(
      lab.site,
      stream!.library,
      stream!.tape,
    );
    expect(rows.filter((e) => e.backup.backupId === report.backupId).map((e) => e.pieces.map((p) => p.piece))).toEqual([
      [0, 1],
    ]);
    expect(state.driveContents(lab.site, stream!.drive)).toBeNull();
    expect(state.zones(lab.site)).toEqual([]);
  } finally {
    state.close();
  }
  const tables = await client.workflow.getHandle(poolWorkflowId(lab.site)).query(tablesQuery);
  expect(
    [...tables.servers, ...tables.drives, ...tables.tapes, ...tables.switches].filter((r) => r.holders.length > 0),
  ).toEqual([]);
}

/** Polls `check` every 100 ms until it holds; fails after `ms`. */
async function waitFor(check: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
