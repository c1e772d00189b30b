/**
 * Step 3 of seed 003 for every kind of SAN operation, as pure functions: which function software
 * is launched on which device, after which others, and how long each launch is expected to take
 * (size ÷ throughput); and the re-plans step 5 makes when a result calls for one. Deterministic,
 * so the workflow calls them and unit tests check every kind alone.
 */
import type { CopyMode, OperationKind, PlanStep, Throughput } from '../domain/jobs';
import type { PairState } from '../drivers/types';
import { jobHash, planBackupSteps, step, type PiecePlan } from './plan';

/** The kinds `sanOperation` and `replicaRefresh` run (a restore has its own planner in plan.ts). */
export type EngineKind = Exclude<OperationKind, 'restore'>;

/** What step 2 found and step 1 asked for: everything a plan is built from. */
export interface OperationPlanInput {
  kind: EngineKind;
  target: string;
  array: string;
  volume: string;
  sizeBytes: number;
  /** The volume's pair as step 2 found it (null: none). */
  pair: { state: PairState; copiedBytes: number; totalBytes: number } | null;
  /**
   * The application hook of the target (`none` when it has none) and its timeout; `session` when
   * one activity holds the application's session from begin to end, with that hold's heartbeat.
   */
  hook: { kind: string; timeoutMs: number; session?: boolean; heartbeatMs?: number };
  /** How long a split waits for the pair to be in sync before the plan changes. */
  pairWaitMs: number;
  throughput: Throughput;
  /** The copy to tape (absent for a replica-refresh). */
  copy?: { pieces: PiecePlan[]; streams: number; mode: CopyMode };
  /** The snapshot a snapshot-backup takes. */
  snapshot?: string;
}

/** The name of the snapshot an operation takes: from its workflow id alone, so a retry finds it. */
export function snapshotNameFor(workflowId: string): string {
  return `kura-${jobHash(workflowId)}`;
}

/** The execution schedule of one operation (seed 003 step 3), kind by kind. */
export function planOperation(p: OperationPlanInput): PlanStep[] {
  switch (p.kind) {
    case 'backup':
      return tapeSteps(p, []);
    case 'split-backup':
      return [...splitSteps(p), ...tapeSteps(p, ['split']), resyncStep(p)];
    case 'snapshot-backup':
      return snapshotBackupSteps(p, []);
    case 'replica-refresh':
      return splitSteps(p);
  }
}

/**
 * Re-plan when the pair is not in sync within its wait: the split and what hangs on it give way
 * to a snapshot-backup of the same volume; the steps done so far stay as they were, the wait is
 * shown skipped with the reason.
 */
export function replanAsSnapshot(steps: PlanStep[], p: OperationPlanInput, why: string): PlanStep[] {
  const wait = steps.find((s) => s.id === 'pair-sync');
  const kept: PlanStep[] = wait ? [{ ...wait, status: 'skipped', detail: why }] : [];
  return [
    ...kept,
    ...snapshotBackupSteps(
      { ...p, kind: 'snapshot-backup' },
      kept.map((s) => s.id),
    ),
  ];
}

/** Re-plan when the operation must stop: every step not yet run is skipped, with the reason. */
export function replanStopped(steps: PlanStep[], why: string): PlanStep[] {
  return steps.map((s) => (s.status === 'pending' ? { ...s, status: 'skipped', detail: why } : s));
}

/**
 * Re-plan when a cartridge fills: before chunk `piece` is copied again, a new stream's cartridge is
 * mounted (`load:<stream>`); the chunk waits for it.
 */
export function replanNextCartridge(steps: PlanStep[], piece: number, stream: number, title: string): PlanStep[] {
  const copyId = `copy:${piece}`;
  const load = step(`load:${stream}`, title, 'resource pool, switch, tape library', []);
  const out: PlanStep[] = [];
  for (const s of steps) {
    if (s.id === copyId) {
      out.push(load);
      out.push({ ...s, status: 'pending', dependsOn: [...s.dependsOn.filter((d) => d !== load.id), load.id] });
    } else out.push(s);
  }
  return out;
}

function ms(bytes: number, perSecond: number): number {
  return Math.ceil((bytes / perSecond) * 1000);
}

function seconds(msValue: number): string {
  return `${Math.round(msValue / 100) / 10} s`;
}

/** Wait for (create, resync) the pair; put the application into backup mode; split; leave backup mode. */
function splitSteps(p: OperationPlanInput): PlanStep[] {
  const ref = `${p.array}/${p.volume}`;
  const wait = `at most ${seconds(p.pairWaitMs)}`;
  let sync: PlanStep;
  if (p.pair === null) {
    sync = step(
      'pair-sync',
      `pair ${ref} with a replica from the free pool of ${p.array} and copy it in full (${wait})`,
      'storage array',
    );
    sync.expectedMs = ms(p.sizeBytes, p.throughput.pairCopy);
  } else if (p.pair.state === 'split') {
    sync = step('pair-sync', `resynchronise the pair of ${ref}: only the changed chunks (${wait})`, 'storage array');
    // Unknown until the array compares; the whole volume bounds it.
    sync.expectedMs = ms(p.sizeBytes, p.throughput.pairCopy);
  } else {
    sync = step('pair-sync', `wait until the pair of ${ref} is in sync (${wait})`, 'storage array');
    sync.expectedMs = ms(Math.max(0, p.pair.totalBytes - p.pair.copiedBytes), p.throughput.pairCopy);
  }
  sync.device = p.array;
  const split = step('split', `split the pair of ${ref}: the replica keeps this instant's image`, 'storage array', [
    'backup-mode',
  ]);
  split.device = p.array;
  split.expectedMs = 0;
  return [sync, beginHook(p, ['pair-sync']), split, endHook(p, 'split')];
}

function snapshotBackupSteps(p: OperationPlanInput, after: string[]): PlanStep[] {
  const name = p.snapshot ?? 'the snapshot';
  const snap = step(
    'snapshot',
    `take snapshot ${name} of ${p.array}/${p.volume}: its image of this instant`,
    'storage array',
    ['backup-mode'],
  );
  snap.device = p.array;
  snap.expectedMs = ms(p.sizeBytes, p.throughput.snapshot);
  const drop = step(
    'delete-snapshot',
    `delete snapshot ${name} and return its space to the free pool`,
    'storage array',
    ['release'],
  );
  drop.device = p.array;
  drop.expectedMs = 0;
  return [beginHook(p, after), snap, endHook(p, 'snapshot'), ...tapeSteps(p, ['snapshot']), drop];
}

function resyncStep(p: OperationPlanInput): PlanStep {
  const s = step(
    'resync',
    `resynchronise the pair of ${p.array}/${p.volume}: only what changed since the split`,
    'storage array',
    ['release'],
  );
  s.device = p.array;
  return s;
}

function beginHook(p: OperationPlanInput, after: string[]): PlanStep {
  const s =
    p.hook.kind === 'none'
      ? step(
          'backup-mode',
          `put the application of ${p.target} into backup mode (it has no hook: nothing to do)`,
          'application',
          after,
        )
      : step(
          'backup-mode',
          `put the application of ${p.target} into backup mode (${p.hook.kind} hook; stop before any split if not within ${seconds(p.hook.timeoutMs)})`,
          'application',
          after,
        );
  s.device = p.target;
  s.expectedMs = p.hook.kind === 'none' ? 0 : p.hook.timeoutMs;
  return s;
}

function endHook(p: OperationPlanInput, after: string): PlanStep {
  const s = step(
    'end-backup-mode',
    p.hook.kind === 'none'
      ? `take the application of ${p.target} out of backup mode (no hook: nothing to do)`
      : `take the application of ${p.target} out of backup mode (${p.hook.kind} hook)`,
    'application',
    [after],
  );
  s.device = p.target;
  s.expectedMs = 0;
  return s;
}

/** The copy to tape of seed 004 (planBackupSteps), after `after`, with each copy's expected duration. */
function tapeSteps(p: OperationPlanInput, after: string[]): PlanStep[] {
  if (!p.copy) return [];
  const { pieces, streams, mode } = p.copy;
  return planBackupSteps(p.target, pieces, streams, mode).map((s) => {
    const out = s.id === 'reserve' && after.length > 0 ? { ...s, dependsOn: [...after] } : { ...s };
    const m = /^copy:(?:\d+:)?(\d+)$/.exec(s.id);
    const piece = m ? pieces.find((x) => x.piece === Number(m[1])) : undefined;
    if (piece) out.expectedMs = ms(piece.length, p.throughput.tape);
    if (s.id === 'verify') out.expectedMs = ms(p.sizeBytes, p.throughput.tape);
    return out;
  });
}
