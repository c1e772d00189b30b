/**
 * The SAN engine's commands as a person runs them: a replica-refresh, the pairs and snapshots of
 * the arrays, a backup by method, the plan as a timeline, and the refusals (exit 2, nothing done).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliJson, makeLab, runKura, startWorkers, type TestLab } from '../support/harness';
import type { KuraWorkers } from '../../src/worker';

let lab: TestLab;
let workers: KuraWorkers;

const kura = (args: string[]) => runKura(lab, args);

beforeAll(async () => {
  lab = await makeLab({ vms: 2, dataVolumeSize: 2 * 1024 * 1024, pieceSize: '1MiB', streams: 1, chunks: 2 });
  workers = await startWorkers(lab);
});

afterAll(async () => {
  await workers?.shutdown();
  lab?.cleanup();
});

describe('kura san and kura plan', () => {
  it('refreshes a replica and lists the pair as split, with its copy done', async () => {
    const r = await kura(['san', 'refresh', 'vm-001', '--json']);
    expect(r.code).toBe(0);
    const report = cliJson<{ ok: boolean; replica: string; splitAt: string; copiedBytes: number }>(r);
    expect(report).toMatchObject({ ok: true, replica: 'vm-001-data.replica', copiedBytes: 2 * 1024 * 1024 });

    const pairs = cliJson<{ pairs: { volume: string; state: string; splitAt?: string }[] }>(
      await kura(['san', 'pairs', '--json']),
    );
    expect(pairs.pairs).toEqual([
      expect.objectContaining({ volume: 'vm-001-data', state: 'split', splitAt: report.splitAt }),
    ]);
    const human = await kura(['san', 'pairs']);
    expect(human.stdout).toMatch(/array-01\s+vm-001-data\s+vm-001-data\.replica\s+split\s+2\.0 MiB \/ 2\.0 MiB/);
  });

  it('backs up by snapshot and prints the plan as a timeline with each launch and its device', async () => {
    const b = await kura(['backup', 'vm-001', '--method', 'snapshot', '--json']);
    expect(b.code).toBe(0);
    const report = cliJson<{ workflowId: string; kind: string }>(b);
    expect(report.kind).toBe('snapshot-backup');
    expect(report.workflowId).toMatch(/^op\/snapshot-backup\/vm-001\//);

    const shown = await kura(['plan', 'show', report.workflowId]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/^snapshot-backup of vm-001 — op\/snapshot-backup\/vm-001\/\S+ — done/);
    expect(shown.stdout).toMatch(
      /✓ snapshot\s+take snapshot kura-[0-9a-f]{16} of array-01\/vm-001-data.*\[array-01\] after backup-mode \(expected/,
    );
    expect(shown.stdout).toMatch(/✓ delete-snapshot/);
    const plan = cliJson<{ steps: { id: string; status: string }[] }>(
      await kura(['plan', 'show', report.workflowId, '--json']),
    );
    expect(plan.steps.every((s) => s.status === 'done')).toBe(true);
    expect(cliJson<{ snapshots: unknown[] }>(await kura(['san', 'snapshots', '--json'])).snapshots).toEqual([]);
  });

  it('refuses a split of a volume without a pair (exit 2, InvalidInput)', async () => {
    const r = await kura(['backup', 'vm-002', '--method', 'split']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /InvalidInput: .*volume array-01\/vm-002-data \(vm-002\) has no pair, so there is nothing to split/,
    );
  });

  it('refuses an unknown method before anything starts', async () => {
    const r = await kura(['backup', 'vm-001', '--method', 'mirror']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--method must be direct, split or snapshot, not "mirror"/);
  });
});
