/**
 * A split-backup on the lab array of a VM whose hook is `postgres`, against a real PostgreSQL 15
 * and a real Temporal server: backup mode is entered before the split and left right after it, on
 * one session; the backup label comes back in the report with the time in backup mode, which ends
 * before the copy to tape begins (a snapshot-backup likewise). A hook that cannot log in stops the operation as AccessDenied
 * before any split, changing nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkflowFailedError } from '@temporalio/client';
import { LabArrayFunctions } from '../../src/drivers/lab/array-functions';
import { LabState } from '../../src/lab/state';
import { planQuery } from '../../src/messages';
import type { KuraWorkers } from '../../src/worker';
import type { Kura } from '../../src/client';
import { connectKura, eventually, failureOf, makeLab, sha256, startWorkers, type TestLab } from '../support/harness';
import { PG_PASSWORD, startPostgres, type TestPostgres } from '../support/postgres';

let pg: TestPostgres;
let lab: TestLab;
let workers: KuraWorkers;
let kura: Kura;
let close: () => Promise<void>;
let state: LabState;
let arrays: LabArrayFunctions;

const ref = (vm: string) => ({ site: lab.site, array: 'array-01', volume: `${vm}-data` });

beforeAll(async () => {
  pg = await startPostgres();
  process.env.KURA_TEST_PG_PASSWORD = PG_PASSWORD;
  process.env.KURA_TEST_PG_WRONG = 'not-the-password';
  const db = { kind: 'postgres', host: '127.0.0.1', port: pg.port, user: 'postgres', timeout: '10s' } as const;
  lab = await makeLab({
    vms: 2,
    dataVolumeSize: 4 * 1024 * 1024,
    pieceSize: '1MiB',
    streams: 1,
    chunks: 4,
    edit: (cfg) => {
      const site = cfg.sites[0]!;
      site.arrays[0]!.freePool = { size: '64MiB', replicas: 4, copyRate: '64MiB' };
      site.hooks = [
        { target: 'vm-001', ...db, passwordEnv: 'KURA_TEST_PG_PASSWORD' },
        { target: 'vm-002', ...db, passwordEnv: 'KURA_TEST_PG_WRONG' },
      ];
    },
  });
  workers = await startWorkers(lab);
  ({ kura, close } = await connectKura(lab));
  state = new LabState(lab.paths.labState);
  arrays = new LabArrayFunctions(lab.loaded, lab.paths, state);
});

afterAll(async () => {
  state?.close();
  await close?.();
  await workers?.shutdown();
  lab?.cleanup();
  await pg?.stop();
});

async function inSyncPair(vm: string): Promise<void> {
  await arrays.createPair(ref(vm));
  await eventually(async () => (await arrays.pairStatus(ref(vm))).state === 'in-sync', 15_000);
}

describe('a split-backup of a VM whose hook is postgres', () => {
  it('splits inside one backup-mode session, and reports the label and a backup mode as short as the split', async () => {
    await inSyncPair('vm-001');
    const before = await sha256(lab.dataVolume('vm-001'));
    const handle = await kura.startBackup('vm-001', { method: 'split' });
    const report = await handle.result();

    expect(report.source?.from).toBe('replica');
    expect(report.sha256).toBe(before);
    const mode = report.backupMode!;
    expect(mode).toMatchObject({ hook: 'postgres', rounds: 1 });
    expect(mode.label).toContain(`LABEL: ${handle.workflowId} round 1`);
    expect(mode.label).toContain(`START WAL LOCATION: ${mode.startLsn}`);
    expect(mode.stopLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    // The split happened inside backup mode.
    const splitAt = Date.parse(report.source!.at!);
    expect(splitAt).toBeGreaterThanOrEqual(Date.parse(mode.enteredAt));
    expect(splitAt).toBeLessThanOrEqual(Date.parse(mode.leftAt));
    // Backup mode ended before the copy to tape began: it lasts as long as the split, not the copy.
    const plan = await handle.query(planQuery);
    expect(plan.steps.map((s) => s.id).slice(0, 4)).toEqual(['pair-sync', 'backup-mode', 'split', 'end-backup-mode']);
    const reserve = plan.steps.find((s) => s.id === 'reserve')!;
    expect(Date.parse(mode.leftAt)).toBeLessThanOrEqual(Date.parse(reserve.startedAt!));
    expect(mode.seconds).toBeGreaterThan(0);
    expect(mode.seconds).toBeLessThan((Date.parse(report.endedAt) - Date.parse(report.startedAt)) / 1000);
    expect(plan.steps.every((s) => s.status === 'done')).toBe(true);
    expect(report.changes).toEqual([]);
    // Logged out afterwards.
    expect(await pg.sessions()).toEqual([]);
  });

  it('takes a snapshot inside one backup-mode session too, and reports its label', async () => {
    const handle = await kura.startBackup('vm-001', { method: 'snapshot' });
    const report = await handle.result();
    expect(report.source?.from).toBe('snapshot');
    const mode = report.backupMode!;
    expect(mode).toMatchObject({ hook: 'postgres', rounds: 1 });
    expect(mode.label).toContain(`LABEL: ${handle.workflowId} round 1`);
    const takenAt = Date.parse(report.source!.at!);
    expect(takenAt).toBeGreaterThanOrEqual(Date.parse(mode.enteredAt));
    expect(takenAt).toBeLessThanOrEqual(Date.parse(mode.leftAt));
    expect(await arrays.listSnapshots(lab.site, 'array-01')).toEqual([]);
    expect(await pg.sessions()).toEqual([]);
  });

  it('refuses a hook that cannot log in as AccessDenied, before any split, changing nothing', async () => {
    await inSyncPair('vm-002');
    const handle = await kura.startBackup('vm-002', { method: 'split' });
    const err = await handle.result().catch((e: unknown) => e);

    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(failureOf(err).type).toBe('AccessDenied');
    expect(failureOf(err).message).toMatch(
      /the application of vm-002 did not enter backup mode within 10000 ms \(the postgres hook of vm-002 cannot log in and start a backup as postgres@127\.0\.0\.1:\d+\/postgres: password authentication failed for user "postgres" \(SQLSTATE 28P01\).*\); the operation stopped before any split or snapshot and changed nothing/,
    );
    const pair = await arrays.pairStatus(ref('vm-002'));
    expect(pair.state).toBe('in-sync');
    expect(pair.splitAt).toBeUndefined();
    expect(
      state.events({ device: 'array-01', event: 'pair-split' }).filter((e) => e.detail.volume === 'vm-002-data'),
    ).toEqual([]);
    const plan = await handle.query(planQuery);
    const status = Object.fromEntries(plan.steps.map((s) => [s.id, s.status]));
    expect(status).toMatchObject({ 'pair-sync': 'done', 'backup-mode': 'failed', split: 'skipped' });
    expect(await pg.sessions()).toEqual([]);
  });
});
