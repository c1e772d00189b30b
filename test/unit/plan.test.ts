/** Planning (seed 003 step 3): pieces cover the volume exactly; steps run in dependency order. */
import { describe, expect, it } from 'vitest';
import {
  chunkSizeFor,
  groupByTape,
  markStep,
  planBackupSteps,
  planPieces,
  planRestoreSteps,
  replanRestore,
  zoneName,
} from '../../src/workflows/plan';
import type { PieceRecord } from '../../src/domain/catalog';
import { backupWorkflowId } from '../../src/api/workflow-ids';

describe('planPieces', () => {
  it('covers the volume exactly, in order, with a short last piece', () => {
    const pieces = planPieces(10 * 1024 + 7, 1024);
    expect(pieces).toHaveLength(11);
    expect(pieces.map((p) => p.offset)).toEqual(Array.from({ length: 11 }, (_, i) => i * 1024));
    expect(pieces.at(-1)).toEqual({ piece: 10, offset: 10 * 1024, length: 7 });
    expect(pieces.reduce((n, p) => n + p.length, 0)).toBe(10 * 1024 + 7);
  });

  it('makes one piece of a volume smaller than a piece, and none of an empty one', () => {
    expect(planPieces(100, 1024)).toEqual([{ piece: 0, offset: 0, length: 100 }]);
    expect(planPieces(0, 1024)).toEqual([]);
  });
});

describe('planBackupSteps', () => {
  it('orders reserve, load, each copy, verify, record, tape catalog, unload, release, each depending on the one before', () => {
    const steps = planBackupSteps('vm-001', planPieces(3000, 1024));
    expect(steps.map((s) => s.id)).toEqual([
      'reserve',
      'load:0',
      'copy:0',
      'copy:1',
      'copy:2',
      'verify',
      'record',
      'tape-catalog',
      'unload',
      'release',
    ]);
    for (let i = 1; i < steps.length; i++) expect(steps[i]!.dependsOn).toEqual([steps[i - 1]!.id]);
    expect(steps.every((s) => s.status === 'pending')).toBe(true);
  });

  it('in failover mode chains the chunks once, after every stream is mounted', () => {
    const steps = planBackupSteps('vm-001', planPieces(3000, 1024), 3, 'failover');
    expect(steps.map((s) => s.id)).toEqual([
      'reserve',
      'load:0',
      'load:1',
      'load:2',
      'copy:0',
      'copy:1',
      'copy:2',
      'verify',
      'record',
      'tape-catalog',
      'unload',
      'release',
    ]);
    expect(steps.find((s) => s.id === 'copy:0')!.dependsOn).toEqual(['load:0', 'load:1', 'load:2']);
  });

  it('in parallel mode gives every stream its own chain of chunks, all joined by verify', () => {
    const steps = planBackupSteps('vm-001', planPieces(2000, 1024), 2, 'parallel');
    expect(steps.filter((s) => s.id.startsWith('copy:')).map((s) => [s.id, s.dependsOn])).toEqual([
      ['copy:0:0', ['load:0']],
      ['copy:0:1', ['copy:0:0']],
      ['copy:1:0', ['load:1']],
      ['copy:1:1', ['copy:1:0']],
    ]);
    expect(steps.find((s) => s.id === 'verify')!.dependsOn).toEqual(['copy:0:1', 'copy:1:1']);
  });

  it('marks a step running and then done with its times', () => {
    let steps = planBackupSteps('vm-001', planPieces(10, 1024));
    steps = markStep(steps, 'load:0', 'running', 't1');
    steps = markStep(steps, 'load:0', 'done', 't2', 'L1T001');
    expect(steps.find((s) => s.id === 'load:0')).toMatchObject({
      status: 'done',
      startedAt: 't1',
      endedAt: 't2',
      detail: 'L1T001',
    });
    expect(steps.find((s) => s.id === 'reserve')?.status).toBe('pending');
  });
});

describe('chunkSizeFor', () => {
  it('cuts a volume into the asked number of chunks, rounded up to 4 KiB, unless a size is given', () => {
    expect(chunkSizeFor(100 * 1024 * 1024, 10)).toBe(10 * 1024 * 1024);
    expect(planPieces(100 * 1024 * 1024, chunkSizeFor(100 * 1024 * 1024, 10))).toHaveLength(10);
    expect(chunkSizeFor(10_000_000, 10) % 4096).toBe(0);
    expect(planPieces(10_000_000, chunkSizeFor(10_000_000, 10))).toHaveLength(10);
    expect(chunkSizeFor(100 * 1024 * 1024, 10, 64 * 1024)).toBe(64 * 1024);
    expect(chunkSizeFor(1000, 10)).toBe(4096);
  });
});

describe('zoneName', () => {
  it('is stable for a job and stream, differs between jobs and streams, and is a valid zone name', () => {
    const job = backupWorkflowId('vm-001', '2026-11-22T02:00:00.000Z');
    const a = zoneName(job, 0);
    expect(zoneName(job, 0)).toBe(a);
    expect(zoneName(job, 1)).not.toBe(a);
    expect(zoneName(backupWorkflowId('vm-002', '2026-11-22T02:00:00.000Z'), 0)).not.toBe(a);
    expect(a).toMatch(/^kura-[0-9a-f]{16}-s0$/);
  });
});

describe('planRestoreSteps', () => {
  const at = '2026-11-22T02:00:00.000Z';
  const piece = (n: number, tape: string): PieceRecord => ({
    backupId: 'vm-001@20261122T020000Z',
    copy: 0,
    piece: n,
    target: 'vm-001',
    job: 'j',
    stream: 0,
    startedAt: at,
    endedAt: at,
    dataTime: at,
    library: tape.startsWith('L1') ? 'lib-01' : 'lib-02',
    tape,
    position: 512 + n,
    offset: n * 10,
    sizeBytes: 10,
    sha256: 'a'.repeat(64),
  });

  it('mounts each cartridge once per run of consecutive pieces, in piece order', () => {
    const mounts = groupByTape([piece(2, 'L2T001'), piece(0, 'L1T001'), piece(1, 'L1T001'), piece(3, 'L1T001')]);
    expect(mounts.map((m) => [m.tape, m.pieces.map((p) => p.piece)])).toEqual([
      ['L1T001', [0, 1]],
      ['L2T001', [2]],
      ['L1T001', [3]],
    ]);
  });

  it('reserves, loads, reads, unloads and releases per mount, then finishes, each after the one before', () => {
    const steps = planRestoreSteps(
      groupByTape([piece(0, 'L1T001'), piece(1, 'L1T001'), piece(2, 'L2T001')]),
      '/r/x.img',
    );
    expect(steps.map((s) => s.id)).toEqual([
      'reserve:0',
      'load:0',
      'read:0',
      'read:1',
      'unload:0',
      'release:0',
      'reserve:1',
      'load:1',
      'read:2',
      'unload:1',
      'release:1',
      'finish',
    ]);
    for (let i = 1; i < steps.length; i++) expect(steps[i]!.dependsOn).toEqual([steps[i - 1]!.id]);
  });

  it('after a cartridge is given up, keeps what ran under a tagged name and plans the rest from the next mount', () => {
    const first = groupByTape([piece(0, 'L1T001'), piece(1, 'L1T001'), piece(2, 'L1T001')]);
    let steps = planRestoreSteps(first, '/r/x.img');
    for (const id of ['reserve:0', 'load:0', 'read:0']) steps = markStep(steps, id, 'done', 't');
    steps = markStep(steps, 'read:1', 'failed', 't', 'checksum mismatch');
    const rest = groupByTape([piece(1, 'L2T001'), piece(2, 'L2T001')]);
    const next = replanRestore(steps, 0, first[0]!, rest, '/r/x.img');
    expect(next.map((s) => [s.id, s.status])).toEqual([
      ['reserve:0', 'done'],
      ['load:0', 'done'],
      ['read:0', 'done'],
      ['read:1@L1T001', 'failed'],
      ['reserve:1', 'pending'],
      ['load:1', 'pending'],
      ['read:1', 'pending'],
      ['read:2', 'pending'],
      ['unload:1', 'pending'],
      ['release:1', 'pending'],
      ['finish', 'pending'],
    ]);
    expect(next.find((s) => s.id === 'reserve:1')!.dependsOn).toEqual(['read:0']);
    expect(new Set(next.map((s) => s.id)).size).toBe(next.length);
  });
});
