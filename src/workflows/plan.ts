/**
 * Pure planning of SAN operations (seed 003 step 3): how a volume is cut into pieces and which
 * steps run in which order. Deterministic, so workflows can call it and tests can check it alone.
 */
import type { PlanStep, StepStatus } from '../domain/jobs';

export interface PiecePlan {
  piece: number;
  /** Byte offset within the volume, and length. */
  offset: number;
  length: number;
}

/** Cuts `sizeBytes` into pieces of at most `pieceSize` bytes, in order. */
export function planPieces(sizeBytes: number, pieceSize: number): PiecePlan[] {
  if (sizeBytes <= 0) return [];
  const pieces: PiecePlan[] = [];
  for (let offset = 0, piece = 0; offset < sizeBytes; offset += pieceSize, piece++) {
    pieces.push({ piece, offset, length: Math.min(pieceSize, sizeBytes - offset) });
  }
  return pieces;
}

/** A step as the plan first shows it: pending, with its dependencies. */
export function step(id: string, title: string, actor: string, dependsOn: string[] = []): PlanStep {
  return { id, title, actor, dependsOn, status: 'pending' };
}

/**
 * The execution schedule of a one-stream backup: reserve a stream, mount a cartridge, copy each
 * piece in order, read them back to verify, unmount, record the pieces in the catalog, release.
 */
export function planBackupSteps(target: string, pieces: PiecePlan[]): PlanStep[] {
  const copies = pieces.map((p, i) =>
    step(`copy:${p.piece}`, `copy piece ${p.piece} of ${target} (${p.length} bytes at ${p.offset})`, 'copy device', [i === 0 ? 'load' : `copy:${p.piece - 1}`]),
  );
  const lastCopy = copies.length ? (copies[copies.length - 1] as PlanStep).id : 'load';
  return [
    step('reserve', 'reserve a stream: backup server, library, drive, cartridge, switch path', 'resource pool'),
    step('load', 'mount the cartridge in the drive', 'tape library', ['reserve']),
    ...copies,
    step('verify', 'read every piece back, check its checksum, hash the whole image', 'copy device', [lastCopy]),
    step('unload', 'unmount the cartridge', 'tape library', ['verify']),
    step('record', 'record every piece in the catalog and mark the backup complete', 'catalog', ['unload']),
    step('release', 'release the stream', 'resource pool', ['record']),
  ];
}

/** Returns a copy of the steps with one step's status (and times) changed. */
export function markStep(steps: PlanStep[], id: string, status: StepStatus, at: string, detail?: string): PlanStep[] {
  return steps.map((s) => {
    if (s.id !== id) return s;
    const next: PlanStep = { ...s, status };
    if (status === 'running') next.startedAt = at;
    if (status === 'done' || status === 'failed' || status === 'skipped') next.endedAt = at;
    if (detail !== undefined) next.detail = detail;
    return next;
  });
}
