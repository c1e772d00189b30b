/**
 * Step 3 of seed 003 for each kind of SAN operation: the launches, their devices, their order and
 * their expected durations; and the re-plans of step 5.
 */
import { describe, expect, it } from 'vitest';
import { ThroughputSchema } from '../../src/domain/jobs';
import {
  planOperation,
  replanAsSnapshot,
  replanNextCartridge,
  replanStopped,
  snapshotNameFor,
  type OperationPlanInput,
} from '../../src/workflows/operation-plan';
import { planBackupSteps, planPieces } from '../../src/workflows/plan';

const MiB = 1024 * 1024;
const pieces = planPieces(4 * MiB, MiB);

function input(over: Partial<OperationPlanInput> = {}): OperationPlanInput {
  return {
    kind: 'backup',
    target: 'vm-001',
    array: 'array-01',
    volume: 'vm-001-data',
    sizeBytes: 4 * MiB,
    pair: { state: 'in-sync', copiedBytes: 4 * MiB, totalBytes: 4 * MiB },
    hook: { kind: 'script', timeoutMs: 5000 },
    pairWaitMs: 60_000,
    throughput: ThroughputSchema.parse({ pairCopy: MiB, snapshot: 4 * MiB, tape: 2 * MiB }),
    copy: { pieces, streams: 1, mode: 'failover' },
    snapshot: 'kura-snap',
    ...over,
  };
}

const ids = (steps: { id: string }[]) => steps.map((s) => s.id);
const tapeIds = [
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
];

describe('planOperation', () => {
  it('backup: exactly the copy to tape of seed 004, each copy expected to take its size ÷ tape throughput', () => {
    const steps = planOperation(input({ kind: 'backup' }));
    expect(ids(steps)).toEqual(ids(planBackupSteps('vm-001', pieces, 1, 'failover')));
    expect(steps.find((s) => s.id === 'copy:2')?.expectedMs).toBe(500);
    expect(steps.find((s) => s.id === 'verify')?.expectedMs).toBe(2000);
  });

  it('split-backup: wait for the pair, backup mode, split, leave backup mode, copy the replica, then resync', () => {
    const steps = planOperation(input({ kind: 'split-backup' }));
    expect(ids(steps)).toEqual(['pair-sync', 'backup-mode', 'split', 'end-backup-mode', ...tapeIds, 'resync']);
    const by = (id: string) => steps.find((s) => s.id === id)!;
    expect(by('backup-mode').dependsOn).toEqual(['pair-sync']);
    expect(by('split').dependsOn).toEqual(['backup-mode']);
    expect(by('end-backup-mode').dependsOn).toEqual(['split']);
    expect(by('reserve').dependsOn).toEqual(['split']);
    expect(by('resync').dependsOn).toEqual(['release']);
    expect(by('split').device).toBe('array-01');
    expect(by('backup-mode').device).toBe('vm-001');
    // In sync already: nothing left to copy.
    expect(by('pair-sync').expectedMs).toBe(0);
    expect(by('backup-mode').expectedMs).toBe(5000);
    expect(by('backup-mode').title).toMatch(/script hook; stop before any split if not within 5 s/);
  });

  it('split-backup of a pair still copying expects the bytes left ÷ the pair copy rate', () => {
    const steps = planOperation(
      input({ kind: 'split-backup', pair: { state: 'copying', copiedBytes: MiB, totalBytes: 4 * MiB } }),
    );
    expect(steps[0]).toMatchObject({
      id: 'pair-sync',
      expectedMs: 3000,
      title: expect.stringMatching(/wait until the pair/),
    });
  });

  it('split-backup of a split pair resynchronises it first', () => {
    const steps = planOperation(
      input({ kind: 'split-backup', pair: { state: 'split', copiedBytes: 0, totalBytes: 0 } }),
    );
    expect(steps[0]?.title).toMatch(/resynchronise the pair of array-01\/vm-001-data/);
  });

  it('snapshot-backup: backup mode, snapshot, leave backup mode, copy the snapshot, delete it', () => {
    const steps = planOperation(input({ kind: 'snapshot-backup' }));
    expect(ids(steps)).toEqual(['backup-mode', 'snapshot', 'end-backup-mode', ...tapeIds, 'delete-snapshot']);
    const by = (id: string) => steps.find((s) => s.id === id)!;
    expect(by('snapshot').title).toMatch(/snapshot kura-snap of array-01\/vm-001-data/);
    expect(by('snapshot').expectedMs).toBe(1000);
    expect(by('reserve').dependsOn).toEqual(['snapshot']);
    expect(by('delete-snapshot').dependsOn).toEqual(['release']);
  });

  it('replica-refresh without a pair: pair from the free pool, backup mode, split, leave backup mode; no tape', () => {
    const steps = planOperation(input({ kind: 'replica-refresh', pair: null, copy: undefined }));
    expect(ids(steps)).toEqual(['pair-sync', 'backup-mode', 'split', 'end-backup-mode']);
    expect(steps[0]?.title).toMatch(/pair array-01\/vm-001-data with a replica from the free pool/);
    expect(steps[0]?.expectedMs).toBe(4000);
  });

  it('a target without a hook keeps the launch points, saying there is nothing to do', () => {
    const steps = planOperation(input({ kind: 'snapshot-backup', hook: { kind: 'none', timeoutMs: 0 } }));
    expect(steps[0]).toMatchObject({
      id: 'backup-mode',
      expectedMs: 0,
      title: expect.stringMatching(/no hook: nothing to do/),
    });
  });

  it('names the snapshot from the workflow id alone', () => {
    expect(snapshotNameFor('op/snapshot-backup/vm-001/20261122T020000Z')).toBe(
      snapshotNameFor('op/snapshot-backup/vm-001/20261122T020000Z'),
    );
    expect(snapshotNameFor('a')).not.toBe(snapshotNameFor('b'));
    expect(snapshotNameFor('a')).toMatch(/^kura-[0-9a-f]{16}$/);
  });
});

describe('re-plans', () => {
  it('a pair not in sync in time: the wait is skipped with the reason and a snapshot-backup follows', () => {
    const p = input({ kind: 'split-backup' });
    const steps = planOperation(p).map((s) => (s.id === 'pair-sync' ? { ...s, status: 'done' as const } : s));
    const next = replanAsSnapshot(steps, p, 'not in sync within 1 s');
    expect(ids(next)).toEqual([
      'pair-sync',
      'backup-mode',
      'snapshot',
      'end-backup-mode',
      ...tapeIds,
      'delete-snapshot',
    ]);
    expect(next[0]).toMatchObject({ status: 'skipped', detail: 'not in sync within 1 s' });
    expect(next.find((s) => s.id === 'backup-mode')?.dependsOn).toEqual(['pair-sync']);
    expect(next.some((s) => s.id === 'split' || s.id === 'resync')).toBe(false);
  });

  it('a stop skips every step not yet run and keeps the others', () => {
    const steps = planOperation(input({ kind: 'split-backup' })).map((s) =>
      s.id === 'pair-sync'
        ? { ...s, status: 'done' as const }
        : s.id === 'backup-mode'
          ? { ...s, status: 'failed' as const }
          : s,
    );
    const next = replanStopped(steps, 'not in backup mode');
    expect(next.map((s) => s.status)).toEqual(['done', 'failed', ...Array(next.length - 2).fill('skipped')]);
    expect(next.find((s) => s.id === 'split')?.detail).toBe('not in backup mode');
  });

  it('a full cartridge: a new load step comes before the chunk that did not fit, which waits for it', () => {
    const steps = planOperation(input({ kind: 'backup' }));
    const next = replanNextCartridge(steps, 2, 1, 'mount the next cartridge');
    expect(ids(next)).toEqual([
      'reserve',
      'load:0',
      'copy:0',
      'copy:1',
      'load:1',
      'copy:2',
      'copy:3',
      'verify',
      'record',
      'tape-catalog',
      'unload',
      'release',
    ]);
    expect(next.find((s) => s.id === 'copy:2')?.dependsOn).toEqual(['copy:1', 'load:1']);
    expect(next.find((s) => s.id === 'load:1')?.title).toBe('mount the next cartridge');
  });
});
