/**
 * Seed 004 against a real Temporal server and real lab files: backups over several disjoint
 * streams that survive device faults (failover by chunk, parallel copies), restores from another
 * copy, and the catalog rebuilt from cartridges. After every job: the restore is byte-identical
 * where the job succeeded, the catalog is exact, no device stays reserved and no zone is left.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { rmSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { Catalog } from '../../src/catalog/store';
import { catalogContents, compareContents, contentsOfEntries } from '../../src/catalog/rebuild';
import type { CatalogRebuildReport } from '../../src/domain/catalog-rebuild';
import { LabState } from '../../src/lab/state';
import { LabTapeLibrary } from '../../src/drivers/lab/tape';
import { labCartridgePath } from '../../src/lab/files';
import { planQuery, progressQuery } from '../../src/messages';
import type { BackupReport, PlanView, RestoreReport } from '../../src/domain/jobs';
import type { PieceRecord } from '../../src/domain/catalog';
import type { PoolTables } from '../../src/domain/pool';
import type { FaultSpecInput } from '../../src/domain/faults';
import { chunkSizeFor } from '../../src/workflows/plan';
import { eventually, failureOf, repairLab, sha256, unavailableDevices, type TestLab } from '../support/harness';
import { closeWorkflowLab, openWorkflowLab } from '../support/workflow-lab';
import type { KuraWorkers } from '../../src/worker';
import type { Kura } from '../../src/client';

const MiB = 1024 * 1024;
const VOLUME = 4 * MiB;
const CHUNK = chunkSizeFor(VOLUME, 10);

let lab: TestLab;
let workers: KuraWorkers;
let kura: Kura;
let close: () => Promise<void>;
let state: LabState;
let seq = 0;

beforeAll(async () => {
  // Three fully independent paths (the hospital's two plus bks-03 / fcsw-03 / lib-03), so three
  // streams can be reserved; two-stream jobs take the first two.
  ({ lab, workers, kura, close } = await openWorkflowLab({
    vms: 6,
    dataVolumeSize: VOLUME,
    copyHeartbeatTimeout: '1500ms',
    edit: (cfg) => {
      const site = cfg.sites[0]!;
      site.servers!.push({ name: 'bks-03', wwn: '21:00:00:24:ff:4b:00:03', capacity: 2 });
      site.switches!.push({ name: 'fcsw-03', capacity: 4 });
      site.libraries!.push({
        name: 'lib-03',
        drives: [{ id: 'lib-03-drv-1' }, { id: 'lib-03-drv-2' }],
        cartridges: [1, 2, 3, 4].map((t) => ({ id: `L3T00${t}`, capacity: '1GiB' })),
      });
      site.links!.push(['array-01', 'fcsw-03'], ['bks-03', 'fcsw-03'], ['lib-03', 'fcsw-03']);
      for (const m of site.arrays![0]!.lunMasks!) m.wwns.push('21:00:00:24:ff:4b:00:03');
      // vm-006's data volume is masked to bks-02 and bks-03 only: stream 0 (bks-01) is refused.
      const m6 = site.arrays![0]!.lunMasks!.find((m) => m.volume === 'vm-006-data')!;
      m6.wwns = ['21:00:00:24:ff:4b:00:02', '21:00:00:24:ff:4b:00:03'];
    },
  }));
  state = new LabState(lab.paths.labState);
});

afterAll(() => closeWorkflowLab({ lab, workers, close, state }));

afterEach(repair);

/** Clears the faults and brings back the devices they put out of service, as an operator would after fixing them. */
function repair(): Promise<void> {
  return repairLab(kura, lab.site, state);
}

const pool = (): Promise<PoolTables> => kura.pool.tables(lab.site);
const until = eventually;

function fault(spec: FaultSpecInput): void {
  state.addFault({ once: false, ...spec });
}

/** A distinct request time per job, so jobs of one VM never share a workflow id. */
function at(): string {
  return new Date(Date.UTC(2026, 10, 22, 3, 0, 0, ++seq)).toISOString();
}

/** Nothing reserved, no zone on the fabric, every drive empty. */
async function expectClean(): Promise<void> {
  const tables = await pool();
  const held = [...tables.servers, ...tables.libraries, ...tables.drives, ...tables.tapes, ...tables.switches].flatMap(
    (r) => r.holders.map((h) => `${r.name}:${h.job}#${h.stream}`),
  );
  expect(held).toEqual([]);
  expect(state.zones(lab.site)).toEqual([]);
  expect(tables.drives.map((d) => state.driveContents(lab.site, d.name))).toEqual(tables.drives.map(() => null));
}

function catalogOf(backupId: string) {
  const c = new Catalog(lab.paths.catalog);
  try {
    return { backup: c.backup(backupId), pieces: c.piecesOf(backupId), streams: c.streamsOf(backupId) };
  } finally {
    c.close();
  }
}

/** The pieces cover the volume exactly once per copy, in order, back to back on each cartridge. */
function expectExactPieces(pieces: PieceRecord[], copy: number): void {
  const mine = pieces.filter((p) => p.copy === copy);
  expect(mine.map((p) => p.piece)).toEqual(Array.from({ length: mine.length }, (_, i) => i));
  expect(mine.map((p) => p.offset)).toEqual(mine.map((p) => p.piece * CHUNK));
  expect(mine.reduce((n, p) => n + p.sizeBytes, 0)).toBe(VOLUME);
  for (let i = 1; i < mine.length; i++) {
    const [a, b] = [mine[i - 1]!, mine[i]!];
    if (a.tape === b.tape) expect(b.position).toBe(a.position + 512 + a.sizeBytes);
  }
}

async function restoreAndCompare(report: BackupReport, vm: string): Promise<RestoreReport & { plan: PlanView }> {
  const dest = path.join(lab.dir, 'restores', `${report.backupId.replace(/[@/]/g, '_')}.img`);
  const handle = await kura.startRestore(report.backupId, dest);
  const restored: RestoreReport = await handle.result();
  expect(await sha256(dest)).toBe(await sha256(lab.dataVolume(vm)));
  rmSync(dest);
  return { ...restored, plan: await handle.query(planQuery) };
}

async function unavailable(): Promise<{ name: string; reason: string }[]> {
  return unavailableDevices(await pool());
}

describe('failover by chunk (method 2)', () => {
  it.each([
    { where: 'the first chunk', device: 'bks-01', byte: 1000 },
    { where: 'a middle chunk', device: 'lib-01-drv-1', byte: VOLUME / 2 },
    { where: 'the last chunk', device: 'fcsw-01', byte: VOLUME - 1000 },
  ])('a fault at $where moves that chunk and every later one to the other stream', async ({ device, byte }) => {
    fault({ device, kind: 'fail', after: { bytes: byte } });
    const handle = await kura.startBackup('vm-001', { requestedAt: at() });
    const report: BackupReport = await handle.result();
    const moved = Math.floor(byte / CHUNK);

    const { backup, pieces, streams } = catalogOf(report.backupId);
    expect(backup.status).toBe('complete');
    expect(pieces).toHaveLength(10);
    expectExactPieces(pieces, 0);
    expect(pieces.map((p) => p.stream)).toEqual(pieces.map((p) => (p.piece < moved ? 0 : 1)));
    expect(pieces.map((p) => p.tape)).toEqual(pieces.map((p) => streams[p.stream]!.tape));
    expect(streams.map((s) => [s.stream, s.outcome, s.pieces])).toEqual([
      [0, 'failed', moved],
      [1, 'complete', 10 - moved],
    ]);
    expect(streams[0]!.error).toMatch(new RegExp(`^DeviceFault: lab fault on ${device}: injected failure`));
    // The faulty device is out of service, with its reason, until an operator brings it back.
    const down = await unavailable();
    expect(down.map((d) => d.name)).toEqual([device]);
    expect(down[0]!.reason).toContain(handle.workflowId);
    await expectClean();
    // The chunks before the fault lie behind the faulty device (a switch may be the only way to
    // their library): the restore runs once it is repaired.
    await repair();
    await restoreAndCompare(report, 'vm-001');
  });

  it('a device that stops answering (no heartbeat) is found by a probe and its chunks move on', async () => {
    fault({ device: 'lib-01-drv-1', kind: 'hang', after: { percent: 50 } });
    const handle = await kura.startBackup('vm-002', { requestedAt: at() });
    const report: BackupReport = await handle.result();
    const { backup, pieces, streams } = catalogOf(report.backupId);
    expect(backup.status).toBe('complete');
    expectExactPieces(pieces, 0);
    const moved = Math.floor(VOLUME / 2 / CHUNK);
    expect(pieces.map((p) => p.stream)).toEqual(pieces.map((p) => (p.piece < moved ? 0 : 1)));
    expect(streams[0]!.error).toMatch(/stopped answering/);
    const down = await unavailable();
    expect(down.map((d) => d.name)).toEqual(['lib-01-drv-1']);
    // Marked because it did not answer a probe of its own, not assumed from the silence of the copy.
    expect(down[0]!.reason).toMatch(/^stopped answering: did not answer a probe within 1.5 s \(job /);
    expect(streams[0]!.error).toContain('lib-01-drv-1 did not answer a probe within 1.5 s');
    await expectClean();
    await restoreAndCompare(report, 'vm-002');
    // The hung copy wakes when its fault is cleared, but its cartridge is no longer in the drive:
    // it writes nothing more, so the catalog written on that cartridge is intact.
    state.clearFaults();
    await new Promise((r) => setTimeout(r, 600));
    const onTape = await new LabTapeLibrary(lab.loaded, lab.paths, state).readCatalog(
      lab.site,
      streams[0]!.library,
      streams[0]!.tape,
    );
    expect(onTape.map((e) => e.backup.backupId)).toContain(report.backupId);
  });

  it('with faults on both streams the job fails, claims nothing, and leaves the cartridges as they were', async () => {
    const sizes = ['L1T001', 'L2T001'].map(
      (t) => statSync(labCartridgePath(lab.paths, lab.site, t.startsWith('L1') ? 'lib-01' : 'lib-02', t)).size,
    );
    fault({ device: 'lib-01-drv-1', kind: 'fail', after: { percent: 30 } });
    fault({ device: 'lib-02-drv-1', kind: 'fail', after: { percent: 60 } });
    const handle = await kura.startBackup('vm-003', { requestedAt: at() });
    const err = await handle.result().catch((e: unknown) => e);
    expect(failureOf(err).type).toBe('DeviceFault');
    expect(failureOf(err).message).toMatch(/all 2 streams failed: stream 0 .*lib-01-drv-1.*; stream 1 .*lib-02-drv-1/);
    const c = new Catalog(lab.paths.catalog);
    const row = c.listBackups({ target: 'vm-003' })[0]!;
    expect(row.status).toBe('failed');
    expect(c.piecesOf(row.backupId)).toEqual([]);
    expect(c.streamsOf(row.backupId).map((s) => s.outcome)).toEqual(['failed', 'failed']);
    c.close();
    expect((await unavailable()).map((d) => d.name).sort()).toEqual(['lib-01-drv-1', 'lib-02-drv-1']);
    // What the failed job wrote was cut off again: each cartridge ends where the job found it.
    expect(
      ['L1T001', 'L2T001'].map(
        (t) => statSync(labCartridgePath(lab.paths, lab.site, t.startsWith('L1') ? 'lib-01' : 'lib-02', t)).size,
      ),
    ).toEqual(sizes);
    await expectClean();
  });

  it('chains over three streams when two of them fail', async () => {
    fault({ device: 'bks-01', kind: 'fail', after: { percent: 20 } });
    fault({ device: 'bks-02', kind: 'fail', after: { percent: 60 } });
    const report: BackupReport = await (await kura.startBackup('vm-004', { requestedAt: at(), streams: 3 })).result();
    const { pieces, streams } = catalogOf(report.backupId);
    expectExactPieces(pieces, 0);
    const [a, b] = [Math.floor((VOLUME * 0.2) / CHUNK), Math.floor((VOLUME * 0.6) / CHUNK)];
    expect(pieces.map((p) => p.stream)).toEqual(pieces.map((p) => (p.piece < a ? 0 : p.piece < b ? 1 : 2)));
    expect(streams.map((s) => [s.server, s.outcome])).toEqual([
      ['bks-01', 'failed'],
      ['bks-02', 'failed'],
      ['bks-03', 'complete'],
    ]);
    await expectClean();
    await repair();
    const restored = await restoreAndCompare(report, 'vm-004');
    expect(restored.copiesUsed).toEqual([0]);
  });

  it('a stream whose server the LUN mask does not admit fails AccessDenied and the copy goes on the other', async () => {
    const report: BackupReport = await (await kura.startBackup('vm-006', { requestedAt: at() })).result();
    const { pieces, streams } = catalogOf(report.backupId);
    expect(pieces.every((p) => p.stream === 1)).toBe(true);
    expect(streams[0]!.error).toMatch(
      /^AccessDenied: the LUN mask of array-01\/vm-006-data .* does not include backup server bks-01/,
    );
    // A refusal is not a broken device: nothing is marked unavailable.
    expect(await unavailable()).toEqual([]);
    await expectClean();
    await restoreAndCompare(report, 'vm-006');
  });
});

describe('parallel copies (method 1) and restore from any copy', () => {
  it('writes a whole copy on every stream, and restores from the second when the first cartridge is unavailable', async () => {
    const report: BackupReport = await (
      await kura.startBackup('vm-005', { requestedAt: at(), mode: 'parallel' })
    ).result();
    const { pieces, streams } = catalogOf(report.backupId);
    expect(streams.map((s) => s.outcome)).toEqual(['complete', 'complete']);
    expectExactPieces(pieces, 0);
    expectExactPieces(pieces, 1);
    expect(new Set(pieces.filter((p) => p.copy === 0).map((p) => p.tape))).toEqual(new Set([streams[0]!.tape]));
    expect(new Set(pieces.filter((p) => p.copy === 1).map((p) => p.tape))).toEqual(new Set([streams[1]!.tape]));
    await expectClean();

    await kura.pool.mark(lab.site, { device: streams[0]!.tape, state: 'unavailable', reason: 'sent off site' });
    await until(async () => (await unavailable()).length === 1);
    const restored = await restoreAndCompare(report, 'vm-005');
    expect(restored.copiesUsed).toEqual([1]);
    expect(restored.skippedTapes.map((s) => s.tape)).toEqual([streams[0]!.tape]);
    expect(restored.skippedTapes[0]!.reason).toMatch(/^NoResources: .*unavailable: sent off site/);
    // The plan keeps the given-up reservation under the cartridge's name and every step id once.
    expect(restored.plan.steps.find((s) => s.id === `reserve:0@${streams[0]!.tape}`)?.status).toBe('failed');
    expect(restored.plan.steps.every((s) => s.status === 'done' || s.id.includes('@'))).toBe(true);
    expect(new Set(restored.plan.steps.map((s) => s.id)).size).toBe(restored.plan.steps.length);
    await expectClean();
  });

  it('succeeds with the streams that finished and records the failed one with its reason', async () => {
    fault({ device: 'bks-01', kind: 'fail', after: { percent: 40 } });
    const report: BackupReport = await (
      await kura.startBackup('vm-005', { requestedAt: at(), mode: 'parallel', tuning: { deviceAttempts: 1 } })
    ).result();
    const { pieces, streams } = catalogOf(report.backupId);
    expect(streams.map((s) => [s.outcome, s.pieces])).toEqual([
      ['failed', 0],
      ['complete', 10],
    ]);
    expect(streams[0]!.error).toMatch(/^DeviceFault: lab fault on bks-01/);
    expect([...new Set(pieces.map((p) => p.copy))]).toEqual([1]);
    expectExactPieces(pieces, 1);
    await expectClean();
    await restoreAndCompare(report, 'vm-005');
  });

  it('fails a restore whose only copy is on an unavailable cartridge, naming the cartridge', async () => {
    const report: BackupReport = await (await kura.startBackup('vm-001', { requestedAt: at(), streams: 1 })).result();
    const tape = report.pieces[0]!.tape;
    await kura.pool.mark(lab.site, { device: tape, state: 'unavailable', reason: 'cartridge damaged' });
    await until(async () => (await unavailable()).length === 1);
    const dest = path.join(lab.dir, 'restores', 'only-copy.img');
    const err = await (await kura.startRestore(report.backupId, dest)).result().catch((e: unknown) => e);
    expect(failureOf(err).type).toBe('NoResources');
    expect(failureOf(err).message).toMatch(
      new RegExp(
        `piece 0 of .* cannot be read from its only copy \\(cartridge ${tape}: NoResources: .*cartridge damaged`,
      ),
    );
    await expectClean();
  });
});

describe('a restore whose cartridge lies behind a device marked unavailable', () => {
  /**
   * A one-stream backup of `vm`, then the switch in front of its cartridge's library marked
   * unavailable, as a hang marks it: the lab cables each library to one switch, so that switch is
   * the only path to the cartridge.
   */
  async function backupBehindDownSwitch(vm: string): Promise<{ report: BackupReport; tape: string; device: string }> {
    const report: BackupReport = await (await kura.startBackup(vm, { requestedAt: at(), streams: 1 })).result();
    const stream = report.streams[0]!;
    const device = stream.switches[stream.switches.length - 1]!;
    await kura.pool.mark(lab.site, {
      device,
      state: 'unavailable',
      reason: `${device} stopped answering (hang)`,
    });
    await until(async () => (await unavailable()).length === 1);
    return { report, tape: stream.tape, device };
  }

  it('fails at once with NoResources, naming the cartridge, the device and how to bring it back', async () => {
    const { report, tape, device } = await backupBehindDownSwitch('vm-003');
    const dest = path.join(lab.dir, 'restores', 'behind-down-switch.img');
    const t0 = Date.now();
    const err = await (await kura.startRestore(report.backupId, dest)).result().catch((e: unknown) => e);
    // Not after the lab's reserveWait (60 s) in the pool's queue: at once.
    expect(Date.now() - t0).toBeLessThan(30_000);
    const failure = failureOf(err);
    expect(failure.type).toBe('NoResources');
    expect(failure.message).toContain(`cartridge ${tape}`);
    expect(failure.message).toContain(`${device} is unavailable: ${device} stopped answering (hang)`);
    expect(failure.message).toContain(`\`kura pool mark ${device} available\``);
    expect(failure.message).toMatch(/--wait <duration>/);
    expect(statSync(dest, { throwIfNoEntry: false })).toBeUndefined();
    await expectClean();
  });

  it('with a wait, says in its progress what it waits for and restores byte-identical once the device is back', async () => {
    const { report, tape, device } = await backupBehindDownSwitch('vm-004');
    const dest = path.join(lab.dir, 'restores', 'waited-for-switch.img');
    const handle = await kura.startRestore(report.backupId, dest, {
      tuning: { reserveWaitMs: 120_000, waitForUnavailable: true },
    });
    let waiting = '';
    await until(async () => {
      waiting = (await handle.query(progressQuery)).activity;
      return waiting.startsWith('waiting');
    });
    expect(waiting).toContain(`cartridge ${tape}`);
    expect(waiting).toContain(`${device} is unavailable`);
    expect(waiting).toContain(`\`kura pool mark ${device} available\``);
    // Still waiting a moment later: nothing comes back by itself.
    await new Promise((r) => setTimeout(r, 1500));
    expect((await handle.describe()).status.name).toBe('RUNNING');

    await kura.pool.mark(lab.site, { device, state: 'available' });
    const restored: RestoreReport = await handle.result();
    expect(restored.copiesUsed).toEqual([0]);
    expect(restored.skippedTapes).toEqual([]);
    expect(await sha256(dest)).toBe(await sha256(lab.dataVolume('vm-004')));
    rmSync(dest);
    await expectClean();
  });

  it('with a wait, takes another copy at once rather than waiting for the first', async () => {
    const report: BackupReport = await (
      await kura.startBackup('vm-005', { requestedAt: at(), mode: 'parallel' })
    ).result();
    const first = report.streams[0]!;
    const device = first.switches[first.switches.length - 1]!;
    await kura.pool.mark(lab.site, { device, state: 'unavailable', reason: 'stopped answering (hang)' });
    await until(async () => (await unavailable()).length === 1);
    const dest = path.join(lab.dir, 'restores', 'other-copy.img');
    const t0 = Date.now();
    const restored: RestoreReport = await (
      await kura.startRestore(report.backupId, dest, { tuning: { reserveWaitMs: 120_000, waitForUnavailable: true } })
    ).result();
    expect(Date.now() - t0).toBeLessThan(60_000);
    expect(restored.copiesUsed).toEqual([1]);
    expect(restored.skippedTapes.map((s) => s.tape)).toEqual([first.tape]);
    expect(restored.skippedTapes[0]!.reason).toContain(`${device} is unavailable`);
    expect(await sha256(dest)).toBe(await sha256(lab.dataVolume('vm-005')));
    rmSync(dest);
    await expectClean();
  });
});

describe('reservation', () => {
  it('fails at once with NoResources naming what is missing when the streams cannot be had, holding nothing', async () => {
    const err = await (
      await kura.startBackup('vm-002', { requestedAt: at(), streams: 4 })
    )
      .result()
      .catch((e: unknown) => e);
    expect(failureOf(err).type).toBe('NoResources');
    expect(failureOf(err).message).toMatch(/only 3 of 4 streams can be formed: no backup server has a free stream/);
    await expectClean();
  });

  it('lets several jobs compete for the drives: they wait their turn and all complete', async () => {
    const vms = ['vm-001', 'vm-002', 'vm-003', 'vm-004', 'vm-005'];
    const handles = await Promise.all(
      vms.map((vm) => kura.startBackup(vm, { requestedAt: at(), tuning: { reserveWaitMs: 120_000 } })),
    );
    const reports: BackupReport[] = await Promise.all(handles.map((h) => h.result()));
    for (const [i, r] of reports.entries()) {
      const { backup, pieces } = catalogOf(r.backupId);
      expect(backup.status).toBe('complete');
      expectExactPieces(pieces, 0);
      await restoreAndCompare(r, vms[i]!);
    }
    await expectClean();
  });
});

describe('the catalog on the cartridges', () => {
  it('rebuilt from the cartridges alone, equals the catalog', async () => {
    const report: CatalogRebuildReport = await (
      await kura.startCatalogRebuild({ site: lab.site, requestedAt: at() })
    ).result();
    expect(report.entries.length).toBeGreaterThan(10);
    expect(report.unread).toEqual([]);
    const current = new Catalog(lab.paths.catalog);
    try {
      const contents = catalogContents(current);
      expect(contents.backups.length).toBeGreaterThan(8);
      expect(compareContents(contents, contentsOfEntries(report.entries))).toEqual([]);
      expect(report.differences).toEqual([]);
      expect(report.backups).toBe(contents.backups.length);
    } finally {
      current.close();
    }
    await expectClean();
  });
});
